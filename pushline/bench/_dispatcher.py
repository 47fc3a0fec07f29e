"""``pushline bench dispatcher``: N notifications from Kafka through ``pushline dispatcher`` to the
APNs emulator and on to push.outcomes, with baselines from the same run.

How it measures (see also the README benchmark section):

1. The stack: ``KAFKA_BOOTSTRAP_SERVERS`` / ``SCHEMA_REGISTRY_URL`` (and ``APNS_URL`` ...) from the
   environment, else ``pushline emulate stack`` in a child process; the APNs emulators are started
   here when the environment names a broker but no emulator. Topics get a fresh prefix, and the
   emulator's push record is switched off (``record limit 0``) so recording costs nothing.
2. N APNs notifications are produced to push.requests **before** any dispatcher starts: the
   dispatchers drain a backlog, so the number is capacity, not the producer's pace.
3. K ``pushline dispatcher`` processes start. A consumer on push.outcomes counts terminal outcomes
   by the ``pushline.notification_id`` header, without decoding, until every notification has one.
   - **Throughput**: N / (timestamp of the last outcome - timestamp of the first), per process
     (divided by K). Outcome timestamps are the dispatchers' produce times, so the reader's own
     fetch delay does not count; start-up and group join (before the first outcome) do not either.
   - **CPU µs per notification**: user + system time of the dispatcher processes (``/proc``,
     Linux only) over that same window, interpolated from samples taken every ~50 ms.
   - **Latency**: all outcomes are decoded afterwards. ``p50/p99`` are of
     ``DispatchOutcome.latency_ms``: from the dispatcher asking its APNs client to send to the
     decided answer (payload build, JWT, HTTP/2 queueing, the round trip). End-to-end latency from
     ``requested_at`` is meaningless for a pre-produced backlog (it is mostly time spent waiting
     in the backlog), so it is not reported.
4. The baselines (httpx, aioapns, h2load) run after the dispatchers have stopped, one at a time,
   against the same emulator listener (``APNS_URL``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.serialization import MessageField, SerializationContext

from dispatcher._dedupe import HEADER_NOTIFICATION_ID, HEADER_TERMINAL
from producers import NotificationProducer, new_notification
from pushline.bench._baselines import (
    ApnsPush,
    ApnsTarget,
    BaselineResult,
    run_aioapns,
    run_h2load,
    run_httpx,
)
from pushline.bench._stats import cpu_seconds, interpolate, machine_info, percentile
from pushline.config import KafkaConfig, SchemaRegistryConfig, TopicsConfig
from pushline.emulators._control import EmulatorControl
from pushline.errors import StackError, ValidationError
from pushline.headers import message_headers
from pushline.processes import die_with_parent
from pushline.stack import stack_from_env_or_spawn
from pushline.topics import ensure_topics
from schemas import (
    DispatchOutcome,
    EventDeserializer,
    NotificationRequest,
    Platform,
    make_registry_client,
)
from schemas.payloads import RECEIPT_TOKEN_KEY, apns_payload
from schemas.receipt_token import ReceiptTokenConfig, generate_receipt_token_keys

__all__ = ["BenchOptions", "BenchResult", "DispatcherRun", "run_dispatcher_bench"]

APP_ID = "bench"
EMULATOR_DEFAULT_RECORD_LIMIT = 1_000_000  # EmulatorControl.set_record_limit's documented default

Say = Callable[[str], None]


@dataclass(frozen=True)
class BenchOptions:
    notifications: int = 20_000
    processes: int = 1
    partitions: int | None = None
    """Partitions of the bench topics; default max(6, processes)."""
    timeout_s: float = 600.0
    """Bound on the dispatcher phase (start of the processes to the last outcome)."""
    baseline_requests: int = 20_000
    """At most this many requests per client baseline (and at most N)."""
    baseline_budget_s: float = 20.0
    """A client baseline stops issuing requests after this long."""
    baseline_concurrency: int = 200
    ceiling_requests: int = 100_000

    def validate(self) -> None:
        if self.notifications < 1:
            raise ValidationError("--notifications", "must be at least 1")
        if self.processes < 1:
            raise ValidationError("--processes", "must be at least 1")
        if self.partitions is not None and self.partitions < self.processes:
            raise ValidationError(
                "--partitions", "must be at least --processes (an idle dispatcher measures nothing)"
            )
        if self.timeout_s <= 0:
            raise ValidationError("--timeout", "must be positive")

    @property
    def topic_partitions(self) -> int:
        return self.partitions or max(6, self.processes)


@dataclass(frozen=True)
class DispatcherRun:
    """What the dispatcher processes did."""

    notifications: int
    outcomes: int
    """Distinct notifications with a terminal outcome (all of them, or the run fails)."""
    outcome_messages: int
    states: dict[str, int]
    attempts: dict[int, int]
    """Final outcomes by the attempt that decided them (above 1: the first send failed)."""
    seconds: float
    total_per_s: float
    per_process_per_s: float
    cpu_seconds: float | None
    cpu_us_per_notification: float | None
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    latency_max_ms: float | None
    per_s_by_quarter: list[float | None]
    """Total rate over each quarter of the outcomes in time order: shows a run slowing down."""
    emulator_accepted: int | None
    """Pushes the emulator accepted while the dispatchers ran; above N means duplicate sends."""
    exit_codes: list[int | None]


@dataclass(frozen=True)
class BenchResult:
    options: BenchOptions
    dispatcher: DispatcherRun
    baselines: dict[str, BaselineResult]
    ceiling: BaselineResult
    machine: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0


def _make_requests(count: int) -> list[NotificationRequest]:
    return [
        new_notification(
            app_id=APP_ID,
            platform=Platform.APNS,
            device_token=os.urandom(32).hex(),
            title="Your order shipped",
            body=f"Order #{100_000 + i} is on its way.",
        )
        for i in range(count)
    ]


def _pushes(requests: list[NotificationRequest], env: Mapping[str, str]) -> list[ApnsPush]:
    """The requests as the dispatcher sends them: same payload bytes, receipt token included."""
    receipts = ReceiptTokenConfig.from_env(env)
    signer = receipts.signer()
    token_expiry = datetime.now(UTC) + receipts.ttl  # as the dispatcher signs them
    out = []
    for r in requests:
        token = signer.sign(r.notification_id, r.key, token_expiry)
        out.append(
            ApnsPush(
                token=r.device_token,
                payload=apns_payload(r, {RECEIPT_TOKEN_KEY: token}),
                apns_id=r.notification_id,
                collapse_id=r.collapse_id,
                expiration=int(r.expires_at.timestamp()),
            )
        )
    return out


@contextlib.contextmanager
def _bench_env(base: Mapping[str, str], say: Say) -> Iterator[dict[str, str]]:
    """The stack's environment: broker, registry, APNs emulator, receipt-token keys."""
    with stack_from_env_or_spawn(base) as stack, contextlib.ExitStack() as cleanup:
        env = {**base, **stack.env}
        say(f"stack: Kafka {stack.bootstrap_servers}, schema registry {stack.registry_url}")
        if not env.get("APNS_URL"):
            # An external broker without emulators: start them here, for this run only.
            from pushline.emulators._runner import ProviderEmulators  # noqa: PLC0415

            workdir = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="pushline-bench-"))
            emulators = ProviderEmulators(Path(workdir))
            cleanup.callback(emulators.stop)
            env.update(emulators.start())
        if not env.get("PUSHLINE_RECEIPT_TOKEN_KEYS"):
            env["PUSHLINE_RECEIPT_TOKEN_KEYS"] = generate_receipt_token_keys()
        yield env


def run_dispatcher_bench(
    options: BenchOptions, env: Mapping[str, str] | None = None, say: Say | None = None
) -> BenchResult:
    """Run the whole benchmark; raises PushlineError (one line) when it cannot."""
    options.validate()
    say = say or (lambda line: None)
    started = time.monotonic()
    with _bench_env(dict(os.environ if env is None else env), say) as stack_env:
        target = ApnsTarget.from_env(stack_env)
        prefix = f"bench-{uuid.uuid4().hex[:8]}."
        topics = TopicsConfig.from_env(
            stack_env, prefix=prefix, partitions=options.topic_partitions
        )
        kafka = KafkaConfig.from_env(stack_env)
        registry = SchemaRegistryConfig.from_env(stack_env)
        ensure_topics(kafka, topics)
        say(f"topics: {prefix}* with {topics.partitions} partitions")
        with EmulatorControl(target.url, target.ca_file) as control:
            control.set_record_limit(0)
            try:
                requests = _make_requests(options.notifications)
                t0 = time.monotonic()
                with NotificationProducer(kafka, registry, topics) as producer:
                    for r in requests:
                        producer.send(r)
                say(
                    f"produced {len(requests)} notifications to {topics.requests} "
                    f"in {time.monotonic() - t0:.1f}s"
                )
                run = _run_dispatchers(
                    options, stack_env, kafka, registry, topics, requests, control, say
                )
                pushes = _pushes(requests[: options.baseline_requests], stack_env)
                baselines = {}
                for name, runner in (("aioapns", run_aioapns), ("httpx", run_httpx)):
                    say(f"baseline {name}: up to {len(pushes)} requests")
                    baselines[name] = runner(
                        target,
                        pushes,
                        concurrency=options.baseline_concurrency,
                        budget_s=options.baseline_budget_s,
                    )
                say(f"ceiling: h2load, {options.ceiling_requests} requests")
                ceiling = run_h2load(target, pushes[0], requests=options.ceiling_requests)
            finally:
                with contextlib.suppress(StackError):
                    control.set_record_limit(EMULATOR_DEFAULT_RECORD_LIMIT)
    return BenchResult(
        options=options,
        dispatcher=run,
        baselines=baselines,
        ceiling=ceiling,
        machine=machine_info(),
        elapsed_s=time.monotonic() - started,
    )


class _Dispatchers:
    """K ``pushline dispatcher`` child processes; never outlive the bench."""

    def __init__(self, count: int, env: Mapping[str, str], logdir: Path) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        self._files: list[IO[bytes]] = []
        for i in range(count):
            log = logdir / f"dispatcher-{i}.log"
            handle = open(log, "wb")  # noqa: SIM115 - closed in stop()
            self._files.append(handle)
            self.logs.append(log)
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "pushline", "dispatcher"],
                    env=dict(env),
                    stdin=subprocess.DEVNULL,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    preexec_fn=die_with_parent,  # noqa: PLW1509 - only sets the parent-death signal
                )
            )

    def check_alive(self) -> None:
        for proc, log in zip(self.procs, self.logs, strict=True):
            code = proc.poll()
            if code is not None:
                lines = log.read_text(errors="replace").strip().splitlines()
                last = lines[-1] if lines else "no output"
                raise StackError(f"dispatcher {proc.pid} exited early with code {code}: {last}")

    def cpu(self) -> float | None:
        values = [cpu_seconds(p.pid) for p in self.procs]
        return None if any(v is None for v in values) else sum(v or 0.0 for v in values)

    def stop(self, timeout: float = 40.0) -> list[int | None]:
        """SIGTERM (drain, commit, leave the group), then SIGKILL whatever is left."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for handle in self._files:
            handle.close()
        return [p.returncode for p in self.procs]


def _outcome_consumer(kafka: KafkaConfig, topics: TopicsConfig) -> Consumer:
    consumer = Consumer(
        kafka.to_librdkafka(
            **{
                "group.id": f"{topics.prefix}bench-reader",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                # Outcomes are seen within ~10 ms of being written (the default waits up to 500).
                "fetch.wait.max.ms": 10,
            }
        )
    )
    # Assigned, not subscribed: no group join to wait for, nothing missed before it.
    consumer.assign(
        [TopicPartition(topics.outcomes, p, 0) for p in range(topics.partitions)]  # from offset 0
    )
    return consumer


def _quarter_rates(stamps: list[float]) -> list[float | None]:
    ordered = sorted(stamps)
    if len(ordered) < 8:
        return [None] * 4
    bounds = [q * len(ordered) // 4 for q in range(4)] + [len(ordered) - 1]
    rates: list[float | None] = []
    for lo, hi in itertools.pairwise(bounds):
        span_s = (ordered[hi] - ordered[lo]) / 1000
        rates.append((hi - lo) / span_s if span_s > 0 else None)
    return rates


def _header(msg: Message, name: str) -> bytes | None:
    for key, value in message_headers(msg):
        if key == name:
            return value
    return None


def _run_dispatchers(
    options: BenchOptions,
    env: Mapping[str, str],
    kafka: KafkaConfig,
    registry: SchemaRegistryConfig,
    topics: TopicsConfig,
    requests: list[NotificationRequest],
    control: EmulatorControl,
    say: Say,
) -> DispatcherRun:
    expected = {r.notification_id.encode() for r in requests}
    dispatcher_env = {
        k: v for k, v in env.items() if k not in ("PUSHLINE_APPS_FILE", "PUSHLINE_APPS_DIR")
    }
    dispatcher_env.update(
        {
            # The emulator credentials under our app id; nothing else to send to.
            "PUSHLINE_DEFAULT_APP_ID": APP_ID,
            "PUSHLINE_APP_IDS": "",
            "PUSHLINE_TOPIC_PREFIX": topics.prefix,
            "PUSHLINE_TOPIC_PARTITIONS": str(topics.partitions),
            "PUSHLINE_DISPATCHER_GROUP_ID": f"{topics.prefix}dispatcher",
            "PUSHLINE_OPS_HOST": "127.0.0.1",
            "PUSHLINE_OPS_PORT": "0",
            "PUSHLINE_LOG_LEVEL": "WARNING",
        }
    )
    accepted_before = control.stats().get("accepted")
    consumer = _outcome_consumer(kafka, topics)
    seen: set[bytes] = set()
    terminal_msgs: list[Message] = []
    outcome_messages = 0
    first_ts = last_ts = None
    stamps: list[float] = []
    cpu_samples: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="pushline-bench-") as logdir:
        procs = _Dispatchers(options.processes, dispatcher_env, Path(logdir))
        exit_codes: list[int | None] = []
        try:
            say(f"started {options.processes} dispatcher process(es); draining the backlog")
            deadline = time.monotonic() + options.timeout_s
            last_sample = 0.0
            while len(seen) < len(expected):
                now = time.monotonic()
                if now > deadline:
                    raise StackError(
                        f"bench timed out after {options.timeout_s:.0f}s: "
                        f"{len(seen)} of {len(expected)} notifications have an outcome"
                    )
                procs.check_alive()
                if now - last_sample >= 0.05:
                    cpu = procs.cpu()
                    if cpu is not None:
                        cpu_samples.append((time.time() * 1000, cpu))
                    last_sample = now
                try:
                    batch = consumer.consume(1000, timeout=0.05)
                except KafkaException as exc:
                    raise StackError(f"reading {topics.outcomes} failed: {exc}") from exc
                for msg in batch:
                    if msg.error() is not None:
                        continue
                    outcome_messages += 1
                    if _header(msg, HEADER_TERMINAL) != b"1":
                        continue
                    nid = _header(msg, HEADER_NOTIFICATION_ID)
                    if nid not in expected or nid in seen:
                        continue
                    seen.add(nid)
                    terminal_msgs.append(msg)
                    kind, ts = msg.timestamp()
                    stamp = float(ts) if kind != TIMESTAMP_NOT_AVAILABLE else time.time() * 1000
                    stamps.append(stamp)
                    first_ts = stamp if first_ts is None else min(first_ts, stamp)
                    last_ts = stamp if last_ts is None else max(last_ts, stamp)
            cpu = procs.cpu()
            if cpu is not None:
                cpu_samples.append((time.time() * 1000, cpu))
        finally:
            exit_codes = procs.stop()
            consumer.close()
    accepted_after = control.stats().get("accepted")
    assert first_ts is not None and last_ts is not None
    seconds = max((last_ts - first_ts) / 1000, 0.001)
    cpu_used = None
    if len(cpu_samples) >= 2:
        cpu_used = interpolate(cpu_samples, last_ts) - interpolate(cpu_samples, first_ts)
    decode = EventDeserializer(DispatchOutcome, make_registry_client(registry))
    ctx = SerializationContext(topics.outcomes, MessageField.VALUE)
    outcomes = [decode(m.value() or b"", ctx) for m in terminal_msgs]
    latencies = [o.latency_ms for o in outcomes if o.latency_ms is not None]
    total = len(requests) / seconds
    return DispatcherRun(
        notifications=len(requests),
        outcomes=len(seen),
        outcome_messages=outcome_messages,
        states=dict(Counter(o.state.value for o in outcomes)),
        attempts=dict(sorted(Counter(o.attempt for o in outcomes).items())),
        seconds=seconds,
        total_per_s=total,
        per_process_per_s=total / options.processes,
        cpu_seconds=cpu_used,
        cpu_us_per_notification=None if cpu_used is None else cpu_used * 1e6 / len(requests),
        latency_p50_ms=percentile(latencies, 0.50),
        latency_p99_ms=percentile(latencies, 0.99),
        latency_max_ms=max(latencies) if latencies else None,
        per_s_by_quarter=_quarter_rates(stamps),
        emulator_accepted=(
            accepted_after - accepted_before
            if isinstance(accepted_before, int) and isinstance(accepted_after, int)
            else None
        ),
        exit_codes=exit_codes,
    )
