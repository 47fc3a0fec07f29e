"""``pushline reconciler``: the reconciler as a long-running process (JSON logs, /metrics,
/healthz, /readyz; SIGTERM drains, commits and leaves the group)."""

from __future__ import annotations

import logging
import signal
from collections.abc import Mapping
from types import FrameType

from pushline.config import KafkaConfig, SchemaRegistryConfig, TopicsConfig
from pushline.ops import OpsConfig, OpsServer, configure_json_logging, reconciler_metrics
from receipts._reconciler import Reconciler, ReconcilerConfig

__all__ = ["run_reconciler_service"]

log = logging.getLogger("pushline.reconciler")


def run_reconciler_service(env: Mapping[str, str]) -> int:
    ops = OpsConfig.from_env(env)
    configure_json_logging(ops.log_level, "reconciler")
    metrics = reconciler_metrics()
    reconciler = Reconciler(
        kafka=KafkaConfig.from_env(env),
        registry=SchemaRegistryConfig.from_env(env),
        topics=TopicsConfig.from_env(env),
        config=ReconcilerConfig.from_env(env),
        metrics=metrics,
    )

    def _stop(signum: int, frame: FrameType | None) -> None:
        reconciler.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    server = OpsServer.from_config(
        ops,
        metrics.registry,
        ready=lambda: (reconciler.ready, "restoring state / waiting for partitions"),
        healthy=lambda: reconciler.healthy,
    )
    server.start()
    log.info("reconciler starting", extra={"ops": server.url})
    try:
        reconciler.run()
    finally:
        server.stop()
        log.info("reconciler stopped", extra=dict(reconciler.stats))
    return 0
