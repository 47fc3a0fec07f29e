"""HPACK (RFC 7541) for :mod:`dispatcher._h2transport`: an encoder that keeps constant request
headers in the dynamic table, and a decoder for the (small) responses.

Why not the ``hpack`` package: its encoder re-derives every field on every request (and Huffman
codes it in pure Python), which costs more than the rest of a request. Here a request header whose
value was seen before on this connection is a cached byte string: one byte for an indexed field
(the JWT included), or a cached name prefix plus the raw value for the per-request ones.

Encoder policy:

- Names in ``indexed_names`` (values that repeat: authorization, apns-topic, ...) are added to the
  dynamic table with incremental indexing the first time a value is seen, then sent as an indexed
  field. A changed value (a new JWT every 20-50 minutes) is simply a new entry; the old one ages
  out by FIFO eviction.
- Other names (the path, apns-id, apns-collapse-id, apns-expiration: unique per request) are
  literals without indexing, with the name indexed when the static or dynamic table has it.
- Strings are never Huffman coded: encoding costs CPU and only the per-request literals are sent
  more than once.
- The table never grows beyond ``min(max_table_size, the peer's SETTINGS_HEADER_TABLE_SIZE)``; a
  change of that limit is signalled by a dynamic table size update at the start of the next block
  (the smallest limit in between first, per RFC 7541 section 4.2).

Every cached encoding depends on entry positions, so any insertion or eviction clears the caches.
The bearer token is indexed on purpose (the point of the exercise): a compression-oracle attack
needs attacker-chosen headers on the same connection, which a dispatcher never sends.

The decoder implements the whole of RFC 7541 section 6 with a byte-at-a-time Huffman state machine
built (lazily, once) from the ``hpack`` package's nibble table.

This module is compiled by mypyc when the package is installed (``setup.py``): the same source,
run as C. HPACK was the largest part of the dispatcher's per-request CPU still in Python (the
response's Huffman-coded apns-id above all): decoding a response block 4.1 -> 1.6 µs, encoding a
request block 2.2 -> 1.3 µs, and 8% less CPU per notification end to end (py-spy share of the
connection's data_received 15.6% -> 8.5%). Keep it to what mypyc compiles: typed, no
monkeypatching; without mypyc or a C compiler (or with ``PUSHLINE_PURE_PYTHON=1``) it runs as
plain Python, same behaviour.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from typing import Final

from hpack.huffman_table import HUFFMAN_TABLE
from hpack.table import HeaderTable

__all__ = ["DEFAULT_INDEXED_NAMES", "HpackDecoder", "HpackEncoder", "HpackError", "encode_integer"]

DEFAULT_INDEXED_NAMES: Final = frozenset(
    {
        ":authority",
        ":method",
        ":scheme",
        "authorization",
        "apns-topic",
        "apns-push-type",
        "apns-priority",
        "content-type",
        "user-agent",
        "accept",
        "accept-encoding",
    }
)

_ENTRY_OVERHEAD: Final = 32
_STATIC: Final[tuple[tuple[str, str], ...]] = tuple(
    (name.decode("latin-1"), value.decode("latin-1")) for name, value in HeaderTable.STATIC_TABLE
)
_STATIC_LEN: Final = len(_STATIC)  # 61
_STATIC_FULL: Final[dict[tuple[str, str], int]] = {}
_STATIC_NAME: Final[dict[str, int]] = {}
for _i, (_n, _v) in enumerate(_STATIC, start=1):
    _STATIC_FULL.setdefault((_n, _v), _i)
    _STATIC_NAME.setdefault(_n, _i)


class HpackError(Exception):
    """A header block that cannot be decoded (a connection error COMPRESSION_ERROR)."""


def encode_integer(value: int, prefix_bits: int, flags: int = 0) -> bytes:
    """RFC 7541 5.1: ``value`` with an N-bit prefix; ``flags`` fills the bits above the prefix."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((flags | value,))
    out = bytearray((flags | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(raw: bytes) -> bytes:
    return encode_integer(len(raw), 7) + raw


class HpackEncoder:
    """One connection's request-header encoder (see the module docstring for the policy)."""

    def __init__(
        self,
        indexed_names: Iterable[str] = DEFAULT_INDEXED_NAMES,
        max_table_size: int = 4096,
    ) -> None:
        self._indexed_names = frozenset(indexed_names)
        self._preferred = max_table_size
        self._limit = min(4096, max_table_size)  # the peer's default SETTINGS_HEADER_TABLE_SIZE
        self._size = 0
        # entries newest first: (name, value, insertion number, size)
        self._entries: deque[tuple[str, str, int, int]] = deque()
        self._inserted = 0
        self._full: dict[tuple[str, str], int] = {}  # -> insertion number of the newest copy
        self._names: dict[str, int] = {}
        self._fields: dict[tuple[str, str], bytes] = {}  # cached indexed fields
        self._prefixes: dict[str, bytes] = {}  # cached "literal without indexing" name parts
        # A size update to signal at the start of the next block (the smallest since the last
        # one). The decoder evicts by the size we announce, so a table smaller than the default
        # 4096 must be announced before its first use.
        self._pending_min: int | None = self._limit if self._limit != 4096 else None

    @property
    def table_size(self) -> int:
        """Octets in the dynamic table (RFC 7541 4.1)."""
        return self._size

    @property
    def max_size(self) -> int:
        return self._limit

    def __len__(self) -> int:
        return len(self._entries)

    def set_peer_limit(self, peer_table_size: int) -> None:
        """The peer's SETTINGS_HEADER_TABLE_SIZE changed (and we acknowledged it)."""
        new = min(self._preferred, peer_table_size)
        if new == self._limit and self._pending_min is None:
            return
        self._pending_min = new if self._pending_min is None else min(self._pending_min, new)
        self._limit = new
        self._evict(new)

    def _invalidate(self) -> None:
        self._fields.clear()
        self._prefixes.clear()

    def _evict(self, limit: int) -> None:
        evicted = False
        while self._size > limit:
            name, value, number, size = self._entries.pop()
            self._size -= size
            if self._full.get((name, value)) == number:
                del self._full[(name, value)]
            if self._names.get(name) == number:
                del self._names[name]
            evicted = True
        if evicted:
            self._invalidate()

    def _insert(self, name: str, value: str, size: int) -> None:
        self._evict(self._limit - size)
        number = self._inserted
        self._inserted += 1
        self._entries.appendleft((name, value, number, size))
        self._size += size
        self._full[(name, value)] = number
        self._names[name] = number
        self._invalidate()

    def _index_of(self, number: int) -> int:
        return _STATIC_LEN + self._inserted - number

    def encode(self, headers: Iterable[tuple[str, str]]) -> bytes:
        parts: list[bytes] = []
        if self._pending_min is not None:
            if self._pending_min != self._limit:
                parts.append(encode_integer(self._pending_min, 5, 0x20))
            parts.append(encode_integer(self._limit, 5, 0x20))
            self._pending_min = None
        fields = self._fields
        prefixes = self._prefixes
        for name, value in headers:
            cached = fields.get((name, value))
            if cached is not None:
                parts.append(cached)
                continue
            if name in self._indexed_names:
                parts.append(self._encode_indexed(name, value))
                continue
            prefix = prefixes.get(name)
            if prefix is None:
                prefix = self._literal_prefix(name)
                if prefix is None:
                    # A name no table has: index this one value, so that later requests refer to
                    # the name by index (apns-id, apns-collapse-id, apns-expiration...).
                    parts.append(self._encode_indexed(name, value))
                    continue
                prefixes[name] = prefix
            raw = value.encode()
            parts.append(prefix + encode_integer(len(raw), 7) + raw)
        return b"".join(parts)

    def _literal_prefix(self, name: str) -> bytes | None:
        """Literal header field without indexing (0000xxxx) with the name by index, or None when
        no table has the name."""
        index = _STATIC_NAME.get(name)
        if index is None and name in self._names:
            index = self._index_of(self._names[name])
        return None if index is None else encode_integer(index, 4, 0x00)

    def _encode_indexed(self, name: str, value: str) -> bytes:
        key = (name, value)
        index = _STATIC_FULL.get(key)
        if index is None and key in self._full:
            index = self._index_of(self._full[key])
        if index is not None:
            field = self._fields[key] = encode_integer(index, 7, 0x80)
            return field
        raw_name = name.encode()
        raw_value = value.encode()
        size = len(raw_name) + len(raw_value) + _ENTRY_OVERHEAD
        name_index = _STATIC_NAME.get(name)
        if name_index is None and name in self._names:
            name_index = self._index_of(self._names[name])
        if size > self._limit:
            # Would empty the table without being stored: send it as a plain literal instead.
            head = (
                encode_integer(name_index, 4, 0x00)
                if name_index is not None
                else b"\x00" + _string(raw_name)
            )
            return head + _string(raw_value)
        head = (
            encode_integer(name_index, 6, 0x40)
            if name_index is not None
            else b"\x40" + _string(raw_name)
        )
        self._insert(name, value, size)
        return head + _string(raw_value)


# --- decoding ------------------------------------------------------------------------------------

_HUFFMAN_COMPLETE: Final = 1
_HUFFMAN_EMIT: Final = 2
_HUFFMAN_FAIL: Final = 4
_EMITS_ONE: Final = 0x10  # in a row's flags byte: the input byte completes one symbol
_EMITS_TWO: Final = 0x20  # ... or two
# The decoder's transitions, one input byte at a time: per state, a row of four bytes for each
# input byte: next state, flags (COMPLETE/FAIL of the two nibble steps, and _EMITS_*), the one or
# two bytes emitted. Bytes, not tuples: compiled, a lookup is a native byte read instead of a boxed
# tuple to unpack (a 36-character Huffman-coded apns-id: 0.95 -> 0.75 µs). A row is built on first
# use: a full table would take ~90 ms up front, and few of the 256 states are ever visited.
_rows: Final[list[bytes]] = [b""] * 256


def _huffman_row(state: int) -> bytes:
    """Two nibble steps of nghttp2's table (``hpack.huffman_table``) for each input byte."""
    row = bytearray(1024)
    for byte in range(256):
        at = byte << 2
        s1, f1, o1 = HUFFMAN_TABLE[state * 16 + (byte >> 4)]
        if f1 & _HUFFMAN_FAIL:
            row[at + 1] = _HUFFMAN_FAIL
            continue
        s2, f2, o2 = HUFFMAN_TABLE[s1 * 16 + (byte & 0x0F)]
        emitted = [o for o, f in ((o1, f1), (o2, f2)) if f & _HUFFMAN_EMIT]
        row[at] = s2
        row[at + 1] = (f2 & (_HUFFMAN_COMPLETE | _HUFFMAN_FAIL)) | (_EMITS_ONE * len(emitted))
        for k, o in enumerate(emitted):
            row[at + 2 + k] = o
    _rows[state] = bytes(row)
    return _rows[state]


def decode_huffman(data: bytes) -> bytes:
    rows = _rows
    out: list[int] = []
    state = 0
    flags = _HUFFMAN_COMPLETE  # the empty string is complete
    for k in range(len(data)):
        row = rows[state] or _huffman_row(state)
        at = data[k] << 2
        flags = row[at + 1]
        if flags & _HUFFMAN_FAIL:
            raise HpackError("invalid Huffman string")
        if flags & (_EMITS_ONE | _EMITS_TWO):
            out.append(row[at + 2])
            if flags & _EMITS_TWO:
                out.append(row[at + 3])
        state = row[at]
    if not flags & _HUFFMAN_COMPLETE:
        raise HpackError("incomplete Huffman string")
    return bytes(out)


class HpackDecoder:
    """One connection's response-header decoder. ``max_table_size`` is the
    SETTINGS_HEADER_TABLE_SIZE we advertise (the default 4096 unless told otherwise)."""

    def __init__(self, max_table_size: int = 4096) -> None:
        self._max_allowed = max_table_size
        self._limit = max_table_size
        self._size = 0
        self._entries: deque[tuple[str, str, int]] = deque()  # newest first

    def _add(self, name: str, value: str, raw_size: int) -> None:
        size = raw_size + _ENTRY_OVERHEAD
        if size > self._limit:
            self._entries.clear()
            self._size = 0
            return
        while self._size + size > self._limit:
            self._size -= self._entries.pop()[2]
        self._entries.appendleft((name, value, size))
        self._size += size

    def _lookup(self, index: int) -> tuple[str, str]:
        if 0 < index <= _STATIC_LEN:
            return _STATIC[index - 1]
        position = index - _STATIC_LEN - 1
        if 0 <= position < len(self._entries):
            entry = self._entries[position]
            return entry[0], entry[1]
        raise HpackError(f"header index {index} out of range")

    def decode(self, block: bytes) -> list[tuple[str, str]]:
        """Header block -> (name, value) pairs in order (latin-1 text, as received)."""
        headers: list[tuple[str, str]] = []
        pos = 0
        end = len(block)
        seen_field = False
        try:
            while pos < end:
                first = block[pos]
                if first & 0x80:  # indexed field
                    index, pos = _int(block, pos, 7)
                    headers.append(self._lookup(index))
                    seen_field = True
                elif first & 0x40:  # literal with incremental indexing
                    index, pos = _int(block, pos, 6)
                    name, value, pos, raw_size = self._literal(block, pos, index)
                    self._add(name, value, raw_size)
                    headers.append((name, value))
                    seen_field = True
                elif first & 0x20:  # dynamic table size update: only before the first field
                    if seen_field:
                        raise HpackError("table size update after a header field")
                    size, pos = _int(block, pos, 5)
                    if size > self._max_allowed:
                        raise HpackError(f"table size update {size} above {self._max_allowed}")
                    self._limit = size
                    while self._size > size:
                        self._size -= self._entries.pop()[2]
                else:  # literal without indexing (0000) or never indexed (0001)
                    index, pos = _int(block, pos, 4)
                    name, value, pos, _ = self._literal(block, pos, index)
                    headers.append((name, value))
                    seen_field = True
        except IndexError:
            raise HpackError("truncated header block") from None
        return headers

    def _literal(self, block: bytes, pos: int, index: int) -> tuple[str, str, int, int]:
        if index:
            name = self._lookup(index)[0]
            name_size = len(name.encode("latin-1"))
        else:
            raw_name, pos = _str(block, pos)
            name = raw_name.decode("latin-1")
            name_size = len(raw_name)
        raw_value, pos = _str(block, pos)
        return name, raw_value.decode("latin-1"), pos, name_size + len(raw_value)


def _int(block: bytes, pos: int, prefix_bits: int) -> tuple[int, int]:
    limit = (1 << prefix_bits) - 1
    value = block[pos] & limit
    pos += 1
    if value < limit:
        return value, pos
    shift = 0
    while True:
        byte = block[pos]
        pos += 1
        value += (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 28:
            raise HpackError("integer overflow in header block")


def _str(block: bytes, pos: int) -> tuple[bytes, int]:
    huffman = block[pos] & 0x80
    length, pos = _int(block, pos, 7)
    end = pos + length
    if end > len(block):
        raise HpackError("truncated string in header block")
    raw = block[pos:end]
    return (decode_huffman(raw) if huffman else raw), end


def static_table() -> Sequence[tuple[str, str]]:
    return _STATIC
