"""The fallback sender: a consumer group on push.fallbacks that sends email (SMTP) and SMS.

For each FallbackRequest it sends once, retrying transient failures in process with backoff and
jitter, then writes a DispatchOutcome (channel EMAIL or SMS) to push.outcomes and a final
NotificationStatus (FALLBACK_SENT or FALLBACK_FAILED) to push.status, both keyed by device key.

**Idempotent on notification_id.** Every outcome it writes carries two headers, the notification id
and ``pushline.fallback.finished: 1``. push.fallbacks shares its partition count and key with
push.outcomes, so when partition *p* is assigned, partition *p* of push.outcomes is read to its end
(no Avro decoding) and the ids found are skipped from then on: a second request for the same
notification sends nothing and its offset is committed. Requests of one device key are processed
one after another, so two copies in one batch cannot race.

**At least once.** An offset is committed only after the outcome and the status it caused (or its
dead letter) were acknowledged, for it and every earlier offset of the partition. The one window
left is a crash between a provider accepting a message and the broker acknowledging its outcome;
the email then goes out again with the same Message-ID (derived from the notification id).

Threads as in the dispatcher: the consumer thread owns librdkafka (fetch, commit, rebalance: the
finished ids are rebuilt on assignment, in-flight sends drained on revocation); the event loop
decodes, sends and produces.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition
from confluent_kafka.serialization import MessageField, SerializationContext

from dispatcher._dedupe import HEADER_NOTIFICATION_ID, TerminalIds, load_terminal_ids
from producers import PRODUCER_SETTINGS
from pushline.acked_producer import AckedProducer, Headers
from pushline.config import KafkaConfig, SchemaRegistryConfig, TopicsConfig
from pushline.consumer_service import ConsumerService
from pushline.dlq import dead_letter_headers
from pushline.errors import CodecError
from pushline.headers import message_headers
from pushline.offsets import OffsetLedger
from pushline.ops import OpsConfig, configure_json_logging
from receipts._channels import ChannelResult
from receipts._fallback_config import FallbackConfig
from receipts._fallback_metrics import FallbackMetrics, fallback_metrics
from receipts._sms import SmsClient
from receipts._smtp import SmtpMailer
from schemas import (
    Channel,
    DispatchOutcome,
    EventDeserializer,
    EventSerializer,
    FallbackChannel,
    FallbackRequest,
    NotificationStatus,
    OutcomeState,
    StatusState,
    is_poison,
    make_registry_client,
)

__all__ = [
    "HEADER_FALLBACK_FINISHED",
    "FallbackChannelClient",
    "FallbackSender",
    "run_fallback_sender_service",
]

log = logging.getLogger("pushline.fallback")

HEADER_FALLBACK_FINISHED = "pushline.fallback.finished"
#: How long a finished id is remembered: longer than push.fallbacks keeps a request (7 days).
DEDUPE_WINDOW_S = 8 * 86_400.0


class FallbackChannelClient(Protocol):
    async def send(self, request: FallbackRequest) -> ChannelResult: ...


@dataclass
class _Work:
    msg: Message
    partition: int
    offset: int
    request: FallbackRequest | None = None
    headers: Headers = field(default_factory=list)


class FallbackSender(ConsumerService[_Work]):
    """Run with ``await sender.run()`` until :meth:`stop`. Clients default to the ones the config
    names (``email`` / ``sms``); a channel with no client fails its requests as not configured."""

    consume_batch = 200
    backpressure_sleep_s = 0.01
    busy_poll_s = 0.005
    thread_name = "pushline-fallback-consumer"

    def __init__(
        self,
        *,
        kafka: KafkaConfig,
        registry: SchemaRegistryConfig,
        topics: TopicsConfig,
        config: FallbackConfig,
        email: FallbackChannelClient | None = None,
        sms: FallbackChannelClient | None = None,
        metrics: FallbackMetrics | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(config, log)
        self.kafka = kafka
        self.topics = topics
        self.config = config
        self.metrics = metrics or fallback_metrics()
        self._clock = clock
        self._own_sms: SmsClient | None = None
        smtp_settings, sms_settings = config.smtp(), config.sms()
        if email is None and smtp_settings is not None:
            email = SmtpMailer(
                smtp_settings,
                config.ssl_context(),
                email_from=config.email_from,
                default_subject=config.email_subject,
                timeout_s=config.send_timeout_s,
            )
        if sms is None and sms_settings is not None:
            sms = self._own_sms = SmsClient(
                sms_settings, config.ssl_context(), timeout_s=config.send_timeout_s
            )
        self._channels: dict[FallbackChannel, FallbackChannelClient | None] = {
            FallbackChannel.EMAIL: email,
            FallbackChannel.SMS: sms,
        }
        client = make_registry_client(registry)
        self._decode = EventDeserializer(FallbackRequest, client)
        self._encode_outcome = EventSerializer(
            DispatchOutcome, client, auto_register=registry.auto_register
        )
        self._encode_status = EventSerializer(
            NotificationStatus, client, auto_register=registry.auto_register
        )
        self._outcome_ctx = SerializationContext(topics.outcomes, MessageField.VALUE)
        self._status_ctx = SerializationContext(topics.status, MessageField.VALUE)
        self._source_ctx = SerializationContext(topics.fallbacks, MessageField.VALUE)
        # librdkafka's own log lines go through logging too, so stderr stays JSON lines only
        kafka_log = logging.getLogger("pushline.fallback.kafka")
        self._producer = AckedProducer(
            kafka.to_librdkafka(**{**PRODUCER_SETTINGS, "linger.ms": 2, "logger": kafka_log}),
            self._fail,
            log,
        )
        self._consumer = Consumer(
            kafka.to_consumer_librdkafka(
                config.group_id, config.session_timeout_ms, self._on_stats, logger=kafka_log
            )
        )
        self._lock = threading.Lock()  # offsets, active counts and assignment
        self._ledger = OffsetLedger(on_commit=self.metrics.commits.inc)
        self._active: dict[int, int] = {}  # taken and neither finished nor abandoned
        self._finished: dict[int, TerminalIds] = {}
        self._assigned: set[int] = set()
        self._queues: dict[str, deque[_Work]] = {}
        self.stats: dict[str, int] = {"sent": 0, "failed": 0, "duplicates": 0, "dlq": 0}

    # ----------------------------------------------------------------- public

    def _on_stats(self, stats_json: str) -> None:
        self.metrics.update_lag_from_stats(stats_json)

    # ------------------------------------------------ ConsumerService hooks

    def _subscribed_topics(self) -> list[str]:
        return [self.topics.fallbacks]

    async def _on_stopped(self) -> None:
        if self._own_sms is not None:
            await self._own_sms.aclose()

    # ------------------------------------------------------- consumer thread

    def _admit(self, msgs: list[Message]) -> list[_Work]:
        batch: list[_Work] = []
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error: %s", err)
                continue
            partition, offset = msg.partition() or 0, msg.offset() or 0
            with self._lock:
                if partition not in self._assigned:
                    continue
                self._ledger.taken(self.topics.fallbacks, partition, offset)
                self._active[partition] = self._active.get(partition, 0) + 1
                self._in_flight += 1
            self.metrics.in_flight.set(self._in_flight)
            batch.append(_Work(msg=msg, partition=partition, offset=offset))
        return batch

    def _commit(self, *, asynchronous: bool, only: set[int] | None = None) -> None:
        topic = self.topics.fallbacks
        self._ledger.commit(
            self._consumer,
            asynchronous=asynchronous,
            only=None if only is None else {(topic, p) for p in only},
        )

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = {tp.partition for tp in partitions} - set(self._finished)
        try:
            rebuilt = load_terminal_ids(
                self.kafka,
                self.topics.outcomes,
                numbers,
                window_s=DEDUPE_WINDOW_S,
                marker=HEADER_FALLBACK_FINISHED,
            )
        except Exception as exc:
            # Without the finished ids a redelivered request could be sent twice: stop instead.
            self._fatal = exc
            raise
        with self._lock:
            self._finished.update(rebuilt)
            self._assigned.update(tp.partition for tp in partitions)
        log.info(
            "assigned partitions",
            extra={
                "partitions": sorted(tp.partition for tp in partitions),
                "finished_ids_restored": sum(len(t) for t in rebuilt.values()),
            },
        )
        self._ready.set()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {tp.partition for tp in partitions}
        with self._lock:
            self._assigned -= revoked
        self._drain(revoked)
        self._commit(asynchronous=False, only=revoked)
        self._ledger.forget((self.topics.fallbacks, p) for p in revoked)
        with self._lock:
            for partition in revoked:
                self._active.pop(partition, None)
                self._finished.pop(partition, None)

    def _drain(self, which: set[int] | None) -> None:
        """Wait (bounded) until the given partitions (None: all) have no send in flight.
        Requests waiting to retry are abandoned instead (see :meth:`_abandoned`)."""
        deadline = time.monotonic() + self.config.drain_timeout_s
        busy: list[int] = []
        while time.monotonic() < deadline:
            with self._lock:
                busy = [
                    p for p, n in self._active.items() if n > 0 and (which is None or p in which)
                ]
            if not busy:
                return
            time.sleep(0.01)
        log.warning("drain timed out; uncommitted work will be redelivered: %s", busy)

    # ------------------------------------------------------------ event loop

    def _accept(self, batch: list[_Work]) -> None:
        for work in batch:
            try:
                self._route(work)
            except Exception as exc:  # never lose a message to a bug: dead-letter it
                log.exception("unexpected error routing offset %d", work.offset)
                self._dead_letter(work, exc, "InternalError")

    def _route(self, work: _Work) -> None:
        msg = work.msg
        work.headers = [(k, v) for k, v in message_headers(msg) if k == "traceparent"]
        try:
            request = self._decode(msg.value(), self._source_ctx)
        except CodecError as exc:
            if not is_poison(exc):  # the registry is unreachable, not the message bad
                self._spawn(self._retry_decode(work))
                return
            self._dead_letter(work, exc)
            return
        work.request = request
        if self._is_finished(work):
            self._duplicate(work)
            return
        queue = self._queues.get(request.device_key)
        if queue is not None:  # one request per device at a time: copies cannot race
            queue.append(work)
            return
        self._queues[request.device_key] = deque([work])
        self._spawn(self._device_worker(request.device_key))

    async def _retry_decode(self, work: _Work) -> None:
        await asyncio.sleep(1.0)
        if self._abandoned(work):
            self._release(work)
            return
        self._route(work)

    async def _device_worker(self, key: str) -> None:
        queue = self._queues[key]
        try:
            while queue:
                work = queue[0]
                try:
                    await self._process(work)
                except Exception as exc:
                    log.exception("unexpected error sending a fallback")
                    self._dead_letter(work, exc, "InternalError")
                queue.popleft()
        finally:
            del self._queues[key]

    def _is_finished(self, work: _Work) -> bool:
        assert work.request is not None
        finished = self._finished.get(work.partition)
        return finished is not None and work.request.notification_id in finished

    def _abandoned(self, work: _Work) -> bool:
        """True when the work must stop without an outcome: the process is stopping or the
        partition was revoked. Its offset stays uncommitted, so it is redelivered."""
        return self._stopping.is_set() or work.partition not in self._assigned

    async def _process(self, work: _Work) -> None:
        request = work.request
        assert request is not None
        if self._abandoned(work):
            self._release(work)
            return
        if self._is_finished(work):
            self._duplicate(work)
            return
        channel = request.fallback.channel
        client = self._channels.get(channel)
        if client is None:
            log.error("a %s fallback arrived but %s is not configured", channel, channel)
            self._emit(work, None, 0, None, f"{channel.value}NotConfigured")
            return
        attempt = 0
        while True:
            attempt += 1
            sent_at = self._clock()
            result = await client.send(request)
            self._observe(channel, result)
            if result.ok or not result.transient:
                self._emit(work, result, attempt, sent_at, result.reason)
                return
            wait = self._backoff(attempt, result.retry_after)
            if attempt >= self.config.max_attempts or wait > self.config.retry_after_max_s:
                reason = f"AttemptsExhausted:{result.reason or 'Unknown'}"
                self._emit(work, result, attempt, sent_at, reason)
                return
            log.info(
                "fallback send failed, retrying",
                extra={
                    "notification_id": request.notification_id,
                    "channel": channel.value,
                    "attempt": attempt,
                    "wait_s": round(wait, 3),
                    "reason": result.reason,
                },
            )
            if not await self._sleep(work, wait):
                self._release(work)
                return

    async def _sleep(self, work: _Work, seconds: float) -> bool:
        """Wait for a retry; False when the work was abandoned meanwhile."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self._abandoned(work):
                return False
            await asyncio.sleep(min(left, 0.1))
        return not self._abandoned(work)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter (half fixed, half random), never below Retry-After."""
        ceiling = min(
            self.config.backoff_max_s, self.config.backoff_base_s * float(2 ** (attempt - 1))
        )
        return max(ceiling / 2 + random.uniform(0, ceiling / 2), retry_after or 0.0)

    def _observe(self, channel: FallbackChannel, result: ChannelResult) -> None:
        kind = "ok" if result.ok else "transient" if result.transient else "permanent"
        self.metrics.attempts.labels(channel.value, kind).inc()
        self.metrics.latency.labels(channel.value).observe(result.latency_ms / 1000)

    # ---------------------------------------------------------------- output

    def _emit(
        self,
        work: _Work,
        result: ChannelResult | None,
        attempt: int,
        sent_at: datetime | None,
        reason: str | None,
    ) -> None:
        """Produce the outcome and the status; the offset is done when both were acknowledged."""
        request = work.request
        assert request is not None
        ok = result is not None and result.ok
        if ok:
            state, status_state, label = OutcomeState.ACCEPTED, StatusState.FALLBACK_SENT, "sent"
        elif result is not None and not result.transient:
            state, status_state, label = (
                OutcomeState.REJECTED,
                StatusState.FALLBACK_FAILED,
                "rejected",
            )
        else:
            state, status_state, label = OutcomeState.FAILED, StatusState.FALLBACK_FAILED, "failed"
        channel = Channel(request.fallback.channel.value)
        decided = self._clock()
        outcome = DispatchOutcome(
            notification_id=request.notification_id,
            device_key=request.device_key,
            # A FallbackRequest carries no device token; the key is the token unless the
            # producer gave its own device id, and the token is meaningless to this channel.
            device_token=request.device_key,
            platform=request.platform,
            app_id=request.app_id,
            user_id=request.user_id,
            state=state,
            provider_status=result.status if result else None,
            reason=None if ok else reason,
            provider_message_id=result.provider_id if ok and result else None,
            attempt=attempt,
            latency_ms=result.latency_ms if result else None,
            requested_at=request.requested_at,
            sent_at=sent_at,
            decided_at=decided,
            fallback=request.fallback,
            channel=channel,
        )
        status = NotificationStatus(
            notification_id=request.notification_id,
            device_key=request.device_key,
            state=status_state,
            # why the fallback was sent (the reconciler's reason), or why it failed
            reason=f"{channel.value}:{request.reason if ok else reason}",
            occurred_at=decided,
            recorded_at=self._clock(),
            platform=request.platform,
            app_id=request.app_id,
            user_id=request.user_id,
            final=True,
        )
        self.metrics.fallbacks.labels(channel.value, label).inc()
        self.stats["sent" if ok else "failed"] += 1
        log.info(
            "fallback finished",
            extra={
                "notification_id": request.notification_id,
                "channel": channel.value,
                "result": label,
                "attempts": attempt,
                "reason": reason,
                "provider_message_id": outcome.provider_message_id,
            },
        )
        # Marked finished now, not at the acknowledgement: a copy queued behind this request
        # must see it. Should the broker refuse the outcome, the sender stops before committing
        # and the set is rebuilt from what was written.
        finished = self._finished.get(work.partition)
        if finished is not None:
            finished.add(request.notification_id)

        pending = [2]

        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                self._producer.failed(err, msg.topic() or "")
                return
            pending[0] -= 1
            if pending[0] == 0:
                self._finish(work)

        outcome_headers: Headers = [
            *work.headers,
            (HEADER_NOTIFICATION_ID, request.notification_id),
            (HEADER_FALLBACK_FINISHED, "1"),
        ]
        self._producer.produce(
            self.topics.outcomes,
            request.device_key,
            self._encode_outcome(outcome, self._outcome_ctx),
            outcome_headers,
            delivered,
        )
        self._producer.produce(
            self.topics.status,
            request.device_key,
            self._encode_status(status, self._status_ctx),
            [*work.headers, (HEADER_NOTIFICATION_ID, request.notification_id)],
            delivered,
        )

    def _duplicate(self, work: _Work) -> None:
        request = work.request
        assert request is not None
        self.stats["duplicates"] += 1
        self.metrics.fallbacks.labels(request.fallback.channel.value, "duplicate").inc()
        log.info(
            "fallback already finished, skipped",
            extra={"notification_id": request.notification_id},
        )
        self._finish(work)

    def _dead_letter(
        self, work: _Work, error: BaseException, error_class: str | None = None
    ) -> None:
        msg = work.msg
        self.stats["dlq"] += 1
        self.metrics.dlq.labels(self.topics.fallbacks, error_class or type(error).__name__).inc()
        log.warning(
            "dead-lettered a fallback request",
            extra={"partition": work.partition, "offset": work.offset, "error": str(error)},
        )
        headers = dead_letter_headers(
            self.topics.fallbacks,
            work.partition,
            work.offset,
            error,
            error_class,
            message_headers(msg),
        )

        def delivered(err: KafkaError | None, m: Message) -> None:
            if err is not None:
                self._producer.failed(err, self.topics.dlq)
                return
            self._finish(work)

        key = msg.key()
        self._producer.produce(
            self.topics.dlq,
            key.decode("utf-8", "replace") if isinstance(key, bytes) else key,
            msg.value(),
            headers,
            delivered,
        )

    def _finish(self, work: _Work) -> None:
        """Everything ``work`` caused is acknowledged: its offset may be committed."""
        self._release(work)
        self._ledger.done(self.topics.fallbacks, work.partition, work.offset)

    def _release(self, work: _Work) -> None:
        """``work`` no longer occupies a slot (finished, or abandoned with its offset pending)."""
        with self._lock:
            self._in_flight -= 1
            if work.partition in self._active:
                self._active[work.partition] -= 1
        self.metrics.in_flight.set(self._in_flight)


def run_fallback_sender_service(env: Mapping[str, str]) -> int:
    """``pushline fallback-sender``: JSON logs, ``/metrics`` + probes, SIGTERM drains and commits."""
    ops = OpsConfig.from_env(env)
    configure_json_logging(ops.log_level, "fallback-sender")
    kafka = KafkaConfig.from_env(env)
    registry = SchemaRegistryConfig.from_env(env)
    topics = TopicsConfig.from_env(env)
    config = FallbackConfig.from_env(env)
    metrics = fallback_metrics()

    async def main() -> None:
        sender = FallbackSender(
            kafka=kafka, registry=registry, topics=topics, config=config, metrics=metrics
        )
        await sender.serve(
            ops,
            metrics.registry,
            "fallback sender",
            config=repr(config),
            topic=topics.fallbacks,
        )

    asyncio.run(main())
    return 0
