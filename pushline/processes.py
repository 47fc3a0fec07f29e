"""Helpers for the child processes Pushline starts (broker, emulators, components in the demo and
the benchmarks): a free loopback port, a child that dies with its parent, and stopping children."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["die_with_parent", "free_port", "stop_process", "stop_processes"]

_PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (whoever binds it a moment later must retry on a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> None:
    """For ``preexec_fn``: if the parent is killed (even with SIGKILL), the kernel sends this child
    SIGTERM, so nothing outlives the process that started it. Linux only; elsewhere a no-op."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_processes(procs: Sequence[subprocess.Popen[Any]], timeout: float) -> list[int | None]:
    """SIGTERM to every child still running (a clean exit: drain, commit, leave the group), up to
    ``timeout`` seconds in all for them to exit, then SIGKILL to the rest. Their exit codes."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)  # a killed process is gone at once; this only reaps it
    return [proc.returncode for proc in procs]


def stop_process(proc: subprocess.Popen[Any], timeout: float) -> int | None:
    """:func:`stop_processes` for one child."""
    return stop_processes([proc], timeout)[0]
