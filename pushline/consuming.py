"""Batch consumption without batch latency."""

from __future__ import annotations

from confluent_kafka import Consumer, Message

__all__ = ["consume_available"]


def consume_available(consumer: Consumer, max_messages: int, timeout: float) -> list[Message]:
    """Up to ``max_messages`` messages: waits at most ``timeout`` for the first one, then takes
    only what librdkafka has already fetched.

    ``Consumer.consume(n, timeout)`` alone waits until it has ``n`` messages *or* the timeout has
    passed, so below ``n`` messages per timeout every message waited for the timeout: at a few
    thousand notifications/s a 50 ms timeout added ~25 ms on average to each one.
    """
    first = consumer.consume(1, timeout=timeout)
    if not first or max_messages <= 1:
        return first
    return first + consumer.consume(max_messages - 1, timeout=0)
