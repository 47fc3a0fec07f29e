"""Producers of notification requests: a synchronous context manager and an asyncio variant.

Both validate a request completely before anything reaches Kafka, then produce it with an idempotent
producer (acks=all) and the Java-compatible murmur2 partitioner, keyed by device key, so the request
lands on the same partition number as the device's outcomes, receipts and status.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.serialization import MessageField, SerializationContext

from producers._validation import validate_request
from pushline.aioproducer import PRODUCER_SETTINGS, AsyncEventProducer
from pushline.config import KafkaConfig, SchemaRegistryConfig, TopicsConfig
from pushline.errors import DeliveryError
from schemas import (
    FastEventSerializer,
    NotificationContent,
    NotificationRequest,
    Platform,
    make_registry_client,
)

__all__ = [
    "PRODUCER_SETTINGS",
    "AsyncNotificationProducer",
    "NotificationProducer",
    "ProducerOptions",
    "new_notification",
    "traceparent",
]


def traceparent() -> str:
    """A fresh W3C ``traceparent`` header value (version 00, sampled)."""
    return f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"


def new_notification(
    *,
    app_id: str,
    platform: Platform | str,
    device_token: str,
    title: str | None = None,
    body: str | None = None,
    ttl: timedelta = timedelta(days=1),
    content: NotificationContent | None = None,
    **fields: Any,
) -> NotificationRequest:
    """A NotificationRequest with a fresh notification_id, created_at now and expires_at now + ttl.

    ``fields`` are any other NotificationRequest fields (device_key, push_type, fallback, ...).
    """
    now = datetime.now(UTC)
    if content is None:
        content = NotificationContent(title=title, body=body)
    return NotificationRequest(
        notification_id=str(uuid.uuid4()),
        created_at=now,
        app_id=app_id,
        platform=Platform(platform),
        device_token=device_token,
        expires_at=now + ttl,
        content=content,
        **fields,
    )


@dataclass(frozen=True)
class ProducerOptions:
    """What a NotificationProducer does beyond the Kafka and registry settings."""

    truncate: bool = False
    """Shorten an alert that would exceed the provider's payload limit instead of refusing it."""
    flush_timeout: float = 30.0
    librdkafka: Mapping[str, Any] = field(default_factory=dict)
    """Extra librdkafka settings for this producer only (they win over the defaults)."""


class _ProducerCore:
    """What both producers share: validation and serialization."""

    def __init__(
        self,
        kafka: KafkaConfig | None,
        registry: SchemaRegistryConfig | None,
        topics: TopicsConfig | None,
        options: ProducerOptions | None,
    ) -> None:
        self.kafka = kafka or KafkaConfig.from_env()
        self.registry = registry or SchemaRegistryConfig.from_env()
        self.topics = topics or TopicsConfig.from_env()
        self.options = options or ProducerOptions()
        self.topic = self.topics.requests
        # The fast codec: the same bytes and errors as EventSerializer (its tests compare them),
        # ~10x cheaper, which is most of what producing a notification costs a service.
        self._serializer = FastEventSerializer(
            NotificationRequest,
            make_registry_client(self.registry),
            auto_register=self.registry.auto_register,
        )
        self._ctx = SerializationContext(self.topic, MessageField.VALUE)

    def prepare(
        self, request: NotificationRequest, headers: Mapping[str, str] | None
    ) -> tuple[NotificationRequest, bytes, list[tuple[str, str | bytes | None]]]:
        request = validate_request(request, truncate=self.options.truncate)
        value = self._serializer(request, self._ctx)
        out_headers = {"traceparent": traceparent(), **(headers or {})}
        return request, value, [(k, v.encode()) for k, v in out_headers.items()]


def _delivery_error(err: KafkaError, topic: str, notification_id: str) -> DeliveryError:
    return DeliveryError(
        f"notification {notification_id} was not acknowledged by the broker: {err.str()}",
        topic=topic,
        retriable=bool(err.retriable()),
    )


class NotificationProducer:
    """Validates and produces NotificationRequests; a context manager that flushes on exit.

    ``send`` returns as soon as the request is queued; delivery failures are collected and raised by
    the next ``flush`` (and so at the end of the ``with`` block) as :class:`DeliveryError`.
    """

    def __init__(
        self,
        kafka: KafkaConfig | None = None,
        registry: SchemaRegistryConfig | None = None,
        topics: TopicsConfig | None = None,
        options: ProducerOptions | None = None,
    ) -> None:
        self._core = _ProducerCore(kafka, registry, topics, options)
        self._producer = Producer(
            self._core.kafka.to_librdkafka(**{**PRODUCER_SETTINGS, **self._core.options.librdkafka})
        )
        self._failures: list[DeliveryError] = []
        self._lock = threading.Lock()

    def send(
        self, request: NotificationRequest, *, headers: Mapping[str, str] | None = None
    ) -> str:
        """Validate, serialize and queue one request; returns its notification_id."""
        request, value, hdrs = self._core.prepare(request, headers)
        nid = request.notification_id

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                with self._lock:
                    self._failures.append(_delivery_error(err, self._core.topic, nid))

        while True:
            try:
                self._producer.produce(
                    self._core.topic,
                    key=request.key.encode(),
                    value=value,
                    headers=hdrs,
                    on_delivery=on_delivery,
                )
                break
            except BufferError:
                # The local queue is full: serve delivery reports to make room, then retry.
                self._producer.poll(0.1)
        self._producer.poll(0)
        return nid

    def flush(self, timeout: float | None = None) -> None:
        """Wait for every queued request; raise DeliveryError if any was not acknowledged."""
        timeout = self._core.options.flush_timeout if timeout is None else timeout
        remaining = self._producer.flush(timeout)
        with self._lock:
            failures, self._failures = self._failures, []
        if failures:
            first = failures[0]
            if len(failures) > 1:
                raise DeliveryError(
                    f"{len(failures)} notifications were not acknowledged; first: {first}",
                    topic=first.topic,
                    retriable=all(f.retriable for f in failures),
                ) from first
            raise first
        if remaining:
            raise DeliveryError(
                f"{remaining} notifications still unacknowledged after {timeout}s",
                topic=self._core.topic,
                retriable=True,
            )

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> NotificationProducer:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.flush()
        else:  # already failing: still deliver what was queued, but do not mask the error
            self._producer.flush(self._core.options.flush_timeout)


class AsyncNotificationProducer:
    """The asyncio variant: ``await send(...)`` returns once the broker acknowledged the request.

    Built on :class:`pushline.aioproducer.AsyncEventProducer`: a background thread serves
    librdkafka's delivery reports and resolves the awaiting futures on their event loop, so no
    coroutine blocks on the network.
    """

    def __init__(
        self,
        kafka: KafkaConfig | None = None,
        registry: SchemaRegistryConfig | None = None,
        topics: TopicsConfig | None = None,
        options: ProducerOptions | None = None,
    ) -> None:
        self._core = _ProducerCore(kafka, registry, topics, options)
        self._producer = AsyncEventProducer(self._core.kafka, **self._core.options.librdkafka)

    async def send(
        self, request: NotificationRequest, *, headers: Mapping[str, str] | None = None
    ) -> str:
        """Validate and produce one request; returns its notification_id once acknowledged."""
        request, value, hdrs = self._core.prepare(request, headers)
        nid = request.notification_id
        try:
            await self._producer.produce(self._core.topic, request.key.encode(), value, hdrs)
        except DeliveryError as exc:
            raise DeliveryError(
                f"notification {nid}: {exc}", topic=exc.topic, retriable=exc.retriable
            ) from exc
        return nid

    async def aclose(self) -> None:
        await self._producer.aclose(self._core.options.flush_timeout)

    async def __aenter__(self) -> AsyncNotificationProducer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
