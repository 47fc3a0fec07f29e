"""One asyncio wrapper over librdkafka's producer, for every component that awaits broker acks.

``await producer.produce(topic, key, value, headers)`` returns ``(partition, offset)`` once the broker
acknowledged the record (acks=all, idempotent). A background thread serves librdkafka's delivery
reports and settles each awaiting future on its own event loop, so no coroutine blocks on the network.
librdkafka errors are mapped here, once, to :class:`~pushline.errors.DeliveryError` (records) and
:class:`~pushline.errors.TopicError` (metadata).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from pushline.config import KafkaConfig
from pushline.errors import DeliveryError, TopicError

__all__ = ["PRODUCER_SETTINGS", "AsyncEventProducer", "Headers"]

#: librdkafka settings every Pushline producer uses (DESIGN.md: at-least-once, Java-compatible keys).
PRODUCER_SETTINGS: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "partitioner": "murmur2_random",
    "linger.ms": 5,
    # A missing topic is a deployment error (`pushline topics ensure`), not something to paper
    # over with a broker-default topic of the wrong partition count.
    "allow.auto.create.topics": False,
}

Headers = Sequence[tuple[str, str | bytes | None]] | Mapping[str, str | bytes | None]
"""Record headers: (name, value) pairs (names may repeat) or a mapping."""

_KeyOrValue = str | bytes | None


def _as_pairs(headers: Headers | None) -> list[tuple[str, str | bytes | None]] | None:
    if not headers:
        return None
    return list(headers.items()) if isinstance(headers, Mapping) else list(headers)


class AsyncEventProducer:
    """An idempotent, acks=all producer whose ``produce`` is awaitable.

    ``librdkafka_overrides`` are librdkafka settings for this producer (dots as in librdkafka, e.g.
    ``**{"message.timeout.ms": 10_000}``); they win over :data:`PRODUCER_SETTINGS` and ``kafka``.
    Use one instance per process and event loop; ``produce`` may be called concurrently.
    """

    def __init__(
        self,
        kafka: KafkaConfig,
        *,
        poll_interval: float = 0.05,
        queue_full_timeout: float = 5.0,
        **librdkafka_overrides: Any,
    ) -> None:
        self._producer = Producer(
            kafka.to_librdkafka(**{**PRODUCER_SETTINGS, **librdkafka_overrides})
        )
        self._poll_interval = poll_interval
        self._queue_full_timeout = queue_full_timeout
        self._closing = threading.Event()
        self._closed = False
        self._poller = threading.Thread(target=self._poll, name="pushline-producer", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._closing.is_set():
            self._producer.poll(self._poll_interval)

    @property
    def running(self) -> bool:
        """The delivery-report thread is alive (a health probe)."""
        return self._poller.is_alive() and not self._closed

    def __len__(self) -> int:
        """Records queued or in flight, not yet acknowledged."""
        return len(self._producer)

    async def produce(
        self,
        topic: str,
        key: _KeyOrValue,
        value: _KeyOrValue,
        headers: Headers | None = None,
        *,
        partition: int | None = None,
    ) -> tuple[int, int]:
        """Produce one record; returns ``(partition, offset)`` once the broker acknowledged it.

        Raises :class:`DeliveryError` when the broker did not acknowledge it (within librdkafka's
        ``message.timeout.ms``), the record was refused locally, or the local queue stayed full
        for ``queue_full_timeout`` seconds. ``retriable`` says whether trying again can help.
        """
        if self._closed:
            raise DeliveryError("the producer is closed", topic=topic, retriable=False)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[tuple[int, int]] = loop.create_future()

        def settle(err: KafkaError | None, where: tuple[int, int]) -> None:
            if done.done():  # the awaiting task was cancelled
                return
            if err is None:
                done.set_result(where)
            else:
                done.set_exception(
                    DeliveryError(
                        f"record for {topic} was not acknowledged by the broker: {err.str()}",
                        topic=topic,
                        retriable=bool(err.retriable()),
                    )
                )

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            # Runs on the poll thread; the future belongs to the loop.
            where = (-1, -1) if err is not None else (msg.partition() or 0, msg.offset() or 0)
            loop.call_soon_threadsafe(settle, err, where)

        kwargs: dict[str, Any] = {"on_delivery": on_delivery}
        if partition is not None:
            kwargs["partition"] = partition
        pairs = _as_pairs(headers)
        if pairs is not None:
            kwargs["headers"] = pairs
        deadline = time.monotonic() + self._queue_full_timeout
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, **kwargs)
                break
            except BufferError:
                # The local queue is full: the poll thread drains it as acks arrive.
                if time.monotonic() >= deadline:
                    raise DeliveryError(
                        f"the local producer queue stayed full for {self._queue_full_timeout}s",
                        topic=topic,
                        retriable=True,
                    ) from None
                await asyncio.sleep(0.005)
            except KafkaException as exc:
                err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                raise DeliveryError(
                    f"record for {topic} was refused: {err.str() if err else exc}",
                    topic=topic,
                    retriable=bool(err and err.retriable()),
                ) from exc
        return await done

    def partition_count(self, topic: str, timeout: float = 5.0) -> int:
        """The partition count of ``topic`` from a metadata request (blocking; run it in an executor).

        Raises :class:`TopicError` when the cluster cannot be reached or the topic does not exist.
        """
        try:
            meta = self._producer.list_topics(topic, timeout=timeout)
        except KafkaException as exc:
            raise TopicError(f"cannot fetch metadata of {topic}: {exc}") from exc
        info = meta.topics.get(topic)
        if info is None or info.error is not None or not info.partitions:
            reason = info.error.str() if info is not None and info.error is not None else "missing"
            raise TopicError(f"topic {topic} is not available: {reason}")
        return len(info.partitions)

    async def flush(self, timeout: float = 30.0) -> int:
        """Wait until every queued record is acknowledged or failed; returns how many are left."""
        loop = asyncio.get_running_loop()
        remaining: int = await loop.run_in_executor(None, self._producer.flush, timeout)
        return remaining

    async def aclose(self, timeout: float = 30.0) -> int:
        """Refuse new records, flush what is queued, stop the poll thread. Returns records left."""
        if self._closed:
            return 0
        self._closed = True
        remaining = await self.flush(timeout)
        self._closing.set()
        await asyncio.get_running_loop().run_in_executor(None, self._poller.join)
        return remaining

    async def __aenter__(self) -> AsyncEventProducer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
