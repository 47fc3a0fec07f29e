"""Kafka header helpers shared by every consumer."""

from __future__ import annotations

from confluent_kafka import Message

__all__ = ["message_headers"]


def message_headers(msg: Message) -> list[tuple[str, bytes | None]]:
    """A consumed message's headers as (name, bytes) pairs, whatever shape librdkafka gave."""
    raw = msg.headers()
    if not raw:
        return []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return [(k, v.encode() if isinstance(v, str) else v) for k, v in pairs]
