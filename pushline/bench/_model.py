"""What ``pushline bench dispatcher`` is asked to do and what it found (plain data, no I/O)."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from pushline.bench._baselines import BaselineResult
from pushline.bench._pinning import CpuPlan, plan_cpus, usable_cpus
from pushline.errors import ValidationError

__all__ = [
    "PROVIDERS",
    "BenchOptions",
    "BenchResult",
    "DispatcherRun",
    "PacedFigures",
    "Pinning",
    "Say",
    "ScalingFigures",
]

Say = Callable[[str], None]
"""Where the bench reports its progress (the CLI: stderr)."""

PROVIDERS = ("apns", "fcm")
"""The emulators the bench can send to (``--provider``)."""


@dataclass(frozen=True)
class BenchOptions:
    notifications: int = 20_000
    processes: int = 1
    partitions: int | None = None
    """Partitions of the bench topics; default max(6, processes)."""
    timeout_s: float = 600.0
    """Bound on a dispatcher phase (start of the processes to the last outcome)."""
    baseline_requests: int = 20_000
    """At most this many requests per client baseline (and at most N)."""
    baseline_budget_s: float = 20.0
    """A client baseline stops issuing requests after this long."""
    baseline_concurrency: int = 200
    ceiling_requests: int = 100_000
    provider: str = "apns"
    """``apns`` or ``fcm``: which emulator the notifications (and the baselines) go to."""
    rate: float | None = None
    """Paced mode: produce at this many notifications/s while the dispatchers run (None: capacity
    mode, a pre-produced backlog)."""
    baselines: bool = True
    """Run the client baselines and the emulator's ceiling after the dispatchers."""
    scaling: bool = False
    """Capacity with one process first, then with ``processes``, on fresh topics of the same stack."""
    pin: bool = False
    """Each dispatcher process on a CPU of its own, everything else on the other CPUs (``_pinning``)."""
    broker_hop: bool = False
    """Paced mode: also time the broker hop with a consumer of the bench's own (``_hop_probe``), in
    a process of its own; off by default, as it adds a consumer's load to the machine."""

    def validate(self, cpus: Collection[int] | None = None) -> None:
        """Raises ValidationError for the first option that cannot work. ``cpus``: the usable
        CPUs for ``--pin`` (default: this thread's affinity)."""
        if self.notifications < 1:
            raise ValidationError("--notifications", "must be at least 1")
        if self.processes < 1:
            raise ValidationError("--processes", "must be at least 1")
        if self.partitions is not None and self.partitions < self.processes:
            raise ValidationError(
                "--partitions", "must be at least --processes (an idle dispatcher measures nothing)"
            )
        if self.timeout_s <= 0:
            raise ValidationError("--timeout", "must be positive")
        if self.provider not in PROVIDERS:
            raise ValidationError("--provider", f"must be one of {', '.join(PROVIDERS)}")
        if self.rate is not None:
            if not math.isfinite(self.rate) or self.rate <= 0:
                raise ValidationError("--rate", "must be a positive number of notifications/s")
            if self.notifications / self.rate >= self.timeout_s:
                raise ValidationError(
                    "--rate",
                    f"{self.notifications} notifications at {self.rate:g}/s take "
                    f"{self.notifications / self.rate:.0f}s, not less than --timeout "
                    f"({self.timeout_s:g}s)",
                )
        if self.broker_hop and self.rate is None:
            raise ValidationError("--broker-hop", "is part of paced mode: use it with --rate")
        if self.scaling:
            if self.processes < 2:
                raise ValidationError(
                    "--scaling", "needs --processes 2 or more (it compares them with one process)"
                )
            if self.rate is not None:
                raise ValidationError(
                    "--scaling", "measures capacity and cannot be combined with --rate"
                )
        self.cpu_plan(cpus)

    def cpu_plan(self, cpus: Collection[int] | None = None) -> CpuPlan | None:
        """Where the processes go with ``--pin`` (None without it); ``cpus``: as for validate."""
        if not self.pin:
            return None
        return plan_cpus(usable_cpus() if cpus is None else cpus, self.processes)

    @property
    def topic_partitions(self) -> int:
        return self.partitions or max(6, self.processes)

    @property
    def warmup_notifications(self) -> int:
        """Paced mode: notifications sent (and answered) before the measured ones, so every
        dispatcher has opened its connection and, for FCM, fetched its access token. Eight per
        partition on random keys: the chance that a partition gets none is under 1 in 1,000
        (6 partitions), and a process misses out only if all of its partitions do."""
        return 8 * self.topic_partitions


@dataclass(frozen=True)
class PacedFigures:
    """What paced mode adds to a :class:`DispatcherRun` (see ``_paced`` for the definitions)."""

    rate: float
    """Notifications/s asked for (``--rate``)."""
    produced_per_s: float | None
    """Notifications/s the bench's producer achieved (first send to last send)."""
    producer_behind_max_ms: float
    """How far, at worst, a send started after its scheduled time (then it caught up)."""
    added_p50_ms: float | None
    added_p99_ms: float | None
    added_max_ms: float | None
    before_send_p50_ms: float | None
    before_send_p99_ms: float | None
    """``sent_at - requested_at``: the part of the added latency before the provider request
    (producer linger, broker, consumer, the dispatcher's queue)."""
    warmup_notifications: int
    """Sent and answered before the measured ones; in no figure."""
    broker_hop_p50_ms: float | None = None
    broker_hop_p99_ms: float | None = None
    """Kafka timestamp of a measured request -> a bench consumer has it: the producer's linger and
    the broker, without a dispatcher (``_paced.BrokerHopProbe``); None unless ``--broker-hop``."""
    broker_hops: int | None = None
    """How many measured requests the probe saw; None unless ``--broker-hop``."""


@dataclass(frozen=True)
class DispatcherRun:
    """What the dispatcher processes did.

    ``seconds`` and the rates are over the first to the last terminal outcome (several processes
    in capacity mode: from when all had joined). CPU time is over the same window, except in paced
    mode (``paced`` set), where it runs from the first measured request's produce time.
    """

    notifications: int
    outcomes: int
    """Distinct notifications with a terminal outcome (all of them, or the run fails)."""
    outcome_messages: int
    states: dict[str, int]
    attempts: dict[int, int]
    """Final outcomes by the attempt that decided them (above 1: the first send failed)."""
    seconds: float
    total_per_s: float
    per_process_per_s: float
    cpu_seconds: float | None
    cpu_us_per_notification: float | None
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    latency_max_ms: float | None
    """Percentiles of DispatchOutcome.latency_ms (the provider round trip as the dispatcher sees it)."""
    per_s_by_quarter: list[float | None]
    """Total rate over each quarter of the outcomes in time order: shows a run slowing down."""
    emulator_accepted: int | None
    """Pushes the emulator accepted while the dispatchers ran; above N means duplicate sends."""
    exit_codes: list[int | None]
    processes: int = 1
    measured: int = 0
    """Notifications whose outcome falls in the window: the rates and CPU per notification are
    over these. All of them, except in capacity mode with several processes (see ``_capacity``)."""
    paced: PacedFigures | None = None
    not_accepted: dict[str, int] = field(default_factory=dict)
    """Outcomes other than ACCEPTED by ``STATE:reason`` (a benchmark expects none: this says why)."""
    cpu_busy: dict[int, float] | None = None
    """Share of the CPU window each usable CPU of the machine was busy (0..1), whatever ran on it:
    the broker, the emulator and the bench too (Linux; None elsewhere). A CPU near 1 queues what
    runs there, and that queue is then part of every latency figure of the run."""


@dataclass(frozen=True)
class ScalingFigures:
    """``--scaling``: the same capacity run with one process, before the K-process run."""

    single_process: DispatcherRun
    factor: float
    """Total notifications/s of the K processes divided by that of one process."""


@dataclass(frozen=True)
class Pinning:
    """``--pin``: where the processes of the run were."""

    plan: CpuPlan
    on_others: tuple[str, ...]
    """What ran on ``plan.others``: the parts of the stack the bench started, and the bench."""
    not_pinned: tuple[str, ...] = ()
    """Parts of the stack the environment named (started outside the bench): on any CPU."""


@dataclass(frozen=True)
class BenchResult:
    options: BenchOptions
    dispatcher: DispatcherRun
    baselines: dict[str, BaselineResult]
    """Empty with ``--no-baselines``."""
    ceiling: BaselineResult | None
    """The emulator's ceiling (h2load); None with ``--no-baselines``."""
    machine: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0
    scaling: ScalingFigures | None = None
    pinning: Pinning | None = None
    """None without ``--pin``."""
