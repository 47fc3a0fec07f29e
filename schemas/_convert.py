"""Normalisation shared by the event dataclasses: UTC millisecond timestamps, enum coercion, ids.

Events are frozen, so ``__post_init__`` fixes fields with ``object.__setattr__``; the fixes make an
event equal to itself after an Avro round trip (timestamp-millis drops microseconds, fastavro hands
back ``datetime.UTC``).
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

from pushline.errors import ValidationError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_millis(name: str, value: object) -> datetime:
    """``value`` as a UTC datetime with millisecond precision; naive datetimes are refused, because
    guessing their zone would silently shift expiry and deadlines."""
    if not isinstance(value, datetime):
        raise ValidationError(name, f"must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(name, "must be timezone-aware (UTC)")
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    extra = value.microsecond % 1000
    return value - timedelta(microseconds=extra) if extra else value


def fix_times(obj: object, *names: str) -> None:
    """Normalise the datetime fields ``names`` of a frozen dataclass in place (None is left alone)."""
    for name in names:
        value = getattr(obj, name)
        if value is not None:
            fixed = utc_millis(name, value)
            if fixed is not value:
                object.__setattr__(obj, name, fixed)


def fix_enum(obj: object, name: str, enum_cls: type[Enum]) -> None:
    """Turn a plain symbol string in field ``name`` into ``enum_cls`` (None is left alone), so an
    event built from strings still writes and compares like one built from members."""
    value = getattr(obj, name)
    if value is None or isinstance(value, enum_cls):
        return
    try:
        object.__setattr__(obj, name, enum_cls(value))
    except ValueError:
        symbols = ", ".join(str(m.value) for m in enum_cls)
        raise ValidationError(name, f"{value!r} is not one of {symbols}") from None


def normalise(
    obj: object, enums: tuple[tuple[str, type[Enum]], ...], times: tuple[str, ...]
) -> None:
    """``fix_enum`` each of ``enums`` and ``fix_times`` each of ``times``, in that order, calling
    them only for a field that is not already normalised (an exact enum member; an exact datetime
    in ``UTC`` with whole milliseconds): the common case costs a type check, not a function call.
    The checks are exactly the conditions under which the fixes leave a field as it is."""
    for name, enum_cls in enums:
        if type(getattr(obj, name)) is not enum_cls:
            fix_enum(obj, name, enum_cls)
    for name in times:
        value = getattr(obj, name)
        if value is not None and (
            type(value) is not datetime or value.tzinfo is not UTC or value.microsecond % 1000
        ):
            fix_times(obj, name)


def read_time(value: Any) -> datetime:
    """A timestamp from a record: fastavro gives datetimes; plain dicts (JSON) may carry epoch ms."""
    if isinstance(value, int) and not isinstance(value, bool):
        return _EPOCH + timedelta(milliseconds=value)
    if isinstance(value, datetime) and value.tzinfo is None:
        # fastavro without logical types, or a hand-made dict: the Avro value is UTC by definition
        return value.replace(tzinfo=UTC)
    return utc_millis("timestamp", value)


def read_opt_time(value: Any) -> datetime | None:
    return None if value is None else read_time(value)


def read_id(name: str, value: Any) -> str:
    """An id string; a reader schema with ``logicalType: uuid`` yields uuid.UUID, which we flatten."""
    if isinstance(value, str):
        return value
    if isinstance(value, uuid.UUID):
        return str(value)
    raise ValidationError(name, f"must be a string, not {type(value).__name__}")


_now_cache: tuple[int, datetime] = (-1, _EPOCH)


def utc_now_millis() -> datetime:
    """The current time as an event timestamp (UTC, whole milliseconds), so storing it in an event
    needs no normalisation. A dispatcher asks several times per notification, thousands of times a
    second: the datetime of the current millisecond is made once and reused."""
    global _now_cache  # noqa: PLW0603 - a one-entry cache; a stale read is just a rebuild
    ms = int(time.time() * 1000)
    cached_ms, cached = _now_cache
    if ms == cached_ms:
        return cached
    now = _EPOCH + timedelta(milliseconds=ms)
    _now_cache = (ms, now)
    return now
