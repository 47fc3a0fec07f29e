"""Operations plumbing shared by every long-running component: JSON logs, Prometheus metrics and the
``/metrics`` / ``/healthz`` / ``/readyz`` endpoint (DESIGN.md, "Components and how they start")."""

from pushline.ops._logging import REDACTED, JsonFormatter, RedactingFilter, configure_json_logging
from pushline.ops._metrics import (
    LATENCY_BUCKETS,
    DispatcherMetrics,
    ReconcilerMetrics,
    dispatcher_metrics,
    new_registry,
    reconciler_metrics,
)
from pushline.ops._server import OpsConfig, OpsServer, Probe, ProbeResult

__all__ = [
    "LATENCY_BUCKETS",
    "REDACTED",
    "DispatcherMetrics",
    "JsonFormatter",
    "OpsConfig",
    "OpsServer",
    "Probe",
    "ProbeResult",
    "ReconcilerMetrics",
    "RedactingFilter",
    "configure_json_logging",
    "dispatcher_metrics",
    "new_registry",
    "reconciler_metrics",
]
