"""Benchmarks. ``pushline bench dispatcher``: the dispatcher end to end through Kafka against the
APNs emulator, with httpx, aioapns and h2load (the emulator's ceiling) in the same run.

    result = run_dispatcher_bench(BenchOptions(notifications=20_000))
    print(format_table(result)); json.dumps(to_json(result))
"""

from pushline.bench._baselines import BaselineResult
from pushline.bench._dispatcher import (
    BenchOptions,
    BenchResult,
    DispatcherRun,
    run_dispatcher_bench,
)
from pushline.bench._report import format_table, to_json

__all__ = [
    "BaselineResult",
    "BenchOptions",
    "BenchResult",
    "DispatcherRun",
    "format_table",
    "run_dispatcher_bench",
    "to_json",
]
