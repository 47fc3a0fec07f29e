"""Serve an APNs or FCM emulator over HTTP/2 + TLS: a granian listener and a pure-``h2`` listener.

One process per provider. Both listeners share one emulator (same state, same rules):

- ``url`` — granian (RSGI, Rust HTTP/2 + TLS): the fast path, tens of thousands of requests per
  second on one core, so benchmarks measure the client, not the emulator.
- ``h2_url`` — an asyncio server on the ``h2`` library. It is slower, but it owns the HTTP/2
  connection, so it can send GOAWAY after N streams (granian exposes no per-connection control;
  its HTTP/2 stack only sends GOAWAY when the whole server shuts down).

Control endpoints live under ``/_emulator/`` on both listeners (no APNs or FCM path starts with
``/_``). Run as ``python -m pushline.emulators._server <config.json>``; once both listeners accept
connections it writes its URLs as JSON to the config's ``ready_file``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import parse_qs

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import GoAwayFrame

from pushline.emulators._behaviour import Behaviour, Request, Response, json_response, push_view
from pushline.emulators.apns import ApnsConfig, ApnsEmulator
from pushline.emulators.fcm import FcmConfig, FcmEmulator
from pushline.event_loop import run_event_loop
from pushline.processes import die_with_parent

__all__ = ["CONTROL_PREFIX", "ControlRouter", "Emulator", "H2Listener", "RsgiApp", "main"]

CONTROL_PREFIX = "/_emulator/"


class Emulator(Protocol):
    behaviour: Behaviour

    async def handle(self, request: Request) -> Response: ...

    def reset(self) -> None: ...

    def set_token_reason(self, token: str, status: int | None, reason: str) -> None: ...

    def stats(self) -> dict[str, Any]: ...


class ControlRouter:
    """``/_emulator/*``: programs the emulator; every call answers JSON."""

    def __init__(self, emulator: Emulator, info: dict[str, Any]) -> None:
        self.emulator = emulator
        self.info = info

    def handle(self, request: Request) -> Response:
        action = request.path[len(CONTROL_PREFIX) :]
        try:
            params: dict[str, Any] = json.loads(request.body) if request.body else {}
            result = self._dispatch(action, request.method, params, parse_qs(request.query))
        except (ValueError, TypeError, KeyError) as exc:
            return json_response(400, {"error": f"{type(exc).__name__}: {exc}"})
        if result is None:
            return json_response(404, {"error": f"no control action {request.method} {action!r}"})
        return json_response(200, result)

    def _dispatch(
        self, action: str, method: str, params: dict[str, Any], query: dict[str, list[str]]
    ) -> dict[str, Any] | None:
        em = self.emulator
        b = em.behaviour
        if method == "GET":
            if action == "pushes":
                since = int(query.get("since", ["0"])[0])
                return {"pushes": [push_view(p) for p in b.pushes[since:]], "total": len(b.pushes)}
            if action == "stats":
                return em.stats()
            if action == "info":
                return self.info
            return None
        if method != "POST":
            return None
        if action == "reset":
            em.reset()
        elif action == "unregistered":
            tokens = params["tokens"]
            if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
                raise TypeError("tokens must be a list of strings")
            normalise = str.lower if isinstance(em, ApnsEmulator) else str
            b.set_unregistered([normalise(t) for t in tokens], params.get("timestamp_ms"))
        elif action == "rates":
            b.set_rates(
                float(params.get("status_429", 0.0)),
                float(params.get("status_500", 0.0)),
                float(params.get("status_503", 0.0)),
                int(params.get("retry_after", 1)),
                None if params.get("seed") is None else int(params["seed"]),
            )
        elif action == "latency":
            ms = float(params["ms"])
            if ms < 0:
                raise ValueError("latency must be >= 0")
            b.latency_ms = ms
        elif action == "goaway":
            after = params.get("after_streams")
            if after is not None and int(after) < 1:
                raise ValueError("after_streams must be >= 1")
            b.goaway_after = None if after is None else int(after)
            b.goaway_reason = str(params.get("reason", "Shutdown"))
        elif action == "record-limit":
            limit = int(params["limit"])
            if limit < 0:
                raise ValueError("limit must be >= 0")
            b.record_limit = limit
        elif action == "token-reason":
            status = params.get("status")
            em.set_token_reason(
                str(params["token"]), None if status is None else int(status), str(params["reason"])
            )
        elif action == "token-update-window" and isinstance(em, ApnsEmulator):
            em.token_update_window = float(params["seconds"])
        elif action == "expire-access-tokens" and isinstance(em, FcmEmulator):
            em.expire_access_tokens()
        else:
            return None
        return {"ok": True}


Handler = Callable[[Request], Awaitable[Response]]


def make_handler(emulator: Emulator, control: ControlRouter) -> Handler:
    async def handle(request: Request) -> Response:
        if request.path.startswith(CONTROL_PREFIX):
            return control.handle(request)
        return await emulator.handle(request)

    return handle


class RsgiApp:
    """The granian (RSGI) side: turn the scope into a :class:`Request` and answer it."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        body = await protocol()
        request = Request(
            method=scope.method,
            path=scope.path,
            query=scope.query_string,
            headers=tuple(scope.headers.items()),
            body=body,
            connection=scope.client,
        )
        response = await self._handler(request)
        protocol.response_bytes(response.status, list(response.headers), response.body)

    async def __call__(self, scope: Any, protocol: Any) -> None:
        await self.__rsgi__(scope, protocol)


class _H2Connection(asyncio.Protocol):
    """One HTTP/2 server connection that can go away after ``behaviour.goaway_after`` streams."""

    def __init__(self, handler: Handler, behaviour: Behaviour, max_streams: int) -> None:
        self._handler = handler
        self._behaviour = behaviour
        config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        self._conn = h2.connection.H2Connection(config)
        self._max_streams = max_streams
        self._transport: asyncio.Transport | None = None
        self._peer = "?"
        self._headers: dict[int, list[tuple[str, str]]] = {}
        self._bodies: dict[int, bytearray] = {}
        self._streams_seen = 0
        self._last_stream: int | None = None  # set once GOAWAY is sent
        self._open: set[int] = set()
        self._window_open = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Event loops such as uvloop hand over SSL transports that are not asyncio.Transport
        # subclasses but have their interface.
        self._transport = cast(asyncio.Transport, transport)
        peer = self._transport.get_extra_info("peername")
        self._peer = f"h2:{peer[0]}:{peer[1]}" if peer else "h2:?"
        self._conn.initiate_connection()
        self._conn.update_settings(
            {h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self._max_streams}
        )
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        for task in self._tasks:
            task.cancel()
        self._window_open.set()

    def data_received(self, data: bytes) -> None:
        try:
            events = self._conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self._flush()
            if self._transport is not None:
                self._transport.close()
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self._on_request(event.stream_id, event.headers)
            elif isinstance(event, h2.events.DataReceived):
                if event.stream_id in self._bodies:
                    self._bodies[event.stream_id] += event.data
                self._conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self._on_complete(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                self._headers.pop(event.stream_id, None)
                self._bodies.pop(event.stream_id, None)
                self._open.discard(event.stream_id)
            elif isinstance(event, h2.events.WindowUpdated):
                self._window_open.set()
        self._flush()

    def _on_request(self, stream_id: int, headers: Any) -> None:
        if self._last_stream is not None and stream_id > self._last_stream:
            # After GOAWAY: a stream the client opened anyway was not processed; say so.
            self._conn.reset_stream(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        self._headers[stream_id] = [(str(k), str(v)) for k, v in headers]
        self._bodies[stream_id] = bytearray()
        self._open.add(stream_id)
        self._streams_seen += 1
        limit = self._behaviour.goaway_after
        if limit is not None and self._last_stream is None and self._streams_seen >= limit:
            self._send_goaway(stream_id)

    def _send_goaway(self, last_stream_id: int) -> None:
        # h2's close_connection() would refuse to answer the streams still in flight, so the
        # frame is written by hand: streams up to last_stream_id are answered, later ones refused.
        self._last_stream = last_stream_id
        reason = json.dumps({"reason": self._behaviour.goaway_reason}).encode()
        frame = GoAwayFrame(0, last_stream_id=last_stream_id, error_code=0, additional_data=reason)
        self._flush()
        if self._transport is not None:
            self._transport.write(frame.serialize())
        self._behaviour.goaways += 1

    def _on_complete(self, stream_id: int) -> None:
        raw = self._headers.pop(stream_id, None)
        if raw is None:
            return
        body = bytes(self._bodies.pop(stream_id, b""))
        pseudo = {k: v for k, v in raw if k.startswith(":")}
        path, _, query = pseudo.get(":path", "/").partition("?")
        request = Request(
            method=pseudo.get(":method", "GET"),
            path=path,
            query=query,
            headers=tuple((k, v) for k, v in raw if not k.startswith(":")),
            body=body,
            connection=self._peer,
        )
        task = asyncio.get_running_loop().create_task(self._respond(stream_id, request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _respond(self, stream_id: int, request: Request) -> None:
        response = await self._handler(request)
        if self._transport is None or self._transport.is_closing():
            return
        headers = [(":status", str(response.status)), *response.headers]
        headers.append(("content-length", str(len(response.body))))
        try:
            self._conn.send_headers(stream_id, headers, end_stream=not response.body)
            self._flush()
            body = memoryview(response.body)
            while body:
                window = self._conn.local_flow_control_window(stream_id)
                if window <= 0:
                    self._window_open.clear()
                    await self._window_open.wait()
                    if self._transport.is_closing():
                        return
                    continue
                chunk = body[: min(window, self._conn.max_outbound_frame_size)]
                body = body[len(chunk) :]
                self._conn.send_data(stream_id, bytes(chunk), end_stream=not body)
                self._flush()
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            pass
        finally:
            self._open.discard(stream_id)
            self._flush()
            if self._last_stream is not None and not self._open and self._transport is not None:
                self._transport.close()  # every stream before GOAWAY answered: close, as APNs does

    def _flush(self) -> None:
        data = self._conn.data_to_send()
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)


class H2Listener:
    """The asyncio + ``h2`` listener (TLS, ALPN h2 only)."""

    def __init__(self, handler: Handler, behaviour: Behaviour, max_streams: int) -> None:
        self._handler = handler
        self._behaviour = behaviour
        self._max_streams = max_streams
        self._server: asyncio.Server | None = None

    async def start(self, host: str, cert_file: Path, key_file: Path) -> int:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert_file, key_file)
        context.set_alpn_protocols(["h2"])
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _H2Connection(self._handler, self._behaviour, self._max_streams),
            host,
            0,
            ssl=context,
        )
        return int(self._server.sockets[0].getsockname()[1])

    def close(self) -> None:
        if self._server is not None:
            self._server.close()


def build_emulator(config: dict[str, Any]) -> tuple[Emulator, int]:
    """The emulator a config file describes and its SETTINGS_MAX_CONCURRENT_STREAMS."""
    if config["provider"] == "apns":
        return ApnsEmulator(ApnsConfig.from_dict(config["apns"])), 1000  # what APNs advertises
    if config["provider"] == "fcm":
        return FcmEmulator(FcmConfig.from_dict(config["fcm"])), 100  # what Google advertises
    raise ValueError(f"unknown provider {config['provider']!r}")


async def _wait_accepting(host: str, port: int, timeout: float) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
            return True
        await asyncio.sleep(0.02)
    return False


async def serve(config: dict[str, Any]) -> None:
    from granian.constants import HTTPModes, Interfaces, TaskImpl  # noqa: PLC0415 - server-only
    from granian.http import HTTP2Settings  # noqa: PLC0415
    from granian.server.embed import Server  # noqa: PLC0415

    host = str(config.get("host", "127.0.0.1"))
    port = int(config["port"])
    cert_file, key_file = Path(config["cert_file"]), Path(config["key_file"])
    emulator, max_streams = build_emulator(config)
    info: dict[str, Any] = {"provider": config["provider"], "url": f"https://{host}:{port}"}
    control = ControlRouter(emulator, info)
    handler = make_handler(emulator, control)

    h2_listener = H2Listener(handler, emulator.behaviour, max_streams)
    h2_port = await h2_listener.start(host, cert_file, key_file)
    info["h2_url"] = f"https://{host}:{h2_port}"
    if isinstance(emulator, FcmEmulator):  # the token endpoint answers on both listeners
        emulator.token_uris.append(f"{info['h2_url']}/token")

    server = Server(
        RsgiApp(handler),
        address=host,
        port=port,
        interface=Interfaces.RSGI,
        http=HTTPModes.http2,
        websockets=False,
        backlog=1024,
        task_impl=TaskImpl(config.get("task_impl", "asyncio")),
        http2_settings=HTTP2Settings(max_concurrent_streams=max_streams),
        log_level="error",  # type: ignore[arg-type]
        ssl_cert=cert_file,
        ssl_key=key_file,
    )
    serving = asyncio.ensure_future(server.serve())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.stop)
    if not await _wait_accepting(host, port, 10.0) or serving.done():
        server.stop()  # type: ignore[no-untyped-call]
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(serving, 2.0)
        raise SystemExit(f"granian did not start listening on {host}:{port}")
    ready = Path(config["ready_file"])
    ready.with_suffix(".tmp").write_text(json.dumps(info))
    ready.with_suffix(".tmp").replace(ready)  # atomic: the runner never reads half a file
    try:
        await serving
    finally:
        h2_listener.close()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    die_with_parent()
    config = json.loads(Path(args[0]).read_text())
    # uvloop: the emulator must outrun the clients it measures (h2load ceiling +14% over asyncio).
    run_event_loop(serve(config))


if __name__ == "__main__":
    main()
