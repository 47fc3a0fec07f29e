"""The dispatcher: a consumer group on push.requests and push.retries that sends to APNs and FCM.

Two threads share the work (the skeleton is :class:`pushline.consumer_service.ConsumerService`,
shared with the fallback sender):

- the **consumer thread** owns the librdkafka consumer: it fetches, pauses retry partitions until
  their ``not_before`` (no busy waiting), commits, and handles rebalances (rebuilding the
  duplicate filter on assignment, draining in-flight sends on revocation);
- the **event loop** owns everything else: decoding, per-device ordering, provider sends over
  HTTP/2, in-process retries, and producing outcomes. Delivery reports are served on the loop, so
  offset bookkeeping happens in one place. A device's send starts from a callback when it can
  (``_start_fast``: the common case, no task); a task per device takes over for what must wait
  (queued sends for the same device, retries, a stream or token not at hand).

An offset is committed only after every event it caused (outcome, retry, dead letter) was
acknowledged by the broker, for it and for every earlier offset of its partition.

Compiled by mypyc when installed: ``setup.py`` says what that asks of it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaError,
    Message,
    TopicPartition,
)
from confluent_kafka.serialization import MessageField, SerializationContext

from dispatcher._config import DispatcherConfig
from dispatcher._dedupe import (
    HEADER_NOTIFICATION_ID,
    HEADER_TERMINAL,
    TerminalIds,
    load_terminal_ids,
)
from dispatcher._results import Action, SendResult
from dispatcher._senders import ProviderSender, StartingSender
from producers import PRODUCER_SETTINGS
from producers._validation import validate_request
from pushline.acked_producer import AckedProducer, Headers
from pushline.config import KafkaConfig, SchemaRegistryConfig, TopicsConfig
from pushline.consumer_service import ConsumerService
from pushline.dlq import dead_letter_headers
from pushline.errors import CodecError, ValidationError
from pushline.headers import headers_named, message_headers
from pushline.offsets import OffsetLedger
from pushline.ops import DispatcherMetrics
from schemas import (
    DispatchOutcome,
    FastEventDeserializer,
    FastEventSerializer,
    NotificationRequest,
    OutcomeState,
    Platform,
    is_poison,
    make_registry_client,
)
from schemas._convert import utc_now_millis
from schemas._events import unchecked_dispatch_outcome
from schemas.payloads import RECEIPT_TOKEN_KEY

__all__ = ["HEADER_NOT_BEFORE", "Dispatcher"]

log = logging.getLogger("pushline.dispatcher")

HEADER_NOT_BEFORE = "pushline.not_before_ms"
DEDUPE_WINDOW_S = 7 * 86_400.0


_Attempt = tuple[SendResult, int, datetime]
"""A send already made for a notification: its result, attempt number and time."""

_SendLabels = tuple[str, Platform, OutcomeState, str | None]
"""The ``pushline_sends_total`` series of an outcome: app, platform, state, reason."""


class _Work:
    """One consumed message on its way to an acknowledged outcome."""

    __slots__ = ("headers", "msg", "offset", "partition", "request", "topic")

    def __init__(self, msg: Message, topic: str, partition: int, offset: int) -> None:
        self.msg = msg
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.request: NotificationRequest | None = None
        self.headers: list[tuple[str, bytes | None]] = []  # forwarded: the traceparent


class Dispatcher(ConsumerService[_Work]):
    def __init__(
        self,
        *,
        kafka: KafkaConfig,
        registry: SchemaRegistryConfig,
        topics: TopicsConfig,
        config: DispatcherConfig,
        sender: ProviderSender,
        receipt_token: Callable[[NotificationRequest], str] | None = None,
        metrics: DispatcherMetrics | None = None,
        clock: Callable[[], datetime] = utc_now_millis,
    ) -> None:
        super().__init__(config, log)
        self.kafka = kafka
        self.topics = topics
        self.config = config
        self._sender = sender
        self._try_send = sender.try_send if isinstance(sender, StartingSender) else None
        self._receipt_token = receipt_token
        self._metrics = metrics
        self._clock = clock
        # The default clock gives event-ready timestamps, so outcomes skip re-normalising them.
        self._clock_normalised = clock is utc_now_millis
        client = make_registry_client(registry)
        # The fast codec: same wire format and errors as EventSerializer, a fraction of the cost
        # (decode ~8 µs instead of ~65 µs per request; see schemas/_fastcodec.py).
        self._decode = FastEventDeserializer(NotificationRequest, client)
        self._encode_outcome = FastEventSerializer(
            DispatchOutcome, client, auto_register=registry.auto_register
        )
        self._encode_request = FastEventSerializer(
            NotificationRequest, client, auto_register=registry.auto_register
        )
        self._outcome_ctx = SerializationContext(topics.outcomes, MessageField.VALUE)
        self._retry_ctx = SerializationContext(topics.retries, MessageField.VALUE)
        self._value_ctx = {  # the consumed topics
            topic: SerializationContext(topic, MessageField.VALUE)
            for topic in (topics.requests, topics.retries)
        }
        self._producer = AckedProducer(outcome_producer_settings(kafka, config), self._fail, log)
        self._consumer = Consumer(
            kafka.to_consumer_librdkafka(
                config.group_id,
                config.session_timeout_ms,
                self._on_stats,
                # the same partition of both topics (a retry goes to its request's partition)
                **{"partition.assignment.strategy": "range"},
            )
        )
        self._lock = threading.Lock()  # assignment and the duplicate filter
        self._ledger = OffsetLedger(on_commit=self._count_commit)
        self._terminal: dict[int, TerminalIds] = {}
        self._assigned: set[tuple[str, int]] = set()
        self._resume_at: dict[tuple[str, int], float] = {}
        self._device_queues: dict[str, deque[_Work]] = {}
        self._device_tasks: dict[str, asyncio.Task[None]] = {}
        self.stats: dict[str, int] = {"processed": 0, "dlq": 0, "duplicates": 0}
        # keyed by (app_id, platform, state, reason): the enum members, not their .value, which
        # is a property call (0.2 µs per outcome for the two); the label strings are made at
        # publication
        self._send_counters: dict[_SendLabels, Any] = {}
        # counted on the event loop, added to the metrics by _publish_counts
        self._sends_pending: dict[_SendLabels, int] = {}
        self._produced_pending = 0
        self._latency_histograms: dict[Platform, Any] = {}
        if metrics is not None:
            # read at scrape time: nothing to update per message
            metrics.inflight_sends.set_function(lambda: self._in_flight)

    # ----------------------------------------------------------------- public

    @property
    def in_flight(self) -> int:
        return self._in_flight

    # ------------------------------------------------ ConsumerService hooks

    def _subscribed_topics(self) -> list[str]:
        return [self.topics.requests, self.topics.retries]

    def _before_consume(self) -> None:
        self._resume_due()

    def _on_poll(self) -> None:
        self._publish_counts()

    # ------------------------------------------------------- consumer thread

    def _admit(self, msgs: list[Message]) -> list[_Work]:
        """Messages to work on now; a retry whose time has not come pauses its partition."""
        now_ms = time.time() * 1000
        held: set[tuple[str, int]] = set()
        batch: list[_Work] = []
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error: %s", err)
                continue
            topic, partition, offset = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
            tp = (topic, partition)
            if tp in held:
                continue
            if topic == self.topics.retries:
                not_before = _header_int(msg, HEADER_NOT_BEFORE)
                if not_before is not None and not_before > now_ms:
                    # Pause until not_before and rewind to this message: nothing after it in this
                    # partition is taken either, so the committed offset never skips it.
                    held.add(tp)
                    ktp = TopicPartition(topic, partition, offset)
                    self._consumer.pause([ktp])
                    self._consumer.seek(ktp)
                    self._resume_at[tp] = not_before / 1000
                    continue
            with self._lock:  # (no ``continue`` inside: compiled, that is not supported)
                assigned = tp in self._assigned
            if not assigned:
                continue
            self._ledger.taken(topic, partition, offset)
            self._in_flight += 1
            batch.append(_Work(msg=msg, topic=topic, partition=partition, offset=offset))
        return batch

    def _resume_due(self) -> None:
        if not self._resume_at:
            return
        now = time.time()
        due = [tp for tp, at in self._resume_at.items() if at <= now]
        for tp in due:
            del self._resume_at[tp]
            if tp in self._assigned:
                self._consumer.resume([TopicPartition(*tp)])

    def _commit(self, *, asynchronous: bool, only: set[tuple[str, int]] | None = None) -> None:
        self._ledger.commit(self._consumer, asynchronous=asynchronous, only=only)

    def _count_commit(self) -> None:
        if self._metrics is not None:
            self._metrics.commits.inc()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = {tp.partition for tp in partitions} - set(self._terminal)
        try:
            rebuilt = load_terminal_ids(
                self.kafka, self.topics.outcomes, numbers, window_s=DEDUPE_WINDOW_S
            )
        except Exception as exc:
            # Without the filter a redelivered request could be sent twice: better to stop.
            self._fatal = exc
            raise
        with self._lock:
            self._terminal.update(rebuilt)
            for tp in partitions:
                self._assigned.add((tp.topic, tp.partition))
        log.info(
            "assigned %s; %d finished ids restored",
            sorted((tp.topic, tp.partition) for tp in partitions),
            sum(len(t) for t in rebuilt.values()),
        )
        self._ready.set()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        with self._lock:
            self._assigned -= revoked
        self._drain(revoked)
        self._commit(asynchronous=False, only=revoked)
        self._ledger.forget(revoked)
        with self._lock:
            for tp in revoked:
                self._resume_at.pop(tp, None)
            still = {p for _, p in self._assigned}
            for number in set(self._terminal) - still:
                del self._terminal[number]

    def _drain(self, which: set[tuple[str, int]] | None) -> None:
        """Wait (bounded) until the given partitions (None: all) have nothing in flight."""
        deadline = time.monotonic() + self.config.drain_timeout_s
        while time.monotonic() < deadline:
            busy = self._ledger.busy(which)
            if not busy:
                return
            time.sleep(0.01)
        log.warning("drain timed out; uncommitted work will be redelivered: %s", busy)

    def _on_stats(self, stats_json: str) -> None:
        if self._metrics is not None:
            self._metrics.update_lag_from_stats(stats_json)

    # ------------------------------------------------------------ event loop

    def _accept(self, batch: list[_Work]) -> None:
        for work in batch:
            try:
                self._route(work)
            except Exception as exc:  # never lose a message to a bug: dead-letter it
                log.exception("unexpected error routing %s:%s", work.topic, work.offset)
                self._dead_letter(work, exc, "InternalError")

    def _route(self, work: _Work) -> None:
        msg = work.msg
        work.headers = headers_named(msg, "traceparent")
        # One clock read for validation and, on the fast path, the send's sent_at (the same
        # callback, microseconds apart; timestamps are whole milliseconds).
        now = self._clock()
        try:
            request = self._decode(msg.value(), self._value_ctx[work.topic])
            request = validate_request(request, now=now, check_expiry=False)
        except CodecError as exc:
            if not is_poison(exc):
                # The registry is unreachable, not the message bad: try again shortly.
                self._spawn(self._retry_decode(work))
                return
            self._dead_letter(work, exc)
            return
        except ValidationError as exc:
            self._dead_letter(work, exc)
            return
        self._enqueue(work, request, now)

    async def _retry_decode(self, work: _Work) -> None:
        await asyncio.sleep(1.0)
        self._route(work)

    def _enqueue(self, work: _Work, request: NotificationRequest, now: datetime) -> None:
        work.request = request
        terminal = self._terminal.get(work.partition)
        if terminal is not None and request.notification_id in terminal:
            self.stats["duplicates"] += 1
            self._emit(work, self._outcome(request, OutcomeState.DUPLICATE, reason="Duplicate"))
            return
        queue = self._device_queues.get(request.key)
        if queue is not None:  # a send for this device is in flight: keep per-device order
            queue.append(work)
            return
        key = request.key
        self._device_queues[key] = deque([work])  # later work for this device waits behind it
        if not self._start_fast(work, request, now):
            self._start_worker(key, None)

    def _start_worker(self, key: str, first: _Attempt | None) -> None:
        # The dict holds the task (a running task needs a strong reference) until its last line:
        # cheaper than a task set with a done callback, which costs a loop callback per send.
        assert self._loop is not None
        self._device_tasks[key] = self._loop.create_task(self._device_worker(key, first))

    def _start_fast(self, work: _Work, request: NotificationRequest, sent_at: datetime) -> bool:
        """The common case without a task: the device has nothing else queued, the provider
        client can send at once (a free HTTP/2 stream, a current token), and the answer is final.
        No task, future or coroutine frame per send: the answer's callback emits the outcome
        (that machinery cost 3.7 µs per send in a uvloop micro-benchmark).
        Anything else (not startable now, to be retried, a token to refresh) goes to the device's
        task, :meth:`_device_worker`, as every send did before. False: nothing was sent."""
        if self._try_send is None or request.expires_at <= sent_at:
            return False  # (the worker emits EXPIRED)
        attempt = request.attempt + 1

        def on_result(result: SendResult) -> None:
            self._fast_result(work, request, (result, attempt, sent_at))

        try:
            return self._try_send(request, self._extra_custom(request), on_result)
        except Exception:  # noqa: BLE001 - the worker sends it again and dead-letters what fails
            return False

    def _fast_result(self, work: _Work, request: NotificationRequest, sent: _Attempt) -> None:
        """(Called by the transport, from the event loop.) Must not raise."""
        result = sent[0]
        key = request.key
        try:
            if result.action is Action.REFRESH_AUTH:  # the client's send() refreshes, then sends
                self._start_worker(key, None)
                return
            self._observe(request, result)
            if result.action is Action.RETRY or result.action is Action.CONFIG_ALERT:
                self._start_worker(key, sent)  # backoff and retries, as after any other send
                return
            self._emit(work, self._final_outcome(request, *sent))
        except Exception as exc:
            log.exception("unexpected error finishing %s", request)
            self._dead_letter(work, exc, "InternalError")
        queue = self._device_queues[key]
        queue.popleft()
        if queue:  # more for this device arrived meanwhile
            self._start_worker(key, None)
        else:
            del self._device_queues[key]

    def _extra_custom(self, request: NotificationRequest) -> dict[str, str]:
        if self._receipt_token is None:
            return {}
        return {RECEIPT_TOKEN_KEY: self._receipt_token(request)}

    async def _device_worker(self, key: str, first: _Attempt | None) -> None:
        """The device's queue, in order; ``first``: the head's send was already made (fast
        path) and is to be followed up."""
        queue = self._device_queues[key]
        try:
            while queue:
                work = queue[0]
                try:
                    await self._process(work, first)
                except Exception as exc:
                    log.exception("unexpected error sending %s", work.request)
                    self._dead_letter(work, exc, "InternalError")
                first = None
                queue.popleft()
        finally:
            del self._device_queues[key]
            del self._device_tasks[key]

    async def _process(self, work: _Work, first: _Attempt | None = None) -> None:
        request = work.request
        assert request is not None
        terminal = self._terminal.get(work.partition)
        if first is None and terminal is not None and request.notification_id in terminal:
            self.stats["duplicates"] += 1
            self._emit(work, self._outcome(request, OutcomeState.DUPLICATE, reason="Duplicate"))
            return
        extra = self._extra_custom(request)
        attempt = request.attempt
        while True:
            if first is not None:
                (result, attempt, sent_at), first = first, None
            else:
                if request.expires_at <= self._clock():
                    self._emit(work, self._outcome(request, OutcomeState.EXPIRED, reason="Expired"))
                    return
                attempt += 1
                sent_at = self._clock()
                result = await self._sender.send(request, extra_custom=extra)
                self._observe(request, result)
            if result.action is not Action.RETRY and result.action is not Action.CONFIG_ALERT:
                self._emit(work, self._final_outcome(request, result, attempt, sent_at))
                return
            if attempt >= self.config.max_attempts:
                outcome = self._outcome(
                    request,
                    OutcomeState.FAILED,
                    result=result,
                    attempt=attempt,
                    sent_at=sent_at,
                    reason=f"AttemptsExhausted:{result.reason or 'Unknown'}",
                )
                self._emit(work, outcome)
                return
            wait = self._backoff(attempt, result.retry_after)
            if wait <= self.config.in_process_retry_max_s:
                self._count_retry(request, "in_process")
                await asyncio.sleep(wait)
                continue
            self._count_retry(request, "topic")
            self._schedule_retry(work, request, result, attempt, sent_at, wait)
            return

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter (half fixed, half random), never below Retry-After."""
        ceiling = min(
            self.config.backoff_max_s, self.config.backoff_base_s * float(2 ** (attempt - 1))
        )
        wait = ceiling / 2 + random.uniform(0, ceiling / 2)
        return max(wait, retry_after or 0.0)

    def _final_outcome(
        self, request: NotificationRequest, result: SendResult, attempt: int, sent_at: datetime
    ) -> DispatchOutcome:
        state = _FINAL_STATES.get(result.action, OutcomeState.FAILED)
        return self._outcome(
            request, state, result=result, attempt=attempt, sent_at=sent_at, reason=result.reason
        )

    def _outcome(
        self,
        request: NotificationRequest,
        state: OutcomeState,
        *,
        result: SendResult | None = None,
        attempt: int | None = None,
        sent_at: datetime | None = None,
        reason: str | None = None,
    ) -> DispatchOutcome:
        invalid_since = result.invalid_since if result else None
        build = (
            unchecked_dispatch_outcome
            if self._clock_normalised and invalid_since is None
            else DispatchOutcome
        )
        return build(
            notification_id=request.notification_id,
            device_key=request.key,
            device_token=request.device_token,
            platform=request.platform,
            app_id=request.app_id,
            user_id=request.user_id,
            state=state,
            provider_status=result.status if result else None,
            reason=reason,
            provider_message_id=result.provider_id if result else None,
            attempt=request.attempt if attempt is None else attempt,
            latency_ms=result.latency_ms if result else None,
            requested_at=request.created_at,
            sent_at=sent_at,
            decided_at=self._clock(),
            token_invalid_since=invalid_since,
            receipt_deadline_ms=request.receipt_deadline_ms,
            fallback=request.fallback,
            collapse_id=request.collapse_id,
        )

    def _emit(self, work: _Work, outcome: DispatchOutcome) -> None:
        """Produce ``outcome``; its offset is done once the broker acknowledged it."""
        terminal = outcome.state is not OutcomeState.RETRY_SCHEDULED
        headers: Headers = [
            *work.headers,
            (HEADER_NOTIFICATION_ID, outcome.notification_id),
            (HEADER_TERMINAL, "1" if terminal else "0"),
        ]
        value = self._encode_outcome(outcome, self._outcome_ctx)
        if self._metrics is not None:
            labels = (outcome.app_id, outcome.platform, outcome.state, outcome.reason)
            self._sends_pending[labels] = self._sends_pending.get(labels, 0) + 1

        # Marked finished now, not at the acknowledgement: the next request for this device may be
        # a duplicate of this one and must see it. Should the broker refuse the outcome, the
        # dispatcher stops before committing, and the filter is rebuilt from what was written.
        if terminal and outcome.state is not OutcomeState.DUPLICATE:
            ids = self._terminal.get(work.partition)
            if ids is not None:
                ids.add(outcome.notification_id)

        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                self._producer.failed(err, self.topics.outcomes)
                return
            self._produced_pending += 1
            self._finish(work)

        self._producer.produce(self.topics.outcomes, outcome.device_key, value, headers, delivered)

    def _schedule_retry(
        self,
        work: _Work,
        request: NotificationRequest,
        result: SendResult,
        attempt: int,
        sent_at: datetime,
        wait: float,
    ) -> None:
        """push.retries gets the request with its attempt count and not_before; push.outcomes a
        RETRY_SCHEDULED outcome. The offset is done when both were acknowledged."""
        not_before = self._clock() + timedelta(seconds=wait)
        retry = _replace(request, attempt=attempt, not_before=not_before)
        pending = [2]

        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                self._producer.failed(err, msg.topic() or "")
                return
            pending[0] -= 1
            if pending[0] == 0:
                self._finish(work)

        headers: Headers = [
            *work.headers,
            (HEADER_NOT_BEFORE, str(int(not_before.timestamp() * 1000))),
        ]
        self._producer.produce(
            self.topics.retries,
            request.key,
            self._encode_request(retry, self._retry_ctx),
            headers,
            delivered,
        )
        outcome = self._outcome(
            request,
            OutcomeState.RETRY_SCHEDULED,
            result=result,
            attempt=attempt,
            sent_at=sent_at,
            reason=result.reason,
        )
        outcome_headers: Headers = [
            *work.headers,
            (HEADER_NOTIFICATION_ID, outcome.notification_id),
            (HEADER_TERMINAL, "0"),
        ]
        self._producer.produce(
            self.topics.outcomes,
            request.key,
            self._encode_outcome(outcome, self._outcome_ctx),
            outcome_headers,
            delivered,
        )

    def _dead_letter(
        self, work: _Work, error: BaseException, error_class: str | None = None
    ) -> None:
        msg = work.msg
        self.stats["dlq"] += 1
        if self._metrics is not None:
            self._metrics.dlq.labels(work.topic, error_class or type(error).__name__).inc()
        log.warning("dead-lettered %s[%d]@%d: %s", work.topic, work.partition, work.offset, error)
        headers = dead_letter_headers(
            work.topic, work.partition, work.offset, error, error_class, message_headers(msg)
        )

        def delivered(err: KafkaError | None, m: Message) -> None:
            if err is not None:
                self._producer.failed(err, self.topics.dlq)
                return
            self._finish(work)

        self._producer.produce(
            self.topics.dlq,
            msg.key(),  # the original bytes: a replay must restore the key exactly
            msg.value(),
            headers,
            delivered,
        )

    def _finish(self, work: _Work) -> None:
        self._in_flight -= 1
        self.stats["processed"] += 1
        self._ledger.done(work.topic, work.partition, work.offset)

    def _publish_counts(self) -> None:
        """Add the sends and acknowledged outcomes counted since the last call to the metrics:
        once per poll cycle (a few ms) instead of a locked increment per notification."""
        if self._metrics is None:
            return
        if self._sends_pending:
            pending, self._sends_pending = self._sends_pending, {}
            for labels, count in pending.items():
                counter = self._send_counters.get(labels)
                if counter is None:  # labels() costs a few µs a call: look each series up once
                    app_id, platform, state, reason = labels
                    counter = self._send_counters[labels] = self._metrics.sends.labels(
                        app_id, platform.value, state.value, reason or ""
                    )
                counter.inc(count)
        if self._produced_pending:
            self._metrics.outcomes_produced.inc(self._produced_pending)
            self._produced_pending = 0

    def _observe(self, request: NotificationRequest, result: SendResult) -> None:
        if self._metrics is None:
            return
        histogram = self._latency_histograms.get(request.platform)
        if histogram is None:
            histogram = self._latency_histograms[request.platform] = (
                self._metrics.provider_latency.labels(request.platform.value)
            )
        histogram.observe(result.latency_ms / 1000)

    def _count_retry(self, request: NotificationRequest, kind: str) -> None:
        if self._metrics is not None:
            self._metrics.retries.labels(request.platform.value, kind).inc()


#: The outcome of a send that ends the notification's dispatch (any other action: FAILED).
_FINAL_STATES = {
    Action.ACCEPTED: OutcomeState.ACCEPTED,
    Action.INVALID_TOKEN: OutcomeState.INVALID_TOKEN,
    Action.SUSPECT_TOKEN: OutcomeState.INVALID_TOKEN,
    Action.REJECT: OutcomeState.REJECTED,
}


def outcome_producer_settings(kafka: KafkaConfig, config: DispatcherConfig) -> dict[str, Any]:
    """librdkafka settings of the producer of outcomes, retries and dead letters."""
    return kafka.to_librdkafka(**{**PRODUCER_SETTINGS, "linger.ms": config.outcome_linger_ms})


def _header_int(msg: Message, name: str) -> int | None:
    for key, value in message_headers(msg):
        if key == name and value:
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _replace(request: NotificationRequest, **changes: Any) -> NotificationRequest:
    import dataclasses  # noqa: PLC0415

    return dataclasses.replace(request, **changes)
