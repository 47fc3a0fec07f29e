"""Capacity mode (the default): K dispatchers drain a pre-produced backlog of N notifications.

N notifications are produced to push.requests **before** any dispatcher starts, so the rate is
the dispatchers' capacity, not the producer's pace. Throughput is N / (Kafka timestamp of the last
terminal outcome - that of the first): outcome timestamps are the dispatchers' produce times, so
neither start-up and group join (before the first outcome) nor the reader's fetch delay count.
CPU is the dispatchers' user + system time over that same window.

With several processes the first one to join the consumer group starts on the whole backlog alone,
and the group rebalances as the others join. So the window then opens only once every process has
had a partition assignment (its ``/readyz``, polled while the backlog drains), and only the
outcomes after that count; a backlog drained before that is an error (more ``--notifications``).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path

from pushline.bench._fleet import BenchContext
from pushline.bench._model import DispatcherRun
from pushline.bench._outcomes import OutcomeReader, decode_outcomes, dispatcher_run
from pushline.bench._workload import make_requests
from pushline.errors import StackError

__all__ = ["run_capacity"]


def run_capacity(ctx: BenchContext, processes: int) -> DispatcherRun:
    """One capacity run with ``processes`` dispatchers on fresh topics."""
    options = ctx.options
    topics = ctx.fresh_topics()
    requests = make_requests(options.provider, options.notifications)
    started = time.monotonic()
    ctx.produce(topics, requests)
    ctx.say(
        f"produced {len(requests)} notifications to {topics.requests} "
        f"in {time.monotonic() - started:.1f}s"
    )
    expected = {r.notification_id.encode() for r in requests}
    accepted_before = ctx.emulator_accepted()
    with (
        contextlib.closing(OutcomeReader(ctx.kafka, topics, options.timeout_s)) as reader,
        tempfile.TemporaryDirectory(prefix="pushline-bench-") as logdir,
    ):
        fleet = ctx.start_fleet(processes, topics, Path(logdir))
        try:
            ctx.say(f"started {processes} dispatcher process(es); draining the backlog")

            def check() -> None:
                fleet.check_alive()
                if processes > 1:
                    fleet.poll_ready()

            collected = reader.collect(
                expected, time.monotonic() + options.timeout_s, check=check, cpu=fleet.cpu
            )
        finally:
            exit_codes = fleet.stop()
    accepted_after = ctx.emulator_accepted()
    window_ms = collected.window_ms
    if processes > 1:
        joined_ms = fleet.all_ready_ms
        if joined_ms is None or joined_ms >= window_ms[1]:
            raise StackError(
                f"the backlog of {len(requests)} notifications was drained before all "
                f"{processes} dispatchers had joined the group; use more --notifications"
            )
        window_ms = (max(joined_ms, window_ms[0]), window_ms[1])
    return dispatcher_run(
        notifications=len(requests),
        processes=processes,
        collected=collected,
        outcomes=decode_outcomes(collected, ctx.registry, topics),
        window_ms=window_ms,
        measured=sum(1 for stamp in collected.stamps_ms if stamp >= window_ms[0]),
        emulator_accepted=(
            None
            if accepted_before is None or accepted_after is None
            else accepted_after - accepted_before
        ),
        exit_codes=exit_codes,
    )
