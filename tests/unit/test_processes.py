"""Stopping the child processes Pushline starts: SIGTERM first, SIGKILL after the timeout."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from pushline.processes import stop_process, stop_processes

# A child that says it is ready, then sleeps; with IGNORE it also ignores SIGTERM.
_CHILD = """
import signal, sys, time
if sys.argv[1] == "IGNORE":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(60)
"""


def _child(mode: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, mode], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    return proc


def test_a_child_that_obeys_sigterm_stops_at_once() -> None:
    proc = _child("OBEY")
    started = time.monotonic()
    assert stop_process(proc, 10) == -signal.SIGTERM
    assert time.monotonic() - started < 5


def test_children_that_ignore_sigterm_are_killed_after_one_shared_timeout() -> None:
    procs = [_child("IGNORE"), _child("IGNORE"), _child("IGNORE"), _child("OBEY")]
    started = time.monotonic()
    codes = stop_processes(procs, 2)
    assert codes == [-signal.SIGKILL, -signal.SIGKILL, -signal.SIGKILL, -signal.SIGTERM]
    assert time.monotonic() - started < 5  # 2 s in all, not 2 s per child (6 s)


def test_a_child_that_already_exited_keeps_its_exit_code() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait(10)
    assert stop_process(proc, 1) == 3
