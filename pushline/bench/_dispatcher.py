"""``pushline bench dispatcher``: notifications from Kafka through ``pushline dispatcher`` to the
APNs (or FCM) emulator and on to push.outcomes, with baselines from the same run.

How it measures (see also the README benchmark section):

1. The stack: ``KAFKA_BOOTSTRAP_SERVERS`` / ``SCHEMA_REGISTRY_URL`` (and ``APNS_URL`` ...) from the
   environment, else ``pushline emulate stack`` in a child process; the APNs and FCM emulators are
   started here when the environment names a broker but no emulator. Every dispatcher run gets
   topics with a fresh prefix, and the target emulator's push record is switched off
   (``record limit 0``) so recording costs nothing.
2. The dispatchers run in one of two modes:
   - **capacity** (the default, ``_capacity``): N notifications are pre-produced, then K
     ``pushline dispatcher`` processes drain them; throughput, CPU µs per notification and
     provider latency (``DispatchOutcome.latency_ms``) over the first to the last outcome.
     End-to-end latency from ``requested_at`` is meaningless for a backlog (it is mostly time
     spent waiting in it), so capacity mode does not report it.
   - **paced** (``--rate R``, ``_paced``): N notifications are produced at R/s while the K
     dispatchers run; the latency the pipeline adds (terminal outcome's Kafka timestamp -
     ``requested_at``), the achieved rate and CPU µs per notification at that load.
   With ``--scaling`` a capacity run with one process comes first, on its own topics, and the
   report gives the K-process total divided by the one-process total.
3. The baselines (``--baselines``, the default; ``_workload``): other clients driven directly
   against the same emulator listener, then its ceiling (h2load), after the dispatchers stopped.
   For APNs: aioapns and httpx[http2]; for FCM: httpx[http2] (aioapns is APNs only).
4. With ``--pin`` (``_pinning``) each dispatcher process runs on a CPU of its own, the bench and the
   stack it starts on the other CPUs, and the baselines on the first dispatcher's CPU.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from pushline.bench._baselines import BaselineResult
from pushline.bench._capacity import run_capacity
from pushline.bench._fleet import BenchContext
from pushline.bench._model import (
    BenchOptions,
    BenchResult,
    DispatcherRun,
    PacedFigures,
    Pinning,
    Say,
    ScalingFigures,
)
from pushline.bench._paced import run_paced
from pushline.bench._pinning import cpu_names, pinned, usable_cpus
from pushline.bench._stats import machine_info
from pushline.bench._workload import emulator_endpoint, run_baselines
from pushline.config import KafkaConfig, SchemaRegistryConfig
from pushline.emulators._control import EmulatorControl
from pushline.errors import StackError
from pushline.stack import stack_from_env_or_spawn
from schemas.receipt_token import generate_receipt_token_keys

__all__ = [
    "BenchOptions",
    "BenchResult",
    "DispatcherRun",
    "PacedFigures",
    "ScalingFigures",
    "run_dispatcher_bench",
]

EMULATOR_DEFAULT_RECORD_LIMIT = 1_000_000  # EmulatorControl.set_record_limit's documented default


@dataclass
class _BenchEnv:
    env: dict[str, str]
    """The stack's environment: broker, registry, APNs and FCM emulators, receipt-token keys."""
    started: list[str] = field(default_factory=list)
    """The parts of the stack this process started (children: they share its CPUs)."""
    outside: list[str] = field(default_factory=list)
    """The parts the environment named (started by someone else)."""


@contextlib.contextmanager
def _bench_env(base: Mapping[str, str], say: Say) -> Iterator[_BenchEnv]:
    """The stack's environment: broker, registry, APNs and FCM emulators, receipt-token keys."""
    with stack_from_env_or_spawn(base) as stack, contextlib.ExitStack() as cleanup:
        bench = _BenchEnv({**base, **stack.env})
        env = bench.env
        say(f"stack: Kafka {stack.bootstrap_servers}, schema registry {stack.registry_url}")
        # What stack_from_env_or_spawn started: all of it without a broker in the environment,
        # else the emulators (and the registry, unless named) unless APNS_URL names them.
        spawned = stack.process is not None
        parts = (
            ("broker", spawned and not base.get("KAFKA_BOOTSTRAP_SERVERS")),
            (
                "schema registry",
                spawned
                and not (base.get("KAFKA_BOOTSTRAP_SERVERS") and base.get("SCHEMA_REGISTRY_URL")),
            ),
            ("emulators", spawned or not env.get("APNS_URL")),
        )
        for name, ours in parts:
            (bench.started if ours else bench.outside).append(name)
        if not env.get("APNS_URL"):
            # An external broker without emulators: start them here, for this run only.
            from pushline.emulators._runner import ProviderEmulators  # noqa: PLC0415

            workdir = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="pushline-bench-"))
            emulators = ProviderEmulators(Path(workdir))
            cleanup.callback(emulators.stop)
            env.update(emulators.start())
        if not env.get("PUSHLINE_RECEIPT_TOKEN_KEYS"):
            env["PUSHLINE_RECEIPT_TOKEN_KEYS"] = generate_receipt_token_keys()
        yield bench


def _measure(ctx: BenchContext) -> tuple[DispatcherRun, ScalingFigures | None]:
    """The dispatcher run(s) the options ask for."""
    options = ctx.options
    if options.rate is not None:
        return run_paced(ctx, options.processes), None
    if not options.scaling:
        return run_capacity(ctx, options.processes), None
    ctx.say("scaling: first one process, then the same with more")
    single = run_capacity(ctx, 1)
    run = run_capacity(ctx, options.processes)
    return run, ScalingFigures(single_process=single, factor=run.total_per_s / single.total_per_s)


def run_dispatcher_bench(
    options: BenchOptions, env: Mapping[str, str] | None = None, say: Say | None = None
) -> BenchResult:
    """Run the whole benchmark; raises PushlineError (one line) when it cannot.

    With ``options.pin`` this thread runs on the CPUs the plan leaves to the bench until the end
    (so does the stack it starts, and every thread it starts), each dispatcher on a CPU of its own,
    and the baselines on the first dispatcher's CPU (see ``_pinning``)."""
    options.validate()
    plan = options.cpu_plan()
    say = say or (lambda line: None)
    started = time.monotonic()
    with pinned(plan.others) if plan is not None else contextlib.nullcontext():
        if plan is not None:
            say(
                f"pinned: dispatcher processes on {cpu_names(plan.dispatchers)}, the bench (and "
                f"the stack it starts) on {cpu_names(plan.others)}"
            )
        with _bench_env(dict(os.environ if env is None else env), say) as bench:
            stack_env = bench.env
            url, ca_file = emulator_endpoint(options.provider, stack_env)
            with EmulatorControl(url, ca_file) as control:
                control.set_record_limit(0)
                try:
                    ctx = BenchContext(
                        options=options,
                        env=stack_env,
                        kafka=KafkaConfig.from_env(stack_env),
                        registry=SchemaRegistryConfig.from_env(stack_env),
                        control=control,
                        say=say,
                        cpus=plan,
                    )
                    run, scaling = _measure(ctx)
                    baselines: dict[str, BaselineResult] = {}
                    ceiling: BaselineResult | None = None
                    if options.baselines:
                        # on the first dispatcher's CPU: the same one core it had
                        with pinned({plan.baselines}) if plan else contextlib.nullcontext():
                            baselines, ceiling = run_baselines(options, stack_env, say)
                finally:
                    with contextlib.suppress(StackError):
                        control.set_record_limit(EMULATOR_DEFAULT_RECORD_LIMIT)
    pinning = (
        None
        if plan is None
        else Pinning(
            plan=plan,
            on_others=(*bench.started, "bench"),
            not_pinned=tuple(bench.outside),
        )
    )
    usable = set(usable_cpus())  # after the pinning ended: the machine's usable CPUs
    if run.cpu_busy is not None and usable:
        # /proc/stat lists every CPU the kernel has: keep those this bench could use
        run = replace(
            run, cpu_busy={cpu: share for cpu, share in run.cpu_busy.items() if cpu in usable}
        )
    return BenchResult(
        options=options,
        dispatcher=run,
        baselines=baselines,
        ceiling=ceiling,
        machine=machine_info(),  # after the pinning ended: the machine's usable CPUs
        elapsed_s=time.monotonic() - started,
        scaling=scaling,
        pinning=pinning,
    )
