"""RegistryServer lifecycle: binding, url, start/stop, isolation between instances."""

from __future__ import annotations

import socket

import httpx
import pytest

from pushline.emulators import RegistryServer, create_registry_app
from pushline.errors import StackError

SCHEMA = '{"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]}'


def test_port_zero_binds_a_free_port_and_serves_until_stopped() -> None:
    server = RegistryServer()
    server.start()
    try:
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert httpx.get(f"{server.url}/subjects").json() == []
    finally:
        server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/subjects")
    server.stop()  # a second stop is harmless


def test_the_context_manager_starts_and_stops() -> None:
    with RegistryServer() as server:
        url = server.url
        assert httpx.post(f"{url}/subjects/s/versions", json={"schema": SCHEMA}).json() == {"id": 1}
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/subjects")


def test_each_server_has_its_own_state_unless_given_an_app() -> None:
    shared = create_registry_app()
    with (
        RegistryServer() as one,
        RegistryServer() as two,
        RegistryServer(app=shared) as three,
        RegistryServer(app=shared) as four,
    ):
        httpx.post(f"{one.url}/subjects/s/versions", json={"schema": SCHEMA})
        httpx.post(f"{three.url}/subjects/t/versions", json={"schema": SCHEMA})
        assert httpx.get(f"{one.url}/subjects").json() == ["s"]
        assert httpx.get(f"{two.url}/subjects").json() == []
        assert httpx.get(f"{four.url}/subjects").json() == ["t"]
        three.reset()
        assert httpx.get(f"{four.url}/subjects").json() == []


def test_a_taken_port_is_a_stack_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StackError, match="cannot bind"):
            RegistryServer(port=port).start()


def test_url_before_start_and_double_start_are_errors() -> None:
    server = RegistryServer()
    with pytest.raises(StackError, match="not started"):
        _ = server.url
    with server, pytest.raises(StackError, match="already started"):
        server.start()
