"""`pushline receipts-api` as a real server process on the embedded stack, driven with httpx.

What reached push.receipts is read back with a plain consumer and decoded with the project's
EventDeserializer. "Nothing was produced" is checked with a sentinel: after the refused requests, a
valid receipt for the same device key is sent; the key maps to one partition, so once the sentinel
has been read, anything the refused requests had produced would have been read before it.
"""

from __future__ import annotations

import asyncio
import base64
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, Message, TopicPartition
from confluent_kafka.serialization import MessageField, SerializationContext

from pushline.config import KafkaConfig, SchemaRegistryConfig, TopicsConfig
from pushline.stack import StackHandle
from pushline.topics import ensure_topics
from receipts import ReceiptsApiProcess, start_receipts_api_process
from receipts._bench import bench_receipts_api
from schemas import DeliveryReceipt, EventDeserializer, Platform, ReceiptKind, make_registry_client
from schemas.receipt_token import (
    ReceiptTokenConfig,
    ReceiptTokenSigner,
    generate_receipt_token_keys,
)
from tests.integration.pipeline import murmur2

pytestmark = pytest.mark.integration

PARTITIONS = 4
FCM_TOKEN = "cXk2:APA91b" + "Q" * 150  # too long to be embedded in the receipt token
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@dataclass
class Api:
    url: str
    process: ReceiptsApiProcess
    signer: ReceiptTokenSigner
    topics: TopicsConfig
    kafka: KafkaConfig
    registry: SchemaRegistryConfig
    env: dict[str, str]

    def token(self, device: str, nid: str | None = None, ttl: float = 3600) -> tuple[str, str]:
        nid = nid or str(uuid.uuid4())
        return nid, self.signer.sign(nid, device, datetime.now(UTC) + timedelta(seconds=ttl))

    def post(self, body: Any, **kwargs: Any) -> httpx.Response:
        return httpx.post(f"{self.url}/v1/receipts", json=body, timeout=30, **kwargs)

    def read(
        self, until: Callable[[list[tuple[Message, DeliveryReceipt]]], bool], timeout: float = 30
    ) -> list[tuple[Message, DeliveryReceipt]]:
        """Every record of the topic from the start, until ``until(records)`` holds."""
        decode = EventDeserializer(DeliveryReceipt, make_registry_client(self.registry))
        ctx = SerializationContext(self.topics.receipts, MessageField.VALUE)
        consumer = Consumer(
            self.kafka.to_librdkafka(
                **{"group.id": f"test-{uuid.uuid4().hex}", "enable.auto.commit": False}
            )
        )
        consumer.assign([TopicPartition(self.topics.receipts, p, 0) for p in range(PARTITIONS)])
        got: list[tuple[Message, DeliveryReceipt]] = []
        deadline = time.monotonic() + timeout
        try:
            while not until(got):
                assert time.monotonic() < deadline, f"timed out; read {len(got)} records"
                msg = consumer.poll(0.2)
                if msg is None or msg.error() is not None:
                    continue
                value = msg.value()
                assert value is not None
                got.append((msg, decode(value, ctx)))
        finally:
            consumer.close()
        return got

    def records_before_sentinel(self, device: str) -> list[DeliveryReceipt]:
        """Send a sentinel receipt for ``device``; the device's records read before it."""
        nid, tok = self.token(device)
        sentinel = self.post({"token": tok, "kind": "DELIVERED", "device_key": device})
        assert sentinel.status_code == 202, sentinel.text

        def seen(records: list[tuple[Message, DeliveryReceipt]]) -> bool:
            return any(r.notification_id == nid for _, r in records)

        records = self.read(seen)
        mine = [r for _, r in records if r.device_key == device]
        assert mine[-1].notification_id == nid
        return mine[:-1]


def _api_env(stack: StackHandle, topics: TopicsConfig, keys: str) -> dict[str, str]:
    return {
        **stack.env,
        "PUSHLINE_RECEIPT_TOKEN_KEYS": keys,
        "PUSHLINE_TOPIC_PREFIX": topics.prefix,
        "PUSHLINE_TOPIC_PARTITIONS": str(PARTITIONS),
        "PUSHLINE_RECEIPTS_MAX_BODY_BYTES": "4096",
        "PUSHLINE_RECEIPTS_BATCH_MAX": "5",
    }


def _topics() -> TopicsConfig:
    return TopicsConfig.from_env(
        {}, prefix=f"r{uuid.uuid4().hex[:8]}.", partitions=PARTITIONS, replication_factor=1
    )


@pytest.fixture(scope="module")
def api(stack: StackHandle) -> Iterator[Api]:
    topics = _topics()
    kafka = KafkaConfig.from_env(stack.env)
    ensure_topics(kafka, topics)
    keys = generate_receipt_token_keys("t1")
    env = _api_env(stack, topics, keys)
    process = start_receipts_api_process(env)
    try:
        yield Api(
            url=process.url,
            process=process,
            signer=ReceiptTokenConfig.from_env(env).signer(),
            topics=topics,
            kafka=kafka,
            registry=SchemaRegistryConfig.from_env(stack.env),
            env=env,
        )
    finally:
        assert process.close() == 0


def _flip_mac(tok: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(tok + "=" * (-len(tok) % 4)))
    raw[-3] ^= 0x40
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def _tamper_notification_id(tok: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(tok + "=" * (-len(tok) % 4)))
    raw[2 + raw[1] + 15] ^= 0x01  # last byte of the notification id, after version and kid
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def test_valid_receipt_reaches_push_receipts_keyed_by_device(api: Api) -> None:
    device = f"device-{uuid.uuid4().hex}"
    nid, tok = api.token(device)
    before = datetime.now(UTC) - timedelta(seconds=1)
    response = api.post(
        {
            "token": tok,
            "kind": "OPENED",
            "notification_id": nid,
            "device_time": "2025-03-01T08:30:00Z",
            "app_version": "2.0.1",
            "os_version": "Android 15",
            "platform": "FCM",
        },
        headers={"traceparent": TRACEPARENT},
    )
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 1, "duplicates": 0}
    [(msg, receipt)] = [
        (m, r)
        for m, r in api.read(lambda rs: any(r.notification_id == nid for _, r in rs))
        if r.notification_id == nid
    ]
    assert msg.key() == device.encode()
    assert msg.partition() == (murmur2(device.encode()) & 0x7FFFFFFF) % PARTITIONS
    assert dict(msg.headers() or [])["traceparent"] == TRACEPARENT.encode()
    assert receipt.notification_id == nid
    assert receipt.device_key == device
    assert receipt.kind is ReceiptKind.OPENED
    assert receipt.device_time == datetime(2025, 3, 1, 8, 30, tzinfo=UTC)
    assert receipt.app_version == "2.0.1"
    assert receipt.os_version == "Android 15"
    assert receipt.platform is Platform.FCM
    assert before <= receipt.received_at <= datetime.now(UTC) + timedelta(seconds=1)


def test_batch_reaches_push_receipts(api: Api) -> None:
    device = FCM_TOKEN + uuid.uuid4().hex[:8]
    (n1, t1), (n2, t2) = api.token(device), api.token(device)
    response = api.post(
        {
            "receipts": [
                {"token": t1, "kind": "DELIVERED", "device_key": device},
                {"token": t2, "kind": "OPENED", "device_key": device},
            ]
        }
    )
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 2, "duplicates": 0}
    got = api.records_before_sentinel(device)
    assert sorted((r.notification_id, r.kind) for r in got) == sorted(
        [(n1, ReceiptKind.DELIVERED), (n2, ReceiptKind.OPENED)]
    )


def test_refused_receipts_produce_nothing(api: Api) -> None:
    device = f"device-{uuid.uuid4().hex}"
    _, good = api.token(device)
    _, expired = api.token(device, ttl=-1)
    _, long_key = api.token(FCM_TOKEN)
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"token": _flip_mac(good), "kind": "DELIVERED"}, 401, "forged_token"),
        ({"token": _tamper_notification_id(good), "kind": "DELIVERED"}, 401, "forged_token"),
        ({"token": expired, "kind": "DELIVERED"}, 401, "expired_token"),
        (
            {"token": good, "kind": "DELIVERED", "notification_id": str(uuid.uuid4())},
            422,
            "notification_mismatch",
        ),
        ({"token": good, "kind": "DELIVERED", "device_key": "someone-else"}, 401, "forged_token"),
        ({"token": good, "kind": "SEEN"}, 422, "invalid_kind"),
        (
            {
                "receipts": [
                    {"token": good, "kind": "DELIVERED"},
                    {"token": expired, "kind": "OPENED"},
                ]
            },
            422,
            "invalid_batch",
        ),
    ]
    for body, status, code in cases:
        response = api.post(body)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), body
    # The long-key token, with the wrong device key: forged, and nothing for FCM_TOKEN either.
    wrong = api.post({"token": long_key, "kind": "DELIVERED", "device_key": FCM_TOKEN[:-1] + "R"})
    assert wrong.status_code == 401
    assert api.records_before_sentinel(device) == []


def test_body_errors(api: Api) -> None:
    device = f"device-{uuid.uuid4().hex}"
    _, tok = api.token(device)
    big = b'{"token": "' + tok.encode() + b'", "kind": "DELIVERED", "x": "' + b"y" * 5000 + b'"}'
    headers = {"content-type": "application/json"}
    too_big = httpx.post(f"{api.url}/v1/receipts", content=big, headers=headers)
    assert too_big.status_code == 413
    assert too_big.json()["error"]["code"] == "body_too_large"

    def chunked() -> Iterator[bytes]:
        for i in range(0, len(big), 1000):
            yield big[i : i + 1000]

    streamed = httpx.post(f"{api.url}/v1/receipts", content=chunked(), headers=headers)
    assert streamed.status_code == 413
    bad_json = httpx.post(f"{api.url}/v1/receipts", content=b"{nope", headers=headers)
    assert bad_json.status_code == 400
    assert bad_json.json()["error"]["code"] == "malformed_json"
    form = httpx.post(f"{api.url}/v1/receipts", data={"token": tok, "kind": "DELIVERED"})
    assert form.status_code == 415
    assert httpx.get(f"{api.url}/v1/receipts").status_code == 405
    assert httpx.get(f"{api.url}/v2/receipts").status_code == 404
    assert api.records_before_sentinel(device) == []


def test_replayed_receipt_is_accepted_and_produced_once(api: Api) -> None:
    device = f"device-{uuid.uuid4().hex}"
    nid, tok = api.token(device)
    answers = [api.post({"token": tok, "kind": "DELIVERED"}) for _ in range(3)]
    assert [a.status_code for a in answers] == [202, 202, 202]
    assert [a.json()["duplicates"] for a in answers] == [0, 1, 1]
    got = api.records_before_sentinel(device)
    assert [(r.notification_id, r.kind) for r in got] == [(nid, ReceiptKind.DELIVERED)]


def test_openapi_metrics_and_probes(api: Api) -> None:
    doc = httpx.get(f"{api.url}/openapi.json").json()
    assert {"/v1/receipts", "/healthz", "/readyz", "/metrics"} <= set(doc["paths"])
    assert doc["paths"]["/v1/receipts"]["post"]["responses"]["202"]
    assert httpx.get(f"{api.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{api.url}/readyz").json() == {"status": "ready"}
    _, tok = api.token(f"device-{uuid.uuid4().hex}")
    assert api.post({"token": tok, "kind": "OPENED"}).status_code == 202
    metrics = httpx.get(f"{api.url}/metrics").text
    assert 'pushline_receipts_total{kind="OPENED",result="accepted"}' in metrics
    assert "pushline_receipt_request_seconds_bucket" in metrics


def test_not_ready_until_the_topic_exists(stack: StackHandle) -> None:
    topics = _topics()
    keys = generate_receipt_token_keys()
    env = _api_env(stack, topics, keys)
    with start_receipts_api_process(env, wait_ready=False) as process:
        readyz = httpx.get(f"{process.url}/readyz")
        assert readyz.status_code == 503
        signer = ReceiptTokenConfig.from_env(env).signer()
        tok = signer.sign(str(uuid.uuid4()), "d", datetime.now(UTC) + timedelta(hours=1))
        early = httpx.post(f"{process.url}/v1/receipts", json={"token": tok, "kind": "OPENED"})
        assert early.status_code == 503
        assert early.headers["retry-after"]
        ensure_topics(KafkaConfig.from_env(stack.env), topics)
        deadline = time.monotonic() + 30
        while httpx.get(f"{process.url}/readyz").status_code != 200:
            assert time.monotonic() < deadline, "never became ready"
            time.sleep(0.2)
        late = httpx.post(f"{process.url}/v1/receipts", json={"token": tok, "kind": "OPENED"})
        assert late.status_code == 202
        assert process.close() == 0


def test_sigterm_finishes_in_flight_requests(api: Api, stack: StackHandle) -> None:
    """Every 202 given before or during shutdown is on the topic; the exit code is 0."""
    process = start_receipts_api_process(api.env)
    device = f"device-{uuid.uuid4().hex}"
    tokens = [api.token(device) for _ in range(200)]

    async def load() -> list[tuple[str, int | None]]:
        first_answer = asyncio.Event()
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=50)) as client:

            async def one(nid: str, tok: str) -> tuple[str, int | None]:
                try:
                    r = await client.post(
                        f"{process.url}/v1/receipts", json={"token": tok, "kind": "DELIVERED"}
                    )
                except httpx.HTTPError:
                    return nid, None
                first_answer.set()
                return nid, r.status_code

            tasks = [asyncio.ensure_future(one(nid, tok)) for nid, tok in tokens]
            await asyncio.wait_for(first_answer.wait(), 30)  # the rest are in flight or queued
            process.process.send_signal(signal.SIGTERM)
            return list(await asyncio.gather(*tasks))

    results = asyncio.run(load())
    assert process.process.wait(30) == 0
    accepted = {nid for nid, status in results if status == 202}
    assert accepted, "no request was answered before the shutdown"
    assert {status for _, status in results} <= {202, 503, None}
    got = api.read(lambda rs: accepted <= {r.notification_id for _, r in rs})
    assert accepted <= {r.notification_id for _, r in got}


def test_bench_receipts_api_reports_what_reached_the_topic(stack: StackHandle) -> None:
    env = {**stack.env, "PUSHLINE_RECEIPT_TOKEN_KEYS": generate_receipt_token_keys()}
    result = bench_receipts_api(env, seconds=1.0, connections=8, warmup=0.5, partitions=PARTITIONS)
    assert result["statuses"] == {"202": result["requests"]}
    assert result["requests"] > 0
    assert result["rps"] > 0
    assert result["rps_per_core"] > 0
    assert result["produced"] == result["accepted_total"]
    assert result["exit_code"] == 0
