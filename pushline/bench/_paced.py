"""Paced mode (``--rate R``): notifications are produced at R/s while the dispatchers run, and the
report is the latency the pipeline adds at that load.

How it measures:

1. K dispatchers start on fresh topics; the bench waits until each one's ``/readyz`` says it has a
   partition assignment (joined the group), then sends a warm-up batch
   (:attr:`BenchOptions.warmup_notifications`) and waits for its outcomes, so connections are open
   and FCM access tokens fetched. The warm-up goes through the same :class:`NotificationProducer`
   as the measured notifications: a new idempotent producer holds its first messages for a few
   hundred ms (producer id, metadata), which is start-up, not the pipeline. It is in no figure.
2. A producer thread sends the N measured notifications with that producer on an absolute
   schedule: the i-th is due at start + i/R. A send that starts late is not skipped; the next ones
   follow as soon as possible until the schedule is met again, and the worst lateness is reported.
   The producer flushes at the end, as always.
3. **Added latency** of a notification = Kafka timestamp of its terminal outcome (when a dispatcher
   produced it, as capacity mode uses) - the request's ``requested_at``. ``requested_at`` is the
   request's ``created_at``, which the bench sets right before it hands the request to the producer
   and which the dispatcher copies into the outcome; librdkafka stamps the request's own Kafka
   timestamp a few tens of µs later, in ``produce()`` (after validation and serialization), so the
   figure covers the producer's linger, the broker, the dispatcher's fetch, decode and send, the
   provider's answer and the outcome, and slightly over-states them. Both ends have millisecond
   resolution (Avro ``timestamp-millis``, Kafka timestamps): each value is +/- 1 ms.
4. **Provider latency** is ``DispatchOutcome.latency_ms``, as in capacity mode.
   **Broker hop** (``--broker-hop``): a consumer of the bench's own, in a process of its own
   (:mod:`~pushline.bench._hop_probe`: every partition of the requests topic assigned, no group
   join, the dispatchers' ``fetch.wait.max.ms``), takes each measured request as a dispatcher would;
   the hop is when it had it minus the request's Kafka timestamp (stamped in ``produce()``). It is
   the part of "before the send" that is the producer's linger and the broker, with no dispatcher in
   it, measured in the same run on the same machine.
5. **Achieved rate and CPU**: the delivered rate is N / (last - first terminal outcome), as in
   capacity mode (R when the pipeline keeps up, its capacity when it does not). CPU µs per
   notification = the dispatchers' CPU time from the first measured request's ``requested_at`` to
   the last terminal outcome, / N (idle polling between notifications included: it is what that
   load costs).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from producers import NotificationProducer
from pushline.bench._fleet import BenchContext
from pushline.bench._model import DispatcherRun, PacedFigures
from pushline.bench._outcomes import OutcomeReader, decode_outcomes, dispatcher_run
from pushline.bench._stats import percentile
from pushline.bench._workload import make_requests
from pushline.config import TopicsConfig
from pushline.errors import StackError
from pushline.processes import die_with_parent, stop_process
from schemas import NotificationRequest

__all__ = ["BrokerHopProbe", "PacedProducer", "run_paced"]

PROBE_GRACE_S = 0.5
"""How long the broker-hop probe may go on reading after the last outcome arrived."""

START_DELAY_S = 0.1
"""The first measured send waits this long after the producer thread starts, so the outcome reader
has taken its first CPU sample before the window opens."""


class BrokerHopProbe:
    """The :mod:`~pushline.bench._hop_probe` process: started before the measured requests are
    produced, stopped once it saw them all (or after a grace period), its hops then in
    ``hops_ms``."""

    def __init__(self, env: Mapping[str, str], topics: TopicsConfig, since_ms: float) -> None:
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pushline.bench._hop_probe",
                topics.requests,
                str(topics.partitions),
                repr(since_ms),
            ],
            env=dict(env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - only sets the parent-death signal
        )
        self.hops_ms: list[float] = []

    def wait_ready(self) -> None:
        """Until the probe reads (it prints ``ready`` after its first message, a warm-up one)."""
        assert self._process.stdout is not None
        if self._process.stdout.readline() != b"ready\n":
            self.stop()  # raises with the probe's error
            raise StackError("the broker-hop probe stopped before it was ready")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Close its stdin (it then stops reading and prints its hops) and collect them."""
        try:
            out, err = self._process.communicate(b"", timeout=timeout_s)
        except subprocess.TimeoutExpired:
            stop_process(self._process, 2.0)
            raise StackError("the broker-hop probe did not stop") from None
        if self._process.returncode != 0:
            tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise StackError(f"the broker-hop probe failed: {tail[0]}")
        self.hops_ms = json.loads(out)["hops_ms"]


class PacedProducer(threading.Thread):
    """Sends ``requests`` at ``rate`` per second (see the module docstring), stamping each one's
    ``created_at`` as it is sent. ``check()`` re-raises in the caller what failed in the thread."""

    def __init__(
        self, producer: NotificationProducer, requests: Sequence[NotificationRequest], rate: float
    ) -> None:
        super().__init__(name="bench-paced-producer", daemon=True)
        self._producer = producer
        self._requests = requests
        self._rate = rate
        self._cancelled = threading.Event()
        self.error: Exception | None = None
        self.behind_max_s = 0.0
        self.first_sent: float | None = None
        self.last_sent: float | None = None

    def run(self) -> None:
        try:
            start = time.monotonic() + START_DELAY_S
            for i, request in enumerate(self._requests):
                if self._cancelled.is_set():
                    return
                late = time.monotonic() - (start + i / self._rate)
                if late < 0:
                    time.sleep(-late)
                else:
                    self.behind_max_s = max(self.behind_max_s, late)
                sent_at = time.monotonic()
                self._producer.send(dataclasses.replace(request, created_at=datetime.now(UTC)))
                self.first_sent = sent_at if self.first_sent is None else self.first_sent
                self.last_sent = sent_at
            self._producer.flush()
        except Exception as exc:  # noqa: BLE001 - re-raised in the bench's thread by check()
            self.error = exc

    def cancel(self) -> None:
        self._cancelled.set()

    def check(self) -> None:
        if self.error is not None:
            raise StackError(f"the paced producer failed: {self.error}") from self.error

    @property
    def produced_per_s(self) -> float | None:
        if self.first_sent is None or self.last_sent is None or self.last_sent <= self.first_sent:
            return None
        return (len(self._requests) - 1) / (self.last_sent - self.first_sent)


def run_paced(ctx: BenchContext, processes: int) -> DispatcherRun:
    """One paced run with ``processes`` dispatchers on fresh topics."""
    options = ctx.options
    assert options.rate is not None
    topics = ctx.fresh_topics()
    warmup = make_requests(options.provider, options.warmup_notifications)
    measured = make_requests(options.provider, options.notifications)
    deadline = time.monotonic() + options.timeout_s
    with (
        contextlib.closing(OutcomeReader(ctx.kafka, topics, options.timeout_s)) as reader,
        NotificationProducer(ctx.kafka, ctx.registry, topics) as requests_out,
        tempfile.TemporaryDirectory(prefix="pushline-bench-") as logdir,
    ):
        producer = PacedProducer(requests_out, measured, options.rate)
        fleet = ctx.start_fleet(processes, topics, Path(logdir))
        try:
            ctx.say(f"started {processes} dispatcher process(es); waiting for the group join")
            fleet.wait_ready(deadline)
            for r in warmup:
                requests_out.send(r)
            requests_out.flush()
            reader.collect(
                {r.notification_id.encode() for r in warmup},
                deadline,
                check=fleet.check_alive,
                cpu=fleet.cpu,
            )
            ctx.say(
                f"warm-up: {len(warmup)} notifications answered; producing "
                f"{len(measured)} at {options.rate:,.0f}/s"
            )
            accepted_before = ctx.emulator_accepted()

            def check() -> None:
                fleet.check_alive()
                producer.check()

            probe = None
            if options.broker_hop:
                probe = BrokerHopProbe(ctx.env, topics, time.time() * 1000)
                probe.wait_ready()
            producer.start()
            try:
                collected = reader.collect(
                    {r.notification_id.encode() for r in measured},
                    deadline,
                    check=check,
                    cpu=fleet.cpu,
                )
            finally:
                if probe is not None:
                    time.sleep(PROBE_GRACE_S)  # it reads beside the dispatchers: let it catch up
                    probe.stop()
            producer.join(max(1.0, deadline - time.monotonic()))
            producer.check()
        finally:
            if producer.is_alive():
                producer.cancel()
                producer.join(60)
            exit_codes = fleet.stop()
    accepted_after = ctx.emulator_accepted()
    outcomes = decode_outcomes(collected, ctx.registry, topics)
    requested_ms = [o.requested_at.timestamp() * 1000 for o in outcomes]
    added_ms = [stamp - at for stamp, at in zip(collected.stamps_ms, requested_ms, strict=True)]
    before_send_ms = [
        (o.sent_at - o.requested_at).total_seconds() * 1000
        for o in outcomes
        if o.sent_at is not None
    ]
    paced = PacedFigures(
        rate=options.rate,
        produced_per_s=producer.produced_per_s,
        producer_behind_max_ms=producer.behind_max_s * 1000,
        added_p50_ms=percentile(added_ms, 0.50),
        added_p99_ms=percentile(added_ms, 0.99),
        added_max_ms=max(added_ms) if added_ms else None,
        before_send_p50_ms=percentile(before_send_ms, 0.50),
        before_send_p99_ms=percentile(before_send_ms, 0.99),
        warmup_notifications=len(warmup),
        broker_hop_p50_ms=None if probe is None else percentile(probe.hops_ms, 0.50),
        broker_hop_p99_ms=None if probe is None else percentile(probe.hops_ms, 0.99),
        broker_hops=None if probe is None else len(probe.hops_ms),
    )
    return dispatcher_run(
        notifications=len(measured),
        processes=processes,
        collected=collected,
        outcomes=outcomes,
        window_ms=collected.window_ms,
        cpu_window_ms=(min(requested_ms), collected.window_ms[1]),
        emulator_accepted=(
            None
            if accepted_before is None or accepted_after is None
            else accepted_after - accepted_before
        ),
        exit_codes=exit_codes,
        paced=paced,
    )
