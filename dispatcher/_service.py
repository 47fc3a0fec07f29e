"""``pushline dispatcher``: the dispatcher as a long-running process.

Configuration comes from the environment; ``/metrics``, ``/healthz`` and ``/readyz`` are served on
``PUSHLINE_OPS_PORT``; logs are JSON lines on stderr. SIGTERM (or SIGINT) drains in-flight sends,
flushes, commits and leaves the group within ``PUSHLINE_DISPATCHER_DRAIN_TIMEOUT_S`` plus a few
seconds; the exit code is 0 then, 1 if the broker refused an event.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Mapping

from dispatcher._apps import AppRegistry
from dispatcher._config import DispatcherConfig
from dispatcher._loop import Dispatcher
from dispatcher._providers import ProviderClients
from pushline.config import KafkaConfig, SchemaRegistryConfig, TopicsConfig
from pushline.event_loop import event_loop_from_env, run_event_loop
from pushline.ops import OpsConfig, configure_json_logging, dispatcher_metrics
from schemas import NotificationRequest
from schemas.receipt_token import ReceiptTokenConfig

__all__ = ["run_dispatcher_service"]

log = logging.getLogger("pushline.dispatcher")


def run_dispatcher_service(env: Mapping[str, str]) -> int:
    ops = OpsConfig.from_env(env)
    configure_json_logging(ops.log_level, "dispatcher")
    kafka = KafkaConfig.from_env(env)
    registry = SchemaRegistryConfig.from_env(env)
    topics = TopicsConfig.from_env(env)
    config = DispatcherConfig.from_env(env)
    apps = AppRegistry.from_env(env)
    receipts = ReceiptTokenConfig.from_env(env)
    event_loop = event_loop_from_env(env)
    signer = receipts.signer()
    ttl_s = int(receipts.ttl_seconds)

    def receipt_token(request: NotificationRequest) -> str:
        return signer.sign_until(request.notification_id, request.key, int(time.time()) + ttl_s)

    metrics = dispatcher_metrics()

    async def main() -> None:
        clients = ProviderClients(apps, timeout=config.send_timeout_s)
        dispatcher = Dispatcher(
            kafka=kafka,
            registry=registry,
            topics=topics,
            config=config,
            sender=clients,
            receipt_token=receipt_token,
            metrics=metrics,
        )
        try:
            await dispatcher.serve(
                ops,
                metrics.registry,
                "dispatcher",
                group_id=config.group_id,
                apps=list(apps.app_ids),
            )
        finally:
            await clients.aclose()

    _tune_gc()
    run_event_loop(main(), event_loop)
    return 0


def _tune_gc() -> None:
    """Almost no garbage collections. A young-generation collection starts when the number of
    container objects (coroutines, futures, tuples, dicts) has grown by the threshold since the
    last one, and visits every young object still alive: with 10,000, each consumed batch of a few
    hundred notifications started one, over all the objects of the sends in flight, and
    collections took 8% of the dispatcher's CPU (``perf``, pinned benchmark). The work of a
    notification is freed by reference counting when its outcome is acknowledged, so the growth
    that remains is reference cycles, which a collection every 100,000 objects bounds (a few tens
    of MB at worst). The objects from start-up (modules, schemas, compiled codecs) never die, so
    they are frozen out of every later full collection."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 50)
