"""The fallback sender's Prometheus metrics, on a registry of its own."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from pushline.ops import LATENCY_BUCKETS, new_registry
from pushline.ops._metrics import ConsumerLag

__all__ = ["FallbackMetrics", "fallback_metrics"]


@dataclass(frozen=True)
class FallbackMetrics:
    registry: CollectorRegistry
    fallbacks: Counter
    """``pushline_fallbacks_total{channel,result}``: one per fallback request; result ``sent``,
    ``rejected`` (the provider refused the message), ``failed`` (attempts spent, or the channel is
    not configured) or ``duplicate`` (already finished: nothing sent)."""
    attempts: Counter
    """``pushline_fallback_attempts_total{channel,result}``: every SMTP session or SMS request;
    result ``ok``, ``transient`` or ``permanent``."""
    latency: Histogram
    """``pushline_fallback_send_latency_seconds{channel}``: one SMTP session or SMS request."""
    in_flight: Gauge
    """``pushline_fallback_in_flight``: requests taken from Kafka and not yet finished."""
    dlq: Counter
    """``pushline_dlq_total{source_topic,error}``: records sent to push.dlq, by error class."""
    commits: Counter
    """``pushline_commits_total``: offset commits the broker acknowledged."""
    consumer_lag: ConsumerLag
    """``pushline_consumer_lag{topic,partition}``: as the broker reports it (librdkafka stats)."""

    def update_lag_from_stats(self, stats_json: str) -> int:
        return self.consumer_lag.update(stats_json)


def fallback_metrics(registry: CollectorRegistry | None = None) -> FallbackMetrics:
    registry = registry or new_registry()
    return FallbackMetrics(
        registry=registry,
        fallbacks=Counter(
            "pushline_fallbacks_total",
            "Fallback requests by channel and result.",
            ["channel", "result"],
            registry=registry,
        ),
        attempts=Counter(
            "pushline_fallback_attempts_total",
            "SMTP sessions and SMS requests by channel and result.",
            ["channel", "result"],
            registry=registry,
        ),
        latency=Histogram(
            "pushline_fallback_send_latency_seconds",
            "One SMTP session or SMS API request.",
            ["channel"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        in_flight=Gauge(
            "pushline_fallback_in_flight",
            "Fallback requests taken from Kafka and not yet finished.",
            registry=registry,
        ),
        dlq=Counter(
            "pushline_dlq_total",
            "Records sent to the dead-letter topic.",
            ["source_topic", "error"],
            registry=registry,
        ),
        commits=Counter(
            "pushline_commits_total", "Offset commits acknowledged.", registry=registry
        ),
        consumer_lag=ConsumerLag(registry),
    )
