"""The benchmark's table and its JSON object."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pushline.bench._baselines import BaselineResult
from pushline.bench._dispatcher import BenchResult

__all__ = ["format_table", "to_json"]


def _rows(result: BenchResult) -> list[dict[str, Any]]:
    run = result.dispatcher
    rows: list[dict[str, Any]] = [
        {
            "name": f"pushline ({result.options.processes} process"
            f"{'es' if result.options.processes > 1 else ''}, per process)",
            "per_s": run.per_process_per_s,
            "cpu_us_per_notification": run.cpu_us_per_notification,
            "p50_ms": run.latency_p50_ms,
            "p99_ms": run.latency_p99_ms,
            "note": None,
        }
    ]
    for b in [*result.baselines.values(), result.ceiling]:
        name = "ceiling (h2load)" if b is result.ceiling else b.name
        rows.append(
            {
                "name": name,
                "per_s": b.per_s,
                "cpu_us_per_notification": b.cpu_us_per_request,
                "p50_ms": b.p50_ms,
                "p99_ms": b.p99_ms,
                "note": b.reason,
            }
        )
    return rows


def _baseline_json(b: BaselineResult) -> dict[str, Any]:
    return {k: v for k, v in asdict(b).items() if k != "name"}


def to_json(result: BenchResult) -> dict[str, Any]:
    run = result.dispatcher
    opts = result.options
    return {
        "pushline_per_s": run.per_process_per_s,
        "pushline_total_per_s": run.total_per_s,
        "baselines": {name: b.per_s for name, b in result.baselines.items()},
        "ceiling_per_s": result.ceiling.per_s,
        "cpu_us_per_notification": run.cpu_us_per_notification,
        "latency_ms": {
            "definition": "DispatchOutcome.latency_ms: dispatcher asks its APNs client to send "
            "-> answer decided (clients: request issued -> response)",
            "p50": run.latency_p50_ms,
            "p99": run.latency_p99_ms,
            "max": run.latency_max_ms,
        },
        "pushline_total_per_s_by_quarter": run.per_s_by_quarter,
        "notifications": run.notifications,
        "outcomes": run.outcomes,
        "outcome_messages": run.outcome_messages,
        "states": run.states,
        "attempts": {str(k): v for k, v in run.attempts.items()},
        "emulator_accepted": run.emulator_accepted,
        "seconds": run.seconds,
        "dispatcher_cpu_seconds": run.cpu_seconds,
        "dispatcher_exit_codes": run.exit_codes,
        "processes": opts.processes,
        "partitions": opts.topic_partitions,
        "baseline_details": {name: _baseline_json(b) for name, b in result.baselines.items()},
        "ceiling": {"tool": "h2load", **_baseline_json(result.ceiling)},
        "machine": result.machine,
        "elapsed_s": result.elapsed_s,
        "rows": _rows(result),
    }


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


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
    lines.append(
        f"machine: {machine.get('usable_cpus')} usable CPUs ({machine.get('cpu_model')}), "
        f"Python {machine.get('python')}; broker, emulator and clients share them"
    )
    return "\n".join(lines)
