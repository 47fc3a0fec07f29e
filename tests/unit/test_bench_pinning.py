"""``pushline bench dispatcher --pin``: the CPU plan, its validation, and pinning a thread or a child."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable

import pytest

from pushline.bench import BenchOptions
from pushline.bench._fleet import _child_setup
from pushline.bench._pinning import CpuPlan, pinned, plan_cpus, usable_cpus
from pushline.errors import ValidationError

_CPUS = usable_cpus()
needs_two_cpus = pytest.mark.skipif(
    len(_CPUS) < 2,
    reason=f"pinning to one CPU of several needs 2 usable CPUs, there are {len(_CPUS)}",
)


def test_one_dispatcher_gets_the_highest_cpu_and_the_rest_get_the_others() -> None:
    plan = plan_cpus([1, 0], processes=1)
    assert plan == CpuPlan(dispatchers=(1,), others=(0,))
    assert plan.baselines == 1


def test_several_dispatchers_get_one_cpu_each_from_the_top() -> None:
    # An affinity mask need not be contiguous (taskset, cgroups).
    plan = plan_cpus({7, 2, 5, 3, 9}, processes=3)
    assert plan.dispatchers == (9, 7, 5)  # dispatcher i on dispatchers[i]
    assert plan.others == (2, 3)
    assert plan.baselines == 9


@pytest.mark.parametrize(
    ("cpus", "processes", "needed", "there"),
    [
        ([0], 1, 2, "there is 1"),
        ([0, 1], 2, 3, "there are 2"),
        ([0, 1, 2, 3], 4, 5, "there are 4"),
        ([], 1, 2, "does not support CPU affinity"),
    ],
)
def test_too_few_cpus_is_a_validation_error_that_says_how_many_there_are(
    cpus: list[int], processes: int, needed: int, there: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        BenchOptions(pin=True, processes=processes).validate(cpus=cpus)
    assert raised.value.field == "--pin"
    message = str(raised.value)
    assert message.startswith(f"--pin: needs at least {needed} usable CPUs")
    assert f"--processes {processes}" in message
    assert there in message


def test_enough_cpus_validate_and_without_pin_the_cpus_are_not_asked() -> None:
    BenchOptions(pin=True, processes=2).validate(cpus=[0, 1, 2])
    assert BenchOptions(pin=True, processes=2).cpu_plan(cpus=[0, 1, 2]) == CpuPlan((2, 1), (0,))
    BenchOptions(processes=2).validate(cpus=[])
    assert BenchOptions().cpu_plan(cpus=[0, 1]) is None


def _in_a_thread(body: Callable[[], None]) -> None:
    """Run ``body`` in a fresh thread (a broken pin then cannot outlive the test) and re-raise."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            body()
        except BaseException as exc:  # re-raised below
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    if errors:
        raise errors[0]


@needs_two_cpus
def test_pinned_pins_the_calling_thread_and_what_it_starts_then_restores_it() -> None:
    def body() -> None:
        before = os.sched_getaffinity(0)
        target = {max(before)}
        seen: dict[str, set[int]] = {}
        inside = threading.Event()
        done = threading.Event()

        def sibling() -> None:  # started before the pin: keeps its own affinity
            inside.wait(10)
            seen["sibling"] = os.sched_getaffinity(0)
            done.set()

        def child() -> None:  # started inside: inherits the pin
            seen["child"] = os.sched_getaffinity(0)

        other = threading.Thread(target=sibling)
        other.start()
        with pinned(target):
            seen["inside"] = os.sched_getaffinity(0)
            started = threading.Thread(target=child)
            started.start()
            started.join(10)
            inside.set()
            done.wait(10)
        other.join(10)
        assert seen == {"inside": target, "child": target, "sibling": before}
        assert os.sched_getaffinity(0) == before

        with pytest.raises(RuntimeError), pinned(target):
            raise RuntimeError("the bench failed")
        assert os.sched_getaffinity(0) == before

    _in_a_thread(body)


@needs_two_cpus
def test_a_dispatcher_child_is_pinned_to_its_cpu_from_the_start() -> None:
    cpu = min(_CPUS)  # not the top one, so the default (every CPU) cannot pass by chance
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"],
        preexec_fn=_child_setup(cpu),  # what DispatcherFleet passes
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert done.stdout.strip() == f"[{cpu}]"
    unpinned = subprocess.run(
        [sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"],
        preexec_fn=_child_setup(None),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert unpinned.stdout.strip() == str(sorted(os.sched_getaffinity(0)))
