"""The producer of a consuming service (dispatcher, fallback sender, reconciler): what it writes must be
acknowledged before the offset that caused it is committed.

One place for the two rules both services follow: a full local queue never drops an event (wait
for room and try again), and a refused acknowledgement is fatal (the idempotent producer already
retried for ``message.timeout.ms``; committing past the offset would lose what the event records,
so the service stops and the group redelivers from the last commit).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from pushline.errors import DeliveryError

__all__ = ["AckedProducer", "DeliveryCallback", "Headers"]

Headers = list[tuple[str, str | bytes | None]]
DeliveryCallback = Callable[[KafkaError | None, Message], None]


class AckedProducer:
    """``librdkafka`` settings in; ``on_fatal`` is called (on the polling thread) with the
    DeliveryError of the first event the broker did not acknowledge."""

    def __init__(
        self,
        settings: dict[str, Any],
        on_fatal: Callable[[DeliveryError], None],
        log: logging.Logger,
    ) -> None:
        self._producer = Producer(settings)
        self._on_fatal = on_fatal
        self._log = log

    def produce(
        self,
        topic: str,
        key: str | bytes | None,
        value: bytes | None,
        headers: Headers,
        on_delivery: DeliveryCallback,
        partition: int | None = None,
    ) -> None:
        """Queue one event (``partition``: that one, else the key's); waits while the local
        queue is full."""
        while True:
            try:
                if partition is None:
                    self._producer.produce(
                        topic, key=key, value=value, headers=headers, on_delivery=on_delivery
                    )
                else:
                    self._producer.produce(
                        topic,
                        key=key,
                        value=value,
                        headers=headers,
                        on_delivery=on_delivery,
                        partition=partition,
                    )
                return
            except BufferError:  # the local queue is full: serve acknowledgements, then retry
                self._producer.poll(0.05)

    def failed(self, err: KafkaError, topic: str) -> None:
        """A delivery callback's error: log it and report it as fatal."""
        self._log.error("broker did not acknowledge an event on %s: %s", topic, err.str())
        self._on_fatal(
            DeliveryError(
                f"broker did not acknowledge an event on {topic}: {err.str()}", topic=topic
            )
        )

    def poll(self, timeout: float = 0) -> int:
        """Serve delivery callbacks (on the calling thread)."""
        return int(self._producer.poll(timeout))

    def flush(self, timeout: float) -> int:
        """Wait up to ``timeout`` for every event's acknowledgement; the number still unacked."""
        return int(self._producer.flush(timeout))
