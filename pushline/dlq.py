"""The dead-letter contract: what every consumer writes to push.dlq, and how it is read back.

A dead letter keeps the original key and value bytes untouched, so it can be replayed to its source
topic after a fix; the headers say where it came from and why it could not be processed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = [
    "HEADER_ERROR_CLASS",
    "HEADER_ERROR_MESSAGE",
    "HEADER_FAILED_AT",
    "HEADER_REPLAYED_FROM",
    "HEADER_SOURCE_OFFSET",
    "HEADER_SOURCE_PARTITION",
    "HEADER_SOURCE_TOPIC",
    "DeadLetter",
    "dead_letter_headers",
]

HEADER_SOURCE_TOPIC = "pushline.dlq.source.topic"
HEADER_SOURCE_PARTITION = "pushline.dlq.source.partition"
HEADER_SOURCE_OFFSET = "pushline.dlq.source.offset"
HEADER_ERROR_CLASS = "pushline.dlq.error.class"
HEADER_ERROR_MESSAGE = "pushline.dlq.error.message"
HEADER_FAILED_AT = "pushline.dlq.failed.at"
HEADER_REPLAYED_FROM = "pushline.dlq.replayed_from"

_MAX_MESSAGE = 1000  # headers are not a place for a whole traceback


@dataclass(frozen=True)
class DeadLetter:
    """Why one event went to the dead-letter topic (parsed from, or written to, its headers)."""

    source_topic: str
    source_partition: int
    source_offset: int
    error_class: str
    error_message: str
    failed_at: datetime

    @classmethod
    def from_headers(cls, headers: Sequence[tuple[str, bytes | None]] | None) -> DeadLetter:
        h = {k: (v or b"").decode("utf-8", "replace") for k, v in headers or ()}
        return cls(
            source_topic=h.get(HEADER_SOURCE_TOPIC, ""),
            source_partition=int(h.get(HEADER_SOURCE_PARTITION) or -1),
            source_offset=int(h.get(HEADER_SOURCE_OFFSET) or -1),
            error_class=h.get(HEADER_ERROR_CLASS, ""),
            error_message=h.get(HEADER_ERROR_MESSAGE, ""),
            failed_at=datetime.fromisoformat(h[HEADER_FAILED_AT])
            if HEADER_FAILED_AT in h
            else datetime.fromtimestamp(0, UTC),
        )


def dead_letter_headers(
    source_topic: str,
    source_partition: int,
    source_offset: int,
    error: BaseException | str,
    error_class: str | None = None,
    original: Sequence[tuple[str, bytes | None]] | None = None,
) -> list[tuple[str, str | bytes | None]]:
    """The headers of a dead letter: the original headers (minus older DLQ ones), then ours."""
    if isinstance(error, BaseException):
        error_class = error_class or type(error).__name__
        message = str(error)
    else:
        message = error
    # Older dead-letter headers go (ours replace them), but a replay's origin stays: an event that
    # fails again after a replay keeps its history.
    kept: list[tuple[str, str | bytes | None]] = [
        (k, v)
        for k, v in original or ()
        if not k.startswith("pushline.dlq.") or k == HEADER_REPLAYED_FROM
    ]
    return [
        *kept,
        (HEADER_SOURCE_TOPIC, source_topic),
        (HEADER_SOURCE_PARTITION, str(source_partition)),
        (HEADER_SOURCE_OFFSET, str(source_offset)),
        (HEADER_ERROR_CLASS, error_class or "Error"),
        (HEADER_ERROR_MESSAGE, message[:_MAX_MESSAGE]),
        (HEADER_FAILED_AT, datetime.now(UTC).isoformat()),
    ]
