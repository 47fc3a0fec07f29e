"""H2Transport against a strict h2-library server (tests/h2server.py): one test per behaviour on
the checklist in dispatcher/_h2transport.py. Every test also asserts the server saw no protocol
violation (``server.errors == []``)."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import h2.errors
import h2.events
import h2.settings
import pytest
from hyperframe.frame import HeadersFrame

from dispatcher._h2transport import H2Transport, frame
from dispatcher._results import PushlineReason
from dispatcher._transport import TransportError
from pushline.emulators._tls import TlsMaterial, generate_tls
from tests.h2server import H2TestServer, Received, ServerConnection, echo

S = h2.settings.SettingCodes
HEADERS = [("authorization", "bearer " + "j" * 180), ("apns-topic", "com.example.app")]


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return generate_tls(tmp_path_factory.mktemp("h2tls"))


@pytest.fixture
def make_server(tls: TlsMaterial) -> Iterator[Callable[..., H2TestServer]]:
    def make(**kwargs: Any) -> H2TestServer:
        return H2TestServer(tls.cert_file, tls.key_file, **kwargs)

    yield make


def run(
    tls: TlsMaterial,
    server: H2TestServer,
    body: Callable[[H2Transport, str], Awaitable[Any]],
    **transport_kwargs: Any,
) -> Any:
    async def main() -> Any:
        async with server:
            transport = H2Transport(ca_file=tls.ca_file, **transport_kwargs)
            try:
                return await body(transport, server.url)
            finally:
                await transport.aclose()

    return asyncio.run(main())


async def post(
    transport: H2Transport,
    url: str,
    body: bytes = b"{}",
    headers: list[tuple[str, str]] | None = None,
    timeout: float = 5.0,
) -> Any:
    return await transport.request("POST", url + "/3/device/x", headers or HEADERS, body, timeout)


# --- connection setup ----------------------------------------------------------------------------


def test_preface_settings_and_ack(tls: TlsMaterial, make_server: Any) -> None:
    # The server sends its SETTINGS late and allows one stream: requests wait for them and then
    # never run two at a time.
    server = make_server(settings={S.MAX_CONCURRENT_STREAMS: 1}, settings_delay=0.3)

    async def body(t: H2Transport, url: str) -> Any:
        return await asyncio.gather(*(post(t, url) for _ in range(5)))

    responses = run(tls, server, body, pool_size=1)
    assert [r.status for r in responses] == [200] * 5
    assert server.errors == []
    conn = server.connections[0]
    assert conn.max_open == 1
    assert conn.settings_acked() >= 1  # the client acknowledged the server's SETTINGS
    remote = server.events(h2.events.RemoteSettingsChanged)[0].changed_settings
    assert remote[S.ENABLE_PUSH].new_value == 0
    assert remote[S.INITIAL_WINDOW_SIZE].new_value == 1 << 20


def test_alpn_required(tls: TlsMaterial, make_server: Any) -> None:
    server = make_server(alpn=("http/1.1",))

    async def body(t: H2Transport, url: str) -> Any:
        with pytest.raises(TransportError) as info:
            await post(t, url)
        return info.value

    error = run(tls, server, body)
    assert error.reason == PushlineReason.PROTOCOL_ERROR
    assert "ALPN" in str(error)


def test_tls_untrusted(tls: TlsMaterial, make_server: Any, tmp_path: Path) -> None:
    other = generate_tls(tmp_path / "other")
    server = make_server()

    async def main() -> TransportError:
        async with server:
            transport = H2Transport(ca_file=other.ca_file)
            try:
                with pytest.raises(TransportError) as info:
                    await post(transport, server.url)
                return info.value
            finally:
                await transport.aclose()

    assert asyncio.run(main()).reason == PushlineReason.TLS_ERROR


def test_connect_refused() -> None:
    async def main() -> TransportError:
        transport = H2Transport()
        try:
            with pytest.raises(TransportError) as info:
                await transport.request("POST", "https://127.0.0.1:1/x", [], b"", 2.0)
            return info.value
        finally:
            await transport.aclose()

    assert asyncio.run(main()).reason == PushlineReason.CONNECTION_ERROR


# --- streams and settings ------------------------------------------------------------------------


def slow(delay: float) -> Callable[[ServerConnection, Received], Awaitable[None]]:
    async def handler(conn: ServerConnection, req: Received) -> None:
        await asyncio.sleep(delay)
        await echo(conn, req)

    return handler


def test_max_concurrent_streams_queues(tls: TlsMaterial, make_server: Any) -> None:
    server = make_server(settings={S.MAX_CONCURRENT_STREAMS: 3}, handler=slow(0.01))

    async def body(t: H2Transport, url: str) -> Any:
        return await asyncio.gather(*(post(t, url) for _ in range(30)))

    responses = run(tls, server, body, pool_size=1)
    assert [r.status for r in responses] == [200] * 30
    assert server.errors == []
    assert len(server.connections) == 1
    assert server.connections[0].max_open == 3


def test_max_concurrent_streams_changes_mid_connection(tls: TlsMaterial, make_server: Any) -> None:
    server = make_server(settings={S.MAX_CONCURRENT_STREAMS: 10}, handler=slow(0.01))

    async def body(t: H2Transport, url: str) -> Any:
        await asyncio.gather(*(post(t, url) for _ in range(20)))
        conn = server.connections[0]
        assert conn.max_open == 10
        conn.update_settings({S.MAX_CONCURRENT_STREAMS: 2})
        acked = conn.settings_acked()
        await post(t, url)  # the client processed (and acknowledged) the new limit first
        assert conn.settings_acked() > acked
        conn.max_open = 0
        await asyncio.gather(*(post(t, url) for _ in range(20)))
        lowered = conn.max_open
        conn.update_settings({S.MAX_CONCURRENT_STREAMS: 50})
        await post(t, url)
        conn.max_open = 0
        await asyncio.gather(*(post(t, url) for _ in range(40)))
        return lowered, conn.max_open

    lowered, raised = run(tls, server, body, pool_size=1)
    # h2 refuses (and records) any stream beyond an acknowledged limit
    assert server.errors == []
    assert lowered == 2
    assert raised > 10
    assert len(server.connections) == 1


def test_large_body_small_windows(tls: TlsMaterial, make_server: Any) -> None:
    # Stream windows of 1000 bytes, the default 65,535-byte connection window, acknowledgements
    # that take a while: the client must block and resume on WINDOW_UPDATE, and split DATA.
    server = make_server(settings={S.INITIAL_WINDOW_SIZE: 1000}, ack_delay=0.002)
    bodies = [bytes([i]) * (100_000 + i) for i in range(5)]

    async def body(t: H2Transport, url: str) -> Any:
        return await asyncio.gather(*(post(t, url, b, timeout=20) for b in bodies))

    responses = run(tls, server, body, pool_size=1)
    assert [r.header("x-body-length") for r in responses] == [str(len(b)) for b in bodies]
    assert sorted(r.body for r in server.requests) == sorted(bodies)
    assert server.errors == []  # h2 raises FlowControlError / FrameTooLargeError otherwise


def test_body_split_to_max_frame_size(tls: TlsMaterial, make_server: Any) -> None:
    server = make_server(settings={S.INITIAL_WINDOW_SIZE: 1 << 20})
    payload = b"x" * 100_000

    async def body(t: H2Transport, url: str) -> Any:
        return await post(t, url, payload)

    assert run(tls, server, body).header("x-body-length") == "100000"
    data = server.events(h2.events.DataReceived)
    assert max(len(e.data) for e in data) == 16_384
    assert server.errors == []


def test_initial_window_size_change(tls: TlsMaterial, make_server: Any) -> None:
    server = make_server(settings={S.INITIAL_WINDOW_SIZE: 3000}, ack_delay=0.01)
    bodies = [bytes([65 + i]) * 20_000 for i in range(4)]

    async def body(t: H2Transport, url: str) -> Any:
        sends = [asyncio.ensure_future(post(t, url, b, timeout=20)) for b in bodies]
        await asyncio.sleep(0.05)
        conn = server.connections[0]
        conn.update_settings({S.INITIAL_WINDOW_SIZE: 100})  # windows may go negative
        await asyncio.sleep(0.1)
        conn.update_settings({S.INITIAL_WINDOW_SIZE: 200_000})
        return await asyncio.gather(*sends)

    responses = run(tls, server, body, pool_size=1)
    assert [r.status for r in responses] == [200] * 4
    assert sorted(r.body for r in server.requests) == sorted(bodies)
    assert server.errors == []


def test_large_response_body_receive_window(tls: TlsMaterial, make_server: Any) -> None:
    # 5 MB per response > our 1 MB stream window, 4 of them > our 16 MB connection window: the
    # server blocks unless we send WINDOW_UPDATE for what we consumed.
    big = bytes(range(256)) * (5 * 4096)

    async def handler(conn: ServerConnection, req: Received) -> None:
        await conn.respond(req.stream_id, 200, [], big)

    server = make_server(handler=handler)

    async def body(t: H2Transport, url: str) -> Any:
        return await asyncio.gather(*(post(t, url, timeout=30) for _ in range(4)))

    responses = run(tls, server, body, pool_size=1)
    assert all(r.body == big for r in responses)
    assert server.errors == []


def test_large_request_headers_continuation(tls: TlsMaterial, make_server: Any) -> None:
    server = make_server()
    headers = [*HEADERS, ("x-big", "v" * 40_000)]

    async def body(t: H2Transport, url: str) -> Any:
        return await post(t, url, headers=headers)

    assert run(tls, server, body).status == 200
    assert server.requests[0].header("x-big") == "v" * 40_000
    assert server.errors == []


# --- frames from the server ----------------------------------------------------------------------


def test_ping_answered(tls: TlsMaterial, make_server: Any) -> None:
    async def handler(conn: ServerConnection, req: Received) -> None:
        conn.h2.ping(b"pingpong")
        conn.flush()
        await asyncio.sleep(0.05)
        await echo(conn, req)

    server = make_server(handler=handler)

    async def body(t: H2Transport, url: str) -> Any:
        return await post(t, url)

    assert run(tls, server, body).status == 200
    acks = server.events(h2.events.PingAckReceived)
    assert [a.ping_data for a in acks] == [b"pingpong"]


def test_idle_ping(tls: TlsMaterial, make_server: Any) -> None:
    server = make_server()

    async def body(t: H2Transport, url: str) -> Any:
        await post(t, url)
        await asyncio.sleep(0.4)
        pings = len(server.events(h2.events.PingReceived))
        server.connections[0].black_hole = True  # stops answering anything, PINGs included
        started = time.monotonic()
        with pytest.raises(TransportError) as info:
            await post(t, url, timeout=10)
        return pings, info.value, time.monotonic() - started

    pings, error, elapsed = run(tls, server, body, ping_interval=0.1)
    assert pings >= 1
    assert error.reason == PushlineReason.CONNECTION_ERROR
    assert elapsed < 2


def test_goaway_mid_flight(tls: TlsMaterial, make_server: Any) -> None:
    # First connection: once 10 requests are in, GOAWAY(last_stream_id=9); streams 1..9 are
    # answered there, 11..19 must come again, once, on a new connection.
    held: list[Received] = []
    ready = asyncio.Event()

    async def handler(conn: ServerConnection, req: Received) -> None:
        if conn.index > 0:
            await echo(conn, req)
            return
        held.append(req)
        if len(held) == 10:
            ready.set()
        await ready.wait()
        if req.stream_id == 1:
            conn.goaway(9, debug=b'{"reason":"Shutdown"}')
        await asyncio.sleep(0.01)
        if req.stream_id <= 9:
            await echo(conn, req)

    server = make_server(handler=handler)

    async def body(t: H2Transport, url: str) -> Any:
        return await asyncio.gather(*(post(t, url, str(i).encode()) for i in range(10)))

    responses = run(tls, server, body, pool_size=1)
    assert [r.status for r in responses] == [200] * 10
    assert server.errors == []
    first = sorted(r.stream_id for r in server.requests if r.conn == 0)
    assert first == list(range(1, 20, 2))
    again = sorted(r.body for r in server.requests if r.conn == 1)
    above = sorted(r.body for r in server.requests if r.conn == 0 and r.stream_id > 9)
    assert again == above and len(again) == 5  # exactly the unprocessed ones, exactly once


def test_retry_only_once(tls: TlsMaterial, make_server: Any) -> None:
    async def handler(conn: ServerConnection, req: Received) -> None:
        conn.reset(req.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)

    server = make_server(handler=handler)

    async def body(t: H2Transport, url: str) -> Any:
        with pytest.raises(TransportError) as info:
            await post(t, url)
        return info.value

    error = run(tls, server, body)
    assert error.reason == PushlineReason.CONNECTION_ERROR
    assert len(server.requests) == 2


def test_rst_stream_refused_and_other(tls: TlsMaterial, make_server: Any) -> None:
    async def handler(conn: ServerConnection, req: Received) -> None:
        if req.body == b"refuse" and conn.index == 0:
            conn.reset(req.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
        elif req.body == b"fail":
            conn.reset(req.stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
        else:
            await echo(conn, req)

    server = make_server(handler=handler)

    async def body(t: H2Transport, url: str) -> Any:
        ok = await post(t, url, b"refuse")
        with pytest.raises(TransportError) as info:
            await post(t, url, b"fail")
        return ok, info.value

    ok, error = run(tls, server, body, pool_size=2)
    assert ok.status == 200
    refused = [r.conn for r in server.requests if r.body == b"refuse"]
    assert refused == [0, 1]  # retried on another connection
    assert error.reason == PushlineReason.PROTOCOL_ERROR
    assert "INTERNAL_ERROR" in str(error)
    assert [r.body for r in server.requests].count(b"fail") == 1  # not retried


def test_response_continuation(tls: TlsMaterial, make_server: Any) -> None:
    async def handler(conn: ServerConnection, req: Received) -> None:
        await conn.respond(req.stream_id, 200, [("x-big", "w" * 40_000)], b"ok")

    server = make_server(handler=handler)

    async def body(t: H2Transport, url: str) -> Any:
        return await asyncio.gather(post(t, url), post(t, url))

    for response in run(tls, server, body):
        assert response.header("x-big") == "w" * 40_000
        assert response.body == b"ok"


def test_padding_and_priority(tls: TlsMaterial, make_server: Any) -> None:
    async def handler(conn: ServerConnection, req: Received) -> None:
        if req.body == b"padded-headers":
            # a padded HEADERS frame by hand (static table only: h2's HPACK state is untouched)
            headers = HeadersFrame(
                req.stream_id, data=b"\x88", pad_length=20, depends_on=0, stream_weight=200
            )
            headers.flags.add("PADDED")
            headers.flags.add("PRIORITY")
            headers.flags.add("END_HEADERS")
            headers.flags.add("END_STREAM")
            conn.write_raw(headers.serialize())
        else:
            await conn.respond(req.stream_id, 200, [], b"padded body", pad_length=30)

    server = make_server(handler=handler)

    async def body(t: H2Transport, url: str) -> Any:
        return await post(t, url), await post(t, url, b"padded-headers")

    data, headers_only = run(tls, server, body)
    assert (data.status, data.body) == (200, b"padded body")
    assert (headers_only.status, headers_only.body) == (200, b"")


def test_trailers(tls: TlsMaterial, make_server: Any) -> None:
    async def handler(conn: ServerConnection, req: Received) -> None:
        await conn.respond(
            req.stream_id,
            200,
            [("x-a", "1")],
            b"abc",
            trailers=[("x-trailer", "t")],
            informational=[(":status", "103"), ("link", "</x>")],
        )

    server = make_server(handler=handler)

    async def body(t: H2Transport, url: str) -> Any:
        return await post(t, url)

    response = run(tls, server, body)
    assert (response.status, response.body) == (200, b"abc")
    assert response.headers == [("x-a", "1")]
    assert server.errors == []


def test_unknown_frame_ignored(tls: TlsMaterial, make_server: Any) -> None:
    async def handler(conn: ServerConnection, req: Received) -> None:
        conn.write_raw(frame(0xFA, 0xFF, 0, b"whatever") + frame(0xFB, 0, req.stream_id, b"x"))
        await echo(conn, req)

    server = make_server(handler=handler)

    async def body(t: H2Transport, url: str) -> Any:
        return [await post(t, url) for _ in range(3)]

    assert [r.status for r in run(tls, server, body)] == [200] * 3
    assert len(server.connections) == 1


def test_stream_id_exhaustion(tls: TlsMaterial, make_server: Any) -> None:
    server = make_server()

    async def body(t: H2Transport, url: str) -> Any:
        return [await post(t, url) for _ in range(10)]

    responses = run(tls, server, body, max_stream_id=7, pool_size=1)
    assert [r.status for r in responses] == [200] * 10
    assert len(server.connections) == 3  # ids 1,3,5,7 per connection
    assert max(r.stream_id for r in server.requests) == 7
    assert server.errors == []


# --- failures ------------------------------------------------------------------------------------


def test_connection_lost_fails_in_flight(tls: TlsMaterial, make_server: Any) -> None:
    async def handler(conn: ServerConnection, req: Received) -> None:
        if conn.index == 0:
            if len(server.requests) == 3:
                conn.abort()
            return
        await echo(conn, req)

    server = make_server(handler=handler)

    async def body(t: H2Transport, url: str) -> Any:
        results = await asyncio.gather(*(post(t, url) for _ in range(3)), return_exceptions=True)
        return results, await post(t, url)

    results, after = run(tls, server, body, pool_size=1)
    assert all(isinstance(r, TransportError) for r in results)
    assert {r.reason for r in results} == {PushlineReason.CONNECTION_ERROR}
    assert len([r for r in server.requests if r.conn == 0]) == 3  # not re-sent: maybe processed
    assert after.status == 200


def test_protocol_error_fails_in_flight(tls: TlsMaterial, make_server: Any) -> None:
    async def handler(conn: ServerConnection, req: Received) -> None:
        if conn.index == 0:
            if len(server.requests) == 2:
                conn.write_raw(frame(0x0, 0, 0, b"DATA on stream 0 is a connection error"))
            return
        await echo(conn, req)

    server = make_server(handler=handler)

    async def body(t: H2Transport, url: str) -> Any:
        results = await asyncio.gather(*(post(t, url) for _ in range(2)), return_exceptions=True)
        await asyncio.sleep(0.05)
        return results, await post(t, url)

    results, after = run(tls, server, body, pool_size=1)
    assert {r.reason for r in results} == {PushlineReason.PROTOCOL_ERROR}
    goaway = server.terminations[0]
    assert goaway.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
    assert after.status == 200


def test_timeout_sends_rst_cancel(tls: TlsMaterial, make_server: Any) -> None:
    async def handler(conn: ServerConnection, req: Received) -> None:
        if req.body != b"hang":
            await echo(conn, req)

    server = make_server(handler=handler)

    async def body(t: H2Transport, url: str) -> Any:
        started = time.monotonic()
        with pytest.raises(TransportError) as info:
            await post(t, url, b"hang", timeout=0.2)
        elapsed = time.monotonic() - started
        task = asyncio.ensure_future(post(t, url, b"hang"))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.05)
        return info.value, elapsed, await post(t, url)

    error, elapsed, after = run(tls, server, body, pool_size=1)
    assert error.reason == PushlineReason.TIMEOUT
    assert 0.2 <= elapsed < 0.5
    resets = server.events(h2.events.StreamReset)
    assert [r.error_code for r in resets] == [h2.errors.ErrorCodes.CANCEL] * 2
    assert after.status == 200
    assert len(server.connections) == 1


def test_header_table_size_setting(tls: TlsMaterial, make_server: Any) -> None:
    # The server shrinks its HPACK table mid-connection and the JWT changes: every request must
    # still decode to exactly the headers sent.
    server = make_server()

    def headers(token: str, i: int) -> list[tuple[str, str]]:
        return [
            ("authorization", f"bearer {token}"),
            ("apns-topic", "com.example.app"),
            ("apns-push-type", "alert"),
            ("apns-id", f"id-{i}"),
        ]

    sent: list[list[tuple[str, str]]] = []

    async def body(t: H2Transport, url: str) -> Any:
        for i in range(5):
            sent.append(headers("a" * 300, i))
            await post(t, url, headers=sent[-1])
        server.connections[0].update_settings({S.HEADER_TABLE_SIZE: 200})
        for i in range(5, 10):
            sent.append(headers("b" * 300 if i > 6 else "a" * 300, i))
            await post(t, url, headers=sent[-1])
        server.connections[0].update_settings({S.HEADER_TABLE_SIZE: 0})
        for i in range(10, 13):
            sent.append(headers("c" * 100, i))
            await post(t, url, headers=sent[-1])

    run(tls, server, body, pool_size=1)
    assert server.errors == []
    received = [[h for h in r.headers if not h[0].startswith(":")] for r in server.requests]
    assert received == sent


def test_closed_transport_refuses(tls: TlsMaterial) -> None:
    async def main() -> None:
        transport = H2Transport(ca_file=tls.ca_file)
        await transport.aclose()
        with pytest.raises(TransportError):
            await transport.request("POST", "https://127.0.0.1:1/x", [], b"", 1.0)

    asyncio.run(main())


def test_many_concurrent_requests_one_connection(tls: TlsMaterial, make_server: Any) -> None:
    server = make_server(settings={S.MAX_CONCURRENT_STREAMS: 100})

    async def body(t: H2Transport, url: str) -> Any:
        return await asyncio.gather(
            *(post(t, url, str(i).encode(), headers=[*HEADERS, ("apns-id", str(i))])
              for i in range(1000))
        )  # fmt: skip

    responses = run(tls, server, body, pool_size=2)
    assert [r.status for r in responses] == [200] * 1000
    assert sorted(r.body for r in server.requests) == sorted(str(i).encode() for i in range(1000))
    assert all(r.header("apns-id") == r.body.decode() for r in server.requests)
    assert server.errors == []
    assert ssl.HAS_ALPN


# --- try_start: the dispatcher's path without a coroutine ----------------------------------------


def started(
    t: H2Transport, url: str, body: bytes = b"{}", timeout: float = 5.0
) -> asyncio.Future[Any] | None:
    """``try_start`` of a POST; the future gets what ``on_done`` was called with (once: a second
    call would raise InvalidStateError inside the connection and fail the test)."""
    answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    if not t.try_start("POST", url + "/3/device/x", HEADERS, body, timeout, answer.set_result):
        return None
    return answer


def test_try_start_needs_an_open_connection_then_answers(
    tls: TlsMaterial, make_server: Any
) -> None:
    server = make_server()

    async def body(t: H2Transport, url: str) -> Any:
        before = started(t, url, b"first")  # no connection yet: it would have to wait
        await post(t, url)  # opens one
        answers = [started(t, url, str(i).encode()) for i in range(3)]
        assert all(a is not None for a in answers)
        return before, [await a for a in answers if a is not None]

    before, answers = run(tls, server, body, pool_size=1)
    assert before is None
    assert [a.status for a in answers] == [200] * 3
    assert sorted(r.body for r in server.requests) == [b"0", b"1", b"2", b"{}"]  # not "first"
    assert server.errors == []


def test_try_start_errors_reach_the_callback(tls: TlsMaterial, make_server: Any) -> None:
    async def handler(conn: ServerConnection, req: Received) -> None:
        if req.body == b"fail":
            conn.reset(req.stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
        elif req.body != b"hang":
            await echo(conn, req)

    server = make_server(handler=handler)

    async def body(t: H2Transport, url: str) -> Any:
        await post(t, url)
        hang, fail = started(t, url, b"hang", timeout=0.2), started(t, url, b"fail")
        assert hang is not None and fail is not None
        return await hang, await fail

    timed_out, failed = run(tls, server, body, pool_size=1)
    assert isinstance(timed_out, TransportError)
    assert timed_out.reason == PushlineReason.TIMEOUT
    assert isinstance(failed, TransportError)
    assert failed.reason == PushlineReason.PROTOCOL_ERROR


def test_try_start_refused_stream_sent_again_once(tls: TlsMaterial, make_server: Any) -> None:
    async def handler(conn: ServerConnection, req: Received) -> None:
        if req.body.startswith(b"refuse") and (conn.index == 0 or req.body == b"refuse-always"):
            conn.reset(req.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
        else:
            await echo(conn, req)

    server = make_server(handler=handler)

    async def body(t: H2Transport, url: str) -> Any:
        await post(t, url, b"open")
        once, always = started(t, url, b"refuse-once"), started(t, url, b"refuse-always")
        assert once is not None and always is not None
        return await once, await always

    once, always = run(tls, server, body, pool_size=2)
    assert once.status == 200  # re-sent on another connection, answered there
    assert [r.conn for r in server.requests if r.body == b"refuse-once"] == [0, 1]
    assert isinstance(always, TransportError)  # refused twice: as request() would raise
    assert always.reason == PushlineReason.CONNECTION_ERROR
    assert [r.body for r in server.requests].count(b"refuse-always") == 2


def test_try_start_on_a_closed_transport(tls: TlsMaterial) -> None:
    async def main() -> bool:
        transport = H2Transport(ca_file=tls.ca_file)
        await transport.aclose()
        return transport.try_start("POST", "https://127.0.0.1:1/x", HEADERS, b"", 1.0, print)

    assert asyncio.run(main()) is False
