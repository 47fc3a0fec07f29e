"""How busy each CPU was during a bench run: /proc/stat read, and shares of a window from samples."""

from __future__ import annotations

import os
import sys

import pytest

from pushline.bench._outcomes import Collected
from pushline.bench._stats import _CLOCK_TICKS, cpu_busy_seconds, parse_proc_stat

PROC_STAT = """\
cpu  900 10 300 5000 40 5 7 3 0 0
cpu0 600 10 200 1000 30 5 5 2 0 0
cpu1 300 0 100 4000 10 0 2 1 0 0
intr 12345 0 0
ctxt 999
btime 1700000000
"""


def test_busy_is_every_state_but_idle_and_iowait_per_cpu_without_the_total_line() -> None:
    busy = parse_proc_stat(PROC_STAT)
    assert busy == {
        0: (600 + 10 + 200 + 5 + 5 + 2) / _CLOCK_TICKS,
        1: (300 + 0 + 100 + 0 + 2 + 1) / _CLOCK_TICKS,
    }


def test_an_old_kernel_line_without_steal_still_counts() -> None:
    assert parse_proc_stat("cpu3 10 0 10 50 0 1 1\n") == {3: 22 / _CLOCK_TICKS}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/stat is Linux's")
def test_this_machine_has_a_busy_count_for_every_cpu_it_lets_us_use() -> None:
    busy = cpu_busy_seconds()
    assert busy is not None
    assert set(os.sched_getaffinity(0)) <= set(busy)


def test_shares_of_a_window_interpolate_between_samples() -> None:
    collected = Collected()
    # CPU 0 busy all the time, CPU 1 a quarter of it; samples 500 ms apart
    collected.busy_samples = [(t, {0: t / 1000, 1: t / 4000}) for t in (0.0, 500.0, 1000.0)]
    shares = collected.busy_between(250.0, 750.0)
    assert shares == pytest.approx({0: 1.0, 1: 0.25})


def test_no_share_without_two_samples_or_on_a_window_the_ticks_cannot_resolve() -> None:
    collected = Collected()
    collected.busy_samples = [(0.0, {0: 0.0})]
    assert collected.busy_between(0.0, 1000.0) is None
    collected.busy_samples.append((1000.0, {0: 1.0}))
    assert collected.busy_between(0.0, 50.0) is None
    assert collected.busy_between(0.0, 1000.0) == {0: 1.0}
