"""HTTP/2 transport behind a small interface, so a faster implementation can replace httpx.

:class:`Transport` is all the provider clients need: one request in, one response (or one
:class:`TransportError`) out. :func:`map_transport_error` is the one place where httpx, httpcore,
h2, ssl and OS exceptions become Pushline errors.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol, runtime_checkable
from urllib.parse import urlsplit

import h2.exceptions
import httpx

from dispatcher._results import PushlineReason
from pushline.errors import ConfigError, PushlineError

__all__ = [
    "HttpxTransport",
    "OnDone",
    "StartingTransport",
    "Transport",
    "TransportError",
    "TransportResponse",
    "make_ssl_context",
    "map_transport_error",
]


# hpack logs header blocks at DEBUG, and ours carry bearer tokens: keep them out of debug logs
# unless someone configured that logger on purpose.
if logging.getLogger("hpack").level == logging.NOTSET:
    logging.getLogger("hpack").setLevel(logging.INFO)


class TransportError(PushlineError):
    """A request got no HTTP answer. ``reason`` is a :class:`PushlineReason` value (Timeout,
    ConnectionError, TLSError, ProtocolError); the message describes what happened."""

    def __init__(self, reason: PushlineReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class TransportResponse(NamedTuple):
    """One HTTP response (a NamedTuple, like :class:`~dispatcher.SendResult`: one per send)."""

    status: int
    headers: Sequence[tuple[str, str]] = ()
    """Lower-case names, in order."""
    body: bytes = b""

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


@runtime_checkable
class Transport(Protocol):
    """Sends one HTTP/2 request. Implementations pool connections per origin, reconnect after
    GOAWAY or a reset, and raise only :class:`TransportError` for requests without an answer."""

    async def request(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        timeout: float,
    ) -> TransportResponse: ...

    async def aclose(self) -> None: ...


OnDone = Callable[["TransportResponse | TransportError"], None]
"""What :meth:`StartingTransport.try_start` calls with the answer, or the error in its place."""


@runtime_checkable
class StartingTransport(Transport, Protocol):
    """A transport that can also start a request without a coroutine: the dispatcher's fast path
    (no task, no future, no coroutine frames per send; see ``Dispatcher._start_fast``)."""

    def try_start(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        timeout: float,
        on_done: OnDone,
    ) -> bool:
        """Send the request now if that needs no waiting (a connection with a free stream), and
        call ``on_done`` once, later, from the event loop, with the response or the
        :class:`TransportError` that :meth:`request` would raise. False: nothing was sent
        (``on_done`` is never called); use :meth:`request`."""
        ...


def make_ssl_context(ca_file: str | Path | None = None) -> ssl.SSLContext:
    """A verifying client context: the system trust store, or only ``ca_file`` (a private CA)."""
    try:
        context = ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load CA file {ca_file}: {exc}") from exc
    context.set_alpn_protocols(["h2"])
    return context


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def map_transport_error(exc: BaseException) -> TransportError:
    """The one mapping from third-party network exceptions to :class:`TransportError`."""
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, TransportError):
        return exc
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return TransportError(PushlineReason.TIMEOUT, detail)
    if _caused_by(exc, ssl.SSLError) or _caused_by(exc, ssl.CertificateError):
        return TransportError(PushlineReason.TLS_ERROR, detail)
    if isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError | OSError):
        # connect refused, reset, closed, or a stream cut by GOAWAY / REFUSED_STREAM
        return TransportError(PushlineReason.CONNECTION_ERROR, detail)
    if isinstance(exc, httpx.HTTPError | h2.exceptions.H2Error):
        return TransportError(PushlineReason.PROTOCOL_ERROR, detail)
    return TransportError(PushlineReason.PROTOCOL_ERROR, detail)


# The request may not have reached the server, or the server said it did not process it (GOAWAY
# past the stream, REFUSED_STREAM): worth one more try on a fresh connection. A duplicate send is
# harmless for our pushes: the apns-id and collapse id are the notification's own.
_DISCONNECTS = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
_MAPPED = (httpx.HTTPError, h2.exceptions.H2Error, ssl.SSLError, OSError, TimeoutError)
# Errors that say the connection itself is broken (not slow): the slot gets a new client.
_BROKEN = (httpx.ProtocolError, httpx.NetworkError, h2.exceptions.H2Error)
_RETIRED_KEPT = 4


@dataclass
class _Slot:
    client: httpx.AsyncClient
    in_flight: int = 0


@dataclass
class _Origin:
    slots: list[_Slot] = field(default_factory=list)


class HttpxTransport:
    """httpx[http2] transport: per origin, ``pool_size`` clients, each holding one HTTP/2 connection.

    httpcore multiplexes requests on a connection up to the smaller of the server's
    SETTINGS_MAX_CONCURRENT_STREAMS and its own limit (100) and queues the rest, so any number of
    concurrent requests is safe. A request goes to the least busy client of its origin. After GOAWAY
    httpcore retries streams the server did not take on a new connection; a stream cut while
    in flight (or a reset connection) is retried ``disconnect_retries`` times here.
    """

    def __init__(
        self,
        *,
        ca_file: str | Path | None = None,
        pool_size: int = 2,
        connect_timeout: float = 10.0,
        disconnect_retries: int = 1,
    ) -> None:
        if pool_size < 1:
            raise ConfigError(f"pool_size must be at least 1, got {pool_size}")
        self._ssl = make_ssl_context(ca_file)
        self._pool_size = pool_size
        self._connect_timeout = connect_timeout
        self._disconnect_retries = disconnect_retries
        self._origins: dict[str, _Origin] = {}
        self._retired: list[httpx.AsyncClient] = []
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False

    def _new_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            http1=False,
            http2=True,
            verify=self._ssl,
            trust_env=False,  # proxies from the environment must not intercept provider traffic
            # One live HTTP/2 connection per client (httpcore multiplexes on it while it is
            # available); the second allows a fresh connection while one that got GOAWAY drains.
            limits=httpx.Limits(max_connections=2, max_keepalive_connections=1),
        )

    def _slot(self, url: str) -> _Slot:
        if self._closed:
            raise TransportError(PushlineReason.CONNECTION_ERROR, "transport is closed")
        parts = urlsplit(url)
        origin = self._origins.setdefault(f"{parts.scheme}://{parts.netloc}", _Origin())
        if len(origin.slots) < self._pool_size and all(s.in_flight for s in origin.slots):
            origin.slots.append(_Slot(self._new_client()))
        return min(origin.slots, key=lambda s: s.in_flight)

    async def request(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        timeout: float,
    ) -> TransportResponse:
        slot = self._slot(url)
        client = slot.client
        slot.in_flight += 1
        try:
            # The overall deadline also covers waiting for a free stream, which httpx does not time.
            async with asyncio.timeout(timeout):
                return await self._send(client, method, url, headers, body, timeout)
        except _MAPPED as exc:
            if isinstance(exc, _BROKEN) and slot.client is client:
                self._renew(slot)
            raise map_transport_error(exc) from exc
        finally:
            slot.in_flight -= 1

    def _renew(self, slot: _Slot) -> None:
        """Give ``slot`` a fresh client after a connection-level error. httpcore can keep a
        connection that a GOAWAY closed (h2 state CLOSED) and fail every later request on it;
        a new client opens a new connection. The old one is closed once a few newer ones exist
        (its in-flight requests are long answered or failed by then)."""
        self._retired.append(slot.client)
        slot.client = self._new_client()
        while len(self._retired) > _RETIRED_KEPT:
            old = self._retired.pop(0)
            task = asyncio.get_running_loop().create_task(old.aclose())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _send(
        self,
        client: httpx.AsyncClient,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        timeout: float,
    ) -> TransportResponse:
        limits = httpx.Timeout(timeout, connect=min(timeout, self._connect_timeout))
        attempt = 0
        while True:
            try:
                response = await client.request(
                    method, url, headers=list(headers), content=body, timeout=limits
                )
            except _DISCONNECTS:
                if attempt >= self._disconnect_retries:
                    raise
                attempt += 1
                continue
            return TransportResponse(
                response.status_code,
                [
                    (k.decode("latin-1").lower(), v.decode("latin-1"))
                    for k, v in response.headers.raw
                ],
                response.content,
            )

    async def aclose(self) -> None:
        self._closed = True
        origins, self._origins = self._origins, {}
        for origin in origins.values():
            for slot in origin.slots:
                await slot.client.aclose()
        retired, self._retired = self._retired, []
        for client in retired:
            await client.aclose()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
