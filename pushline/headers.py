"""Kafka header helpers shared by every consumer."""

from __future__ import annotations

from confluent_kafka import Message

__all__ = ["headers_named", "message_headers"]


def message_headers(msg: Message) -> list[tuple[str, bytes | None]]:
    """A consumed message's headers as (name, bytes) pairs, whatever shape librdkafka gave."""
    raw = msg.headers()
    if not raw:
        return []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return [(k, v.encode() if isinstance(v, str) else v) for k, v in pairs]


def headers_named(msg: Message, name: str) -> list[tuple[str, bytes | None]]:
    """The pairs of :func:`message_headers` called ``name`` (the dispatcher's per-message
    traceparent: without the list of every header first)."""
    raw = msg.headers()
    if not raw:
        return []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return [(k, v.encode() if isinstance(v, str) else v) for k, v in pairs if k == name]
