"""The reconciler: joins push.outcomes with push.receipts, partition by partition.

One thread, one consumer group on both topics (co-partitioned: same partition count and device key,
so the range assignor gives one member partition *p* of both). State is per partition
(:class:`PartitionState`); every change is written to the changelog topic, to the same partition
number, and restored from it when a partition is assigned, before any input is processed.

At-least-once: an input offset is committed only after every event it caused (statuses, invalid
tokens, fallbacks, changelog records) was acknowledged. Deadlines are wall-clock times checked in the
poll loop; a fallback fired by a deadline is repeated after a crash only if its changelog record was
not yet written, and the fallback sender is idempotent on notification_id, so no notification gets
two fallbacks.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    TopicPartition,
)
from confluent_kafka.serialization import MessageField, SerializationContext

from producers import PRODUCER_SETTINGS
from pushline.acked_producer import AckedProducer, Headers
from pushline.config import (
    KafkaConfig,
    SchemaRegistryConfig,
    TopicsConfig,
    config_from_env,
    env_field,
)
from pushline.consumer_service import ServiceLifecycle
from pushline.consuming import consume_available
from pushline.dlq import dead_letter_headers
from pushline.errors import CodecError
from pushline.headers import message_headers
from pushline.offsets import OffsetLedger
from pushline.ops import ReconcilerMetrics
from receipts._reconciler_state import Effects, PartitionState
from schemas import (
    DeliveryReceipt,
    DispatchOutcome,
    EventDeserializer,
    EventSerializer,
    FallbackRequest,
    InvalidToken,
    NotificationStatus,
    is_poison,
    make_registry_client,
)

__all__ = ["Reconciler", "ReconcilerConfig"]

log = logging.getLogger("pushline.reconciler")


@dataclass(frozen=True)
class ReconcilerConfig:
    """How the reconciler consumes, waits for receipts and keeps state."""

    group_id: str = env_field(
        "PUSHLINE_RECONCILER_GROUP_ID", "Consumer group of all reconcilers.", "pushline-reconciler"
    )
    default_receipt_deadline_s: float = env_field(
        "PUSHLINE_RECONCILER_DEFAULT_RECEIPT_DEADLINE_S",
        "Receipt deadline of a notification that did not set one; then SUSPECTED_LOST.",
        3600.0,
    )
    retain_s: float = env_field(
        "PUSHLINE_RECONCILER_RETAIN_S",
        "How long a settled notification is remembered (late and repeated receipts).",
        86_400.0,
    )
    held_receipt_ttl_s: float = env_field(
        "PUSHLINE_RECONCILER_HELD_RECEIPT_TTL_S",
        "How long a receipt whose outcome has not arrived is held.",
        86_400.0,
    )
    commit_interval_s: float = env_field(
        "PUSHLINE_RECONCILER_COMMIT_INTERVAL_S",
        "How often acknowledged offsets are committed.",
        0.5,
    )
    session_timeout_ms: int = env_field(
        "PUSHLINE_RECONCILER_SESSION_TIMEOUT_MS", "Consumer-group session timeout.", 10_000
    )
    restore_timeout_s: float = env_field(
        "PUSHLINE_RECONCILER_RESTORE_TIMEOUT_S",
        "Longest a changelog restore may take before the reconciler gives up.",
        300.0,
    )

    @classmethod
    def from_env(cls, env: Any = None, **overrides: Any) -> ReconcilerConfig:
        import os  # noqa: PLC0415

        return config_from_env(cls, os.environ if env is None else env, **overrides)


class Reconciler(ServiceLifecycle):
    def __init__(
        self,
        *,
        kafka: KafkaConfig,
        registry: SchemaRegistryConfig,
        topics: TopicsConfig,
        config: ReconcilerConfig,
        metrics: ReconcilerMetrics | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__()
        self.kafka = kafka
        self.topics = topics
        self.config = config
        self._metrics = metrics
        self._clock = clock
        client = make_registry_client(registry)
        auto = registry.auto_register
        self._decode_outcome = EventDeserializer(DispatchOutcome, client)
        self._decode_receipt = EventDeserializer(DeliveryReceipt, client)
        self._encoders: dict[type, tuple[EventSerializer[Any], str]] = {
            NotificationStatus: (
                EventSerializer(NotificationStatus, client, auto_register=auto),
                topics.status,
            ),
            InvalidToken: (
                EventSerializer(InvalidToken, client, auto_register=auto),
                topics.invalid_tokens,
            ),
            FallbackRequest: (
                EventSerializer(FallbackRequest, client, auto_register=auto),
                topics.fallbacks,
            ),
        }
        self._producer = AckedProducer(kafka.to_librdkafka(**PRODUCER_SETTINGS), self._fail, log)
        self._consumer = Consumer(
            kafka.to_consumer_librdkafka(
                config.group_id,
                config.session_timeout_ms,
                self._on_stats,
                **{
                    "partition.assignment.strategy": "range",
                    # end-of-partition events tell when receipts are read up to date (deadlines)
                    "enable.partition.eof": True,
                },
            )
        )
        self._states: dict[int, PartitionState] = {}
        self._ledger = OffsetLedger()
        self._assigned: set[tuple[str, int]] = set()
        self._receipts_at_end: set[int] = set()
        self._receipts_end_seen: dict[int, datetime] = {}
        self.stats: dict[str, int] = {"outcomes": 0, "receipts": 0, "statuses": 0, "fallbacks": 0}

    def _on_stats(self, stats_json: str) -> None:
        if self._metrics is not None:
            self._metrics.update_lag_from_stats(stats_json)
            self._metrics.tracked.set(sum(len(s) for s in self._states.values()))

    def run(self) -> None:
        """Consume until :meth:`stop`; raises if the broker refused an event."""
        self._consumer.subscribe(
            [self.topics.outcomes, self.topics.receipts],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        last_commit = last_prune = time.monotonic()
        try:
            while not self._stopping.is_set() and self._fatal is None:
                for msg in consume_available(self._consumer, 500, timeout=0.05):
                    self._handle(msg)
                now = self._clock()
                for partition, state in list(self._states.items()):
                    read_until = self._receipts_read_until(partition, now)
                    if read_until is None:
                        continue  # receipts not read up to date since assignment: wait
                    fx = state.due(now, read_until)
                    if fx:
                        self._publish(partition, fx, None, [])
                self._producer.poll(0)
                mono = time.monotonic()
                if mono - last_prune >= 60:
                    for partition, state in list(self._states.items()):
                        fx = state.prune(now)
                        if fx:
                            self._publish(partition, fx, None, [])
                    last_prune = mono
                if mono - last_commit >= self.config.commit_interval_s:
                    self._commit(asynchronous=True)
                    last_commit = mono
            self._drain()
            self._commit(asynchronous=False)
        finally:
            self._consumer.close()
            self._producer.flush(10)
        if self._fatal is not None:
            raise self._fatal

    # --------------------------------------------------------------- input

    def _receipts_read_until(self, partition: int, now: datetime) -> datetime | None:
        """How far receipts of ``partition`` are known to be read: now while the consumer sits at
        the end of the partition, else when it last got there (None: not yet since assignment)."""
        if partition in self._receipts_at_end:
            return now
        return self._receipts_end_seen.get(partition)

    def _handle(self, msg: Message) -> None:
        err = msg.error()
        topic, partition = msg.topic() or "", msg.partition() or 0
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                if topic == self.topics.receipts:
                    self._receipts_at_end.add(partition)
                    self._receipts_end_seen[partition] = self._clock()
            else:
                log.warning("consumer error: %s", err)
            return
        if topic == self.topics.receipts:
            self._receipts_at_end.discard(partition)
        offset = msg.offset() or 0
        state = self._states.get(partition)
        if state is None:
            return  # not (or no longer) ours
        work = (topic, partition, offset)
        self._ledger.taken(topic, partition, offset)
        ctx = SerializationContext(topic, MessageField.VALUE)
        traceparent: Headers = [(k, v) for k, v in message_headers(msg) if k == "traceparent"]
        now = self._clock()
        try:
            if topic == self.topics.outcomes:
                fx = state.on_outcome(self._decode_outcome(msg.value(), ctx), now)
                self.stats["outcomes"] += 1
            else:
                fx = state.on_receipt(self._decode_receipt(msg.value(), ctx), now)
                self.stats["receipts"] += 1
        except CodecError as exc:
            if not is_poison(exc):
                raise  # the registry is down: stop, and let the group redeliver
            self._dead_letter(msg, work, exc)
            return
        self._publish(partition, fx, work, traceparent)

    def _dead_letter(self, msg: Message, work: tuple[str, int, int], exc: Exception) -> None:
        log.warning("dead-lettered %s[%d]@%d: %s", *work, exc)
        if self._metrics is not None:
            self._metrics.dlq.labels(work[0], type(exc).__name__).inc()
        headers = dead_letter_headers(*work, exc, None, message_headers(msg))
        self._producer.produce(
            self.topics.dlq, msg.key(), msg.value(), headers, self._acker(work, 1)
        )

    # -------------------------------------------------------------- output

    def _publish(
        self, partition: int, fx: Effects, work: tuple[str, int, int] | None, headers: Headers
    ) -> None:
        """Produce every event and changelog record of ``fx``; ``work``'s offset is done once
        all were acknowledged."""
        events: list[Any] = [*fx.statuses, *fx.invalid_tokens, *fx.fallbacks]
        total = len(events) + len(fx.changed) + len(fx.removed)
        if total == 0:
            if work is not None:
                self._done(work)
            return
        ack = self._acker(work, total)
        for event in events:
            serializer, topic = self._encoders[type(event)]
            key = event.device_token if isinstance(event, InvalidToken) else event.device_key
            value = serializer(event, SerializationContext(topic, MessageField.VALUE))
            self._producer.produce(topic, key.encode(), value, headers, ack)
        for record in fx.changed:
            self._producer.produce(
                self.topics.reconciler_changelog,
                record.notification_id.encode(),
                record.to_json(),
                [],
                ack,
                partition,
            )
        for nid in fx.removed:
            self._producer.produce(
                self.topics.reconciler_changelog, nid.encode(), None, [], ack, partition
            )
        self.stats["statuses"] += len(fx.statuses)
        self.stats["fallbacks"] += len(fx.fallbacks)
        if self._metrics is not None:
            for status in fx.statuses:
                self._metrics.statuses.labels(status.platform.value, status.state.value).inc()
            for fallback in fx.fallbacks:
                self._metrics.fallbacks_requested.labels(fallback.fallback.channel.value).inc()
            state = self._states.get(partition)
            for token in fx.invalid_tokens:
                os_major = state.os_major(token.device_key) if state else "unknown"
                self._metrics.invalid_tokens.labels(
                    token.platform.value, token.verdict.value, os_major
                ).inc()

    def _acker(
        self, work: tuple[str, int, int] | None, count: int
    ) -> Callable[[KafkaError | None, Message], None]:
        remaining = [count]

        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                self._producer.failed(err, msg.topic() or "")
                return
            remaining[0] -= 1
            if remaining[0] == 0 and work is not None:
                self._done(work)

        return delivered

    def _done(self, work: tuple[str, int, int]) -> None:
        self._ledger.done(*work)

    def _commit(self, *, asynchronous: bool, only: set[tuple[str, int]] | None = None) -> None:
        self._ledger.commit(self._consumer, asynchronous=asynchronous, only=only)

    def _drain(self, which: Iterable[tuple[str, int]] | None = None, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._fatal is None:
            if not self._ledger.busy(which):
                return
            self._producer.poll(0.01)

    # ---------------------------------------------------------- rebalances

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = sorted({tp.partition for tp in partitions} - set(self._states))
        try:
            restored = self._restore(numbers)
        except Exception as exc:
            self._fatal = exc
            raise
        self._states.update(restored)
        self._assigned |= {(tp.topic, tp.partition) for tp in partitions}
        log.info(
            "assigned partitions %s; restored %d tracked notifications",
            numbers,
            sum(len(s) for s in restored.values()),
        )
        self._ready.set()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        self._drain(revoked)
        # Deadline-fired events belong to no offset: flush them too, so the next owner's restore
        # sees their changelog records.
        self._producer.flush(10)
        self._commit(asynchronous=False, only=revoked)
        self._assigned -= revoked
        self._ledger.forget(revoked)
        still = {p for (_, p) in self._assigned}
        for gone in partitions:
            if gone.partition not in still:
                self._states.pop(gone.partition, None)
                self._receipts_at_end.discard(gone.partition)
                self._receipts_end_seen.pop(gone.partition, None)

    def _new_state(self) -> PartitionState:
        return PartitionState(
            default_deadline_s=self.config.default_receipt_deadline_s,
            retain_s=self.config.retain_s,
            held_receipt_ttl_s=self.config.held_receipt_ttl_s,
        )

    def _restore(self, numbers: list[int]) -> dict[int, PartitionState]:
        """Read the changelog partitions to their end (found by the end-of-partition event, not
        by watermarks, which some brokers answer wrongly)."""
        states = {p: self._new_state() for p in numbers}
        if not numbers:
            return states
        reader = Consumer(
            self.kafka.to_librdkafka(
                **{
                    "group.id": f"pushline-restore-{uuid.uuid4().hex}",
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                }
            )
        )
        try:
            reader.assign(
                [
                    TopicPartition(self.topics.reconciler_changelog, p, OFFSET_BEGINNING)
                    for p in numbers
                ]
            )
            open_partitions = set(numbers)
            deadline = time.monotonic() + self.config.restore_timeout_s
            while open_partitions:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"changelog restore of {sorted(open_partitions)} timed out")
                for msg in reader.consume(1000, timeout=0.2):
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            open_partitions.discard(msg.partition() or 0)
                        continue
                    key = msg.key()
                    if key is not None:
                        states[msg.partition() or 0].restore(key.decode(), msg.value())
        finally:
            reader.close()
        return states
