"""Helpers for the child processes Pushline starts (broker, emulators, components in the demo and
the benchmarks): a free loopback port, and a child that dies with its parent."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import socket

__all__ = ["die_with_parent", "free_port"]

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
