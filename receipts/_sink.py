"""Where accepted receipts go: push.receipts, as Avro DeliveryReceipts keyed by device key."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from confluent_kafka.serialization import MessageField, SerializationContext

from pushline.aioproducer import AsyncEventProducer
from pushline.config import KafkaConfig, SchemaRegistryConfig, TopicsConfig
from pushline.errors import DeliveryError, PushlineError, SchemaRegistryError
from schemas import DeliveryReceipt, EventSerializer, ReceiptKind, make_registry_client

__all__ = ["KafkaReceiptSink", "ReceiptSink"]

log = logging.getLogger("pushline.receipts")


class ReceiptSink(Protocol):
    """What the API needs from storage. ``publish`` returns only once every receipt is durable."""

    async def start(self) -> None:
        """Begin connecting; must not block until connected (``ready`` reports that)."""

    def ready(self) -> tuple[bool, str]:
        """``(True, "")`` once receipts can be published, else ``(False, reason)``."""

    def healthy(self) -> bool: ...

    async def publish(self, receipts: Sequence[DeliveryReceipt], traceparent: str | None) -> None:
        """Store every receipt; raise :class:`DeliveryError` if any was not stored."""

    async def aclose(self) -> None:
        """Flush what is in flight and release connections."""


class KafkaReceiptSink:
    """Produces receipts to ``topics.receipts`` and resolves when the broker acknowledged them."""

    def __init__(
        self,
        kafka: KafkaConfig,
        registry: SchemaRegistryConfig,
        topics: TopicsConfig,
        *,
        produce_timeout_ms: int = 10_000,
        flush_timeout_s: float = 30.0,
    ) -> None:
        self._kafka = kafka
        self.topic = topics.receipts
        self._serializer = EventSerializer(
            DeliveryReceipt, make_registry_client(registry), auto_register=registry.auto_register
        )
        self._ctx = SerializationContext(self.topic, MessageField.VALUE)
        self._produce_timeout_ms = produce_timeout_ms
        self._flush_timeout_s = flush_timeout_s
        self._producer: AsyncEventProducer | None = None
        self._ready = False
        self._reason = "starting"
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # A device waits for the answer: fail the request (503) rather than hold it for
        # librdkafka's default five minutes.
        overrides: dict[str, Any] = {
            "message.timeout.ms": self._produce_timeout_ms,
            "client.id": f"{self._kafka.client_id}-receipts-api",
        }
        self._producer = AsyncEventProducer(self._kafka, **overrides)
        self._task = asyncio.create_task(self._become_ready(self._producer))

    async def _become_ready(self, producer: AsyncEventProducer) -> None:
        """Retry until the topic's metadata arrived and the schema is registered (both cached)."""
        loop = asyncio.get_running_loop()
        sample = DeliveryReceipt(
            notification_id=str(uuid.uuid4()),
            device_key="readiness-check",
            kind=ReceiptKind.DELIVERED,
            received_at=datetime.now(UTC),
        )
        delay = 0.2
        while True:
            try:
                await loop.run_in_executor(None, producer.partition_count, self.topic, 5.0)
                # The first serialization registers the schema (or looks its id up) and caches
                # the id, so requests never wait on the registry.
                await loop.run_in_executor(None, self._serializer, sample, self._ctx)
            except PushlineError as exc:
                self._reason = str(exc)
                log.warning("receipts API not ready yet", extra={"reason": self._reason})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self._ready = True
            self._reason = ""
            log.info("receipts API ready", extra={"topic": self.topic})
            return

    def ready(self) -> tuple[bool, str]:
        return self._ready, self._reason

    def healthy(self) -> bool:
        return self._producer is not None and self._producer.running

    async def publish(self, receipts: Sequence[DeliveryReceipt], traceparent: str | None) -> None:
        producer = self._producer
        if producer is None:
            raise DeliveryError("the receipt sink is not started", topic=self.topic, retriable=True)
        try:
            values = [self._serializer(r, self._ctx) for r in receipts]
        except SchemaRegistryError as exc:  # cached after readiness; only a cold cache gets here
            raise DeliveryError(str(exc), topic=self.topic, retriable=True) from exc
        headers = None if traceparent is None else [("traceparent", traceparent.encode())]
        results = await asyncio.gather(
            *(
                producer.produce(self.topic, r.device_key.encode("utf-8"), value, headers)
                for r, value in zip(receipts, values, strict=True)
            ),
            return_exceptions=True,
        )
        # Every record is settled (acknowledged or failed) before the caller answers.
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        producer, self._producer = self._producer, None
        self._ready = False
        self._reason = "stopped"
        if producer is not None:
            left = await producer.aclose(self._flush_timeout_s)
            if left:
                log.error("receipts left unacknowledged at shutdown", extra={"count": left})
