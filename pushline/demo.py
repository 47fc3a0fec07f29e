"""``pushline demo``: the whole pipeline on the embedded stack, with a simulated device fleet.

It starts the stack (broker, registry, APNs/FCM/SMTP/SMS emulators), every component as its own
process (two dispatchers sharing the partitions, the reconciler, the receipts API, the fallback
sender), produces notifications, lets simulated devices acknowledge most pushes and stay silent on
some, waits until every notification has a final status, prints a summary and stops everything.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer
from confluent_kafka.serialization import MessageField, SerializationContext

from producers import NotificationProducer, new_notification
from pushline.config import KafkaConfig, SchemaRegistryConfig, TopicsConfig
from pushline.emulators._control import EmulatorControl
from pushline.errors import PushlineError
from pushline.processes import free_port, stop_processes
from pushline.stack import stack_from_env_or_spawn
from pushline.topics import ensure_topics
from schemas import (
    Channel,
    DispatchOutcome,
    EventDeserializer,
    Fallback,
    FallbackChannel,
    InvalidToken,
    NotificationRequest,
    NotificationStatus,
    OutcomeState,
    Platform,
    make_registry_client,
)
from schemas.payloads import RECEIPT_TOKEN_KEY

__all__ = ["DemoOptions", "push_throughput", "run_demo", "sample_notifications"]

APP_ID = "default"
COMPONENTS = ("dispatcher", "dispatcher", "reconciler", "fallback-sender")


@dataclass(frozen=True)
class DemoOptions:
    notifications: int = 20_000
    partitions: int = 6
    unregistered_share: float = 0.03
    silent_share: float = 0.10
    fallback_share: float = 0.25
    # long enough for a busy 2-core machine: a receipt late because of lag would trigger a fallback
    receipt_deadline_ms: int = 30_000
    timeout_s: float = 600.0
    seed: int = 7


@dataclass
class _Device:
    platform: Platform
    token: str
    unregistered: bool
    silent: bool


def _token(rng: random.Random, platform: Platform) -> str:
    if platform is Platform.APNS:
        return rng.randbytes(32).hex()
    return f"{rng.randbytes(11).hex()}:APA91b{rng.randbytes(64).hex()}"


def sample_notifications(
    count: int, options: DemoOptions | None = None, rng: random.Random | None = None
) -> tuple[list[NotificationRequest], dict[str, _Device]]:
    """A fleet of iOS and Android devices and one notification for each of them."""
    options = options or DemoOptions()
    rng = rng or random.Random(options.seed)
    requests, devices = [], {}
    for i in range(count):
        platform = Platform.APNS if i % 2 == 0 else Platform.FCM
        token = _token(rng, platform)
        device = _Device(
            platform=platform,
            token=token,
            unregistered=rng.random() < options.unregistered_share,
            silent=rng.random() < options.silent_share,
        )
        devices[token] = device
        request = new_notification(
            app_id=APP_ID,
            platform=platform,
            device_token=token,
            title="Your order shipped",
            body=f"Order #{10_000 + i} is on its way.",
            user_id=f"user-{i}",
            ttl=timedelta(hours=1),
            receipt_deadline_ms=options.receipt_deadline_ms,
        )
        if rng.random() < options.fallback_share:
            email = platform is Platform.APNS
            request = replace(
                request,
                fallback=Fallback(
                    channel=FallbackChannel.EMAIL if email else FallbackChannel.SMS,
                    address=f"user{i}@example.com" if email else f"+49151{i:08d}",
                    text="Your order shipped.",
                    subject="Your order shipped" if email else None,
                ),
            )
        requests.append(request)
    return requests, devices


class _Progress:
    """A one-line progress bar on stderr (a line per update when stderr is not a terminal)."""

    def __init__(self, label: str, total: int, quiet: bool) -> None:
        self._label, self._total, self._quiet = label, total, quiet
        self._tty = sys.stderr.isatty()
        self._last = 0.0

    def update(self, done: int, *, force: bool = False) -> None:
        now = time.monotonic()
        if self._quiet or (not force and now - self._last < (0.2 if self._tty else 2.0)):
            return
        self._last = now
        width = 30
        filled = int(width * done / max(self._total, 1))
        line = f"{self._label:<22} [{'#' * filled}{'.' * (width - filled)}] {done}/{self._total}"
        print(("\r" + line) if self._tty else line, end="" if self._tty else "\n", file=sys.stderr)

    def close(self, done: int) -> None:
        self.update(done, force=True)
        if self._tty and not self._quiet:
            print(file=sys.stderr)


class _Collector:
    """Reads outcomes, statuses and invalid tokens on a background thread."""

    def __init__(self, kafka: KafkaConfig, registry: SchemaRegistryConfig, topics: TopicsConfig):
        client = make_registry_client(registry)
        self._decoders: dict[str, Callable[[bytes], Any]] = {}
        for topic, cls in (
            (topics.outcomes, DispatchOutcome),
            (topics.status, NotificationStatus),
            (topics.invalid_tokens, InvalidToken),
        ):
            decoder = EventDeserializer(cls, client)
            ctx = SerializationContext(topic, MessageField.VALUE)
            self._decoders[topic] = lambda value, d=decoder, c=ctx: d(value, c)  # type: ignore[misc]
        self.outcomes: list[DispatchOutcome] = []
        self.final: dict[str, NotificationStatus] = {}
        self.statuses: Counter[str] = Counter()
        self.invalid_tokens: list[InvalidToken] = []
        self._topics = topics
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._consumer = Consumer(
            kafka.to_librdkafka(
                **{
                    "group.id": f"pushline-demo-{uuid.uuid4().hex[:8]}",
                    "auto.offset.reset": "earliest",
                    "enable.auto.commit": False,
                }
            )
        )
        self._consumer.subscribe(list(self._decoders))
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(1000, timeout=0.2):
                if msg.error() or msg.value() is None:
                    continue
                topic = msg.topic() or ""
                event = self._decoders[topic](msg.value() or b"")
                with self._lock:
                    if isinstance(event, DispatchOutcome):
                        self.outcomes.append(event)
                    elif isinstance(event, NotificationStatus):
                        self.statuses[event.state.value] += 1
                        if event.final:
                            self.final[event.notification_id] = event
                    else:
                        self.invalid_tokens.append(event)
        self._consumer.close()

    def outcome_count(self) -> int:
        with self._lock:
            return len(self.outcomes)

    def finished(self, ids: set[str]) -> int:
        with self._lock:
            return len(ids & self.final.keys())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


class _Devices:
    """Simulated devices: they read the pushes the emulators accepted and post receipts."""

    def __init__(
        self, env: Mapping[str, str], receipts_url: str, devices: dict[str, _Device]
    ) -> None:
        self._controls = [
            EmulatorControl(env["APNS_URL"], env["PUSHLINE_CA_FILE"]),
            EmulatorControl(env["FCM_URL"], env["PUSHLINE_CA_FILE"]),
        ]
        self._cursors = [0, 0]
        self._url = f"{receipts_url}/v1/receipts"
        self._devices = devices
        self._rng = random.Random(11)
        self.receipts_sent = 0
        self.receipt_errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=30) as http:
            while not self._stop.wait(0.3):
                batch = []
                for i, control in enumerate(self._controls):
                    pushes = control.pushes(since=self._cursors[i])
                    self._cursors[i] += len(pushes)
                    for push in pushes:
                        device = self._devices.get(push["token"])
                        if device is None or device.silent:
                            continue
                        payload = push["payload"] or {}
                        token = payload.get(RECEIPT_TOKEN_KEY) or payload.get("data", {}).get(
                            RECEIPT_TOKEN_KEY
                        )
                        kind = "OPENED" if self._rng.random() < 0.3 else "DELIVERED"
                        batch.append({"token": token, "kind": kind, "device_key": push["token"]})
                for start in range(0, len(batch), 100):
                    chunk = batch[start : start + 100]
                    answer = http.post(self._url, json={"receipts": chunk})
                    if answer.status_code == 202:
                        self.receipts_sent += len(chunk)
                    else:
                        self.receipt_errors += len(chunk)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(30)
        for control in self._controls:
            control.close()


@contextmanager
def _components(env: dict[str, str], logs: Path) -> Iterator[dict[str, str]]:
    """Every long-running component as its own process; yields name → ops URL."""
    procs: list[subprocess.Popen[bytes]] = []
    urls: dict[str, str] = {}
    try:
        for i, command in enumerate(COMPONENTS):
            port = free_port()
            name = f"{command}-{i}" if command == "dispatcher" else command
            log = open(logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "pushline", command],
                    env={**env, "PUSHLINE_OPS_PORT": str(port), "PUSHLINE_OPS_HOST": "127.0.0.1"},
                    stdout=log,
                    stderr=log,
                    stdin=subprocess.DEVNULL,
                )
            )
            urls[name] = f"http://127.0.0.1:{port}/metrics"
        yield urls
    finally:
        stop_processes(procs, 40)


def _wait_ready(urls: Mapping[str, str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = dict(urls)
    while pending:
        for name, url in list(pending.items()):
            try:
                if httpx.get(url.replace("/metrics", "/readyz"), timeout=2).status_code == 200:
                    del pending[name]
            except httpx.HTTPError:
                pass
        if pending and time.monotonic() > deadline:
            raise PushlineError(f"components not ready in {timeout:.0f}s: {', '.join(pending)}")
        time.sleep(0.25)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class _Summary:
    data: dict[str, Any] = field(default_factory=dict)

    def table(self) -> str:
        d = self.data
        lines = [
            "",
            f"Pushline demo: {d['requested']} notifications "
            f"({d['by_platform_requested']['APNS']} iOS, {d['by_platform_requested']['FCM']} "
            "Android)",
            "",
            f"  {'final state':<18}{'APNS':>8}{'FCM':>8}{'total':>8}",
        ]
        for state, total in sorted(d["statuses"].items(), key=lambda kv: -kv[1]):
            per = d["by_platform"].get(state, {})
            lines.append(f"  {state:<18}{per.get('APNS', 0):>8}{per.get('FCM', 0):>8}{total:>8}")
        lines += [
            f"  {'unaccounted':<18}{'':>8}{'':>8}{d['unaccounted']:>8}",
            "",
            f"  throughput          {d['throughput_per_s']:.0f} notifications/s "
            f"(produce to last push outcome, {d['dispatchers']} dispatchers, retries included)",
            f"  provider latency    p50 {d['provider_latency_ms']['p50']:.1f} ms, "
            f"p99 {d['provider_latency_ms']['p99']:.1f} ms",
            f"  request to outcome  p50 {d['outcome_latency_ms']['p50']:.0f} ms, "
            f"p99 {d['outcome_latency_ms']['p99']:.0f} ms",
            f"  provider answers    {d['provider_answers']['200']} accepted, "
            f"{d['provider_answers']['429']} x 429 and {d['provider_answers']['503']} x 503 "
            f"retried ({d['retry_scheduled']} of them through push.retries)",
            f"  receipts posted     {d['receipts_posted']}",
            f"  fallbacks sent      {d['fallbacks_sent']} (email {d['emails']}, sms {d['sms']})",
            f"  invalid tokens      {d['invalid_tokens']} distinct tokens reported (their "
            "notifications end INVALID_TOKEN, or FALLBACK_SENT when they had a fallback)",
            f"  finished in         {d['elapsed_s']:.1f} s",
            "",
            "Metrics were served at (now stopped):",
            *[f"  {name:<18}{url}" for name, url in d["metrics"].items()],
        ]
        return "\n".join(lines)


def run_demo(
    notifications: int = DemoOptions.notifications,
    as_json: bool = False,
    options: DemoOptions | None = None,
) -> int:
    options = replace(options or DemoOptions(), notifications=notifications)
    if options.notifications < 1:
        raise PushlineError("--notifications must be at least 1")
    say: Callable[[str], None] = (lambda _: None) if as_json else print
    started = time.monotonic()
    prefix = f"demo-{uuid.uuid4().hex[:6]}."
    with (
        stack_from_env_or_spawn() as stack,
        tempfile.TemporaryDirectory(prefix="pushline-demo-") as tmp,
    ):
        env = {
            **os.environ,
            **stack.env,
            "PUSHLINE_TOPIC_PREFIX": prefix,
            "PUSHLINE_TOPIC_PARTITIONS": str(options.partitions),
            "PUSHLINE_LOG_LEVEL": "WARNING",
            "PUSHLINE_DISPATCHER_GROUP_ID": f"{prefix}dispatcher",
            "PUSHLINE_RECONCILER_GROUP_ID": f"{prefix}reconciler",
            "PUSHLINE_FALLBACK_GROUP_ID": f"{prefix}fallback",
            "PUSHLINE_DISPATCHER_SESSION_TIMEOUT_MS": "6000",
            "PUSHLINE_RECONCILER_SESSION_TIMEOUT_MS": "6000",
            "PUSHLINE_FALLBACK_SESSION_TIMEOUT_MS": "6000",
        }
        kafka = KafkaConfig.from_env(env)
        registry = SchemaRegistryConfig.from_env(env)
        topics = TopicsConfig.from_env(env)
        say(f"stack: Kafka {stack.bootstrap_servers}, registry {stack.registry_url}")
        ensure_topics(kafka, topics)
        say(
            f"topics: {len(list(topics_names(topics)))} under prefix {prefix!r}, "
            f"{options.partitions} partitions"
        )

        from receipts import start_receipts_api_process  # noqa: PLC0415

        api = start_receipts_api_process(env, timeout=60)
        apns = EmulatorControl(env["APNS_URL"], env["PUSHLINE_CA_FILE"])
        fcm = EmulatorControl(env["FCM_URL"], env["PUSHLINE_CA_FILE"])
        collector = _Collector(kafka, registry, topics)
        logs = Path(tmp)
        try:
            with _components(env, logs) as metrics_urls:
                _wait_ready(metrics_urls, timeout=90)
                metrics_urls["receipts-api"] = f"{api.url}/metrics"
                say("components ready: 2 dispatchers, reconciler, receipts API, fallback sender")
                requests, devices = sample_notifications(options.notifications, options)
                dead_since = int((time.time() - 86_400) * 1000)
                apns.set_unregistered(
                    [
                        t
                        for t, d in devices.items()
                        if d.unregistered and d.platform is Platform.APNS
                    ],
                    timestamp_ms=dead_since,
                )
                for token, device in devices.items():
                    if device.unregistered and device.platform is Platform.FCM:
                        fcm.set_token_reason(token, "UNREGISTERED")
                # provider trouble while the first half goes out: 429 and 503 bursts
                apns.set_rates(status_429=0.03, status_503=0.03, retry_after=1, seed=options.seed)
                fcm.set_rates(status_429=0.03, status_503=0.03, retry_after=1, seed=options.seed)
                fleet = _Devices(env, api.url, devices)
                try:
                    ids = {r.notification_id for r in requests}
                    progress = _Progress("producing", len(requests), as_json)
                    with NotificationProducer(kafka, registry, topics) as producer:
                        for i, request in enumerate(requests, 1):
                            producer.send(request)
                            progress.update(i)
                    progress.close(len(requests))
                    final_progress = _Progress("final statuses", len(ids), as_json)
                    deadline = time.monotonic() + options.timeout_s
                    troubled = True
                    while (done := collector.finished(ids)) < len(ids):
                        if troubled and collector.outcome_count() >= len(ids) // 2:
                            # the providers recover once half the notifications went out
                            apns.set_rates(0, 0, 0, retry_after=0)
                            fcm.set_rates(0, 0, 0, retry_after=0)
                            troubled = False
                        final_progress.update(done)
                        if time.monotonic() > deadline:
                            break
                        time.sleep(0.25)
                    final_progress.close(collector.finished(ids))
                    provider_stats = [apns.stats(), fcm.stats()]
                finally:
                    fleet.close()
        finally:
            api.close()
            apns.close()
            fcm.close()
            time.sleep(0.5)
            collector.close()

        summary = _summarise(
            options, requests, collector, fleet, started, metrics_urls, provider_stats
        )
        summary.data["topic_prefix"] = prefix
    if as_json:
        print(json.dumps(summary.data, sort_keys=True))
    else:
        print(summary.table())
    if summary.data["unaccounted"]:
        print(
            f"pushline: error: {summary.data['unaccounted']} notifications have no final status",
            file=sys.stderr,
        )
        return 1
    return 0


def topics_names(topics: TopicsConfig) -> Iterator[str]:
    from pushline.config import TOPIC_NAMES  # noqa: PLC0415

    return (topics.name(t) for t in TOPIC_NAMES)


def push_throughput(
    requests: Sequence[NotificationRequest], terminal: Iterable[DispatchOutcome]
) -> float:
    """Notifications/s from the first request's ``created_at`` to the last terminal outcome of a
    push. Push outcomes only: a fallback's outcome comes after the receipt deadline by design, and
    timing the throughput to it measured the deadline, not the dispatchers."""
    pushed = [o.decided_at.timestamp() for o in terminal if o.channel is Channel.PUSH]
    last_outcome = max(pushed, default=time.time())
    first_request = min(r.created_at.timestamp() for r in requests)
    return len(requests) / max(last_outcome - first_request, 1e-9)


def _summarise(
    options: DemoOptions,
    requests: list[NotificationRequest],
    collector: _Collector,
    fleet: _Devices,
    started: float,
    metrics: Mapping[str, str],
    provider_stats: list[dict[str, Any]],
) -> _Summary:
    ids = {r.notification_id for r in requests}
    platform_of = {r.notification_id: r.platform.value for r in requests}
    final = {nid: s for nid, s in collector.final.items() if nid in ids}
    statuses = Counter(s.state.value for s in final.values())
    by_platform: dict[str, Counter[str]] = {}
    for nid, status in final.items():
        by_platform.setdefault(status.state.value, Counter())[platform_of[nid]] += 1
    outcomes = [o for o in collector.outcomes if o.notification_id in ids]
    terminal = [o for o in outcomes if o.state.value not in ("RETRY_SCHEDULED", "DUPLICATE")]
    pushed = [o for o in terminal if o.channel is Channel.PUSH]
    outcome_latency = [(o.decided_at - o.requested_at).total_seconds() * 1000 for o in pushed]
    provider_latency = [o.latency_ms for o in outcomes if o.latency_ms is not None]
    channels = Counter(o.channel.value for o in terminal if o.state is OutcomeState.ACCEPTED)
    return _Summary(
        {
            "requested": len(requests),
            "statuses": dict(statuses),
            "by_platform": {k: dict(v) for k, v in by_platform.items()},
            "by_platform_requested": dict(Counter(platform_of.values())),
            "unaccounted": len(ids - final.keys()),
            "throughput_per_s": push_throughput(requests, terminal),
            "dispatchers": COMPONENTS.count("dispatcher"),
            "provider_latency_ms": {
                "p50": _percentile(provider_latency, 0.5),
                "p99": _percentile(provider_latency, 0.99),
            },
            "outcome_latency_ms": {
                "p50": _percentile(outcome_latency, 0.5),
                "p99": _percentile(outcome_latency, 0.99),
            },
            "retry_scheduled": sum(1 for o in outcomes if o.state.value == "RETRY_SCHEDULED"),
            "provider_answers": {
                status: sum(int(st["by_status"].get(status, 0)) for st in provider_stats)
                for status in ("200", "410", "404", "429", "503")
            },
            "receipts_posted": fleet.receipts_sent,
            "receipt_errors": fleet.receipt_errors,
            "fallbacks_sent": statuses.get("FALLBACK_SENT", 0),
            "emails": channels.get("EMAIL", 0),
            "sms": channels.get("SMS", 0),
            "invalid_tokens": len({t.device_token for t in collector.invalid_tokens}),
            "elapsed_s": time.monotonic() - started,
            "metrics": dict(metrics),
            "options": {
                "partitions": options.partitions,
                "receipt_deadline_ms": options.receipt_deadline_ms,
                "silent_share": options.silent_share,
                "unregistered_share": options.unregistered_share,
                "fallback_share": options.fallback_share,
            },
        }
    )
