"""``pushline topics ensure``: create the DESIGN.md topics, or check that existing ones match."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from pushline.config import COMPACTED_TOPICS, TOPIC_NAMES, KafkaConfig, TopicsConfig
from pushline.errors import TopicError, TopicMismatch, TopicMismatchError

__all__ = ["TopicReport", "TopicSpec", "ensure_topics", "topic_specs"]


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str]


@dataclass(frozen=True)
class TopicReport:
    """What ``ensure_topics`` did for one topic: ``created`` or ``ok`` (already as configured)."""

    name: str
    action: str
    partitions: int
    replication_factor: int


def topic_specs(cfg: TopicsConfig, logical: Iterable[str] = TOPIC_NAMES) -> list[TopicSpec]:
    specs = []
    for name in logical:
        if name in COMPACTED_TOPICS:
            config = {"cleanup.policy": "compact"}
        else:
            config = {"retention.ms": str(cfg.retention_ms(name)), "cleanup.policy": "delete"}
        if cfg.min_insync_replicas is not None:
            config["min.insync.replicas"] = str(cfg.min_insync_replicas)
        specs.append(TopicSpec(cfg.name(name), cfg.partitions, cfg.replication_factor, config))
    return specs


def _wait(futures: dict[str, Any], timeout: float) -> dict[str, KafkaError | None]:
    results: dict[str, KafkaError | None] = {}
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
            results[name] = None
        except KafkaException as exc:
            results[name] = exc.args[0]
    return results


def ensure_topics(
    kafka: KafkaConfig, topics: TopicsConfig, *, timeout: float = 30.0
) -> list[TopicReport]:
    """Create missing topics; verify partitions, replication factor and retention of existing ones.

    Idempotent. Every mismatch is collected first, so one run names all of them in one
    :class:`TopicMismatchError`.
    """
    admin = AdminClient(kafka.to_librdkafka())
    specs = topic_specs(topics)
    try:
        existing = admin.list_topics(timeout=timeout).topics
    except KafkaException as exc:
        raise TopicError(f"cannot reach Kafka at {kafka.bootstrap_servers}: {exc.args[0]}") from exc

    missing = [s for s in specs if s.name not in existing]
    created: set[str] = set()
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(s.name, s.partitions, s.replication_factor, config=s.config)
                for s in missing
            ],
            operation_timeout=timeout,
            request_timeout=timeout,
        )
        for name, err in _wait(futures, timeout).items():
            if err is None:
                created.add(name)
            elif err.code() != KafkaError.TOPIC_ALREADY_EXISTS:  # lost a race: validated below
                raise TopicError(f"cannot create topic {name!r}: {err.str()}")
        existing = admin.list_topics(timeout=timeout).topics

    mismatches: list[TopicMismatch] = []
    reports: list[TopicReport] = []
    to_describe = [s for s in specs if s.name not in created]
    retention = _describe_retention(admin, [s.name for s in to_describe], timeout)
    for spec in specs:
        meta = existing.get(spec.name)
        if meta is None:
            raise TopicError(f"topic {spec.name!r} is missing after creation")
        partitions = len(meta.partitions)
        replicas = max((len(p.replicas) for p in meta.partitions.values()), default=0)
        if spec.name in created:
            reports.append(TopicReport(spec.name, "created", partitions, replicas))
            continue
        if partitions != spec.partitions:
            mismatches.append(TopicMismatch(spec.name, "partitions", spec.partitions, partitions))
        if replicas != spec.replication_factor:
            mismatches.append(
                TopicMismatch(spec.name, "replication.factor", spec.replication_factor, replicas)
            )
        actual_retention = retention.get(spec.name)
        wanted_retention = spec.config.get("retention.ms")
        if wanted_retention and actual_retention and actual_retention != wanted_retention:
            mismatches.append(
                TopicMismatch(spec.name, "retention.ms", wanted_retention, actual_retention)
            )
        reports.append(TopicReport(spec.name, "ok", partitions, replicas))
    if mismatches:
        raise TopicMismatchError(mismatches)
    return reports


def _describe_retention(admin: AdminClient, names: list[str], timeout: float) -> dict[str, str]:
    if not names:
        return {}
    futures = admin.describe_configs(
        [ConfigResource(ConfigResource.Type.TOPIC, n) for n in names], request_timeout=timeout
    )
    out: dict[str, str] = {}
    for resource, future in futures.items():
        try:
            entries = future.result(timeout=timeout)
        except KafkaException as exc:
            raise TopicError(f"cannot describe topic {resource.name!r}: {exc.args[0]}") from exc
        entry = entries.get("retention.ms")
        if entry is not None and entry.value is not None:
            out[resource.name] = str(entry.value)
    return out
