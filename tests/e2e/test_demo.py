"""`pushline demo`: the whole pipeline from one command, every notification accounted for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pushline.stack import StackHandle

pytestmark = pytest.mark.e2e


def _processes_with(marker: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker.encode() in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_demo_accounts_for_every_notification_and_leaves_no_process(stack: StackHandle) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pushline",
            "demo",
            "--notifications",
            "300",
            "--receipt-deadline",
            "5",
            "--json",
        ],
        env={**os.environ, **stack.env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout)
    assert summary["requested"] == 300
    assert summary["unaccounted"] == 0
    assert sum(summary["statuses"].values()) == 300
    # the fleet has silent devices, dead tokens and fallbacks: each shows up
    assert summary["statuses"].get("DELIVERED", 0) + summary["statuses"].get("OPENED", 0) > 200
    assert summary["invalid_tokens"] > 0
    assert summary["fallbacks_sent"] > 0
    assert _processes_with(f"PUSHLINE_TOPIC_PREFIX={summary['topic_prefix']}") == []
