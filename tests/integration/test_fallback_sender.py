"""The fallback sender on the embedded stack: real Kafka, the SMTP emulator (STARTTLS + AUTH) and the
Twilio-shaped SMS emulator."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer
from confluent_kafka.serialization import MessageField, SerializationContext

from producers import PRODUCER_SETTINGS
from pushline.config import KafkaConfig, SchemaRegistryConfig, TopicsConfig
from pushline.dlq import DeadLetter
from pushline.emulators.fallback import FallbackEmulators
from pushline.stack import StackHandle
from pushline.topics import ensure_topics
from receipts._fallback import HEADER_FALLBACK_FINISHED, FallbackSender
from receipts._fallback_config import FallbackConfig
from schemas import (
    Channel,
    DispatchOutcome,
    EventDeserializer,
    EventSerializer,
    Fallback,
    FallbackChannel,
    FallbackRequest,
    NotificationStatus,
    OutcomeState,
    Platform,
    StatusState,
    make_registry_client,
)
from tests.integration.pipeline import TopicReader

pytestmark = pytest.mark.integration

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture(scope="module")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FallbackEmulators]:
    with FallbackEmulators(Path(tmp_path_factory.mktemp("fallback"))) as started:
        yield started


@pytest.fixture(autouse=True)
def _reset(emulators: FallbackEmulators) -> None:
    with emulators.smtp_control() as smtp, emulators.sms_control() as sms:
        smtp.reset()
        sms.reset()


@pytest.fixture
def topics(kafka_config: KafkaConfig, topics_config: TopicsConfig) -> TopicsConfig:
    ensure_topics(kafka_config, topics_config)
    return topics_config


class RunningSender:
    """A FallbackSender on its own thread and event loop, as the process runs it."""

    def __init__(
        self,
        kafka: KafkaConfig,
        registry: SchemaRegistryConfig,
        topics: TopicsConfig,
        config: FallbackConfig,
    ) -> None:
        self.error: BaseException | None = None
        self.sender = FallbackSender(kafka=kafka, registry=registry, topics=topics, config=config)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.sender.ready:
            if self.error is not None:
                raise self.error
            assert time.monotonic() < deadline, "fallback sender got no partitions"
            time.sleep(0.05)

    def _run(self) -> None:
        try:
            asyncio.run(self.sender.run())
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self.sender.stop()
        self._thread.join(60)
        assert not self._thread.is_alive(), "fallback sender did not stop"
        if self.error is not None:
            raise self.error


@pytest.fixture
def start_sender(
    kafka_config: KafkaConfig,
    registry_config: SchemaRegistryConfig,
    topics: TopicsConfig,
    emulators: FallbackEmulators,
) -> Iterator[Callable[..., RunningSender]]:
    running: list[RunningSender] = []

    def start(**settings: Any) -> RunningSender:
        config = FallbackConfig.from_env(
            {**emulators.env, "SMTP_FROM": "Shop <no-reply@shop.test>"},
            **{
                "group_id": f"{topics.prefix}fallback",
                "session_timeout_ms": 6000,
                "backoff_base_s": 0.1,
                "backoff_max_s": 0.5,
                "commit_interval_s": 0.2,
                **settings,
            },
        )
        runner = RunningSender(kafka_config, registry_config, topics, config)
        running.append(runner)
        return runner

    yield start
    for runner in running:
        if runner._thread.is_alive():
            runner.stop()


class Writer:
    def __init__(self, kafka: KafkaConfig, registry: SchemaRegistryConfig, topics: TopicsConfig):
        self.topics = topics
        self._encode = EventSerializer(FallbackRequest, make_registry_client(registry))
        self._producer = Producer(kafka.to_librdkafka(**PRODUCER_SETTINGS))

    def send(self, *requests: FallbackRequest) -> None:
        ctx = SerializationContext(self.topics.fallbacks, MessageField.VALUE)
        for r in requests:
            self._producer.produce(
                self.topics.fallbacks,
                key=r.device_key,
                value=self._encode(r, ctx),
                headers=[("traceparent", TRACEPARENT)],
            )
        assert self._producer.flush(30) == 0

    def raw(self, key: bytes, value: bytes) -> None:
        self._producer.produce(self.topics.fallbacks, key=key, value=value)
        assert self._producer.flush(30) == 0


@pytest.fixture
def writer(
    kafka_config: KafkaConfig, registry_config: SchemaRegistryConfig, topics: TopicsConfig
) -> Writer:
    return Writer(kafka_config, registry_config, topics)


def _reader(
    kafka: KafkaConfig, registry: SchemaRegistryConfig, topic: str, cls: type[Any]
) -> TopicReader:
    decode = EventDeserializer(cls, make_registry_client(registry))
    return TopicReader(
        kafka, topic, lambda v, t: decode(v, SerializationContext(t, MessageField.VALUE))
    )


@pytest.fixture
def outcomes(
    kafka_config: KafkaConfig, registry_config: SchemaRegistryConfig, topics: TopicsConfig
) -> Iterator[TopicReader]:
    reader = _reader(kafka_config, registry_config, topics.outcomes, DispatchOutcome)
    yield reader
    reader.close()


@pytest.fixture
def statuses(
    kafka_config: KafkaConfig, registry_config: SchemaRegistryConfig, topics: TopicsConfig
) -> Iterator[TopicReader]:
    reader = _reader(kafka_config, registry_config, topics.status, NotificationStatus)
    yield reader
    reader.close()


def fallback_request(channel: FallbackChannel, address: str, **fields: Any) -> FallbackRequest:
    return FallbackRequest(
        notification_id=fields.pop("notification_id", str(uuid.uuid4())),
        device_key=fields.pop("device_key", f"device-{uuid.uuid4().hex[:12]}"),
        app_id="shop",
        user_id="user-7",
        fallback=Fallback(
            channel=channel,
            address=address,
            text=fields.pop("text", "Your parcel is on its way"),
            subject=fields.pop("subject", None),
        ),
        reason=fields.pop("reason", "NoReceipt"),
        requested_at=datetime.now(UTC),
        platform=Platform.FCM,
    )


def _by_id(events: list[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for e in events:
        out.setdefault(e.notification_id, []).append(e)
    return out


def _have(ids: set[str]) -> Callable[[list[Any]], bool]:
    return lambda events: ids <= {e.notification_id for e in events}


def _headers(reader: TopicReader, notification_id: str) -> dict[str, bytes]:
    for msg, event in zip(reader.messages, reader.snapshot(), strict=False):
        if event.notification_id == notification_id:
            return {k: v for k, v in msg.headers() or []}
    raise AssertionError(f"no event for {notification_id}")


def test_email_and_sms_are_sent_with_outcome_and_status(
    start_sender: Callable[..., RunningSender],
    writer: Writer,
    outcomes: TopicReader,
    statuses: TopicReader,
    emulators: FallbackEmulators,
) -> None:
    start_sender()
    email = fallback_request(
        FallbackChannel.EMAIL, "ann@example.test", subject="Your order", text="It shipped."
    )
    sms = fallback_request(FallbackChannel.SMS, "+4915112345678", text="It shipped (SMS).")
    writer.send(email, sms)
    ids = {email.notification_id, sms.notification_id}
    outs = _by_id(outcomes.wait_for(_have(ids)))
    stats = _by_id(statuses.wait_for(_have(ids)))

    with emulators.smtp_control() as smtp, emulators.sms_control() as sms_ctl:
        (mail,) = smtp.messages()
        (text,) = sms_ctl.messages()
    assert mail["rcpt_tos"] == ["ann@example.test"]
    assert mail["subject"] == "Your order"
    assert mail["body"].strip() == "It shipped."
    assert mail["message_id"] == f"<{email.notification_id}.fallback@shop.test>"
    assert mail["tls"] is True and mail["auth_user"] == "pushline"
    assert (text["to"], text["body"], text["from"]) == (
        "+4915112345678",
        "It shipped (SMS).",
        emulators.env["SMS_FROM"],
    )

    (email_out,) = outs[email.notification_id]
    (sms_out,) = outs[sms.notification_id]
    assert (email_out.channel, email_out.state) == (Channel.EMAIL, OutcomeState.ACCEPTED)
    assert email_out.provider_message_id == mail["message_id"]
    assert (sms_out.channel, sms_out.state) == (Channel.SMS, OutcomeState.ACCEPTED)
    assert sms_out.provider_message_id == text["sid"]
    assert re.fullmatch(r"SM[0-9a-f]{32}", sms_out.provider_message_id or "")
    assert sms_out.device_key == sms.device_key and sms_out.app_id == "shop"
    assert sms_out.fallback == sms.fallback and sms_out.attempt == 1

    for request in (email, sms):
        (status,) = stats[request.notification_id]
        assert status.state is StatusState.FALLBACK_SENT
        assert status.final is True
        assert status.device_key == request.device_key
        assert status.reason is not None and status.reason.endswith("NoReceipt")
        out_headers = _headers(outcomes, request.notification_id)
        assert out_headers["traceparent"] == TRACEPARENT.encode()
        assert out_headers[HEADER_FALLBACK_FINISHED] == b"1"
        assert _headers(statuses, request.notification_id)["traceparent"] == TRACEPARENT.encode()


def test_transient_failures_are_retried_then_sent(
    start_sender: Callable[..., RunningSender],
    writer: Writer,
    outcomes: TopicReader,
    statuses: TopicReader,
    emulators: FallbackEmulators,
) -> None:
    with emulators.smtp_control() as smtp, emulators.sms_control() as sms_ctl:
        smtp.fail(451, times=2)
        sms_ctl.fail(429, times=1, retry_after=1)
        sms_ctl.fail(503, times=1)
    start_sender(max_attempts=4)
    email = fallback_request(FallbackChannel.EMAIL, "bob@example.test")
    sms = fallback_request(FallbackChannel.SMS, "+4915112340000")
    started = time.monotonic()
    writer.send(email, sms)
    ids = {email.notification_id, sms.notification_id}
    outs = _by_id(outcomes.wait_for(_have(ids)))
    stats = _by_id(statuses.wait_for(_have(ids)))
    assert time.monotonic() - started >= 1.0  # the 429's Retry-After was honoured

    assert [(o.state, o.attempt) for o in outs[email.notification_id]] == [
        (OutcomeState.ACCEPTED, 3)
    ]
    assert [(o.state, o.attempt) for o in outs[sms.notification_id]] == [(OutcomeState.ACCEPTED, 3)]
    assert {s.state for ss in stats.values() for s in ss} == {StatusState.FALLBACK_SENT}
    with emulators.smtp_control() as smtp, emulators.sms_control() as sms_ctl:
        assert len(smtp.messages()) == 1
        assert smtp.stats()["refused_data"] == 2
        assert len(sms_ctl.messages()) == 1
        assert sms_ctl.stats()["by_status"] == {"429": 1, "503": 1, "201": 1}


def test_permanent_failures_and_spent_budgets_give_fallback_failed(
    start_sender: Callable[..., RunningSender],
    writer: Writer,
    outcomes: TopicReader,
    statuses: TopicReader,
    emulators: FallbackEmulators,
) -> None:
    with emulators.smtp_control() as smtp, emulators.sms_control() as sms_ctl:
        smtp.fail(550, address="gone@example.test", times=None)
        smtp.fail(421, address="busy@example.test", times=None)
        sms_ctl.fail(400, code=21610, to="+4915100000001", times=None)
    start_sender(max_attempts=2)
    gone = fallback_request(FallbackChannel.EMAIL, "gone@example.test")
    busy = fallback_request(FallbackChannel.EMAIL, "busy@example.test")
    unsubscribed = fallback_request(FallbackChannel.SMS, "+4915100000001")
    invalid_number = fallback_request(FallbackChannel.SMS, "0151-not-e164")
    requests = [gone, busy, unsubscribed, invalid_number]
    writer.send(*requests)
    ids = {r.notification_id for r in requests}
    outs = _by_id(outcomes.wait_for(_have(ids)))
    stats = _by_id(statuses.wait_for(_have(ids)))

    expected = {
        gone.notification_id: (OutcomeState.REJECTED, 1, 550, "550"),
        busy.notification_id: (OutcomeState.FAILED, 2, 421, "AttemptsExhausted:SMTP 421"),
        unsubscribed.notification_id: (OutcomeState.REJECTED, 1, 400, "21610"),
        invalid_number.notification_id: (OutcomeState.REJECTED, 1, 400, "21211"),
    }
    for nid, (state, attempts, provider_status, reason) in expected.items():
        (out,) = outs[nid]
        assert (out.state, out.attempt, out.provider_status) == (state, attempts, provider_status)
        assert out.reason is not None and reason in out.reason
        assert out.provider_message_id is None
        (status,) = stats[nid]
        assert status.state is StatusState.FALLBACK_FAILED and status.final
        assert status.reason is not None and reason in status.reason
    with emulators.smtp_control() as smtp, emulators.sms_control() as sms_ctl:
        assert smtp.messages() == [] and sms_ctl.messages() == []
        assert smtp.stats()["refused_rcpt"] == 1 + 2  # the 550 once, the 421 per attempt


def test_duplicate_requests_send_once_even_across_restarts(
    start_sender: Callable[..., RunningSender],
    writer: Writer,
    outcomes: TopicReader,
    statuses: TopicReader,
    emulators: FallbackEmulators,
) -> None:
    email = fallback_request(FallbackChannel.EMAIL, "dup@example.test")
    sms = fallback_request(FallbackChannel.SMS, "+4915112349999")
    first = start_sender()
    writer.send(email, sms, email, sms)  # copies in the same batch
    ids = {email.notification_id, sms.notification_id}
    outcomes.wait_for(_have(ids))
    statuses.wait_for(_have(ids))
    time.sleep(1.0)  # give a wrong second send time to happen
    first.stop()
    assert first.sender.stats["duplicates"] == 2

    # A restarted sender (same group) gets another copy: the finished ids come back from
    # push.outcomes, so it sends nothing and writes nothing.
    second = start_sender()
    writer.send(email, sms)
    deadline = time.monotonic() + 20
    while second.sender.stats["duplicates"] < 2:
        assert time.monotonic() < deadline, second.sender.stats
        time.sleep(0.1)
    second.stop()
    # A sender of a new group reads push.fallbacks from the start: six copies, none sent.
    third = start_sender(group_id=f"fresh-{uuid.uuid4().hex[:8]}")
    deadline = time.monotonic() + 20
    while third.sender.stats["duplicates"] < 6:
        assert time.monotonic() < deadline, third.sender.stats
        time.sleep(0.1)
    third.stop()

    with emulators.smtp_control() as smtp, emulators.sms_control() as sms_ctl:
        assert len(smtp.messages()) == 1
        assert len(sms_ctl.messages()) == 1
    assert len(outcomes.snapshot()) == 2
    assert len(statuses.snapshot()) == 2


def test_hostile_bytes_go_to_the_dlq_and_do_not_block(
    kafka_config: KafkaConfig,
    topics: TopicsConfig,
    start_sender: Callable[..., RunningSender],
    writer: Writer,
    outcomes: TopicReader,
    emulators: FallbackEmulators,
) -> None:
    start_sender()
    hostile = {
        b"k-garbage": b"\xff\xfe not avro at all",
        b"k-empty": b"",
        b"k-truncated": b"\x00\x00\x00",
        b"k-unknown-schema": b"\x00\x7f\xff\xff\xff\x02\x04",
    }
    dlq = TopicReader(kafka_config, topics.dlq, None)
    try:
        for key, value in hostile.items():
            writer.raw(key, value)
        after = fallback_request(FallbackChannel.EMAIL, "after@example.test")
        writer.send(after)
        outcomes.wait_for(_have({after.notification_id}))
        dlq.wait_for(lambda events: len(events) >= len(hostile))
        letters = {m.key(): (m.value(), DeadLetter.from_headers(m.headers())) for m in dlq.messages}
    finally:
        dlq.close()
    assert set(letters) == set(hostile)
    for key, (value, letter) in letters.items():
        assert (value or b"") == hostile[key]
        assert letter.source_topic == topics.fallbacks
        assert letter.error_class and letter.error_message
    with emulators.smtp_control() as smtp:
        assert [m["rcpt_tos"] for m in smtp.messages()] == [["after@example.test"]]


def test_the_process_serves_metrics_logs_json_without_secrets_and_stops_on_sigterm(
    stack: StackHandle,
    topics: TopicsConfig,
    writer: Writer,
    outcomes: TopicReader,
    emulators: FallbackEmulators,
    tmp_path: Path,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        ops_port = probe.getsockname()[1]
    env = {
        **os.environ,
        **stack.env,
        **emulators.env,
        "PUSHLINE_TOPIC_PREFIX": topics.prefix,
        "PUSHLINE_TOPIC_PARTITIONS": str(topics.partitions),
        "PUSHLINE_FALLBACK_GROUP_ID": f"{topics.prefix}fallback-process",
        "PUSHLINE_OPS_HOST": "127.0.0.1",
        "PUSHLINE_OPS_PORT": str(ops_port),
    }
    log_file = tmp_path / "fallback.log"
    with open(log_file, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pushline", "fallback-sender"],
            env=env,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
    try:
        base = f"http://127.0.0.1:{ops_port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log_file.read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            assert time.monotonic() < deadline, "the fallback sender never became ready"
            time.sleep(0.2)
        assert httpx.get(f"{base}/healthz").status_code == 200
        request = fallback_request(FallbackChannel.EMAIL, "proc@example.test")
        writer.send(request)
        outcomes.wait_for(_have({request.notification_id}))
        metrics = httpx.get(f"{base}/metrics").text
        assert 'pushline_fallbacks_total{channel="EMAIL",result="sent"} 1.0' in metrics
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(45) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    lines = log_file.read_text().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert records and len(records) == len([line for line in lines if line.strip()]), lines
    assert {"fallback sender starting", "fallback finished", "fallback sender stopped"} <= {
        r["msg"] for r in records
    }
    text = log_file.read_text()
    password = emulators.smtp.password if emulators.smtp else ""
    token = emulators.sms.auth_token if emulators.sms else ""
    assert password and password not in text
    assert token and token not in text
