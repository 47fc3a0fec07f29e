"""Small measurement helpers: percentiles, process CPU time from /proc, machine facts."""

from __future__ import annotations

import itertools
import math
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "cpu_busy_seconds",
    "cpu_seconds",
    "interpolate",
    "machine_info",
    "parse_proc_stat",
    "percentile",
]

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q`` quantile (0 < q <= 1) of ``values``; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` (all its threads) from ``/proc/<pid>/stat``.

    Linux only: None where /proc is missing or the process is gone. Resolution is one clock tick
    (usually 10 ms), which is why the benchmark measures over thousands of notifications.
    """
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself contain spaces or ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / _CLOCK_TICKS


def parse_proc_stat(text: str) -> dict[int, float]:
    """Busy seconds of each CPU since boot from ``/proc/stat`` text: every state but idle and
    iowait (user, nice, system, irq, softirq, steal; guest time is within user)."""
    busy: dict[int, float] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu":
            continue
        ticks = [int(field) for field in rest.split()]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (ticks + [0] * 8)[:8]
        busy[int(name[3:])] = (user + nice + system + irq + softirq + steal) / _CLOCK_TICKS
    return busy


def cpu_busy_seconds() -> dict[int, float] | None:
    """:func:`parse_proc_stat` of this machine; None where /proc/stat is missing (not Linux)."""
    try:
        return parse_proc_stat(Path("/proc/stat").read_text())
    except OSError:
        return None


def interpolate(samples: Sequence[tuple[float, float]], at: float) -> float:
    """The value at time ``at`` of a series of (time, value) samples sorted by time, by linear
    interpolation (clamped to the first and last sample)."""
    if not samples:
        raise ValueError("no samples")
    if at <= samples[0][0]:
        return samples[0][1]
    for (t0, v0), (t1, v1) in itertools.pairwise(samples):
        if t0 <= at <= t1:
            return v0 if t1 == t0 else v0 + (v1 - v0) * (at - t0) / (t1 - t0)
    return samples[-1][1]


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def machine_info() -> dict[str, Any]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
