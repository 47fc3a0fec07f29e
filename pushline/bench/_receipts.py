"""``pushline bench receipts-api``: requests/s of ``pushline receipts-api`` on the stack.

The measurement itself is :func:`receipts._bench.bench_receipts_api` (a keep-alive HTTP/1.1 load
of freshly signed receipts against one API process, every 202 checked against push.receipts); this
module only supplies the stack and the receipt-token keys and turns its dict into a table.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pushline.bench._stats import machine_info
from pushline.errors import StackError, ValidationError
from pushline.stack import stack_from_env_or_spawn
from receipts._bench import bench_receipts_api
from schemas.receipt_token import generate_receipt_token_keys

__all__ = [
    "ReceiptsBenchOptions",
    "ReceiptsBenchResult",
    "format_receipts_table",
    "receipts_to_json",
    "run_receipts_bench",
]

Say = Callable[[str], None]


@dataclass(frozen=True)
class ReceiptsBenchOptions:
    seconds: float = 10.0
    connections: int = 64
    warmup_s: float = 2.0
    partitions: int = 6

    def validate(self) -> None:
        if self.seconds <= 0:
            raise ValidationError("--seconds", "must be positive")
        if self.connections < 1:
            raise ValidationError("--connections", "must be at least 1")


@dataclass(frozen=True)
class ReceiptsBenchResult:
    options: ReceiptsBenchOptions
    raw: dict[str, Any]
    """What bench_receipts_api returned."""
    machine: dict[str, Any] = field(default_factory=dict)

    @property
    def requests_per_s(self) -> float:
        return float(self.raw["rps"])

    @property
    def requests_per_core_s(self) -> float | None:
        value = self.raw.get("rps_per_core")
        return None if value is None else float(value)

    @property
    def errors(self) -> int:
        """Answers other than 202 in the measured window."""
        return sum(n for code, n in self.raw["statuses"].items() if code != "202")


def run_receipts_bench(
    options: ReceiptsBenchOptions, env: Mapping[str, str] | None = None, say: Say | None = None
) -> ReceiptsBenchResult:
    """Run the benchmark; raises PushlineError (one line) when it cannot."""
    options.validate()
    say = say or (lambda line: None)
    base = dict(os.environ if env is None else env)
    with stack_from_env_or_spawn(base) as stack:
        run_env = {**base, **stack.env}
        say(f"stack: Kafka {stack.bootstrap_servers}, schema registry {stack.registry_url}")
        if not run_env.get("PUSHLINE_RECEIPT_TOKEN_KEYS"):
            # The API verifies what the load signs: both read the keys from this environment.
            run_env["PUSHLINE_RECEIPT_TOKEN_KEYS"] = generate_receipt_token_keys()
        say(
            f"load: {options.connections} connections, {options.warmup_s:g}s warm-up, "
            f"{options.seconds:g}s measured"
        )
        raw = bench_receipts_api(
            run_env,
            options.seconds,
            connections=options.connections,
            warmup=options.warmup_s,
            partitions=options.partitions,
        )
    if raw["produced"] < raw["accepted_total"]:
        raise StackError(
            f"the receipts API answered 202 {raw['accepted_total']} times but only "
            f"{raw['produced']} receipts reached the topic"
        )
    return ReceiptsBenchResult(options=options, raw=raw, machine=machine_info())


def receipts_to_json(result: ReceiptsBenchResult) -> dict[str, Any]:
    raw = result.raw
    return {
        "requests_per_s": result.requests_per_s,
        "requests_per_core_s": result.requests_per_core_s,
        "latency_ms": raw["latency_ms"],
        "errors": result.errors,
        "requests": raw["requests"],
        "statuses": raw["statuses"],
        "accepted_total": raw["accepted_total"],
        "produced": raw["produced"],
        "server_cpu_seconds": raw["server_cpu_seconds"],
        "seconds": raw["seconds"],
        "connections": raw["connections"],
        "server": raw["server"],
        "api_exit_code": raw["exit_code"],
        "machine": result.machine,
    }


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def format_receipts_table(result: ReceiptsBenchResult) -> str:
    raw = result.raw
    latency = raw["latency_ms"]
    header = f"{'name':14}  {'req/s':>10}  {'req/s/core':>10}  {'p50_ms':>8}  {'p99_ms':>8}  errors"
    row = (
        f"{'receipts-api':14}  {_num(result.requests_per_s, 0):>10}  "
        f"{_num(result.requests_per_core_s, 0):>10}  {_num(latency['p50'], 2):>8}  "
        f"{_num(latency['p99'], 2):>8}  {result.errors}"
    )
    machine = result.machine
    return "\n".join(
        [
            header,
            row,
            "",
            f"{raw['requests']} requests over {raw['seconds']:.2f}s on {raw['connections']} "
            f"connections ({', '.join(f'{k}: {v}' for k, v in raw['statuses'].items())}); "
            f"{raw['produced']} receipts on the topic for {raw['accepted_total']} 202s; "
            f"API process CPU {raw['server_cpu_seconds']:.2f}s ({raw['server']})",
            f"machine: {machine.get('usable_cpus')} usable CPUs ({machine.get('cpu_model')}), "
            f"Python {machine.get('python')}; broker, API and load share them",
        ]
    )
