"""``pushline bench reconciler``: events/s of one ``pushline reconciler`` draining a backlog.

How it measures:

1. The stack from the environment, else ``pushline emulate stack`` in a child process; topics get a
   fresh prefix.
2. N input events are produced **before** the reconciler starts (fast serializer, idempotent
   producer), so the number is capacity, not the producer's pace: N/2 ACCEPTED outcomes (receipt
   deadline an hour away, with an e-mail fallback, so no deadline fires during the run), DELIVERED
   receipts for half of those outcomes (a quarter of them produced before their outcome) and, for
   the rest of N, receipts whose outcome never comes (held in state, no status).
3. One ``pushline reconciler`` starts. A consumer on push.status counts records, without decoding,
   until the expected number is there: one ACCEPTED per outcome plus one DELIVERED per matched
   receipt (the count does not depend on the order in which the two topics are read).
   - **events/s**: N / (timestamp of the last status - timestamp of the first). Status timestamps
     are the reconciler's produce times, so start-up and group join do not count.
   - **CPU µs per event**: user + system time of the reconciler process (``/proc``, Linux only) over
     the same window, interpolated from samples taken every ~50 ms, divided by N.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.serialization import MessageField, SerializationContext

from producers import PRODUCER_SETTINGS
from pushline.bench._stats import cpu_seconds, interpolate, machine_info
from pushline.config import KafkaConfig, SchemaRegistryConfig, TopicsConfig
from pushline.errors import StackError, ValidationError
from pushline.processes import die_with_parent, stop_process
from pushline.stack import stack_from_env_or_spawn
from pushline.topics import ensure_topics
from schemas import (
    DeliveryReceipt,
    DispatchOutcome,
    Fallback,
    FallbackChannel,
    FastEventSerializer,
    OutcomeState,
    Platform,
    ReceiptKind,
    make_registry_client,
)

__all__ = [
    "ReconcilerBenchOptions",
    "ReconcilerBenchResult",
    "format_reconciler_table",
    "reconciler_to_json",
    "run_reconciler_bench",
]

Say = Callable[[str], None]

_DEADLINE_MS = 3_600_000  # far beyond any run: no SUSPECTED_LOST or fallback during the bench
_FALLBACK = Fallback(
    channel=FallbackChannel.EMAIL, address="bench@example.com", text="hi", subject="bench"
)


@dataclass(frozen=True)
class ReconcilerBenchOptions:
    events: int = 50_000
    partitions: int = 6
    timeout_s: float = 600.0
    """Bound on the reconciler phase (start of the process to the last status)."""

    def validate(self) -> None:
        if self.events < 4:
            raise ValidationError("--events", "must be at least 4")
        if self.partitions < 1:
            raise ValidationError("--partitions", "must be at least 1")
        if self.timeout_s <= 0:
            raise ValidationError("--timeout", "must be positive")


@dataclass(frozen=True)
class ReconcilerBenchResult:
    options: ReconcilerBenchOptions
    events: int
    outcomes: int
    matched_receipts: int
    receipts_before_outcome: int
    orphan_receipts: int
    expected_statuses: int
    statuses: int
    produce_seconds: float
    seconds: float
    """First status to last status (broker timestamps)."""
    events_per_s: float
    cpu_seconds: float | None
    cpu_us_per_event: float | None
    exit_code: int | None
    machine: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Backlog:
    outcomes: int
    matched: int
    early: int
    orphans: int

    @property
    def expected_statuses(self) -> int:
        return self.outcomes + self.matched


def _produce_backlog(
    kafka: KafkaConfig, registry: SchemaRegistryConfig, topics: TopicsConfig, events: int
) -> _Backlog:
    n_outcomes = events // 2
    n_receipts = events - n_outcomes
    matched = min(n_outcomes // 2, n_receipts)
    early = matched // 4
    client = make_registry_client(registry)
    encode_outcome = FastEventSerializer(DispatchOutcome, client)
    encode_receipt = FastEventSerializer(DeliveryReceipt, client)
    outcome_ctx = SerializationContext(topics.outcomes, MessageField.VALUE)
    receipt_ctx = SerializationContext(topics.receipts, MessageField.VALUE)
    failures: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            failures.append(err)

    producer = Producer(
        kafka.to_librdkafka(
            **{
                **PRODUCER_SETTINGS,
                # Throughput, not latency: bigger batches, a deeper queue.
                "linger.ms": 50,
                "batch.num.messages": 10_000,
                "queue.buffering.max.messages": 500_000,
            }
        )
    )

    def produce(topic: str, key: str, value: bytes) -> None:
        while True:
            try:
                producer.produce(topic, key=key.encode(), value=value, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)  # queue full: let deliveries drain it

    now = datetime.now(UTC)
    ids = [str(uuid.uuid4()) for _ in range(n_outcomes + n_receipts - matched)]

    def receipt(i: int) -> None:
        nid = ids[i]
        value = encode_receipt(
            DeliveryReceipt(
                notification_id=nid,
                device_key=f"bench-dev-{i}",
                kind=ReceiptKind.DELIVERED,
                received_at=now,
            ),
            receipt_ctx,
        )
        produce(topics.receipts, f"bench-dev-{i}", value)

    for i in range(early):  # these receipts are on the topic before their outcomes
        receipt(i)
    producer.flush(60)
    for i in range(n_outcomes):
        value = encode_outcome(
            DispatchOutcome(
                notification_id=ids[i],
                device_key=f"bench-dev-{i}",
                device_token=f"{i:064x}",
                platform=Platform.APNS,
                app_id="bench",
                state=OutcomeState.ACCEPTED,
                requested_at=now,
                decided_at=now,
                attempt=1,
                receipt_deadline_ms=_DEADLINE_MS,
                fallback=_FALLBACK,
            ),
            outcome_ctx,
        )
        produce(topics.outcomes, f"bench-dev-{i}", value)
        producer.poll(0)
    for i in range(early, matched):
        receipt(i)
    for i in range(n_outcomes, len(ids)):  # receipts whose outcome never comes
        receipt(i)
    left = producer.flush(120)
    if left or failures:
        raise StackError(
            f"producing the backlog failed: {left} undelivered, "
            f"{len(failures)} errors{f' ({failures[0]})' if failures else ''}"
        )
    return _Backlog(
        outcomes=n_outcomes, matched=matched, early=early, orphans=len(ids) - n_outcomes
    )


@contextlib.contextmanager
def _reconciler_process(env: Mapping[str, str], logdir: Path) -> Iterator[subprocess.Popen[bytes]]:
    log = logdir / "reconciler.log"
    with open(log, "wb") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pushline", "reconciler"],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - only sets the parent-death signal
        )
        try:
            yield proc
        finally:
            stop_process(proc, 20)  # commit and leave the group


def _check_alive(proc: subprocess.Popen[bytes], logdir: Path) -> None:
    code = proc.poll()
    if code is not None:
        lines = (logdir / "reconciler.log").read_text(errors="replace").strip().splitlines()
        last = lines[-1] if lines else "no output"
        raise StackError(f"reconciler {proc.pid} exited early with code {code}: {last}")


def _status_consumer(kafka: KafkaConfig, topics: TopicsConfig) -> Consumer:
    consumer = Consumer(
        kafka.to_librdkafka(
            **{
                "group.id": f"{topics.prefix}bench-reader",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 10,
            }
        )
    )
    # Assigned from offset 0, not subscribed: no group join to wait for, nothing missed.
    consumer.assign([TopicPartition(topics.status, p, 0) for p in range(topics.partitions)])
    return consumer


def run_reconciler_bench(
    options: ReconcilerBenchOptions, env: Mapping[str, str] | None = None, say: Say | None = None
) -> ReconcilerBenchResult:
    """Run the whole benchmark; raises PushlineError (one line) when it cannot."""
    options.validate()
    say = say or (lambda line: None)
    base = dict(os.environ if env is None else env)
    with stack_from_env_or_spawn(base) as stack:
        stack_env = {**base, **stack.env}
        say(f"stack: Kafka {stack.bootstrap_servers}, schema registry {stack.registry_url}")
        prefix = f"bench-{uuid.uuid4().hex[:8]}."
        topics = TopicsConfig.from_env(stack_env, prefix=prefix, partitions=options.partitions)
        kafka = KafkaConfig.from_env(stack_env)
        registry = SchemaRegistryConfig.from_env(stack_env)
        ensure_topics(kafka, topics)
        say(f"topics: {prefix}* with {topics.partitions} partitions")
        t0 = time.monotonic()
        backlog = _produce_backlog(kafka, registry, topics, options.events)
        produce_s = time.monotonic() - t0
        say(
            f"produced {backlog.outcomes} outcomes and "
            f"{options.events - backlog.outcomes} receipts in {produce_s:.1f}s"
        )
        reconciler_env = {
            **stack_env,
            "PUSHLINE_TOPIC_PREFIX": topics.prefix,
            "PUSHLINE_TOPIC_PARTITIONS": str(topics.partitions),
            "PUSHLINE_RECONCILER_GROUP_ID": f"{topics.prefix}reconciler",
            "PUSHLINE_RECONCILER_SESSION_TIMEOUT_MS": "6000",
            "PUSHLINE_OPS_HOST": "127.0.0.1",
            "PUSHLINE_OPS_PORT": "0",
            "PUSHLINE_LOG_LEVEL": "WARNING",
        }
        expected = backlog.expected_statuses
        consumer = _status_consumer(kafka, topics)
        count = 0
        first_ts: float | None = None
        last_ts: float | None = None
        samples: list[tuple[float, float]] = []
        exit_code: int | None = None
        try:
            with (
                tempfile.TemporaryDirectory(prefix="pushline-bench-") as tmp,
                _reconciler_process(reconciler_env, Path(tmp)) as proc,
            ):
                say(f"started reconciler {proc.pid}; waiting for {expected} statuses")
                deadline = time.monotonic() + options.timeout_s
                last_sample = 0.0
                while count < expected:
                    now = time.monotonic()
                    if now > deadline:
                        raise StackError(
                            f"bench timed out after {options.timeout_s:.0f}s: "
                            f"{count} of {expected} statuses"
                        )
                    _check_alive(proc, Path(tmp))
                    if now - last_sample >= 0.05:
                        cpu = cpu_seconds(proc.pid)
                        if cpu is not None:
                            samples.append((time.time() * 1000, cpu))
                        last_sample = now
                    try:
                        batch = consumer.consume(1000, timeout=0.05)
                    except KafkaException as exc:
                        raise StackError(f"reading {topics.status} failed: {exc}") from exc
                    for msg in batch:
                        if msg.error() is not None:
                            continue
                        count += 1
                        kind, ts = msg.timestamp()
                        stamp = float(ts) if kind != TIMESTAMP_NOT_AVAILABLE else time.time() * 1000
                        first_ts = stamp if first_ts is None else min(first_ts, stamp)
                        last_ts = stamp if last_ts is None else max(last_ts, stamp)
                cpu = cpu_seconds(proc.pid)
                if cpu is not None:
                    samples.append((time.time() * 1000, cpu))
            exit_code = proc.returncode  # set once the process was stopped on leaving the block
        finally:
            consumer.close()
    assert first_ts is not None and last_ts is not None
    seconds = max((last_ts - first_ts) / 1000, 0.001)
    cpu_used = None
    if len(samples) >= 2:
        cpu_used = interpolate(samples, last_ts) - interpolate(samples, first_ts)
    return ReconcilerBenchResult(
        options=options,
        events=options.events,
        outcomes=backlog.outcomes,
        matched_receipts=backlog.matched,
        receipts_before_outcome=backlog.early,
        orphan_receipts=backlog.orphans,
        expected_statuses=expected,
        statuses=count,
        produce_seconds=produce_s,
        seconds=seconds,
        events_per_s=options.events / seconds,
        cpu_seconds=cpu_used,
        cpu_us_per_event=None if cpu_used is None else cpu_used * 1e6 / options.events,
        exit_code=exit_code,
        machine=machine_info(),
    )


def reconciler_to_json(result: ReconcilerBenchResult) -> dict[str, Any]:
    return {
        "events_per_s": result.events_per_s,
        "cpu_us_per_event": result.cpu_us_per_event,
        "events": result.events,
        "outcomes": result.outcomes,
        "matched_receipts": result.matched_receipts,
        "receipts_before_outcome": result.receipts_before_outcome,
        "orphan_receipts": result.orphan_receipts,
        "expected_statuses": result.expected_statuses,
        "statuses": result.statuses,
        "seconds": result.seconds,
        "produce_seconds": result.produce_seconds,
        "reconciler_cpu_seconds": result.cpu_seconds,
        "reconciler_exit_code": result.exit_code,
        "partitions": result.options.partitions,
        "machine": result.machine,
    }


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def format_reconciler_table(result: ReconcilerBenchResult) -> str:
    machine = result.machine
    return "\n".join(
        [
            f"{'name':12}  {'events/s':>10}  {'cpu_us/event':>12}  {'events':>8}  {'seconds':>8}",
            f"{'reconciler':12}  {_num(result.events_per_s, 0):>10}  "
            f"{_num(result.cpu_us_per_event, 1):>12}  {result.events:>8}  "
            f"{result.seconds:>8.2f}",
            "",
            f"input: {result.outcomes} ACCEPTED outcomes, {result.matched_receipts} matching "
            f"DELIVERED receipts ({result.receipts_before_outcome} produced before their outcome), "
            f"{result.orphan_receipts} receipts without an outcome; "
            f"{result.statuses} of {result.expected_statuses} expected statuses; "
            f"{result.options.partitions} partitions, 1 process",
            f"machine: {machine.get('usable_cpus')} usable CPUs ({machine.get('cpu_model')}), "
            f"Python {machine.get('python')}; broker, reconciler and reader share them",
        ]
    )
