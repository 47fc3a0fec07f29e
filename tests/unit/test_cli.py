"""The CLI's contract for mistakes: one line on stderr, a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pushline", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


@pytest.mark.parametrize(
    "args",
    [
        ("frobnicate",),
        ("send", "--platform", "APNS"),
        ("send", "--app-id", "a", "--platform", "WINDOWS", "--token", "x"),
        ("topics", "ensure", "--partitions", "many"),
    ],
)
def test_usage_mistakes_are_one_line_exit_2(args: tuple[str, ...]) -> None:
    result = _run(*args)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_invalid_token_is_refused_before_kafka_with_exit_2() -> None:
    # Nothing listens on port 9: the error must come from validation, before any connection.
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
        "SCHEMA_REGISTRY_URL": "http://127.0.0.1:9",
        "PATH": "/usr/bin:/bin",
    }
    result = _run(
        "send",
        "--app-id",
        "shop",
        "--platform",
        "APNS",
        "--token",
        "not-hex",
        "--title",
        "t",
        env=env,
    )
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1
    assert "token" in line
    assert "Traceback" not in result.stderr


def test_missing_bootstrap_servers_is_a_config_error() -> None:
    result = _run("topics", "ensure", env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert "KAFKA_BOOTSTRAP_SERVERS is not set" in result.stderr
    assert "Traceback" not in result.stderr


# Nothing listens on port 9: a bench that got past its argument checks fails with exit code 1
# (or hangs until the test's timeout), never with 2.
_UNREACHABLE_STACK = {
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
    "SCHEMA_REGISTRY_URL": "http://127.0.0.1:9",
    "APNS_URL": "https://127.0.0.1:9",
    "FCM_URL": "https://127.0.0.1:9",
    "PUSHLINE_CA_FILE": "/nonexistent/ca.pem",
    "PATH": "/usr/bin:/bin",
}


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("--rate", "0"), "--rate"),
        (("--rate", "-100"), "--rate"),
        (("--rate", "nan"), "--rate"),
        (("--rate", "lots"), "--rate"),
        (("--notifications", "100000", "--rate", "100", "--timeout", "60"), "--rate"),
        (("--scaling",), "--scaling"),
        (("--scaling", "--processes", "1"), "--scaling"),
        (("--scaling", "--processes", "2", "--rate", "500"), "--scaling"),
        (("--provider", "gcm"), "--provider"),
        (("--broker-hop",), "--broker-hop"),  # paced mode only
        # one process per usable CPU leaves none for the broker, emulator and bench
        (("--pin", "--processes", str(max(1, len(os.sched_getaffinity(0))))), "--pin"),
    ],
)
def test_bad_bench_dispatcher_options_are_one_line_exit_2(
    args: tuple[str, ...], option: str
) -> None:
    result = _run("bench", "dispatcher", *args, env=_UNREACHABLE_STACK)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert option in lines[0]
    assert "Traceback" not in result.stderr
