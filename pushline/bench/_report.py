"""The benchmark's table and its JSON object: one row per measured thing."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pushline.bench._baselines import BaselineResult
from pushline.bench._dispatcher import BenchResult, DispatcherRun
from pushline.bench._model import BenchOptions, PacedFigures, Pinning
from pushline.bench._pinning import cpu_names

__all__ = ["format_table", "to_json"]

ADDED_LATENCY_DEFINITION = (
    "Kafka timestamp of the terminal outcome (its produce time) - the request's requested_at "
    "(set by the bench as it produced the request); millisecond resolution"
)
SHARED_CORES_NOTE = "broker, emulator, bench and dispatchers share the machine's CPUs"
"""Where the processes ran without ``--pin``; with it, :func:`_pinning_note` says instead."""


def _pinning_note(pinning: Pinning, baselines: bool) -> str:
    """E.g. ``pinned: dispatcher on CPU 1 (then the baselines and h2load); broker, schema registry,
    emulators, bench on CPU 0``."""
    plan = pinning.plan
    one = len(plan.dispatchers) == 1
    note = f"pinned: {'dispatcher' if one else 'dispatchers, one CPU each,'} on "
    note += cpu_names(plan.dispatchers)
    if baselines:
        where = "" if one else f" on CPU {plan.baselines}"
        note += f" (then the baselines and h2load{where})"
    note += f"; {', '.join(pinning.on_others)} on {cpu_names(plan.others)}"
    if pinning.not_pinned:
        note += f"; {', '.join(pinning.not_pinned)} not pinned (started outside the bench)"
    return note


SATURATED = 0.9
"""A CPU busy this share of a run's window or more is saturated: what runs there waits for it."""


def _busy_line(result: BenchResult) -> str | None:
    """Each CPU's busy share over the window; in paced mode a saturated CPU is named (its queue is
    in the latency figures), pinned in capacity mode a saturated CPU of the others (the rate may
    then be theirs). Unpinned capacity runs saturate every CPU by design: nothing is named."""
    run = result.dispatcher
    if not run.cpu_busy:
        return None
    shares = ", ".join(f"CPU {cpu} {share:.0%}" for cpu, share in sorted(run.cpu_busy.items()))
    line = f"CPUs busy over the window (whatever ran on them): {shares}"
    hot = sorted(cpu for cpu, share in run.cpu_busy.items() if share >= SATURATED)
    if run.paced is not None and hot:
        return (
            f"{line}; saturated: {cpu_names(hot)}, so the latency figures include waiting for "
            + ("them" if len(hot) > 1 else "it")
        )
    if run.paced is None and result.pinning is not None:
        others = [cpu for cpu in hot if cpu in result.pinning.plan.others]
        if others:
            return (
                f"{line}; saturated: {cpu_names(others)} of the broker, emulator and bench, so the "
                "rate may be theirs rather than the dispatchers'"
            )
    return line


def _cpus_note(result: BenchResult) -> str:
    """Where the dispatchers, the stack and the bench ran."""
    if result.pinning is None:
        return SHARED_CORES_NOTE
    return _pinning_note(result.pinning, result.options.baselines)


def _pinning_json(result: BenchResult) -> dict[str, Any] | None:
    if result.pinning is None:
        return None
    plan = result.pinning.plan
    return {
        "dispatcher_cpus": list(plan.dispatchers),
        "other_cpus": list(plan.others),
        "on_other_cpus": list(result.pinning.on_others),
        "not_pinned": list(result.pinning.not_pinned),
        "baselines_cpu": plan.baselines if result.options.baselines else None,
        "note": _cpus_note(result),
    }


def _processes(count: int) -> str:
    return f"{count} process{'es' if count > 1 else ''}"


def _pushline(options: BenchOptions) -> str:
    # APNs is the default and keeps the row names it always had.
    return "pushline to FCM" if options.provider == "fcm" else "pushline"


def _row(
    name: str,
    per_s: float | None,
    cpu_us: float | None,
    p50_ms: float | None,
    p99_ms: float | None,
    note: str | None = None,
) -> dict[str, Any]:
    return {
        "name": name,
        "per_s": per_s,
        "cpu_us_per_notification": cpu_us,
        "p50_ms": p50_ms,
        "p99_ms": p99_ms,
        "note": note,
    }


def _dispatcher_rows(result: BenchResult) -> list[dict[str, Any]]:
    run, options = result.dispatcher, result.options
    pushline = _pushline(options)
    if run.paced is not None:
        paced = f"{pushline} paced at {run.paced.rate:,.0f}/s"
        rows = [
            _row(
                f"{paced} ({_processes(run.processes)}, total): added latency",
                run.total_per_s,
                run.cpu_us_per_notification,
                run.paced.added_p50_ms,
                run.paced.added_p99_ms,
            ),
            _row(
                f"{paced}: before the send",
                None,
                None,
                run.paced.before_send_p50_ms,
                run.paced.before_send_p99_ms,
            ),
            _row(f"{paced}: provider latency", None, None, run.latency_p50_ms, run.latency_p99_ms),
        ]
        if run.paced.broker_hops is not None:
            rows.append(
                _row(
                    f"{paced}: broker hop (a bench consumer)",
                    None,
                    None,
                    run.paced.broker_hop_p50_ms,
                    run.paced.broker_hop_p99_ms,
                )
            )
        return rows
    rows = []
    if result.scaling is not None:
        single = result.scaling.single_process
        rows.append(
            _row(
                f"{pushline} (1 process)",
                single.per_process_per_s,
                single.cpu_us_per_notification,
                single.latency_p50_ms,
                single.latency_p99_ms,
            )
        )
    rows.append(
        _row(
            f"{pushline} ({_processes(run.processes)}, per process)",
            run.per_process_per_s,
            run.cpu_us_per_notification,
            run.latency_p50_ms,
            run.latency_p99_ms,
        )
    )
    return rows


def _rows(result: BenchResult) -> list[dict[str, Any]]:
    rows = _dispatcher_rows(result)
    for b in result.baselines.values():
        rows.append(_row(b.name, b.per_s, b.cpu_us_per_request, b.p50_ms, b.p99_ms, b.reason))
    if result.ceiling is not None:
        c = result.ceiling
        rows.append(
            _row("ceiling (h2load)", c.per_s, c.cpu_us_per_request, c.p50_ms, c.p99_ms, c.reason)
        )
    return rows


def _baseline_json(b: BaselineResult) -> dict[str, Any]:
    return {k: v for k, v in asdict(b).items() if k != "name"}


def _paced_json(run: DispatcherRun, paced: PacedFigures) -> dict[str, Any]:
    return {
        "rate_requested": paced.rate,
        "produced_per_s": paced.produced_per_s,
        "producer_behind_max_ms": paced.producer_behind_max_ms,
        "delivered_per_s": run.total_per_s,
        "window_s": run.seconds,
        "window": "first -> last terminal outcome",
        "cpu_us_per_notification": run.cpu_us_per_notification,
        "cpu_window": "first measured request's requested_at -> last terminal outcome",
        "warmup_notifications": paced.warmup_notifications,
        "added_latency_ms": {
            "definition": ADDED_LATENCY_DEFINITION,
            "p50": paced.added_p50_ms,
            "p99": paced.added_p99_ms,
            "max": paced.added_max_ms,
        },
        "before_send_ms": {
            "definition": "sent_at - requested_at (producer, broker, consumer, dispatcher queue)",
            "p50": paced.before_send_p50_ms,
            "p99": paced.before_send_p99_ms,
        },
        "broker_hop_ms": None
        if paced.broker_hops is None
        else {
            "definition": "a bench consumer has the request - its Kafka timestamp (no dispatcher)",
            "p50": paced.broker_hop_p50_ms,
            "p99": paced.broker_hop_p99_ms,
            "requests": paced.broker_hops,
        },
        "provider_latency_ms": {
            "p50": run.latency_p50_ms,
            "p99": run.latency_p99_ms,
            "max": run.latency_max_ms,
        },
    }


def _scaling_json(result: BenchResult) -> dict[str, Any] | None:
    if result.scaling is None:
        return None
    single = result.scaling.single_process
    return {
        "processes": result.dispatcher.processes,
        "factor": result.scaling.factor,
        "single_process_total_per_s": single.total_per_s,
        "processes_total_per_s": result.dispatcher.total_per_s,
        "single_process": {
            "per_s": single.total_per_s,
            "cpu_us_per_notification": single.cpu_us_per_notification,
            "latency_p50_ms": single.latency_p50_ms,
            "latency_p99_ms": single.latency_p99_ms,
            "outcomes": single.outcomes,
            "states": single.states,
            "emulator_accepted": single.emulator_accepted,
            "seconds": single.seconds,
            "dispatcher_exit_codes": single.exit_codes,
        },
        "note": _cpus_note(result),
    }


def to_json(result: BenchResult) -> dict[str, Any]:
    run = result.dispatcher
    opts = result.options
    client = "FCM" if opts.provider == "fcm" else "APNs"
    return {
        "pushline_per_s": run.per_process_per_s,
        "pushline_total_per_s": run.total_per_s,
        "baselines": {name: b.per_s for name, b in result.baselines.items()},
        "ceiling_per_s": None if result.ceiling is None else result.ceiling.per_s,
        "cpu_us_per_notification": run.cpu_us_per_notification,
        "latency_ms": {
            "definition": f"DispatchOutcome.latency_ms: dispatcher asks its {client} client to "
            "send -> answer decided (clients: request issued -> response)",
            "p50": run.latency_p50_ms,
            "p99": run.latency_p99_ms,
            "max": run.latency_max_ms,
        },
        "pushline_total_per_s_by_quarter": run.per_s_by_quarter,
        "notifications": run.notifications,
        "measured_notifications": run.measured,
        "outcomes": run.outcomes,
        "outcome_messages": run.outcome_messages,
        "states": run.states,
        "not_accepted": run.not_accepted,
        "attempts": {str(k): v for k, v in run.attempts.items()},
        "emulator_accepted": run.emulator_accepted,
        "seconds": run.seconds,
        "dispatcher_cpu_seconds": run.cpu_seconds,
        "cpu_busy": None
        if run.cpu_busy is None
        else {str(cpu): share for cpu, share in sorted(run.cpu_busy.items())},
        "dispatcher_exit_codes": run.exit_codes,
        "processes": opts.processes,
        "partitions": opts.topic_partitions,
        "provider": opts.provider,
        "mode": "capacity" if run.paced is None else "paced",
        "paced": None if run.paced is None else _paced_json(run, run.paced),
        "scaling": _scaling_json(result),
        "baselines_run": opts.baselines,
        "baseline_details": {name: _baseline_json(b) for name, b in result.baselines.items()},
        "ceiling": None
        if result.ceiling is None
        else {"tool": "h2load", **_baseline_json(result.ceiling)},
        "machine": result.machine,
        "pinning": _pinning_json(result),
        "elapsed_s": result.elapsed_s,
        "rows": _rows(result),
    }


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _paced_lines(run: DispatcherRun, paced: PacedFigures) -> list[str]:
    return [
        f"paced: asked {paced.rate:,.0f}/s; the producer sent {_num(paced.produced_per_s, 0)}/s "
        f"(at worst {paced.producer_behind_max_ms:,.1f} ms behind schedule); "
        f"{paced.warmup_notifications} warm-up notifications before, in no figure",
        f"added latency (terminal outcome's Kafka timestamp - requested_at, ms resolution): "
        f"p50 {_num(paced.added_p50_ms, 0)} ms, p99 {_num(paced.added_p99_ms, 0)} ms, "
        f"max {_num(paced.added_max_ms, 0)} ms; provider latency max "
        f"{_num(run.latency_max_ms, 2)} ms",
    ]


def _scaling_line(result: BenchResult) -> str | None:
    run = result.dispatcher
    if result.scaling is not None:
        single = result.scaling.single_process
        return (
            f"scaling: {run.processes} processes deliver {result.scaling.factor:.2f} x one process "
            f"({run.total_per_s:,.0f}/s vs {single.total_per_s:,.0f}/s in total); "
            + (
                f"{SHARED_CORES_NOTE}, so this is not the dispatcher's scaling alone"
                if result.pinning is None
                else _cpus_note(result)
            )
        )
    if run.processes > 1 and run.paced is None:
        return "scaling: not measured (--scaling runs one process first, in the same run)"
    return None


def format_table(result: BenchResult) -> str:
    run = result.dispatcher
    rows = _rows(result)
    width = max(len(r["name"]) for r in rows)
    lines = [
        f"{'name':{width}}  {'per_s':>10}  {'cpu_us/notif':>12}  {'p50_ms':>8}  {'p99_ms':>8}",
    ]
    for r in rows:
        line = (
            f"{r['name']:{width}}  {_num(r['per_s'], 0):>10}  "
            f"{_num(r['cpu_us_per_notification'], 1):>12}  "
            f"{_num(r['p50_ms'], 2):>8}  {_num(r['p99_ms'], 2):>8}"
        )
        if r["note"]:
            line += f"  ({r['note']})"
        lines.append(line)
    machine = result.machine
    lines.append("")
    if run.emulator_accepted is not None and run.emulator_accepted != run.notifications:
        lines.append(
            f"note: the emulator accepted {run.emulator_accepted} pushes for "
            f"{run.notifications} notifications (attempts: {run.attempts})"
        )
    lines.append(
        f"{run.outcomes} of {run.notifications} notifications have an outcome "
        f"({', '.join(f'{k} {v}' for k, v in sorted(run.states.items()))}); "
        f"{run.total_per_s:,.0f}/s in total over {run.seconds:.2f}s with "
        f"{result.options.processes} process(es), {result.options.topic_partitions} partitions"
    )
    if run.not_accepted:
        lines.append(
            "not accepted: "
            + ", ".join(f"{reason} {count}" for reason, count in sorted(run.not_accepted.items()))
        )
    if run.measured != run.notifications:
        lines.append(
            f"rates and CPU are over the {run.measured} outcomes after all {run.processes} "
            "processes had joined the consumer group (before that, fewer processes drained)"
        )
    if run.paced is not None:
        lines.extend(_paced_lines(run, run.paced))
    scaling = _scaling_line(result)
    if scaling is not None:
        lines.append(scaling)
    if result.options.provider == "fcm":
        lines.append("provider: the FCM emulator (the baselines and h2load drive it too)")
    busy = _busy_line(result)
    if busy is not None:
        lines.append(busy)
    shared = "broker, emulator and clients share them"
    lines.append(
        f"machine: {machine.get('usable_cpus')} usable CPUs ({machine.get('cpu_model')}), "
        f"Python {machine.get('python')}; {shared if result.pinning is None else _cpus_note(result)}"
    )
    return "\n".join(lines)
