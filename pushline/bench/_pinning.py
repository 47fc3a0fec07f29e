"""``pushline bench dispatcher --pin``: which CPU each process of a bench run may use.

Why: the issue asks for the throughput of "one dispatcher process, on one core". Unpinned, the
broker, the emulator, the bench (its producer and outcome reader) and the dispatcher share every CPU
of the machine, so a dispatcher's CPU figures are noisy and "one core" is not what is measured.
Pinned, dispatcher process i runs alone on one of the highest-numbered usable CPUs and everything
else on the remaining ones; the client baselines and h2load then run on the first dispatcher's CPU,
so they get the same one core it had.

Linux only (``os.sched_setaffinity``). Setting the affinity of pid 0 sets that of the calling thread;
threads and processes started later by it inherit it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection, Iterator
from dataclasses import dataclass

from pushline.errors import ValidationError

__all__ = ["CpuPlan", "cpu_names", "pin_to", "pinned", "plan_cpus", "usable_cpus"]


@dataclass(frozen=True)
class CpuPlan:
    """Where the processes of a pinned bench run go."""

    dispatchers: tuple[int, ...]
    """Dispatcher process i runs on CPU ``dispatchers[i]`` (the highest-numbered first)."""
    others: tuple[int, ...]
    """Everything else: the bench process, the stack it starts, its outcome reader."""

    @property
    def baselines(self) -> int:
        """The CPU of the client baselines and h2load: the first dispatcher's."""
        return self.dispatchers[0]


def cpu_names(cpus: Collection[int]) -> str:
    """``CPU 1``, ``CPUs 3, 2``: in the given order."""
    return f"CPU{'s' if len(cpus) > 1 else ''} {', '.join(map(str, cpus))}"


def usable_cpus() -> list[int]:
    """The CPUs this thread may run on, sorted; empty where the OS cannot tell (not Linux)."""
    if not hasattr(os, "sched_getaffinity") or not hasattr(os, "sched_setaffinity"):
        return []
    return sorted(os.sched_getaffinity(0))


def plan_cpus(cpus: Collection[int], processes: int) -> CpuPlan:
    """One CPU of its own per dispatcher process, from the top of ``cpus``; the rest for the others.

    Raises the ValidationError of ``--pin`` when there are fewer than ``processes`` + 1 CPUs.
    """
    ordered = sorted(cpus)
    if len(ordered) < processes + 1:
        count = f"there {'is' if len(ordered) == 1 else 'are'} {len(ordered)}"
        if not ordered:
            count = "this system does not support CPU affinity (Linux only)"
        raise ValidationError(
            "--pin",
            f"needs at least {processes + 1} usable CPUs (one per dispatcher process, "
            f"--processes {processes}, and one for the broker, emulator and bench); {count}",
        )
    split = len(ordered) - processes
    return CpuPlan(dispatchers=tuple(reversed(ordered[split:])), others=tuple(ordered[:split]))


@contextlib.contextmanager
def pinned(cpus: Collection[int]) -> Iterator[None]:
    """The calling thread (and what it starts meanwhile) on ``cpus``; its affinity is restored after."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def pin_to(cpu: int) -> None:
    """The calling thread on ``cpu`` only; in a child's ``preexec_fn`` (one thread between fork and
    exec), the whole child process and everything it starts."""
    os.sched_setaffinity(0, {cpu})
