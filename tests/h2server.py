"""A strict, scriptable HTTP/2 server on the ``h2`` library, for testing H2Transport.

``h2`` validates what the client sends (preface, SETTINGS, flow control, frame sizes, stream
limits, header blocks): any violation is recorded in ``H2TestServer.errors`` and the connection
is closed, so a test asserts ``server.errors == []``. Tests script behaviour with ``handler``
(called once per complete request) and the helpers on :class:`ServerConnection`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import GoAwayFrame

Handler = Callable[["ServerConnection", "Received"], Awaitable[None]]


@dataclass
class Received:
    conn: int
    stream_id: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)


async def echo(conn: ServerConnection, req: Received) -> None:
    await conn.respond(req.stream_id, 200, [("x-body-length", str(len(req.body)))])


@dataclass
class _Stream:
    headers: list[tuple[str, str]]
    body: bytearray = field(default_factory=bytearray)


class ServerConnection(asyncio.Protocol):
    def __init__(self, server: H2TestServer) -> None:
        self.server = server
        self.index = len(server.connections)
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        self.transport: asyncio.Transport | None = None
        self.events: list[Any] = []
        self.streams: dict[int, _Stream] = {}
        self.open_now = 0
        self.max_open = 0
        self.goaway_last: int | None = None
        self.black_hole = False
        self.started = False
        self.early: list[bytes] = []
        self.window = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        server.connections.append(self)

    # --- asyncio ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.server.settings_delay:
            asyncio.get_running_loop().call_later(self.server.settings_delay, self._start)
        else:
            self._start()

    def _start(self) -> None:
        self.h2.initiate_connection()
        if self.server.settings:
            self.h2.update_settings(self.server.settings)
        self.started = True
        self.flush()
        for data in self.early:
            self.data_received(data)
        self.early.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.window.set()
        for task in self.tasks:
            task.cancel()

    def data_received(self, data: bytes) -> None:
        if not self.started:
            self.early.append(data)
            return
        if self.black_hole:
            return
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self.server.errors.append(f"conn {self.index}: {type(exc).__name__}: {exc}")
            self.flush()
            if self.transport is not None:
                self.transport.close()
            return
        for event in events:
            self.events.append(event)
            if isinstance(event, h2.events.RequestReceived):
                sid = event.stream_id
                if self.goaway_last is not None and sid > self.goaway_last:
                    self.server.errors.append(f"conn {self.index}: stream {sid} after GOAWAY")
                self.streams[sid] = _Stream([(str(k), str(v)) for k, v in event.headers])
                self.open_now += 1
                self.max_open = max(self.max_open, self.open_now)
            elif isinstance(event, h2.events.DataReceived):
                self.streams[event.stream_id].body += event.data
                if self.server.ack_delay:
                    asyncio.get_running_loop().call_later(
                        self.server.ack_delay,
                        self._ack,
                        event.flow_controlled_length,
                        event.stream_id,
                    )
                else:
                    self._ack(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                stream = self.streams[event.stream_id]
                req = Received(self.index, event.stream_id, stream.headers, bytes(stream.body))
                self.server.requests.append(req)
                task = asyncio.get_running_loop().create_task(self._handle(req))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            elif isinstance(event, h2.events.StreamReset):
                self._closed(event.stream_id)
            elif isinstance(event, h2.events.WindowUpdated):
                self.window.set()
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.server.terminations.append(event)
        self.flush()

    def _ack(self, size: int, stream_id: int) -> None:
        if self.transport is None:
            return
        try:
            self.h2.acknowledge_received_data(size, stream_id)
        except h2.exceptions.StreamClosedError:
            self.h2.increment_flow_control_window(size)
        self.flush()

    def _closed(self, stream_id: int) -> None:
        if self.streams.pop(stream_id, None) is not None:
            self.open_now -= 1

    async def _handle(self, req: Received) -> None:
        try:
            await self.server.handler(self, req)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            pass
        finally:
            self.flush()

    # --- helpers for handlers ---

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def write_raw(self, data: bytes) -> None:
        self.flush()
        if self.transport is not None:
            self.transport.write(data)

    async def respond(
        self,
        stream_id: int,
        status: int = 200,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        *,
        trailers: list[tuple[str, str]] | None = None,
        informational: list[tuple[str, str]] | None = None,
        pad_length: int | None = None,
    ) -> None:
        if informational is not None:
            self.h2.send_headers(stream_id, informational)
            self.flush()
        end_on_headers = not body and trailers is None
        self.h2.send_headers(
            stream_id,
            [(":status", str(status)), *(headers or [])],
            end_stream=end_on_headers,
        )
        self.flush()
        view = memoryview(body)
        while view:
            window = self.h2.local_flow_control_window(stream_id)
            if window <= 0:
                self.window.clear()
                await self.window.wait()
                if self.transport is None:
                    return
                continue
            limit = self.h2.max_outbound_frame_size - (pad_length + 1 if pad_length else 0)
            chunk = view[: min(window - (pad_length + 1 if pad_length else 0), limit)]
            if not chunk:
                self.window.clear()
                await self.window.wait()
                continue
            view = view[len(chunk) :]
            self.h2.send_data(
                stream_id,
                bytes(chunk),
                end_stream=not view and trailers is None,
                pad_length=pad_length,
            )
            self.flush()
        if trailers is not None:
            self.h2.send_headers(stream_id, trailers, end_stream=True)
        self._closed(stream_id)
        self.flush()

    def goaway(self, last_stream_id: int, error_code: int = 0, debug: bytes = b"") -> None:
        # By hand: h2's close_connection() would refuse to answer the streams still in flight.
        self.goaway_last = last_stream_id
        frame = GoAwayFrame(
            0, last_stream_id=last_stream_id, error_code=error_code, additional_data=debug
        )
        self.write_raw(frame.serialize())

    def reset(self, stream_id: int, code: int) -> None:
        self.h2.reset_stream(stream_id, code)
        self._closed(stream_id)
        self.flush()

    def update_settings(self, settings: dict[int, int]) -> None:
        self.h2.update_settings(settings)
        self.flush()

    def settings_acked(self) -> int:
        return sum(isinstance(e, h2.events.SettingsAcknowledged) for e in self.events)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class H2TestServer:
    """TLS (ALPN ``alpn``) HTTP/2 server on 127.0.0.1; ``url`` after ``start()``."""

    def __init__(
        self,
        cert_file: Path,
        key_file: Path,
        *,
        handler: Handler = echo,
        settings: dict[int, int] | None = None,
        settings_delay: float = 0.0,
        ack_delay: float = 0.0,
        alpn: tuple[str, ...] = ("h2",),
    ) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.handler = handler
        self.settings = settings or {}
        self.settings_delay = settings_delay
        self.ack_delay = ack_delay
        self.alpn = alpn
        self.connections: list[ServerConnection] = []
        self.requests: list[Received] = []
        self.errors: list[str] = []
        self.terminations: list[h2.events.ConnectionTerminated] = []
        self._server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> str:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        context.set_alpn_protocols(list(self.alpn))
        self._server = await asyncio.get_running_loop().create_server(
            lambda: ServerConnection(self), "127.0.0.1", 0, ssl=context
        )
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"https://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        for conn in self.connections:
            conn.abort()
        if self._server is not None:
            self._server.close()

    async def __aenter__(self) -> H2TestServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def events(self, kind: type[Any]) -> list[Any]:
        return [e for c in self.connections for e in c.events if isinstance(e, kind)]
