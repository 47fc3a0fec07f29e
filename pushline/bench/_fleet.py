"""The dispatcher processes of a bench run, and what every run shares (stack, emulator, options)."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from producers import NotificationProducer
from pushline.bench._model import BenchOptions, Say
from pushline.bench._pinning import CpuPlan, pin_to
from pushline.bench._stats import cpu_seconds
from pushline.bench._workload import APP_ID
from pushline.config import KafkaConfig, SchemaRegistryConfig, TopicsConfig
from pushline.emulators._control import EmulatorControl
from pushline.errors import StackError
from pushline.processes import die_with_parent, free_port, stop_processes
from pushline.topics import ensure_topics
from schemas import NotificationRequest

__all__ = ["BenchContext", "DispatcherFleet"]

READY_POLL_INTERVAL_S = 0.1


@dataclass(frozen=True)
class BenchContext:
    """What every dispatcher run of one bench invocation shares."""

    options: BenchOptions
    env: Mapping[str, str]
    """The stack's environment: broker, registry, emulators, receipt-token keys."""
    kafka: KafkaConfig
    registry: SchemaRegistryConfig
    control: EmulatorControl
    """The control API of the emulator the notifications go to."""
    say: Say
    cpus: CpuPlan | None = None
    """``--pin``: the dispatchers' CPUs (None: unpinned)."""

    def start_fleet(self, processes: int, topics: TopicsConfig, logdir: Path) -> DispatcherFleet:
        """``processes`` dispatchers on ``topics``; pinned, dispatcher i on its CPU of the plan."""
        cpus = None if self.cpus is None else self.cpus.dispatchers[:processes]
        return DispatcherFleet(processes, self.dispatcher_env(topics), logdir, cpus=cpus)

    def fresh_topics(self) -> TopicsConfig:
        """Topics under a new prefix: a run never sees another run's events."""
        prefix = f"bench-{uuid.uuid4().hex[:8]}."
        topics = TopicsConfig.from_env(
            self.env, prefix=prefix, partitions=self.options.topic_partitions
        )
        ensure_topics(self.kafka, topics)
        self.say(f"topics: {prefix}* with {topics.partitions} partitions")
        return topics

    def produce(self, topics: TopicsConfig, requests: list[NotificationRequest]) -> None:
        """Produce ``requests`` and wait until the broker acknowledged every one."""
        with NotificationProducer(self.kafka, self.registry, topics) as producer:
            for r in requests:
                producer.send(r)

    def emulator_accepted(self) -> int | None:
        accepted = self.control.stats().get("accepted")
        return accepted if isinstance(accepted, int) else None

    def dispatcher_env(self, topics: TopicsConfig) -> dict[str, str]:
        """The environment of ``pushline dispatcher`` for a run on ``topics``."""
        env = {
            k: v
            for k, v in self.env.items()
            if k not in ("PUSHLINE_APPS_FILE", "PUSHLINE_APPS_DIR")
        }
        env.update(
            {
                # The emulators' credentials (APNs and FCM) under our app id; nothing else.
                "PUSHLINE_DEFAULT_APP_ID": APP_ID,
                "PUSHLINE_APP_IDS": "",
                "PUSHLINE_TOPIC_PREFIX": topics.prefix,
                "PUSHLINE_TOPIC_PARTITIONS": str(topics.partitions),
                "PUSHLINE_DISPATCHER_GROUP_ID": f"{topics.prefix}dispatcher",
                "PUSHLINE_OPS_HOST": "127.0.0.1",
                "PUSHLINE_LOG_LEVEL": "WARNING",
            }
        )
        return env


def _child_setup(cpu: int | None) -> Callable[[], None]:
    """The ``preexec_fn`` of a dispatcher: dies with the bench; pinned to ``cpu`` unless None."""
    if cpu is None:
        return die_with_parent

    def setup() -> None:
        die_with_parent()
        pin_to(cpu)

    return setup


class DispatcherFleet:
    """K ``pushline dispatcher`` child processes; never outlive the bench.

    Each gets its own ops port, so :meth:`poll_ready` can ask its ``/readyz`` whether it has had a
    partition assignment (joined the group). With ``cpus``, process i runs on CPU ``cpus[i]`` only
    (set between fork and exec, so it holds for every thread the dispatcher starts).
    """

    def __init__(
        self,
        count: int,
        env: Mapping[str, str],
        logdir: Path,
        cpus: Sequence[int] | None = None,
    ) -> None:
        if cpus is not None and len(cpus) != count:
            raise ValueError(f"{count} dispatchers need {count} CPUs, not {len(cpus)}")
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        self.ops_ports: list[int] = []
        self.all_ready_ms: float | None = None
        """Wall-clock ms when every process had had a partition assignment (see poll_ready)."""
        self._files: list[IO[bytes]] = []
        self._last_ready_poll = 0.0
        for i in range(count):
            log = logdir / f"dispatcher-{i}.log"
            handle = open(log, "wb")  # noqa: SIM115 - closed in stop()
            self._files.append(handle)
            self.logs.append(log)
            port = free_port()
            self.ops_ports.append(port)
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "pushline", "dispatcher"],
                    env={**env, "PUSHLINE_OPS_PORT": str(port)},
                    stdin=subprocess.DEVNULL,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    # only sets the parent-death signal (and the CPU) of the child
                    preexec_fn=_child_setup(None if cpus is None else cpus[i]),  # noqa: PLW1509
                )
            )
        self._unready = set(self.ops_ports)

    def check_alive(self) -> None:
        for proc, log in zip(self.procs, self.logs, strict=True):
            code = proc.poll()
            if code is not None:
                lines = log.read_text(errors="replace").strip().splitlines()
                last = lines[-1] if lines else "no output"
                raise StackError(f"dispatcher {proc.pid} exited early with code {code}: {last}")

    def _ready(self, port: int) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False  # not listening yet, or 503 (HTTPError): no assignment yet

    def poll_ready(self) -> bool:
        """Whether every process has had a partition assignment; asks the ones not known to have
        (at most every 0.1 s) and records in :attr:`all_ready_ms` when the last one got one."""
        if self.all_ready_ms is not None:
            return True
        now = time.monotonic()
        if now - self._last_ready_poll < READY_POLL_INTERVAL_S:
            return False
        self._last_ready_poll = now
        self._unready = {port for port in self._unready if not self._ready(port)}
        if self._unready:
            return False
        self.all_ready_ms = time.time() * 1000
        return True

    def wait_ready(self, deadline: float) -> None:
        """Until every process has a partition assignment; StackError at ``deadline``."""
        while True:
            self.check_alive()
            if self.poll_ready():
                return
            if time.monotonic() > deadline:
                raise StackError(
                    f"{len(self._unready)} of {len(self.procs)} dispatchers had no partition "
                    "assignment before the timeout"
                )
            time.sleep(READY_POLL_INTERVAL_S)

    def cpu(self) -> float | None:
        values = [cpu_seconds(p.pid) for p in self.procs]
        return None if any(v is None for v in values) else sum(v or 0.0 for v in values)

    def stop(self, timeout: float = 40.0) -> list[int | None]:
        """SIGTERM (drain, commit, leave the group), then SIGKILL whatever is left."""
        codes = stop_processes(self.procs, timeout)
        for handle in self._files:
            handle.close()
        return codes
