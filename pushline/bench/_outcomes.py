"""Reading a bench run's push.outcomes: the first terminal outcome of each notification, its Kafka
timestamp, and the dispatchers' CPU time sampled meanwhile; the figures of a run from them."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.serialization import MessageField, SerializationContext

from dispatcher._dedupe import HEADER_NOTIFICATION_ID, HEADER_TERMINAL
from pushline.bench._model import DispatcherRun, PacedFigures
from pushline.bench._stats import cpu_busy_seconds, interpolate, percentile
from pushline.config import KafkaConfig, SchemaRegistryConfig, TopicsConfig
from pushline.errors import StackError
from pushline.headers import message_headers
from schemas import DispatchOutcome, EventDeserializer, OutcomeState, make_registry_client

__all__ = ["Collected", "OutcomeReader", "decode_outcomes", "dispatcher_run"]

CPU_SAMPLE_INTERVAL_S = 0.05


@dataclass
class Collected:
    """What :meth:`OutcomeReader.collect` found."""

    messages: list[Message] = field(default_factory=list)
    """The first terminal outcome of each expected notification, in the order read."""
    stamps_ms: list[float] = field(default_factory=list)
    """Their Kafka timestamps: when a dispatcher produced them."""
    outcome_messages: int = 0
    """Every outcome message read meanwhile (retry-scheduled ones included)."""
    cpu_samples: list[tuple[float, float]] = field(default_factory=list)
    """(wall-clock ms, CPU seconds of the dispatchers) about every 50 ms."""
    busy_samples: list[tuple[float, dict[int, float]]] = field(default_factory=list)
    """(wall-clock ms, busy seconds of each CPU of the machine, whatever ran there), as often."""

    @property
    def window_ms(self) -> tuple[float, float]:
        return min(self.stamps_ms), max(self.stamps_ms)

    def cpu_between(self, start_ms: float, end_ms: float) -> float | None:
        if len(self.cpu_samples) < 2:
            return None
        return interpolate(self.cpu_samples, end_ms) - interpolate(self.cpu_samples, start_ms)

    def busy_between(self, start_ms: float, end_ms: float) -> dict[int, float] | None:
        """The share of ``start_ms``..``end_ms`` each CPU spent busy (0..1), by anything on the
        machine; None without two samples or on a window too short to tell (under 100 ms: the
        kernel counts in 10 ms ticks)."""
        if len(self.busy_samples) < 2 or end_ms - start_ms < 100:
            return None
        shares: dict[int, float] = {}
        for cpu in sorted(self.busy_samples[0][1]):
            series = [(at, busy.get(cpu, 0.0)) for at, busy in self.busy_samples]
            used = interpolate(series, end_ms) - interpolate(series, start_ms)
            shares[cpu] = min(1.0, max(0.0, used * 1000 / (end_ms - start_ms)))
        return shares


def _header(msg: Message, name: str) -> bytes | None:
    for key, value in message_headers(msg):
        if key == name:
            return value
    return None


class OutcomeReader:
    """Reads push.outcomes of a run from offset 0 of every partition, without decoding (the
    ``pushline.notification_id`` and terminal headers say enough); decoding waits for the end."""

    def __init__(self, kafka: KafkaConfig, topics: TopicsConfig, timeout_s: float) -> None:
        self._topic = topics.outcomes
        self._timeout_s = timeout_s
        self._consumer = Consumer(
            kafka.to_librdkafka(
                **{
                    "group.id": f"{topics.prefix}bench-reader",
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    # Outcomes are seen within ~10 ms of being written (the default waits 500).
                    "fetch.wait.max.ms": 10,
                }
            )
        )
        # Assigned, not subscribed: no group join to wait for, nothing missed before it.
        self._consumer.assign(
            [TopicPartition(topics.outcomes, p, 0) for p in range(topics.partitions)]
        )

    def close(self) -> None:
        self._consumer.close()

    def collect(
        self,
        expected: Collection[bytes],
        deadline: float,
        *,
        check: Callable[[], None],
        cpu: Callable[[], float | None],
    ) -> Collected:
        """Read until every ``expected`` notification id has a terminal outcome. ``check`` raises
        when waiting is pointless (a dispatcher died); StackError at ``deadline`` (monotonic)."""
        found = Collected()
        seen: set[bytes] = set()
        last_sample = 0.0
        while len(seen) < len(expected):
            now = time.monotonic()
            if now > deadline:
                raise StackError(
                    f"bench timed out after {self._timeout_s:.0f}s: "
                    f"{len(seen)} of {len(expected)} notifications have an outcome"
                )
            check()
            if now - last_sample >= CPU_SAMPLE_INTERVAL_S:
                self._sample(found, cpu)
                last_sample = now
            try:
                batch = self._consumer.consume(1000, timeout=0.05)
            except KafkaException as exc:
                raise StackError(f"reading {self._topic} failed: {exc}") from exc
            for msg in batch:
                if msg.error() is not None:
                    continue
                found.outcome_messages += 1
                if _header(msg, HEADER_TERMINAL) != b"1":
                    continue
                nid = _header(msg, HEADER_NOTIFICATION_ID)
                if nid is None or nid not in expected or nid in seen:
                    continue
                seen.add(nid)
                found.messages.append(msg)
                kind, ts = msg.timestamp()
                found.stamps_ms.append(
                    float(ts) if kind != TIMESTAMP_NOT_AVAILABLE else time.time() * 1000
                )
        self._sample(found, cpu)
        return found

    @staticmethod
    def _sample(found: Collected, cpu: Callable[[], float | None]) -> None:
        value = cpu()
        now_ms = time.time() * 1000
        if value is not None:
            found.cpu_samples.append((now_ms, value))
        busy = cpu_busy_seconds()
        if busy is not None:
            found.busy_samples.append((now_ms, busy))


def decode_outcomes(
    collected: Collected, registry: SchemaRegistryConfig, topics: TopicsConfig
) -> list[DispatchOutcome]:
    decode = EventDeserializer(DispatchOutcome, make_registry_client(registry))
    ctx = SerializationContext(topics.outcomes, MessageField.VALUE)
    return [decode(m.value() or b"", ctx) for m in collected.messages]


def _quarter_rates(stamps: list[float]) -> list[float | None]:
    ordered = sorted(stamps)
    if len(ordered) < 8:
        return [None] * 4
    bounds = [q * len(ordered) // 4 for q in range(4)] + [len(ordered) - 1]
    rates: list[float | None] = []
    for lo, hi in itertools.pairwise(bounds):
        span_s = (ordered[hi] - ordered[lo]) / 1000
        rates.append((hi - lo) / span_s if span_s > 0 else None)
    return rates


def dispatcher_run(
    *,
    notifications: int,
    processes: int,
    collected: Collected,
    outcomes: list[DispatchOutcome],
    window_ms: tuple[float, float],
    cpu_window_ms: tuple[float, float] | None = None,
    emulator_accepted: int | None,
    exit_codes: list[int | None],
    measured: int | None = None,
    paced: PacedFigures | None = None,
) -> DispatcherRun:
    """The figures of a run whose rate is measured over ``window_ms`` (wall-clock ms), in which
    ``measured`` (default: all) of the notifications got their outcome, and its CPU time over
    ``cpu_window_ms`` (default: the same)."""
    measured = notifications if measured is None else measured
    seconds = max((window_ms[1] - window_ms[0]) / 1000, 0.001)
    cpu_used = collected.cpu_between(*(cpu_window_ms or window_ms))
    cpu_busy = collected.busy_between(*(cpu_window_ms or window_ms))
    latencies = [o.latency_ms for o in outcomes if o.latency_ms is not None]
    total = measured / seconds
    return DispatcherRun(
        notifications=notifications,
        outcomes=len(outcomes),
        outcome_messages=collected.outcome_messages,
        states=dict(Counter(o.state.value for o in outcomes)),
        attempts=dict(sorted(Counter(o.attempt for o in outcomes).items())),
        seconds=seconds,
        total_per_s=total,
        per_process_per_s=total / processes,
        cpu_seconds=cpu_used,
        cpu_us_per_notification=None if cpu_used is None else cpu_used * 1e6 / measured,
        latency_p50_ms=percentile(latencies, 0.50),
        latency_p99_ms=percentile(latencies, 0.99),
        latency_max_ms=max(latencies) if latencies else None,
        per_s_by_quarter=_quarter_rates(collected.stamps_ms),
        emulator_accepted=emulator_accepted,
        exit_codes=exit_codes,
        processes=processes,
        measured=measured,
        paced=paced,
        not_accepted=dict(
            Counter(
                f"{o.state.value}:{o.reason or 'Unknown'}"
                for o in outcomes
                if o.state is not OutcomeState.ACCEPTED
            )
        ),
        cpu_busy=cpu_busy,
    )
