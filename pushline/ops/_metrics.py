"""The components' Prometheus metrics, all prefixed ``pushline_``.

Each component builds its metrics on its own :class:`~prometheus_client.CollectorRegistry` (never the
global default), so tests get fresh counters and two components in one process do not collide.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

__all__ = [
    "LATENCY_BUCKETS",
    "NAMESPACE",
    "ConsumerLag",
    "DispatcherMetrics",
    "ReconcilerMetrics",
    "dispatcher_metrics",
    "new_registry",
    "reconciler_metrics",
    "update_lag",
]

log = logging.getLogger(__name__)

NAMESPACE = "pushline"
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""Provider round trips: 1 ms (emulator on loopback) to 10 s (the client's timeout)."""


def new_registry(*, process_metrics: bool = True) -> CollectorRegistry:
    """A fresh registry, with the standard process / platform / GC collectors unless told not to."""
    registry = CollectorRegistry(auto_describe=True)
    if process_metrics:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    return registry


class ConsumerLag:
    """``pushline_consumer_lag{topic,partition}``, fed from librdkafka's statistics (every consumer
    of Pushline exports it the same way; see :func:`update_lag`)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.gauge = Gauge(
            "consumer_lag",
            "Messages between the committed offset and the high watermark, as the broker reports "
            "them (librdkafka statistics).",
            ["topic", "partition"],
            namespace=NAMESPACE,
            registry=registry,
        )
        self._series: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def update(self, stats_json: str) -> int:
        return update_lag(self.gauge, self._series, self._lock, stats_json)


@dataclass(frozen=True)
class DispatcherMetrics:
    """Every metric the dispatcher updates. Build with :func:`dispatcher_metrics`."""

    registry: CollectorRegistry
    sends: Counter
    """``pushline_sends_total{app,platform,state,reason}``: one per final result of a send attempt
    sequence (the DispatchOutcome state; reason is the provider's, or ``""``)."""
    provider_latency: Histogram
    """``pushline_provider_latency_seconds{platform}``: one HTTP/2 request to APNs or FCM."""
    inflight_sends: Gauge
    """``pushline_inflight_sends``: notifications taken from Kafka and not yet finished (waiting for
    their device's previous send, at the provider, or their outcome not yet acknowledged); read at
    scrape time."""
    retries: Counter
    """``pushline_retries_total{platform,kind}``: kind ``in_process`` (waited here) or ``topic``
    (rescheduled through push.retries)."""
    dlq: Counter
    """``pushline_dlq_total{source_topic,error}``: records sent to push.dlq, by error class."""
    consumer_lag: ConsumerLag
    """``pushline_consumer_lag{topic,partition}``: see :func:`update_lag`."""
    outcomes_produced: Counter
    """``pushline_outcomes_produced_total``: outcome events the broker acknowledged."""
    commits: Counter
    """``pushline_commits_total``: offset commits the broker acknowledged."""

    def update_lag_from_stats(self, stats_json: str) -> int:
        """Use as the consumer's ``stats_cb``: see :func:`update_lag`."""
        return self.consumer_lag.update(stats_json)


def update_lag(
    gauge: Gauge, series_seen: set[tuple[str, str]], lock: threading.Lock, stats_json: str
) -> int:
    """Set ``consumer_lag`` from a librdkafka statistics document; returns partitions updated.

    Use as the consumer's ``stats_cb`` (with ``statistics.interval.ms`` set). The value is
    librdkafka's per-partition ``consumer_lag``: the partition's high watermark (or last stable
    offset under read_committed), as the broker reported it in the latest fetch or offset
    response, minus the group's committed offset as the broker holds it. It is therefore the
    lag ``kafka-consumer-groups --describe`` shows, counted from committed (not merely consumed)
    offsets, and only for partitions this consumer is assigned. Partitions where librdkafka
    does not know it yet (-1), the internal unassigned partition (-1) and partitions no longer
    assigned are dropped from the gauge rather than left at a stale value.

    Never raises: it runs inside ``poll()``, where an exception would surface in the consume
    loop. A document that cannot be read is logged and ignored.
    """
    try:
        stats: Any = json.loads(stats_json)
        topics = stats.get("topics", {}) if isinstance(stats, dict) else {}
        current: dict[tuple[str, str], int] = {}
        for topic, tstats in topics.items():
            for partition, pstats in (tstats.get("partitions") or {}).items():
                if partition == "-1" or not isinstance(pstats, dict):
                    continue
                # Older librdkafka versions lack "assigned"; "desired" is the fallback.
                if not pstats.get("assigned", pstats.get("desired", True)):
                    continue
                lag = pstats.get("consumer_lag", -1)
                if isinstance(lag, int) and lag >= 0:
                    current[(str(topic), str(partition))] = lag
    except (ValueError, AttributeError, TypeError) as exc:
        log.warning("ignoring unreadable librdkafka statistics", extra={"error": str(exc)})
        return 0
    with lock:
        # Only topics named in this document are pruned: another consumer in the process may
        # report the others through the same gauge.
        reported = {topic for topic in topics}
        for series in list(series_seen):
            if series[0] in reported and series not in current:
                gauge.remove(*series)
                series_seen.discard(series)
        for (topic, partition), lag in current.items():
            gauge.labels(topic=topic, partition=partition).set(lag)
            series_seen.add((topic, partition))
    return len(current)


def dispatcher_metrics(
    registry: CollectorRegistry | None = None, *, process_metrics: bool = True
) -> DispatcherMetrics:
    """The dispatcher's metrics on ``registry`` (a fresh one from :func:`new_registry` if None)."""
    reg = new_registry(process_metrics=process_metrics) if registry is None else registry
    common: dict[str, Any] = {"namespace": NAMESPACE, "registry": reg}
    return DispatcherMetrics(
        registry=reg,
        sends=Counter(
            "sends",
            "Notifications finished by the dispatcher, by outcome state and provider reason.",
            ["app", "platform", "state", "reason"],
            **common,
        ),
        provider_latency=Histogram(
            "provider_latency_seconds",
            "Latency of one request to APNs or FCM.",
            ["platform"],
            buckets=LATENCY_BUCKETS,
            **common,
        ),
        inflight_sends=Gauge(
            "inflight_sends",
            "Notifications taken from Kafka and not yet finished (sent, answered, outcome acked).",
            **common,
        ),
        retries=Counter(
            "retries",
            "Retries of transient failures: in_process (waited here) or topic (push.retries).",
            ["platform", "kind"],
            **common,
        ),
        dlq=Counter(
            "dlq",
            "Records sent to the dead-letter topic, by source topic and error class.",
            ["source_topic", "error"],
            **common,
        ),
        consumer_lag=ConsumerLag(reg),
        outcomes_produced=Counter(
            "outcomes_produced", "Outcome events acknowledged by the broker.", **common
        ),
        commits=Counter("commits", "Offset commits acknowledged by the broker.", **common),
    )


@dataclass(frozen=True)
class ReconcilerMetrics:
    """Every metric the reconciler updates. Build with :func:`reconciler_metrics`."""

    registry: CollectorRegistry
    statuses: Counter
    """``pushline_statuses_total{platform,state}``: status events published."""
    fallbacks_requested: Counter
    """``pushline_fallbacks_requested_total{channel}``: fallback requests published."""
    invalid_tokens: Counter
    """``pushline_invalid_tokens_total{platform,verdict,os_version}``: invalid-token events."""
    tracked: Gauge
    """``pushline_reconciler_tracked``: notifications held in state."""
    dlq: Counter
    consumer_lag: ConsumerLag

    def update_lag_from_stats(self, stats_json: str) -> int:
        return self.consumer_lag.update(stats_json)


def reconciler_metrics(
    registry: CollectorRegistry | None = None, *, process_metrics: bool = True
) -> ReconcilerMetrics:
    reg = new_registry(process_metrics=process_metrics) if registry is None else registry
    common: dict[str, Any] = {"namespace": NAMESPACE, "registry": reg}
    return ReconcilerMetrics(
        registry=reg,
        statuses=Counter(
            "statuses", "Status events published, by state.", ["platform", "state"], **common
        ),
        fallbacks_requested=Counter(
            "fallbacks_requested", "Fallback requests published.", ["channel"], **common
        ),
        invalid_tokens=Counter(
            "invalid_tokens",
            "Invalid-token events published, by verdict (DEAD or SUSPECT) and the major OS "
            "version the device last reported in a receipt (unknown if none).",
            ["platform", "verdict", "os_version"],
            **common,
        ),
        tracked=Gauge("reconciler_tracked", "Notifications held in state.", **common),
        dlq=Counter(
            "dlq",
            "Records sent to the dead-letter topic, by source topic and error class.",
            ["source_topic", "error"],
            **common,
        ),
        consumer_lag=ConsumerLag(reg),
    )
