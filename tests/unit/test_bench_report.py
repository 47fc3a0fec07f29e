"""``pushline bench dispatcher``'s table and JSON for each mode, from hand-made results."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from pushline.bench import (
    BaselineResult,
    BenchOptions,
    BenchResult,
    DispatcherRun,
    PacedFigures,
    ScalingFigures,
    format_table,
    to_json,
)
from pushline.bench._model import Pinning
from pushline.bench._pinning import CpuPlan


def _run(total_per_s: float = 8000.0, processes: int = 1, **changes: Any) -> DispatcherRun:
    run = DispatcherRun(
        notifications=1000,
        outcomes=1000,
        outcome_messages=1000,
        states={"ACCEPTED": 1000},
        attempts={1: 1000},
        seconds=1000 / total_per_s,
        total_per_s=total_per_s,
        per_process_per_s=total_per_s / processes,
        cpu_seconds=0.12,
        cpu_us_per_notification=120.0,
        latency_p50_ms=80.0,
        latency_p99_ms=150.0,
        latency_max_ms=170.0,
        per_s_by_quarter=[total_per_s] * 4,
        emulator_accepted=1000,
        exit_codes=[0] * processes,
        processes=processes,
        measured=1000,
    )
    return dataclasses.replace(run, **changes)


_BASELINES = {
    "aioapns": BaselineResult("aioapns", 3000.0, 1000, 0, 0.3, 200, 300.0, 55.0, 120.0),
    "httpx": BaselineResult("httpx", 900.0, 1000, 0, 1.1, 200, 1100.0, 200.0, 300.0),
}
_CEILING = BaselineResult("h2load", 20_000.0, 100_000, 0, 5.0, 400)


def _result(options: BenchOptions, run: DispatcherRun, **changes: Any) -> BenchResult:
    fields: dict[str, Any] = {"baselines": _BASELINES, "ceiling": _CEILING, **changes}
    return BenchResult(options=options, dispatcher=run, machine={"usable_cpus": 2}, **fields)


def _row_names(table: str) -> list[str]:
    rows = table.split("\n\n")[0].splitlines()[1:]
    return [row.split("  ")[0].strip() for row in rows]


def test_the_default_capacity_table_keeps_its_rows_and_says_nothing_of_new_modes() -> None:
    result = _result(BenchOptions(), _run())
    table = format_table(result)
    assert _row_names(table) == [
        "pushline (1 process, per process)",
        "aioapns",
        "httpx",
        "ceiling (h2load)",
    ]
    assert "scaling" not in table
    assert "paced" not in table
    report = json.loads(json.dumps(to_json(result)))
    assert report["mode"] == "capacity"
    assert report["paced"] is None
    assert report["scaling"] is None
    assert report["ceiling_per_s"] == 20_000.0
    assert report["baselines"] == {"aioapns": 3000.0, "httpx": 900.0}
    assert report["pinning"] is None
    assert table.splitlines()[-1].endswith("; broker, emulator and clients share them")


def test_without_baselines_only_the_dispatcher_rows_remain() -> None:
    result = _result(BenchOptions(baselines=False), _run(), baselines={}, ceiling=None)
    assert _row_names(format_table(result)) == ["pushline (1 process, per process)"]
    report = to_json(result)
    assert report["baselines"] == {}
    assert report["ceiling"] is None
    assert report["ceiling_per_s"] is None
    assert report["baselines_run"] is False
    assert len(report["rows"]) == 1


def _paced_result(**hop: Any) -> BenchResult:
    """A paced run at 1,500/s; ``hop``: the broker-hop figures, when the probe ran."""
    paced = PacedFigures(
        rate=1500.0,
        produced_per_s=1499.0,
        producer_behind_max_ms=2.5,
        added_p50_ms=9.0,
        added_p99_ms=21.0,
        added_max_ms=30.0,
        before_send_p50_ms=4.0,
        before_send_p99_ms=11.0,
        warmup_notifications=48,
        **hop,
    )
    return _result(
        BenchOptions(rate=1500.0), _run(total_per_s=1490.0, paced=paced), baselines={}, ceiling=None
    )


def test_paced_rows_are_added_latency_before_the_send_provider_latency_and_broker_hop() -> None:
    result = _paced_result(broker_hop_p50_ms=3.0, broker_hop_p99_ms=7.5, broker_hops=300)
    table = format_table(result)
    assert _row_names(table) == [
        "pushline paced at 1,500/s (1 process, total): added latency",
        "pushline paced at 1,500/s: before the send",
        "pushline paced at 1,500/s: provider latency",
        "pushline paced at 1,500/s: broker hop (a bench consumer)",
    ]
    assert table.splitlines()[2].split()[-2:] == ["4.00", "11.00"]
    assert table.splitlines()[4].split()[-2:] == ["3.00", "7.50"]
    added_row = table.splitlines()[1].split()
    assert added_row[-4:] == ["1,490", "120.0", "9.00", "21.00"]
    assert "p50 9 ms, p99 21 ms, max 30 ms" in table
    report = to_json(result)
    assert report["mode"] == "paced"
    added = report["paced"]["added_latency_ms"]
    assert (added["p50"], added["p99"], added["max"]) == (9.0, 21.0, 30.0)
    assert "requested_at" in added["definition"]
    assert report["paced"]["provider_latency_ms"] == {"p50": 80.0, "p99": 150.0, "max": 170.0}
    before = report["paced"]["before_send_ms"]
    assert (before["p50"], before["p99"]) == (4.0, 11.0)
    hop = report["paced"]["broker_hop_ms"]
    assert (hop["p50"], hop["p99"], hop["requests"]) == (3.0, 7.5, 300)
    assert "Kafka timestamp" in hop["definition"]
    assert report["paced"]["delivered_per_s"] == 1490.0
    assert report["paced"]["produced_per_s"] == 1499.0


def test_without_the_broker_hop_probe_there_is_no_hop_row() -> None:
    result = _paced_result()
    assert not [name for name in _row_names(format_table(result)) if "broker hop" in name]
    assert to_json(result)["paced"]["broker_hop_ms"] is None


def test_scaling_prints_the_ratio_only_when_one_process_was_measured_in_the_same_run() -> None:
    two = _run(total_per_s=12_000.0, processes=2)
    without = format_table(_result(BenchOptions(processes=2), two))
    assert "scaling: not measured" in without

    single = _run(total_per_s=8000.0)
    result = _result(
        BenchOptions(processes=2, scaling=True),
        two,
        scaling=ScalingFigures(single_process=single, factor=1.5),
    )
    table = format_table(result)
    assert _row_names(table)[:2] == ["pushline (1 process)", "pushline (2 processes, per process)"]
    assert "scaling: 2 processes deliver 1.50 x one process" in table
    assert "share the machine's CPUs" in table
    report = to_json(result)
    assert report["scaling"]["factor"] == 1.5
    assert report["scaling"]["single_process_total_per_s"] == 8000.0
    assert report["scaling"]["processes_total_per_s"] == 12_000.0
    assert report["pushline_per_s"] == 6000.0  # per process, as always


def test_fcm_names_the_provider_and_shows_aioapns_as_skipped() -> None:
    baselines = {
        "aioapns": BaselineResult.skipped("aioapns", "APNs only"),
        "httpx": _BASELINES["httpx"],
    }
    result = _result(BenchOptions(provider="fcm"), _run(), baselines=baselines)
    table = format_table(result)
    assert _row_names(table)[0] == "pushline to FCM (1 process, per process)"
    assert "(APNs only)" in table
    assert to_json(result)["provider"] == "fcm"


def test_pinned_the_machine_line_and_the_json_say_which_cpus_did_what() -> None:
    pinning = Pinning(
        plan=CpuPlan(dispatchers=(1,), others=(0,)),
        on_others=("broker", "schema registry", "emulators", "bench"),
    )
    result = _result(BenchOptions(pin=True), _run(), pinning=pinning)
    table = format_table(result)
    assert table.splitlines()[-1].endswith(
        "; pinned: dispatcher on CPU 1 (then the baselines and h2load); "
        "broker, schema registry, emulators, bench on CPU 0"
    )
    assert "share" not in table
    report = json.loads(json.dumps(to_json(result)))
    assert report["pinning"] == {
        "dispatcher_cpus": [1],
        "other_cpus": [0],
        "on_other_cpus": ["broker", "schema registry", "emulators", "bench"],
        "not_pinned": [],
        "baselines_cpu": 1,
        "note": table.splitlines()[-1].split("; ", 1)[1],
    }


def test_pinned_scaling_says_where_each_ran_and_what_was_not_pinned() -> None:
    pinning = Pinning(
        plan=CpuPlan(dispatchers=(3, 2), others=(0, 1)),
        on_others=("bench",),
        not_pinned=("broker", "schema registry", "emulators"),
    )
    result = _result(
        BenchOptions(processes=2, scaling=True, pin=True, baselines=False),
        _run(total_per_s=12_000.0, processes=2),
        baselines={},
        ceiling=None,
        scaling=ScalingFigures(single_process=_run(), factor=1.5),
        pinning=pinning,
    )
    note = (
        "pinned: dispatchers, one CPU each, on CPUs 3, 2; bench on CPUs 0, 1; "
        "broker, schema registry, emulators not pinned (started outside the bench)"
    )
    table = format_table(result)
    assert f"in total); {note}" in table  # the scaling line
    assert table.splitlines()[-1].endswith(f"; {note}")  # the machine line
    assert "share" not in table
    report = to_json(result)
    assert report["scaling"]["note"] == report["pinning"]["note"] == note
    assert report["pinning"]["baselines_cpu"] is None


def _busy_line(table: str) -> str:
    [line] = [line for line in table.splitlines() if line.startswith("CPUs busy")]
    return line


def test_paced_names_a_saturated_cpu_as_part_of_the_latency() -> None:
    result = _paced_result()
    result = dataclasses.replace(
        result, dispatcher=dataclasses.replace(result.dispatcher, cpu_busy={0: 0.97, 1: 0.55})
    )
    table = format_table(result)
    assert _busy_line(table) == (
        "CPUs busy over the window (whatever ran on them): CPU 0 97%, CPU 1 55%; saturated: "
        "CPU 0, so the latency figures include waiting for it"
    )
    assert to_json(result)["cpu_busy"] == {"0": 0.97, "1": 0.55}


def test_pinned_capacity_names_a_saturated_cpu_of_the_others_only() -> None:
    pinning = Pinning(plan=CpuPlan(dispatchers=(1,), others=(0,)), on_others=("bench",))
    options = BenchOptions(pin=True)
    busy_dispatcher = _result(options, _run(cpu_busy={0: 0.6, 1: 0.99}), pinning=pinning)
    assert "saturated" not in _busy_line(format_table(busy_dispatcher))
    busy_others = _result(options, _run(cpu_busy={0: 0.95, 1: 0.99}), pinning=pinning)
    assert _busy_line(format_table(busy_others)).endswith(
        "; saturated: CPU 0 of the broker, emulator and bench, so the rate may be theirs rather "
        "than the dispatchers'"
    )


def test_unpinned_capacity_shows_the_shares_without_a_verdict_and_none_without_proc() -> None:
    table = format_table(_result(BenchOptions(), _run(cpu_busy={0: 1.0, 1: 0.98})))
    assert (
        _busy_line(table)
        == "CPUs busy over the window (whatever ran on them): CPU 0 100%, CPU 1 98%"
    )
    result = _result(BenchOptions(), _run())
    assert not [line for line in format_table(result).splitlines() if line.startswith("CPUs busy")]
    assert to_json(result)["cpu_busy"] is None


def test_outcomes_other_than_accepted_are_listed_with_their_reasons() -> None:
    run = _run(
        states={"ACCEPTED": 990, "FAILED": 10},
        not_accepted={"FAILED:AttemptsExhausted:TooManyProviderTokenUpdates": 10},
    )
    result = _result(BenchOptions(), run)
    assert (
        "not accepted: FAILED:AttemptsExhausted:TooManyProviderTokenUpdates 10"
        in format_table(result).splitlines()
    )
    assert to_json(result)["not_accepted"] == {
        "FAILED:AttemptsExhausted:TooManyProviderTokenUpdates": 10
    }
    assert not [
        line
        for line in format_table(_result(BenchOptions(), _run())).splitlines()
        if line.startswith("not accepted")
    ]
