"""Benchmarks. ``pushline bench dispatcher``: the dispatcher end to end through Kafka against the
APNs (or FCM) emulator, with httpx, aioapns and h2load (the emulator's ceiling) in the same run;
its capacity from a backlog, or (``rate=``) the latency it adds at a paced load.
``pushline bench receipts-api``: requests/s (and per core) of the receipts API.
``pushline bench reconciler``: events/s of one reconciler draining a pre-produced backlog.

    result = run_dispatcher_bench(BenchOptions(notifications=20_000))
    print(format_table(result)); json.dumps(to_json(result))
"""

from pushline.bench._baselines import BaselineResult
from pushline.bench._dispatcher import (
    BenchOptions,
    BenchResult,
    DispatcherRun,
    PacedFigures,
    ScalingFigures,
    run_dispatcher_bench,
)
from pushline.bench._receipts import (
    ReceiptsBenchOptions,
    ReceiptsBenchResult,
    format_receipts_table,
    receipts_to_json,
    run_receipts_bench,
)
from pushline.bench._reconciler import (
    ReconcilerBenchOptions,
    ReconcilerBenchResult,
    format_reconciler_table,
    reconciler_to_json,
    run_reconciler_bench,
)
from pushline.bench._report import format_table, to_json

__all__ = [
    "BaselineResult",
    "BenchOptions",
    "BenchResult",
    "DispatcherRun",
    "PacedFigures",
    "ReceiptsBenchOptions",
    "ReceiptsBenchResult",
    "ReconcilerBenchOptions",
    "ReconcilerBenchResult",
    "ScalingFigures",
    "format_receipts_table",
    "format_reconciler_table",
    "format_table",
    "receipts_to_json",
    "reconciler_to_json",
    "run_dispatcher_bench",
    "run_receipts_bench",
    "run_reconciler_bench",
    "to_json",
]
