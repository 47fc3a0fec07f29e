"""The dispatcher on the embedded stack: real Kafka, real HTTP/2 emulators of APNs and FCM."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka.serialization import MessageField, SerializationContext

from pushline.config import KafkaConfig, SchemaRegistryConfig, TopicsConfig
from pushline.dlq import DeadLetter
from pushline.ops import dispatcher_metrics
from pushline.stack import StackHandle
from pushline.topics import ensure_topics
from schemas import (
    EventSerializer,
    NotificationContent,
    OutcomeState,
    Platform,
    make_registry_client,
)
from schemas.payloads import RECEIPT_TOKEN_KEY
from tests.integration.pipeline import (
    Pipeline,
    TopicReader,
    all_final,
    control,
    outcome_reader,
    raw_producer,
    request,
    signer_for,
    terminal,
)

pytestmark = pytest.mark.integration

# What each provider reason must end as, written out here rather than read from the dispatcher's
# table, so a wrong entry there fails this test. Transient and configuration reasons retry until
# the attempt budget (2 here) is spent.
APNS_EXPECTED = {
    "BadCollapseId": OutcomeState.REJECTED,
    "BadDeviceToken": OutcomeState.INVALID_TOKEN,
    "BadExpirationDate": OutcomeState.REJECTED,
    "BadMessageId": OutcomeState.REJECTED,
    "BadPriority": OutcomeState.REJECTED,
    "BadTopic": OutcomeState.REJECTED,
    "DeviceTokenNotForTopic": OutcomeState.INVALID_TOKEN,
    "DuplicateHeaders": OutcomeState.REJECTED,
    "IdleTimeout": OutcomeState.REJECTED,
    "InvalidPushType": OutcomeState.REJECTED,
    "MissingDeviceToken": OutcomeState.REJECTED,
    "MissingTopic": OutcomeState.REJECTED,
    "PayloadEmpty": OutcomeState.REJECTED,
    "TopicDisallowed": OutcomeState.REJECTED,
    "BadCertificate": OutcomeState.FAILED,
    "BadCertificateEnvironment": OutcomeState.FAILED,
    "Forbidden": OutcomeState.FAILED,
    "InvalidProviderToken": OutcomeState.FAILED,
    "MissingProviderToken": OutcomeState.FAILED,
    "BadPath": OutcomeState.REJECTED,
    "MethodNotAllowed": OutcomeState.REJECTED,
    "ExpiredToken": OutcomeState.INVALID_TOKEN,
    "Unregistered": OutcomeState.INVALID_TOKEN,
    "PayloadTooLarge": OutcomeState.REJECTED,
    "TooManyProviderTokenUpdates": OutcomeState.FAILED,
    "TooManyRequests": OutcomeState.FAILED,
    "InternalServerError": OutcomeState.FAILED,
    "ServiceUnavailable": OutcomeState.FAILED,
    "Shutdown": OutcomeState.FAILED,
}
FCM_EXPECTED = {
    "INVALID_ARGUMENT": OutcomeState.REJECTED,
    "THIRD_PARTY_AUTH_ERROR": OutcomeState.FAILED,
    "SENDER_ID_MISMATCH": OutcomeState.INVALID_TOKEN,
    "UNREGISTERED": OutcomeState.INVALID_TOKEN,
    "QUOTA_EXCEEDED": OutcomeState.FAILED,
    "INTERNAL": OutcomeState.FAILED,
    "UNAVAILABLE": OutcomeState.FAILED,
}


@pytest.fixture
def env(stack: StackHandle) -> Iterator[dict[str, str]]:
    for which in ("APNS", "FCM"):
        with control(stack.env, which) as ctl:
            ctl.reset()
    yield {**os.environ, **stack.env}
    for which in ("APNS", "FCM"):
        with control(stack.env, which) as ctl:
            ctl.reset()


@pytest.fixture
def topics(kafka_config: KafkaConfig, topics_config: TopicsConfig) -> TopicsConfig:
    ensure_topics(kafka_config, topics_config)
    return topics_config


@pytest.fixture
def outcomes(
    kafka_config: KafkaConfig, registry_config: SchemaRegistryConfig, topics: TopicsConfig
) -> Iterator[TopicReader]:
    reader = outcome_reader(kafka_config, registry_config, topics)
    yield reader
    reader.close()


@pytest.fixture
def pipeline(
    kafka_config: KafkaConfig,
    registry_config: SchemaRegistryConfig,
    topics: TopicsConfig,
    env: dict[str, str],
    outcomes: TopicReader,
) -> Pipeline:
    return Pipeline(kafka_config, registry_config, topics, env, outcomes)


def test_accepted_pushes_carry_collapse_id_and_a_valid_receipt_token(pipeline: Pipeline) -> None:
    reqs = [request(Platform.APNS), request(Platform.FCM), request(collapse_key="order-7")]
    with pipeline.dispatcher():
        ids = pipeline.send(reqs)
        got = pipeline.outcomes.wait_for(all_final(ids))
    final = terminal(got)
    for r in reqs:
        [o] = final[r.notification_id]
        assert o.state is OutcomeState.ACCEPTED
        assert o.provider_message_id
        assert o.collapse_id == (r.collapse_key or r.notification_id)
        assert o.device_key == r.key
    with pipeline.control("APNS") as apns:
        pushes = {p["token"]: p for p in apns.pushes()}
    for r in (reqs[0], reqs[2]):
        push = pushes[r.device_token]
        assert push["collapse_id"] == (r.collapse_key or r.notification_id)
        claims = signer_for(pipeline.env).verify(
            push["payload"][RECEIPT_TOKEN_KEY], device_key=r.key
        )
        assert claims.notification_id == r.notification_id
    with pipeline.control("FCM") as fcm:
        [push] = [p for p in fcm.pushes() if p["token"] == reqs[1].device_token]
    claims = signer_for(pipeline.env).verify(
        push["payload"]["data"][RECEIPT_TOKEN_KEY], device_key=reqs[1].key
    )
    assert claims.notification_id == reqs[1].notification_id


def test_every_provider_reason_ends_in_the_right_outcome(pipeline: Pipeline) -> None:
    reqs: dict[str, tuple[Any, OutcomeState, str]] = {}
    with pipeline.control("APNS") as apns, pipeline.control("FCM") as fcm:
        for reason, state in APNS_EXPECTED.items():
            r = request(Platform.APNS)
            apns.set_token_reason(r.device_token, reason)
            reqs[r.notification_id] = (r, state, reason)
        for code, state in FCM_EXPECTED.items():
            r = request(Platform.FCM)
            fcm.set_token_reason(r.device_token, code)
            reqs[r.notification_id] = (r, state, code)
        apns.set_rates(0, 0, 0, retry_after=0)
        fcm.set_rates(0, 0, 0, retry_after=0)
    with pipeline.dispatcher(max_attempts=2, in_process_retry_max_s=5):
        ids = pipeline.send([r for r, _, _ in reqs.values()])
        got = pipeline.outcomes.wait_for(all_final(ids), timeout=90)
    final = terminal(got)
    wrong = []
    for nid, (_, state, reason) in reqs.items():
        [o] = final[nid]
        if o.state is not state or reason not in (o.reason or ""):
            wrong.append((reason, o.state.value, o.reason))
        if o.state is OutcomeState.INVALID_TOKEN and reason in ("Unregistered", "ExpiredToken"):
            assert o.token_invalid_since is not None, reason
    assert not wrong


def test_410_carries_the_invalid_since_time(pipeline: Pipeline) -> None:
    since_ms = int((datetime.now(UTC) - timedelta(days=3)).timestamp() * 1000)
    r = request(Platform.APNS)
    with pipeline.control("APNS") as apns:
        apns.set_unregistered([r.device_token], timestamp_ms=since_ms)
    with pipeline.dispatcher():
        pipeline.send([r])
        got = pipeline.outcomes.wait_for(all_final({r.notification_id}))
    [o] = terminal(got)[r.notification_id]
    assert o.state is OutcomeState.INVALID_TOKEN
    assert o.provider_status == 410
    assert o.token_invalid_since is not None
    assert int(o.token_invalid_since.timestamp() * 1000) == since_ms


def test_429_retry_after_is_never_retried_early_in_process_or_through_the_topic(
    pipeline: Pipeline,
) -> None:
    short, long_ = request(Platform.APNS), request(Platform.APNS)
    with (
        pipeline.control("APNS") as apns,
        pipeline.dispatcher(in_process_retry_max_s=2.0),
    ):
        apns.set_rates(status_429=1.0, retry_after=1)
        pipeline.send([short])
        time.sleep(0.3)  # the first attempt has been refused by now
        apns.set_rates(0, 0, 0, retry_after=0)
        got = pipeline.outcomes.wait_for(all_final({short.notification_id}))
        [o] = terminal(got)[short.notification_id]
        assert o.state is OutcomeState.ACCEPTED
        assert o.attempt >= 2
        assert o.sent_at is not None
        assert (o.sent_at - short.created_at).total_seconds() >= 1.0

        apns.set_rates(status_429=1.0, retry_after=3)
        pipeline.send([long_])
        scheduled = pipeline.outcomes.wait_for(
            lambda evs: any(
                e.notification_id == long_.notification_id
                and e.state is OutcomeState.RETRY_SCHEDULED
                for e in evs
            )
        )
        apns.set_rates(0, 0, 0, retry_after=0)
        got = pipeline.outcomes.wait_for(all_final({long_.notification_id}))
    [retry] = [
        e
        for e in scheduled
        if e.notification_id == long_.notification_id and e.state is OutcomeState.RETRY_SCHEDULED
    ]
    [o] = terminal(got)[long_.notification_id]
    assert o.state is OutcomeState.ACCEPTED
    assert retry.provider_status == 429
    assert retry.sent_at is not None and o.sent_at is not None
    assert (o.sent_at - retry.sent_at).total_seconds() >= 3.0


def test_a_503_storm_then_recovery_delivers_everything_once(pipeline: Pipeline) -> None:
    reqs = [request(Platform.APNS if i % 2 else Platform.FCM) for i in range(40)]
    with (
        pipeline.control("APNS") as apns,
        pipeline.control("FCM") as fcm,
        pipeline.dispatcher(in_process_retry_max_s=0.5),
    ):
        apns.set_rates(status_503=1.0, retry_after=1)
        fcm.set_rates(status_503=1.0, retry_after=1)
        ids = pipeline.send(reqs)
        pipeline.outcomes.wait_for(
            lambda evs: sum(e.state is OutcomeState.RETRY_SCHEDULED for e in evs) >= 20
        )
        apns.set_rates(0, 0, 0, retry_after=0)
        fcm.set_rates(0, 0, 0, retry_after=0)
        got = pipeline.outcomes.wait_for(all_final(ids), timeout=90)
    final = terminal(got)
    assert {nid: [o.state for o in final[nid]] for nid in ids} == {
        nid: [OutcomeState.ACCEPTED] for nid in ids
    }


def test_goaway_mid_stream_loses_nothing(pipeline: Pipeline) -> None:
    goaway = pipeline.with_env(APNS_URL=pipeline.env["APNS_H2_URL"])
    reqs = [request(Platform.APNS) for _ in range(60)]
    with goaway.control("APNS") as apns:
        apns.set_goaway_after(7)
        with goaway.dispatcher():
            ids = pipeline.send(reqs)
            got = pipeline.outcomes.wait_for(all_final(ids), timeout=90)
        accepted_tokens = {p["token"] for p in apns.pushes()}
    final = terminal(got)
    assert all([o.state for o in final[nid]] == [OutcomeState.ACCEPTED] for nid in ids)
    assert {r.device_token for r in reqs} <= accepted_tokens


def test_expired_requests_are_not_sent(pipeline: Pipeline) -> None:
    r = request(Platform.APNS)
    expired = replace(r, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    serializer = EventSerializer(type(r), make_registry_client(pipeline.registry))
    producer = raw_producer(pipeline.kafka)
    producer.produce(
        pipeline.topics.requests,
        key=expired.key,
        value=serializer(
            expired, SerializationContext(pipeline.topics.requests, MessageField.VALUE)
        ),
    )
    producer.flush(10)
    with pipeline.dispatcher():
        got = pipeline.outcomes.wait_for(all_final({r.notification_id}))
    [o] = terminal(got)[r.notification_id]
    assert o.state is OutcomeState.EXPIRED
    with pipeline.control("APNS") as apns:
        assert r.device_token not in {p["token"] for p in apns.pushes()}


def test_a_duplicate_is_not_sent_again_even_after_a_restart(pipeline: Pipeline) -> None:
    r = request(Platform.APNS)
    with pipeline.dispatcher():
        pipeline.send([r, r])
        pipeline.outcomes.wait_for(lambda evs: len(evs) >= 2)
    with pipeline.dispatcher():
        pipeline.send([r])
        got = pipeline.outcomes.wait_for(lambda evs: len(evs) >= 3)
    states = sorted(e.state.value for e in got if e.notification_id == r.notification_id)
    assert states == ["ACCEPTED", "DUPLICATE", "DUPLICATE"]
    with pipeline.control("APNS") as apns:
        assert [p["token"] for p in apns.pushes()].count(r.device_token) == 1


def test_hostile_input_ends_in_the_dead_letter_topic_and_the_dispatcher_goes_on(
    pipeline: Pipeline,
) -> None:
    client = make_registry_client(pipeline.registry)
    # an event of another shape, written with a schema the registry knows (under another subject)
    from confluent_kafka.schema_registry.avro import AvroSerializer

    partial_schema = (
        '{"type":"record","name":"NotificationRequest","namespace":"pushline.events",'
        '"fields":[{"name":"notification_id","type":"string"}]}'
    )
    partial = AvroSerializer(client, partial_schema)(
        {"notification_id": "0b0f3f4e-8d3c-4c53-9b8e-2a8e0f6f6c11"},
        SerializationContext(f"{pipeline.topics.prefix}other", MessageField.VALUE),
    )
    huge = request(Platform.APNS, content=NotificationContent(title="t", body="x" * 10_000))
    huge_value = EventSerializer(type(huge), client)(
        huge, SerializationContext(pipeline.topics.requests, MessageField.VALUE)
    )
    hostile = {
        b"random": os.urandom(64),
        b"unknown-schema": b"\x00\x00\x0f\x42\x3f" + os.urandom(20),
        b"missing-fields": partial,
        b"huge": huge_value,
    }
    producer = raw_producer(pipeline.kafka)
    for key, value in hostile.items():
        producer.produce(pipeline.topics.requests, key=key, value=value)
    producer.flush(10)
    good = request(Platform.APNS)
    dlq = TopicReader(pipeline.kafka, pipeline.topics.dlq, None)
    try:
        with pipeline.dispatcher():
            pipeline.send([good])
            pipeline.outcomes.wait_for(all_final({good.notification_id}))
            dlq.wait_for(lambda evs: len(evs) >= len(hostile))
        letters = {m.key(): (m.value(), DeadLetter.from_headers(m.headers())) for m in dlq.messages}
    finally:
        dlq.close()
    assert set(letters) == set(hostile)
    for key, (value, letter) in letters.items():
        assert value == hostile[key], "the original bytes are kept for replay"
        assert letter.source_topic == pipeline.topics.requests
        assert letter.source_offset >= 0
        assert letter.error_class and letter.error_message
    assert letters[b"huge"][1].error_class == "ValidationError"
    assert "content" in letters[b"huge"][1].error_message


def test_inflight_gauge_counts_the_notifications_being_worked_on(pipeline: Pipeline) -> None:
    """``pushline_inflight_sends`` is read at scrape time: it shows the notifications the emulator
    is holding, then nothing once their outcomes are acknowledged."""
    metrics = dispatcher_metrics(process_metrics=False)

    def inflight() -> float | None:
        return metrics.registry.get_sample_value("pushline_inflight_sends")

    reqs = [request(Platform.APNS) for _ in range(5)]  # five devices: five concurrent sends
    with pipeline.control("APNS") as apns:
        apns.set_latency(3000)
    with pipeline.dispatcher(metrics=metrics):
        assert inflight() == 0
        ids = pipeline.send(reqs)
        deadline = time.monotonic() + 20
        seen = 0.0
        while time.monotonic() < deadline and seen < len(reqs):
            seen = max(seen, inflight() or 0.0)
            time.sleep(0.05)
        assert seen == len(reqs)
        pipeline.outcomes.wait_for(all_final(ids))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and inflight() != 0:
            time.sleep(0.05)
        assert inflight() == 0


def test_one_device_gets_its_notifications_in_order_one_at_a_time(pipeline: Pipeline) -> None:
    """The first send of a device goes out without a task (fast path); what arrives for the
    device meanwhile waits for it and follows in order (through the device's task)."""
    token = request().device_token
    reqs = [request(Platform.APNS, device_token=token, body=f"#{i}") for i in range(6)]
    others = [request(Platform.APNS) for _ in range(4)]
    with pipeline.control("APNS") as apns:
        apns.set_latency(200)  # all of them arrive while the first is still at the provider
    with pipeline.dispatcher(in_process_retry_max_s=5):
        ids = pipeline.send(reqs + others)
        got = pipeline.outcomes.wait_for(all_final(ids), timeout=60)
    final = terminal(got)
    assert all(final[r.notification_id][0].state is OutcomeState.ACCEPTED for r in reqs + others)
    with pipeline.control("APNS") as apns:
        bodies = [
            p["payload"]["aps"]["alert"]["body"] for p in apns.pushes() if p["token"] == token
        ]
    assert bodies == [f"#{i}" for i in range(6)]
    sent = [final[r.notification_id][0].sent_at for r in reqs]  # one at a time: 200 ms apart
    gaps = [b - a for a, b in itertools.pairwise(sent) if a is not None and b is not None]
    assert len(gaps) == 5 and min(gaps) >= timedelta(milliseconds=150), gaps
