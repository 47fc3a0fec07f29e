"""``pushline emulate stack``: addresses, READY, and no child left behind."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest
from confluent_kafka.admin import AdminClient

from pushline.stack import spawn_stack, stack_from_env_or_spawn

pytestmark = pytest.mark.integration


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


def _wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_stack_prints_addresses_serves_them_and_stops_children_on_sigterm() -> None:
    handle = spawn_stack()
    try:
        assert handle.process is not None
        host, port = handle.bootstrap_servers.rsplit(":", 1)
        assert host == "127.0.0.1"
        with socket.create_connection((host, int(port)), timeout=5):
            pass
        topics = AdminClient({"bootstrap.servers": handle.bootstrap_servers}).list_topics(
            timeout=10
        )
        assert topics.orig_broker_name
        assert httpx.get(f"{handle.registry_url}/subjects").json() == []
        children = _children(handle.process.pid)
        assert children, "the broker should run as a child process"
    finally:
        handle.close()
    assert handle.process.returncode == 0
    for child in children:
        assert _wait_gone(child), f"child {child} outlived the stack"


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_broker_dies_with_a_killed_stack() -> None:
    handle = spawn_stack()
    assert handle.process is not None
    children = _children(handle.process.pid)
    assert children
    os.kill(handle.process.pid, signal.SIGKILL)
    handle.process.wait(10)
    for child in children:
        assert _wait_gone(child), f"broker {child} survived kill -9 of the stack"


def test_embedded_broker_tuning_is_a_default_the_caller_may_override() -> None:
    # Tansu holds empty fetches for all of fetch.wait.max.ms: the stack sets a short one ...
    with stack_from_env_or_spawn({}) as stack:
        assert stack.env["PUSHLINE_KAFKA_FETCH_WAIT_MAX_MS"] == "10"
    # ... unless the caller chose their own (e.g. to measure the effect in `pushline bench`)
    with stack_from_env_or_spawn({"PUSHLINE_KAFKA_FETCH_WAIT_MAX_MS": "3"}) as stack:
        assert stack.env["PUSHLINE_KAFKA_FETCH_WAIT_MAX_MS"] == "3"
        assert stack.env["KAFKA_BOOTSTRAP_SERVERS"]
