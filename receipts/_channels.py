"""What one fallback send attempt came to, whichever channel it went through."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["ChannelResult", "parse_retry_after"]


@dataclass(frozen=True)
class ChannelResult:
    """The answer of an SMTP server or SMS API to one attempt, as data.

    ``transient`` says whether another attempt may succeed (SMTP 4xx, a dropped connection, HTTP
    429 / 5xx, our own credentials refused); a refusal of the message itself (SMTP 5xx, Twilio
    400) is not transient and is never retried.
    """

    ok: bool
    transient: bool = False
    status: int | None = None  # SMTP reply code or HTTP status
    reason: str | None = None
    provider_id: str | None = None  # SMTP Message-ID or Twilio message sid
    retry_after: float | None = None
    latency_ms: float = 0.0


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
