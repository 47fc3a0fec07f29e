"""Kafka header helpers shared by every consumer."""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka import Message

__all__ = ["headers_named", "message_headers"]


def _pairs(msg: Message) -> Iterable[tuple[str, str | bytes | None]]:
    """The raw (name, value) pairs, whatever shape librdkafka gave."""
    raw = msg.headers()
    if not raw:
        return ()
    return raw.items() if isinstance(raw, dict) else raw


def message_headers(msg: Message) -> list[tuple[str, bytes | None]]:
    """A consumed message's headers as (name, bytes) pairs, whatever shape librdkafka gave."""
    return [(k, v.encode() if isinstance(v, str) else v) for k, v in _pairs(msg)]


def headers_named(msg: Message, name: str) -> list[tuple[str, bytes | None]]:
    """The pairs of :func:`message_headers` called ``name`` (the dispatcher's per-message
    traceparent: without the list of every header first)."""
    return [(k, v.encode() if isinstance(v, str) else v) for k, v in _pairs(msg) if k == name]
