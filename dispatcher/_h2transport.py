"""A focused HTTP/2 client on an asyncio Protocol: :class:`H2Transport` implements :class:`Transport`.

Why not httpx or the ``h2`` library: a dispatcher sends one small POST after another with the same
handful of headers. httpx spends most of its time in its own layers, and ``h2`` re-encodes every
header (JWT included) and validates every frame in pure Python. Here a request costs one HEADERS
frame whose constant fields are one-byte HPACK indexes (see :mod:`dispatcher._hpack`), one DATA
frame, and one write per event-loop iteration for all the requests started in it.

Pool: per origin up to ``pool_size`` connections. A request takes the least busy connection that
has a free stream (below the server's SETTINGS_MAX_CONCURRENT_STREAMS); a new connection is opened
only when every one is full; beyond that requests wait in a FIFO queue (they never fail for lack
of streams). Deadlines (``timeout``) cover the wait, the connect and the answer.

Protocol checklist (RFC 9113) -> the test that covers it (tests/unit/test_h2transport.py, against
a strict ``h2``-library server in tests/h2server.py unless marked "emulator"):

- connection preface + SETTINGS exchange, our SETTINGS acknowledged, theirs ACKed:
  ``test_preface_settings_and_ack``
- requests wait for the server's first SETTINGS (APNs starts with a low stream limit):
  ``test_preface_settings_and_ack``
- SETTINGS_MAX_CONCURRENT_STREAMS honoured, extra requests queue and never fail:
  ``test_max_concurrent_streams_queues``; lowered and raised mid-connection:
  ``test_max_concurrent_streams_changes_mid_connection``
- SETTINGS_INITIAL_WINDOW_SIZE changes adjust every open stream's send window (also negative):
  ``test_initial_window_size_change``
- send flow control, connection and stream windows, block and resume on WINDOW_UPDATE, bodies
  larger than the window: ``test_large_body_small_windows``
- receive flow control: WINDOW_UPDATE for consumed DATA (connection and stream), large responses:
  ``test_large_response_body_receive_window``
- SETTINGS_MAX_FRAME_SIZE: DATA split to the peer's frame size, HEADERS + CONTINUATION for big
  header blocks: ``test_body_split_to_max_frame_size``, ``test_large_request_headers_continuation``
- PING -> PING ACK with the same payload: ``test_ping_answered``; idle PING (``ping_interval``),
  connection dropped when unanswered: ``test_idle_ping``
- GOAWAY: streams <= last_stream_id complete, streams above are re-sent once on a new connection,
  no new streams on the old one: ``test_goaway_mid_flight`` and (emulator)
  ``test_emulator_goaway_resends_only_unprocessed``
- a stream refused twice (GOAWAY/REFUSED_STREAM again) is a TransportError: ``test_retry_only_once``
- RST_STREAM REFUSED_STREAM -> retried on another connection; other codes -> TransportError:
  ``test_rst_stream_refused_and_other``
- CONTINUATION frames in responses: ``test_response_continuation``
- padded HEADERS and DATA, priority fields in HEADERS: ``test_padding_and_priority``
- trailers (HEADERS with END_STREAM after DATA) and END_STREAM on the response HEADERS:
  ``test_trailers``; 1xx informational headers skipped: ``test_trailers``
- unknown frame types ignored (also inside the stream flow): ``test_unknown_frame_ignored``
- stream id exhaustion -> a new connection: ``test_stream_id_exhaustion``
- connection-level errors (bad frame, connection lost, HPACK error) fail in-flight requests with
  TransportError: ``test_connection_lost_fails_in_flight``, ``test_protocol_error_fails_in_flight``
- per-request timeout, the stream cancelled with RST_STREAM CANCEL: ``test_timeout_sends_rst_cancel``;
  caller cancellation does the same: ``test_timeout_sends_rst_cancel``
- HPACK: constant headers indexed once per connection, a changed JWT value is a new entry,
  SETTINGS_HEADER_TABLE_SIZE lowered -> size update + eviction: ``test_hpack_*`` in
  tests/unit/test_h2transport_hpack.py, and ``test_header_table_size_setting`` (server decodes)
- TLS with ALPN h2 (refused without it), TLS errors mapped: ``test_alpn_required``,
  ``test_tls_untrusted``
- APNs/FCM emulators with ApnsClient/FcmClient: ``test_emulator_*``
- ``try_start`` (the dispatcher's path without a coroutine, see :class:`_Callback`): False, and
  nothing sent, until a connection has a free stream; answers and errors (timeout, RST_STREAM)
  reach the callback once; a refused stream is re-sent once on another connection, exactly as
  ``request`` does: ``test_try_start_*``

Not implemented (not needed by a push client): server push (disabled with SETTINGS_ENABLE_PUSH=0;
a PUSH_PROMISE is a connection error), request trailers, priorities, the Extended CONNECT protocol.
Request header names must already be lower case and free of connection-specific headers.

Compiled by mypyc when installed: ``setup.py`` says what that asks of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
from collections import deque
from collections.abc import Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any, Final, cast

from dispatcher._hpack import DEFAULT_INDEXED_NAMES, HpackDecoder, HpackEncoder, HpackError
from dispatcher._results import PushlineReason
from dispatcher._transport import (
    OnDone,
    TransportError,
    TransportResponse,
    make_ssl_context,
    map_transport_error,
)
from pushline.errors import ConfigError

__all__ = ["H2Transport"]

PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA: Final = 0x0
HEADERS: Final = 0x1
PRIORITY: Final = 0x2
RST_STREAM: Final = 0x3
SETTINGS: Final = 0x4
PUSH_PROMISE: Final = 0x5
PING: Final = 0x6
GOAWAY: Final = 0x7
WINDOW_UPDATE: Final = 0x8
CONTINUATION: Final = 0x9

END_STREAM: Final = 0x1
ACK: Final = 0x1
END_HEADERS: Final = 0x4
PADDED: Final = 0x8
PRIORITY_FLAG: Final = 0x20

SETTINGS_HEADER_TABLE_SIZE: Final = 0x1
SETTINGS_ENABLE_PUSH: Final = 0x2
SETTINGS_MAX_CONCURRENT_STREAMS: Final = 0x3
SETTINGS_INITIAL_WINDOW_SIZE: Final = 0x4
SETTINGS_MAX_FRAME_SIZE: Final = 0x5
SETTINGS_MAX_HEADER_LIST_SIZE: Final = 0x6

NO_ERROR: Final = 0x0
PROTOCOL_ERROR: Final = 0x1
INTERNAL_ERROR: Final = 0x2
FLOW_CONTROL_ERROR: Final = 0x3
STREAM_CLOSED: Final = 0x5
FRAME_SIZE_ERROR: Final = 0x6
REFUSED_STREAM: Final = 0x7
CANCEL: Final = 0x8
COMPRESSION_ERROR: Final = 0x9

ERROR_NAMES: Final = {
    0x0: "NO_ERROR",
    0x1: "PROTOCOL_ERROR",
    0x2: "INTERNAL_ERROR",
    0x3: "FLOW_CONTROL_ERROR",
    0x4: "SETTINGS_TIMEOUT",
    0x5: "STREAM_CLOSED",
    0x6: "FRAME_SIZE_ERROR",
    0x7: "REFUSED_STREAM",
    0x8: "CANCEL",
    0x9: "COMPRESSION_ERROR",
    0xA: "CONNECT_ERROR",
    0xB: "ENHANCE_YOUR_CALM",
    0xC: "INADEQUATE_SECURITY",
    0xD: "HTTP_1_1_REQUIRED",
}

MAX_WINDOW: Final = 2**31 - 1
MAX_STREAM_ID: Final = 2**31 - 1
DEFAULT_WINDOW: Final = 65_535
DEFAULT_FRAME_SIZE: Final = 16_384
# What we let the server send before it must wait for our WINDOW_UPDATE: responses are tiny, so
# generous windows cost nothing and save WINDOW_UPDATE frames.
RECV_STREAM_WINDOW: Final = 1 << 20
RECV_CONNECTION_WINDOW: Final = 1 << 24

_HEAD = struct.Struct(">BHBBL")  # 24-bit length as (high byte, low 16 bits), type, flags, stream
_U32 = struct.Struct(">L")
_SETTING = struct.Struct(">HL")
_GOAWAY = struct.Struct(">LL")
_SWEEP_INTERVAL: Final = 0.05


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    length = len(payload)
    return _HEAD.pack(length >> 16, length & 0xFFFF, kind, flags, stream_id) + payload


def _error_name(code: int) -> str:
    return ERROR_NAMES.get(code, f"0x{code:x}")


class _Retry(Exception):
    """The server did not process the stream (GOAWAY past it, REFUSED_STREAM): safe to re-send."""


class _ConnectionFailed(Exception):
    """A connection-level error, carrying the TransportError for every stream on it."""

    def __init__(self, error: TransportError) -> None:
        super().__init__(str(error))
        self.error = error


class _Callback:
    """A stream's completion for :meth:`H2Transport.try_start`: the three methods of a future
    that the connection uses, calling ``on_done`` instead of waking a task. A stream the server
    did not process (``_Retry``) is sent again once, on another connection, by the code behind
    :meth:`H2Transport.request` (as ``request`` itself would do)."""

    __slots__ = ("_done", "args", "conn", "on_done", "owner")

    def __init__(
        self,
        owner: H2Transport,
        on_done: OnDone,
        conn: _Connection,
        args: tuple[str, str, Sequence[tuple[str, str]], bytes, float],
    ) -> None:
        self.owner = owner
        self.on_done = on_done
        self.conn = conn
        self.args = args  # method, url, headers, body, deadline (loop time)
        self._done = False

    def done(self) -> bool:
        return self._done

    def set_result(self, response: TransportResponse) -> None:
        self._done = True
        self.on_done(response)

    def set_exception(self, error: BaseException) -> None:
        self._done = True
        if isinstance(error, _Retry):
            self.owner.spawn(self._resend())
        elif isinstance(error, TransportError):
            self.on_done(error)
        else:  # not raised by the connection today; never lose the request over it
            self.on_done(TransportError(PushlineReason.CONNECTION_ERROR, str(error)))

    async def _resend(self) -> None:
        method, url, headers, body, deadline = self.args
        timeout = max(0.0, deadline - asyncio.get_running_loop().time())
        try:
            response = await self.owner._exchange(method, url, headers, body, timeout, self.conn)
        except TransportError as exc:
            self.on_done(exc)
        except asyncio.CancelledError:  # the transport closed meanwhile (aclose cancels its tasks)
            self.on_done(TransportError(PushlineReason.CONNECTION_ERROR, "transport is closed"))
            raise
        else:
            self.on_done(response)


class _Stream:
    __slots__ = (
        "body",
        "conn",
        "deadline",
        "future",
        "headers",
        "pending",
        "recv_unacked",
        "send_window",
        "status",
        "stream_id",
    )

    def __init__(
        self,
        conn: _Connection,
        future: asyncio.Future[TransportResponse] | _Callback,
        deadline: float,
    ) -> None:
        self.conn = conn
        self.future = future
        self.deadline = deadline
        self.stream_id = 0
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []
        self.pending: memoryview | None = None  # request body not yet sent (flow control)
        self.send_window = 0
        self.recv_unacked = 0


class _Connection(asyncio.Protocol):
    """One HTTP/2 connection (client side)."""

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, _Stream] = {}
        self.next_stream_id = 1
        self.max_stream_id = pool.owner.max_stream_id
        self.encoder = HpackEncoder(pool.owner.indexed_names)
        self.decoder = HpackDecoder()
        self.ready: asyncio.Future[None] = self.loop.create_future()
        self.closed = False
        self.draining = False  # GOAWAY received or stream ids exhausted: no new streams
        self.error: TransportError | None = None
        self.last_stream_id = MAX_STREAM_ID  # from GOAWAY
        self.max_concurrent = 2**31  # until the server says otherwise (we wait for its SETTINGS)
        self.peer_initial_window = DEFAULT_WINDOW
        self.peer_max_frame = DEFAULT_FRAME_SIZE
        self.send_window = DEFAULT_WINDOW
        self.recv_unacked = 0
        self.blocked: deque[_Stream] = deque()
        self.out: list[bytes] = []
        self.flush_scheduled = False
        self.buffer = b""
        self.header_stream = 0  # stream whose header block continues in CONTINUATION frames
        self.header_flags = 0
        self.header_fragments: list[bytes] = []
        self.last_activity = self.loop.time()
        self.ping_outstanding = False
        self.reserved = 0  # streams promised to woken waiters that have not started them yet

    # --- capacity ------------------------------------------------------------------------------

    def capacity(self) -> int:
        if self.draining or self.closed or not self.ready.done():
            return 0
        return self.max_concurrent - len(self.streams) - self.reserved

    # --- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's SSL transports are not asyncio.Transport subclasses but have its interface
        self.transport = cast(asyncio.Transport, transport)
        settings = b"".join(
            _SETTING.pack(key, value)
            for key, value in (
                (SETTINGS_ENABLE_PUSH, 0),
                (SETTINGS_INITIAL_WINDOW_SIZE, RECV_STREAM_WINDOW),
                (SETTINGS_MAX_CONCURRENT_STREAMS, 0),  # no server-initiated streams
            )
        )
        self.write(
            PREFACE
            + frame(SETTINGS, 0, 0, settings)
            + frame(WINDOW_UPDATE, 0, 0, _U32.pack(RECV_CONNECTION_WINDOW - DEFAULT_WINDOW))
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        detail = f": {type(exc).__name__}: {exc}" if exc is not None else ""
        self._shutdown(
            TransportError(PushlineReason.CONNECTION_ERROR, f"HTTP/2 connection closed{detail}")
        )

    def _shutdown(self, error: TransportError) -> None:
        """The connection is unusable: fail what is in flight (once) and leave the pool."""
        if self.closed:
            return
        self.closed = True
        self.draining = True
        self.error = self.error or error
        if not self.ready.done():
            self.ready.set_exception(_ConnectionFailed(self.error))
            self.ready.exception()  # retrieved: a connect that already gave up must not log it
        streams = list(self.streams.values())
        self.streams.clear()
        self.blocked.clear()
        for stream in streams:
            if not stream.future.done():
                stream.future.set_exception(TransportError(self.error.reason, str(self.error)))
        self.pool.connection_closed(self)

    def pause_writing(self) -> None:
        # Writes are bounded by the server's windows and stream limit; nothing else to hold back.
        pass

    def resume_writing(self) -> None:
        pass

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_activity = self.loop.time()
        self.ping_outstanding = False
        buf = self.buffer + data if self.buffer else data
        pos = 0
        end = len(buf)
        try:
            while end - pos >= 9 and not self.closed:  # closed: a frame was a connection error
                high, low, kind, flags, stream_id = _HEAD.unpack_from(buf, pos)
                length = (high << 16) | low
                if length > DEFAULT_FRAME_SIZE:  # we never raise our SETTINGS_MAX_FRAME_SIZE
                    raise _ProtocolViolation(FRAME_SIZE_ERROR, f"frame of {length} bytes")
                stop = pos + 9 + length
                if stop > end:
                    break
                payload = buf[pos + 9 : stop]
                pos = stop
                self._on_frame(kind, flags, stream_id & MAX_STREAM_ID, payload)
        except _ProtocolViolation as exc:
            self._connection_error(exc.code, str(exc))
            return
        self.buffer = buf[pos:] if pos < end else b""

    # --- frames in -----------------------------------------------------------------------------

    def _on_frame(self, kind: int, flags: int, stream_id: int, payload: bytes) -> None:
        if self.header_stream and kind != CONTINUATION:
            raise _ProtocolViolation(PROTOCOL_ERROR, "header block interrupted")
        if kind == HEADERS:
            self._on_headers(flags, stream_id, payload)
        elif kind == DATA:
            self._on_data(flags, stream_id, payload)
        elif kind == WINDOW_UPDATE:
            self._on_window_update(stream_id, payload)
        elif kind == SETTINGS:
            self._on_settings(flags, stream_id, payload)
        elif kind == PING:
            if stream_id or len(payload) != 8:
                raise _ProtocolViolation(PROTOCOL_ERROR, "malformed PING")
            if not flags & ACK:
                self.write(frame(PING, ACK, 0, payload))
        elif kind == RST_STREAM:
            self._on_rst_stream(stream_id, payload)
        elif kind == GOAWAY:
            self._on_goaway(stream_id, payload)
        elif kind == CONTINUATION:
            self._on_continuation(flags, stream_id, payload)
        elif kind == PUSH_PROMISE:
            raise _ProtocolViolation(PROTOCOL_ERROR, "PUSH_PROMISE although push is disabled")
        elif kind == PRIORITY and (not stream_id or len(payload) != 5):
            raise _ProtocolViolation(PROTOCOL_ERROR, "malformed PRIORITY")
        # other frame types: ignored (RFC 9113 section 4.1)

    def _on_headers(self, flags: int, stream_id: int, payload: bytes) -> None:
        if not stream_id:
            raise _ProtocolViolation(PROTOCOL_ERROR, "HEADERS on stream 0")
        if stream_id >= self.next_stream_id or not stream_id & 1:
            raise _ProtocolViolation(PROTOCOL_ERROR, f"HEADERS on idle stream {stream_id}")
        if flags & (PADDED | PRIORITY_FLAG):
            start = 0
            stop = len(payload)
            if flags & PADDED:
                if not payload:
                    raise _ProtocolViolation(PROTOCOL_ERROR, "padded HEADERS without pad length")
                start = 1
                stop -= payload[0]
            if flags & PRIORITY_FLAG:
                start += 5
            if stop < start:
                raise _ProtocolViolation(PROTOCOL_ERROR, "HEADERS padding exceeds the payload")
            payload = payload[start:stop]
        if not flags & END_HEADERS:
            self.header_stream = stream_id
            self.header_flags = flags
            self.header_fragments = [payload]
            return
        self._on_header_block(flags, stream_id, payload)

    def _on_continuation(self, flags: int, stream_id: int, payload: bytes) -> None:
        if not self.header_stream or stream_id != self.header_stream:
            raise _ProtocolViolation(PROTOCOL_ERROR, "unexpected CONTINUATION")
        self.header_fragments.append(payload)
        if flags & END_HEADERS:
            block = b"".join(self.header_fragments)
            self.header_stream = 0
            self.header_fragments = []
            self._on_header_block(self.header_flags, stream_id, block)

    def _on_header_block(self, flags: int, stream_id: int, block: bytes) -> None:
        # Decode even when the stream is gone (timed out, reset): the HPACK state is shared.
        try:
            fields = self.decoder.decode(block)
        except HpackError as exc:
            raise _ProtocolViolation(COMPRESSION_ERROR, str(exc)) from exc
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        if not stream.status:
            status = 0
            headers = stream.headers
            for name, value in fields:
                if name[0] == ":":
                    if name == ":status":
                        status = int(value) if value.isdigit() else 0
                else:
                    headers.append((name, value))
            if not 100 <= status <= 599:
                self._reset(stream, PROTOCOL_ERROR)
                self._finish(
                    stream,
                    TransportError(PushlineReason.PROTOCOL_ERROR, "response without a :status"),
                )
                return
            if status < 200:  # informational: the real response follows
                headers.clear()
                if flags & END_STREAM:
                    raise _ProtocolViolation(PROTOCOL_ERROR, "END_STREAM on a 1xx response")
                return
            stream.status = status
        elif not flags & END_STREAM:
            self._reset(stream, PROTOCOL_ERROR)
            self._finish(
                stream, TransportError(PushlineReason.PROTOCOL_ERROR, "trailers without END_STREAM")
            )
            return
        # (trailers: their fields are not part of a push provider's answer, so they are dropped)
        if flags & END_STREAM:
            self._complete(stream)

    def _on_data(self, flags: int, stream_id: int, payload: bytes) -> None:
        if not stream_id:
            raise _ProtocolViolation(PROTOCOL_ERROR, "DATA on stream 0")
        size = len(payload)
        # Every DATA frame counts against the connection window, even for a stream we dropped.
        self.recv_unacked += size
        if self.recv_unacked >= RECV_CONNECTION_WINDOW // 2:
            self.write(frame(WINDOW_UPDATE, 0, 0, _U32.pack(self.recv_unacked)))
            self.recv_unacked = 0
        stream = self.streams.get(stream_id)
        if stream is None:
            if stream_id >= self.next_stream_id:
                raise _ProtocolViolation(PROTOCOL_ERROR, f"DATA on idle stream {stream_id}")
            return
        if not stream.status:
            self._reset(stream, PROTOCOL_ERROR)
            self._finish(
                stream, TransportError(PushlineReason.PROTOCOL_ERROR, "DATA before HEADERS")
            )
            return
        if flags & PADDED:
            if not payload or payload[0] >= size:
                raise _ProtocolViolation(PROTOCOL_ERROR, "DATA padding exceeds the payload")
            payload = payload[1 : size - payload[0]]
        if payload:
            stream.body.append(payload)
        if flags & END_STREAM:
            self._complete(stream)
            return
        stream.recv_unacked += size
        if stream.recv_unacked >= RECV_STREAM_WINDOW // 2:
            self.write(frame(WINDOW_UPDATE, 0, stream_id, _U32.pack(stream.recv_unacked)))
            stream.recv_unacked = 0

    def _on_window_update(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise _ProtocolViolation(FRAME_SIZE_ERROR, "WINDOW_UPDATE of the wrong size")
        increment = _U32.unpack(payload)[0] & MAX_WINDOW
        if not stream_id:
            if not increment:
                raise _ProtocolViolation(PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self.send_window += increment
            if self.send_window > MAX_WINDOW:
                raise _ProtocolViolation(FLOW_CONTROL_ERROR, "connection window overflow")
            self._send_blocked()
            return
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        if not increment:
            self._reset(stream, PROTOCOL_ERROR)
            self._finish(
                stream, TransportError(PushlineReason.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            )
            return
        stream.send_window += increment
        if stream.send_window > MAX_WINDOW:
            self._reset(stream, FLOW_CONTROL_ERROR)
            self._finish(
                stream, TransportError(PushlineReason.PROTOCOL_ERROR, "stream window overflow")
            )
            return
        if stream.pending is not None:
            self._send_blocked()

    def _on_settings(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id:
            raise _ProtocolViolation(PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & ACK:
            if payload:
                raise _ProtocolViolation(FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            return
        if len(payload) % 6:
            raise _ProtocolViolation(FRAME_SIZE_ERROR, "SETTINGS of the wrong size")
        more_streams = False
        for offset in range(0, len(payload), 6):
            key, value = _SETTING.unpack_from(payload, offset)
            if key == SETTINGS_MAX_CONCURRENT_STREAMS:
                more_streams = value > self.max_concurrent
                self.max_concurrent = value
            elif key == SETTINGS_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise _ProtocolViolation(FLOW_CONTROL_ERROR, "initial window too large")
                delta = value - self.peer_initial_window
                self.peer_initial_window = value
                for stream in self.streams.values():
                    stream.send_window += delta
                    if stream.send_window > MAX_WINDOW:
                        raise _ProtocolViolation(FLOW_CONTROL_ERROR, "stream window overflow")
            elif key == SETTINGS_MAX_FRAME_SIZE:
                if not DEFAULT_FRAME_SIZE <= value <= 16_777_215:
                    raise _ProtocolViolation(PROTOCOL_ERROR, f"max frame size {value}")
                self.peer_max_frame = value
            elif key == SETTINGS_HEADER_TABLE_SIZE:
                self.encoder.set_peer_limit(value)
            elif key == SETTINGS_ENABLE_PUSH and value > 1:
                raise _ProtocolViolation(PROTOCOL_ERROR, "ENABLE_PUSH above 1")
            # MAX_HEADER_LIST_SIZE is advisory; our header lists are tiny. Unknown keys: ignored.
        self.write(frame(SETTINGS, ACK, 0))
        if not self.ready.done():
            self.ready.set_result(None)
            more_streams = True
        self._send_blocked()
        if more_streams:
            self.pool.wake()

    def _on_rst_stream(self, stream_id: int, payload: bytes) -> None:
        if not stream_id:
            raise _ProtocolViolation(PROTOCOL_ERROR, "RST_STREAM on stream 0")
        if len(payload) != 4:
            raise _ProtocolViolation(FRAME_SIZE_ERROR, "RST_STREAM of the wrong size")
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        code = _U32.unpack(payload)[0]
        if code == REFUSED_STREAM:
            self._finish(stream, _Retry(f"stream {stream_id} refused (REFUSED_STREAM)"))
        else:
            self._finish(
                stream,
                TransportError(
                    PushlineReason.PROTOCOL_ERROR,
                    f"stream reset by the server ({_error_name(code)})",
                ),
            )

    def _on_goaway(self, stream_id: int, payload: bytes) -> None:
        if stream_id or len(payload) < 8:
            raise _ProtocolViolation(PROTOCOL_ERROR, "malformed GOAWAY")
        last, code = _GOAWAY.unpack_from(payload)
        last &= MAX_STREAM_ID
        self.draining = True
        self.last_stream_id = min(self.last_stream_id, last)
        debug = payload[8:200].decode("utf-8", "replace")
        for stream in [s for sid, s in self.streams.items() if sid > last]:
            self._finish(stream, _Retry(f"GOAWAY ({_error_name(code)}) {debug}".strip()))
        if not self.streams:
            self.close()
        if code != NO_ERROR:
            # The server is shutting down because of an error: what it still processes is its
            # business, but a stream it does not finish must be reported when it closes.
            self.error = TransportError(
                PushlineReason.CONNECTION_ERROR,
                f"GOAWAY {_error_name(code)} {debug}".strip(),
            )
        self.pool.connection_draining()

    # --- frames out ----------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        self.out.append(data)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.flush_scheduled = False
        if self.out and self.transport is not None:
            data = b"".join(self.out)
            self.out.clear()
            self.transport.write(data)
        else:
            self.out.clear()

    def start(self, stream: _Stream, method: str, authority: str, scheme: str, path: str,
              headers: Sequence[tuple[str, str]], body: bytes, reserved: bool) -> bool:  # fmt: skip
        """Open a stream and send the request (as far as flow control allows). False when the
        connection can no longer take it."""
        if reserved:
            self.reserved -= 1
        if self.closed or self.draining:
            return False
        stream_id = self.next_stream_id
        self.next_stream_id += 2
        if self.next_stream_id > self.max_stream_id:
            self.draining = True  # the last id of this connection: later requests open a new one
            self.pool.connection_draining()
        stream.stream_id = stream_id
        stream.send_window = self.peer_initial_window
        self.streams[stream_id] = stream
        # A list, not a generator: the compiled encoder would resume an interpreted frame per field.
        block = self.encoder.encode(
            [(":method", method), (":scheme", scheme), (":authority", authority),
             (":path", path), *headers]
        )  # fmt: skip
        end = 0 if body else END_STREAM
        max_frame = self.peer_max_frame
        if len(block) <= max_frame:
            self.write(frame(HEADERS, END_HEADERS | end, stream_id, block))
        else:
            parts = [frame(HEADERS, end, stream_id, block[:max_frame])]
            for offset in range(max_frame, len(block), max_frame):
                last = offset + max_frame >= len(block)
                parts.append(
                    frame(
                        CONTINUATION,
                        END_HEADERS if last else 0,
                        stream_id,
                        block[offset : offset + max_frame],
                    )
                )
            self.write(b"".join(parts))
        if body:
            size = len(body)
            if (
                size <= self.send_window
                and size <= stream.send_window
                and size <= max_frame
                and not self.blocked
            ):
                self.send_window -= size
                stream.send_window -= size
                self.write(frame(DATA, END_STREAM, stream_id, body))
            else:
                stream.pending = memoryview(body)
                self.blocked.append(stream)
                self._send_blocked()
        return True

    def _send_blocked(self) -> None:
        """Send pending request bodies as far as the windows allow, in FIFO order."""
        blocked = self.blocked
        rounds = len(blocked)
        while blocked and rounds and self.send_window > 0:
            rounds -= 1
            stream = blocked[0]
            pending = stream.pending
            if pending is None or stream.stream_id not in self.streams:
                blocked.popleft()
                stream.pending = None
                continue
            while pending and self.send_window > 0 and stream.send_window > 0:
                size = min(len(pending), self.send_window, stream.send_window, self.peer_max_frame)
                chunk = pending[:size]
                pending = pending[size:]
                self.send_window -= size
                stream.send_window -= size
                self.write(
                    frame(DATA, 0 if pending else END_STREAM, stream.stream_id, bytes(chunk))
                )
            blocked.popleft()
            if pending:
                stream.pending = pending
                blocked.append(stream)  # its own window is shut: let the others go first
            else:
                stream.pending = None

    def _reset(self, stream: _Stream, code: int) -> None:
        if not self.closed:
            self.write(frame(RST_STREAM, 0, stream.stream_id, _U32.pack(code)))

    def cancel(self, stream: _Stream) -> None:
        """The caller gave up (timeout or cancellation): RST_STREAM CANCEL, forget the stream."""
        if self.streams.get(stream.stream_id) is stream:
            self._reset(stream, CANCEL)
            self._forget(stream)

    # --- stream completion ---------------------------------------------------------------------

    def _complete(self, stream: _Stream) -> None:
        body = stream.body
        response = TransportResponse(
            stream.status,
            stream.headers,
            body[0] if len(body) == 1 else b"".join(body),
        )
        if stream.pending is not None:
            # The server answered before reading our whole body: stop sending it (RFC 9113 8.1).
            self._reset(stream, NO_ERROR)
        self._forget(stream)
        if not stream.future.done():
            stream.future.set_result(response)

    def _finish(self, stream: _Stream, error: BaseException) -> None:
        self._forget(stream)
        if not stream.future.done():
            stream.future.set_exception(error)

    def _forget(self, stream: _Stream) -> None:
        if self.streams.pop(stream.stream_id, None) is not None:
            stream.pending = None
            if self.draining:
                if not self.streams:
                    self.close()  # GOAWAY or ids exhausted, and everything answered
            else:
                self.pool.stream_closed()

    def expire(self, now: float) -> None:
        for stream in [s for s in self.streams.values() if s.deadline <= now]:
            self._reset(stream, CANCEL)
            self._finish(
                stream,
                TransportError(PushlineReason.TIMEOUT, "no HTTP/2 response within the timeout"),
            )

    def _connection_error(self, code: int, message: str) -> None:
        if self.transport is not None:
            self.write(frame(GOAWAY, 0, 0, _GOAWAY.pack(0, code) + message.encode()[:200]))
        self.close()
        self._shutdown(
            TransportError(
                PushlineReason.PROTOCOL_ERROR,
                f"HTTP/2 connection error {_error_name(code)}: {message}",
            )
        )

    def close(self) -> None:
        if self.transport is not None:
            self.flush()
            self.transport.close()
        self.draining = True

    def ping(self) -> None:
        self.ping_outstanding = True
        self.write(frame(PING, 0, 0, b"pushline"))


class _ProtocolViolation(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Pool:
    """The connections of one origin and the requests waiting for a free stream."""

    def __init__(self, owner: H2Transport, scheme: str, host: str, port: int) -> None:
        self.owner = owner
        self.loop = asyncio.get_running_loop()
        self.scheme = scheme
        self.host = host
        self.port = port
        self.authority = host if port == (443 if scheme == "https" else 80) else f"{host}:{port}"
        self.connections: list[_Connection] = []
        self.connecting = 0
        # (waiter, connection it should avoid: the one that just refused its stream)
        self.waiters: deque[tuple[asyncio.Future[_Connection], _Connection | None]] = deque()

    def pick(self, avoid: _Connection | None = None) -> _Connection | None:
        """The least busy connection with a free stream (not ``avoid`` unless it is all there is
        and no other may be opened)."""
        best: _Connection | None = None
        best_free = 0
        for conn in self.connections:
            free = conn.capacity()
            if free > best_free and conn is not avoid:
                best, best_free = conn, free
        if (
            best is None
            and avoid is not None
            and avoid.capacity() > 0
            and len(self.connections) >= self.owner.pool_size
        ):
            return avoid
        return best

    async def acquire(self, deadline: float, avoid: _Connection | None) -> _Connection:
        """Wait (FIFO) for a connection with a free stream; the stream is reserved for us."""
        if self.owner.closed:
            raise TransportError(PushlineReason.CONNECTION_ERROR, "transport is closed")
        waiter: asyncio.Future[_Connection] = self.loop.create_future()
        entry = (waiter, avoid)
        self.waiters.append(entry)
        self.wake()
        taken = False
        try:
            async with asyncio.timeout_at(deadline):
                conn = await waiter
                taken = True
                return conn
        except TimeoutError:
            raise TransportError(
                PushlineReason.TIMEOUT, "no HTTP/2 stream available within the timeout"
            ) from None
        finally:
            if not waiter.done():
                waiter.cancel()
            elif not taken and not waiter.cancelled() and waiter.exception() is None:
                # woken, then timed out or cancelled before running: give the stream back
                waiter.result().reserved -= 1
                self.wake()
            if not taken:  # (a taken entry was popped by wake(); remove() would format its repr)
                with contextlib.suppress(ValueError):
                    self.waiters.remove(entry)

    def wake(self) -> None:
        """Hand free streams to waiters in order; open a connection when all are full."""
        waiters = self.waiters
        while waiters:
            waiter, avoid = waiters[0]
            if waiter.done():  # timed out or cancelled
                waiters.popleft()
                continue
            conn = self.pick(avoid)
            if conn is None:
                # One connect at a time: a connection brings up to max_concurrent streams.
                if (
                    not self.connecting
                    and len(self.connections) < self.owner.pool_size
                    and not self.owner.closed
                ):
                    self.open()
                return
            conn.reserved += 1
            waiters.popleft()
            waiter.set_result(conn)

    def open(self) -> None:
        self.connecting += 1
        self.owner.spawn(self._connect())

    async def _connect(self) -> None:
        try:
            conn = await self._establish()
        except TransportError as error:
            self.connecting -= 1
            self._connect_failed(error)
            return
        except BaseException:
            self.connecting -= 1
            raise
        self.connecting -= 1
        if conn.closed or self.owner.closed:
            conn.close()
            self._connect_failed(
                conn.error or TransportError(PushlineReason.CONNECTION_ERROR, "transport closed")
            )
            return
        self.connections.append(conn)
        self.owner.ensure_sweeper()
        self.wake()

    async def _establish(self) -> _Connection:
        conn: _Connection | None = None
        try:
            async with asyncio.timeout(self.owner.connect_timeout):
                ssl_context = self.owner.ssl_context if self.scheme == "https" else None
                _, conn = await self.loop.create_connection(
                    lambda: _Connection(self),
                    self.host,
                    self.port,
                    ssl=ssl_context,
                    server_hostname=self.host if ssl_context is not None else None,
                )
                if ssl_context is not None:
                    ssl_object = (
                        conn.transport.get_extra_info("ssl_object") if conn.transport else None
                    )
                    if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
                        raise TransportError(
                            PushlineReason.PROTOCOL_ERROR,
                            f"{self.host}:{self.port} did not negotiate HTTP/2 (ALPN h2)",
                        )
                await conn.ready
                return conn
        # (one name per exception type: compiled, a name bound by ``except ... as`` has one type)
        except _ConnectionFailed as failed:
            raise failed.error from None
        except TimeoutError:
            if conn is not None:
                conn.close()
            raise TransportError(
                PushlineReason.TIMEOUT, f"connect to {self.host}:{self.port} timed out"
            ) from None
        except (OSError, ssl.SSLError, TransportError) as exc:
            if conn is not None:
                conn.close()
            raise map_transport_error(exc) from exc

    def _connect_failed(self, error: TransportError) -> None:
        # With no other connection the waiters would wait for nothing: fail them. Otherwise they
        # wait for a stream on the connections that work.
        if self.connecting or any(not c.draining for c in self.connections):
            return
        waiters, self.waiters = self.waiters, deque()
        for waiter, _ in waiters:
            if not waiter.done():
                waiter.set_exception(TransportError(error.reason, str(error)))

    def stream_closed(self) -> None:
        if self.waiters:
            self.wake()

    def connection_draining(self) -> None:
        if self.waiters:
            self.wake()

    def connection_closed(self, conn: _Connection) -> None:
        if conn in self.connections:
            self.connections.remove(conn)
        if self.waiters:
            self.wake()


class H2Transport:
    """The :class:`Transport` of the dispatcher: HTTP/2 over TLS (ALPN h2) on asyncio.

    ``pool_size`` connections per origin at most (one is usually fastest on one core; more help when
    the server's stream limit is the bottleneck). ``ping_interval``: when set, a connection that
    received nothing for that long is PINGed, and closed if the next interval passes silently too.
    ``indexed_names``: request headers whose values are kept in the HPACK dynamic table.
    ``http://`` URLs use HTTP/2 over cleartext with prior knowledge (local testing only).
    """

    def __init__(
        self,
        *,
        ca_file: str | Path | None = None,
        ssl_context: ssl.SSLContext | None = None,
        pool_size: int = 2,
        connect_timeout: float = 10.0,
        ping_interval: float | None = None,
        indexed_names: Iterable[str] = DEFAULT_INDEXED_NAMES,
        max_stream_id: int = MAX_STREAM_ID,
    ) -> None:
        if pool_size < 1:
            raise ConfigError(f"pool_size must be at least 1, got {pool_size}")
        if ping_interval is not None and ping_interval <= 0:
            raise ConfigError(f"ping_interval must be positive, got {ping_interval}")
        self.ssl_context = ssl_context or make_ssl_context(ca_file)
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self.ping_interval = ping_interval
        self.indexed_names = frozenset(indexed_names)
        self.max_stream_id = max_stream_id
        self.closed = False
        self.tasks: set[asyncio.Task[None]] = set()
        self._pools: dict[str, _Pool] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._last_ping_check = 0.0

    def _pool(self, url: str) -> tuple[_Pool, str]:
        # Fast split: "https://host:port/path..." -> origin, path. URLs of one provider share the
        # origin, so the pool lookup is one dict hit.
        slash = url.find("/", 8)
        origin, path = (url, "/") if slash < 0 else (url[:slash], url[slash:])
        pool = self._pools.get(origin)
        if pool is None:
            scheme, sep, netloc = origin.partition("://")
            if not sep or scheme not in ("https", "http") or not netloc:
                raise TransportError(PushlineReason.PROTOCOL_ERROR, f"unsupported URL {url!r}")
            host, _, port_text = netloc.rpartition(":") if "]" not in netloc[-1:] else ("", "", "")
            if not host or not port_text.isdigit():
                host, port = netloc, 443 if scheme == "https" else 80
            else:
                port = int(port_text)
            pool = self._pools[origin] = _Pool(self, scheme, host.strip("[]"), port)
        return pool, path

    def request(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        timeout: float,
    ) -> Coroutine[Any, Any, TransportResponse]:
        # A plain function returning the coroutine: one coroutine frame less per request.
        return self._exchange(method, url, headers, body, timeout, None)

    async def _exchange(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        timeout: float,
        refused_on: _Connection | None,
    ) -> TransportResponse:
        """The request, re-sent once (on another connection) if the server did not process it;
        ``refused_on``: it was already sent once, there, and not processed."""
        if self.closed:
            raise TransportError(PushlineReason.CONNECTION_ERROR, "transport is closed")
        pool, path = self._pool(url)
        loop = pool.loop
        deadline = loop.time() + timeout
        retried = refused_on is not None
        avoid = refused_on
        while True:
            reserved = False
            conn = None if pool.waiters else pool.pick(avoid)
            if conn is None:
                conn = await pool.acquire(deadline, avoid)
                reserved = True
            future: asyncio.Future[TransportResponse] = loop.create_future()
            stream = _Stream(conn, future, deadline)
            if not conn.start(stream, method, pool.authority, pool.scheme, path, headers, body,
                              reserved):  # fmt: skip
                continue  # it closed between the wake-up and now: wait for another
            try:
                return await future
            except _Retry as exc:
                if retried:
                    raise TransportError(
                        PushlineReason.CONNECTION_ERROR, f"not processed, twice: {exc}"
                    ) from None
                retried = True
                avoid = conn
            except asyncio.CancelledError:
                conn.cancel(stream)
                raise

    def try_start(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        timeout: float,
        on_done: OnDone,
    ) -> bool:
        """:meth:`request` without a coroutine when a connection has a free stream now (see
        :class:`~dispatcher._transport.StartingTransport`); False when it would have to wait."""
        if self.closed:
            return False
        pool, path = self._pool(url)
        if pool.waiters:  # they were first
            return False
        conn = pool.pick(None)
        if conn is None:
            return False
        deadline = pool.loop.time() + timeout
        done = _Callback(self, on_done, conn, (method, url, headers, body, deadline))
        stream = _Stream(conn, done, deadline)
        return conn.start(stream, method, pool.authority, pool.scheme, path, headers, body, False)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task of this transport (kept referenced until it is done)."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # --- timers --------------------------------------------------------------------------------

    def ensure_sweeper(self) -> None:
        if self._sweeper is None and not self.closed:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_later(_SWEEP_INTERVAL, self._sweep)

    def _sweep(self) -> None:
        """Expire overdue streams (a coarse timer: cheaper than one timer per request) and PING
        idle connections."""
        self._sweeper = None
        if self.closed:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        ping = self.ping_interval
        any_conn = False
        for pool in self._pools.values():
            for conn in list(pool.connections):
                any_conn = True
                if conn.streams:
                    conn.expire(now)
                if ping is not None and now - conn.last_activity >= ping:
                    if conn.ping_outstanding:
                        conn.error = TransportError(
                            PushlineReason.CONNECTION_ERROR, "no answer to PING: connection dead"
                        )
                        conn.close()
                    else:
                        conn.ping()
                        conn.last_activity = now
        if any_conn:
            self._sweeper = loop.call_later(_SWEEP_INTERVAL, self._sweep)

    async def aclose(self) -> None:
        self.closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            for waiter, _ in pool.waiters:
                if not waiter.done():
                    waiter.set_exception(
                        TransportError(PushlineReason.CONNECTION_ERROR, "transport is closed")
                    )
            pool.waiters.clear()
            for conn in list(pool.connections):
                if conn.transport is not None:
                    conn.write(frame(GOAWAY, 0, 0, _GOAWAY.pack(0, NO_ERROR)))  # no pushed streams
                conn.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.sleep(0)
