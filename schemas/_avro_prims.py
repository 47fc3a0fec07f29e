"""The Avro binary primitives of the generated codec (``schemas/_avro_generated.py``).

Typed Python that mypyc compiles together with the generated module (setup.py), so the calls and
constants below are native there; the interpreted code that :mod:`schemas._fastcodec` runs when
the compiled module is stale uses the same functions.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

__all__ = [
    "EPOCH",
    "LONGS",
    "ONE_MS",
    "SMALL",
    "TIMESTAMP_BYTES",
    "TIMESTAMP_MEMO_MAX",
    "TIMESTAMP_VALUES",
    "UTC",
    "Decline",
    "datetime",
    "encode_long",
    "new_object",
    "pack_d",
    "pack_f",
    "read_long",
    "read_str",
    "read_str_map",
    "timestamp_bytes",
    "timestamp_value",
    "unpack_d",
    "unpack_f",
]

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS: Final = timedelta(milliseconds=1)


class Decline(Exception):
    """The compiled fast path declines this message; the reference codec decides."""


def encode_long(n: int) -> bytes:
    """Avro long: zig-zag, then a base-128 varint, least significant group first."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


# Timestamps memoised both ways (bounded): a dispatcher writes the current millisecond, and reads
# the few milliseconds its producers wrote, over and over; the arithmetic costs ~1 µs a field.
TIMESTAMP_MEMO_MAX: Final = 8192
TIMESTAMP_BYTES: Final[dict[datetime, bytes]] = {}
TIMESTAMP_VALUES: Final[dict[int, datetime]] = {}


def timestamp_bytes(value: datetime) -> bytes:
    """Avro timestamp-millis of a UTC datetime (floored to the millisecond, as the reference)."""
    encoded = encode_long((value - EPOCH) // ONE_MS)
    if len(TIMESTAMP_BYTES) >= TIMESTAMP_MEMO_MAX:
        TIMESTAMP_BYTES.clear()
    TIMESTAMP_BYTES[value] = encoded
    return encoded


def timestamp_value(millis: int) -> datetime:
    """The UTC datetime of an Avro timestamp-millis."""
    value = EPOCH + timedelta(milliseconds=millis)
    if len(TIMESTAMP_VALUES) >= TIMESTAMP_MEMO_MAX:
        TIMESTAMP_VALUES.clear()
    TIMESTAMP_VALUES[millis] = value
    return value


SMALL: Final = 4096
#: ``LONGS[i]`` is the Avro encoding of ``i`` for 0 <= i < SMALL: string lengths, map sizes and
#: small ints come from here instead of the loop above.
LONGS: Final[tuple[bytes, ...]] = tuple(encode_long(i) for i in range(SMALL))


def read_long(buf: bytes, pos: int) -> tuple[int, int]:
    """An Avro long at ``pos`` and the position after it. Declines what the reference may read
    differently: more than 10 bytes, or a value outside the signed 64-bit range."""
    n = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
        if shift > 63:
            raise Decline
    if n >= 1 << 64:
        raise Decline
    return (n >> 1) ^ -(n & 1), pos


def read_str(buf: bytes, pos: int) -> tuple[str, int]:
    n, pos = read_long(buf, pos)
    end = pos + n
    if n < 0 or end > len(buf):
        raise Decline
    return buf[pos:end].decode(), end  # strict UTF-8, as fastavro


def read_str_map(buf: bytes, pos: int) -> tuple[dict[str, str], int]:
    """An Avro map of strings: blocks of ``count`` pairs until a zero count. A negative count
    (followed by a byte size) is legal Avro that fastavro's writer never produces: declined."""
    out: dict[str, str] = {}
    count, pos = read_long(buf, pos)
    while count:
        if count < 0:
            raise Decline
        for _ in range(count):
            key, pos = read_str(buf, pos)
            out[key], pos = read_str(buf, pos)
        count, pos = read_long(buf, pos)
    return out, pos


_DOUBLE = struct.Struct("<d")
_FLOAT = struct.Struct("<f")
pack_d: Final = _DOUBLE.pack
unpack_d: Final = _DOUBLE.unpack_from
pack_f: Final = _FLOAT.pack
unpack_f: Final = _FLOAT.unpack_from
new_object: Final[Callable[[type[Any]], Any]] = object.__new__
