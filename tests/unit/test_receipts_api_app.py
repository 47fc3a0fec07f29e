"""The receipts API app in-process (Starlette TestClient), with an in-memory receipt sink.

The sink is the API's own injected storage interface (``ReceiptSink``), not a protocol client; the
Kafka sink and the real server are covered in tests/integration/test_receipts_api.py.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from starlette.testclient import TestClient

from pushline.errors import ConfigError, DeliveryError
from receipts import ReceiptsApiConfig, create_app
from receipts._api import ApiLimits, RecentReceipts, receipts_metrics
from schemas import DeliveryReceipt, Platform, ReceiptKind
from schemas.receipt_token import ReceiptTokenSigner

KEYS = {"k1": b"k" * 32, "k2": b"z" * 32}
SIGNER = ReceiptTokenSigner(KEYS, "k1")
DEVICE = "a1" * 32  # an APNs token: short enough to be embedded in the receipt token
LONG_DEVICE = "cXk2:APA91b" + "Z" * 160  # an FCM token: too long to embed
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class MemorySink:
    """Records what it was asked to publish; can be made unready or failing."""

    def __init__(self) -> None:
        self.published: list[tuple[DeliveryReceipt, str | None]] = []
        self.is_ready = True
        self.fail: DeliveryError | None = None
        self.started = False
        self.closed = False

    async def start(self) -> None:
        self.started = True

    def ready(self) -> tuple[bool, str]:
        return self.is_ready, "" if self.is_ready else "broker unreachable"

    def healthy(self) -> bool:
        return self.started and not self.closed

    async def publish(self, receipts: Sequence[DeliveryReceipt], traceparent: str | None) -> None:
        if self.fail is not None:
            raise self.fail
        self.published.extend((r, traceparent) for r in receipts)

    async def aclose(self) -> None:
        self.closed = True


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
def client(sink: MemorySink) -> Iterator[TestClient]:
    limits = ApiLimits(max_body_bytes=2048, batch_max=3, retry_after_s=7, dedupe_size=100)
    app = create_app(sink, SIGNER, limits=limits, metrics=receipts_metrics(process_metrics=False))
    with TestClient(app) as c:
        yield c


def token(
    nid: str | None = None, device: str = DEVICE, ttl: timedelta = timedelta(hours=1)
) -> tuple[str, str]:
    nid = nid or str(uuid.uuid4())
    return nid, SIGNER.sign(nid, device, datetime.now(UTC) + ttl)


def flip_mac_byte(tok: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(tok + "=" * (-len(tok) % 4)))
    raw[-1] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def error_code(response: object) -> str:
    body = response.json()  # type: ignore[attr-defined]
    return str(body["error"]["code"])


def test_valid_receipt_is_published_with_verified_fields(
    client: TestClient, sink: MemorySink
) -> None:
    nid, tok = token()
    response = client.post(
        "/v1/receipts",
        json={
            "token": tok,
            "kind": "OPENED",
            "notification_id": nid.upper(),  # any UUID spelling of the same id
            "device_time": "2024-05-01T12:00:00.250+02:00",
            "app_version": "3.1.4",
            "os_version": "iOS 17.5",
            "platform": "APNS",
        },
        headers={"traceparent": TRACEPARENT},
    )
    assert response.status_code == 202
    assert response.json() == {"accepted": 1, "duplicates": 0}
    [(receipt, traceparent)] = sink.published
    assert receipt.notification_id == nid
    assert receipt.device_key == DEVICE
    assert receipt.kind is ReceiptKind.OPENED
    assert receipt.device_time == datetime(2024, 5, 1, 10, 0, 0, 250_000, tzinfo=UTC)
    assert receipt.app_version == "3.1.4"
    assert receipt.os_version == "iOS 17.5"
    assert receipt.platform is Platform.APNS
    assert abs(receipt.received_at - datetime.now(UTC)) < timedelta(seconds=5)
    assert traceparent == TRACEPARENT


def test_device_key_is_required_when_the_token_does_not_embed_it(
    client: TestClient, sink: MemorySink
) -> None:
    _, tok = token(device=LONG_DEVICE)
    missing = client.post("/v1/receipts", json={"token": tok, "kind": "DELIVERED"})
    assert missing.status_code == 422
    assert error_code(missing) == "device_key_required"
    given = client.post(
        "/v1/receipts", json={"token": tok, "kind": "DELIVERED", "device_key": LONG_DEVICE}
    )
    assert given.status_code == 202
    assert [r.device_key for r, _ in sink.published] == [LONG_DEVICE]


@pytest.mark.parametrize(
    ("make_body", "status", "code"),
    [
        (lambda: {"token": flip_mac_byte(token()[1]), "kind": "DELIVERED"}, 401, "forged_token"),
        (
            lambda: {"token": token(ttl=timedelta(seconds=-1))[1], "kind": "DELIVERED"},
            401,
            "expired_token",
        ),
        (
            lambda: {"token": token()[1], "kind": "DELIVERED", "device_key": "b2" * 32},
            401,
            "forged_token",
        ),
        (
            lambda: {
                "token": token(device=LONG_DEVICE)[1],
                "kind": "DELIVERED",
                "device_key": LONG_DEVICE + "x",
            },
            401,
            "forged_token",
        ),
        (
            lambda: {
                "token": token()[1],
                "kind": "DELIVERED",
                "notification_id": str(uuid.uuid4()),
            },
            422,
            "notification_mismatch",
        ),
        (
            lambda: {"token": token()[1], "kind": "DELIVERED", "notification_id": "nope"},
            422,
            "notification_mismatch",
        ),
        (lambda: {"token": "not-a-token", "kind": "DELIVERED"}, 422, "malformed_token"),
        (lambda: {"kind": "DELIVERED"}, 422, "malformed_token"),
        (lambda: {"token": token()[1], "kind": "READ"}, 422, "invalid_kind"),
        (lambda: {"token": token()[1]}, 422, "invalid_kind"),
        (
            lambda: {"token": token()[1], "kind": "DELIVERED", "device_time": "yesterday"},
            422,
            "invalid_field",
        ),
        (
            lambda: {"token": token()[1], "kind": "DELIVERED", "device_time": "2024-05-01T12:00"},
            422,
            "invalid_field",
        ),
        (lambda: {"token": token()[1], "kind": "OPENED", "app_version": 3}, 422, "invalid_field"),
        (lambda: {"token": token()[1], "kind": "OPENED", "platform": "WNS"}, 422, "invalid_field"),
        (lambda: [{"token": token()[1], "kind": "OPENED"}], 422, "invalid_request"),
        (lambda: {"receipts": []}, 422, "invalid_request"),
    ],
)
def test_refused_receipts_are_not_published(
    client: TestClient, sink: MemorySink, make_body: object, status: int, code: str
) -> None:
    response = client.post("/v1/receipts", json=make_body())  # type: ignore[operator]
    assert response.status_code == status, response.text
    assert error_code(response) == code
    assert response.json()["error"]["message"]
    assert sink.published == []


def test_a_tampered_notification_id_inside_the_token_is_forged(
    client: TestClient, sink: MemorySink
) -> None:
    _, tok = token()
    raw = bytearray(base64.urlsafe_b64decode(tok + "=" * (-len(tok) % 4)))
    raw[2 + len("k1")] ^= 0xFF  # first byte of the notification id
    tampered = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    response = client.post("/v1/receipts", json={"token": tampered, "kind": "DELIVERED"})
    assert response.status_code == 401
    assert error_code(response) == "forged_token"
    assert sink.published == []


def test_malformed_json_is_400(client: TestClient, sink: MemorySink) -> None:
    response = client.post(
        "/v1/receipts", content=b'{"token": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert error_code(response) == "malformed_json"


def test_wrong_content_type_is_415(client: TestClient) -> None:
    _, tok = token()
    response = client.post(
        "/v1/receipts", content=f"token={tok}", headers={"content-type": "text/plain"}
    )
    assert response.status_code == 415
    assert error_code(response) == "unsupported_media_type"
    with_charset = client.post(
        "/v1/receipts",
        content=b'{"token": "' + tok.encode() + b'", "kind": "DELIVERED"}',
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert with_charset.status_code == 202


def test_oversize_body_is_413_by_content_length(client: TestClient, sink: MemorySink) -> None:
    _, tok = token()
    body = b'{"token": "' + tok.encode() + b'", "kind": "DELIVERED", "pad": "' + b"x" * 3000 + b'"}'
    response = client.post(
        "/v1/receipts", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert error_code(response) == "body_too_large"
    assert sink.published == []


def test_oversize_body_is_413_when_streamed_without_content_length(
    client: TestClient, sink: MemorySink
) -> None:
    _, tok = token()

    def chunks() -> Iterator[bytes]:  # chunked transfer: no Content-Length to trust
        yield b'{"token": "' + tok.encode() + b'", "kind": "DELIVERED", "pad": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'"}'

    response = client.post(
        "/v1/receipts", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert sink.published == []


def test_a_body_just_under_the_limit_is_read(client: TestClient) -> None:
    _, tok = token()

    def chunks() -> Iterator[bytes]:
        yield b'{"token": "' + tok.encode() + b'", "kind": "DELIVERED", "pad": "'
        yield b"x" * 1500
        yield b'"}'

    response = client.post(
        "/v1/receipts", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 202


def test_batch_is_published_whole(client: TestClient, sink: MemorySink) -> None:
    (n1, t1), (n2, t2) = token(), token(device=LONG_DEVICE)
    response = client.post(
        "/v1/receipts",
        json={
            "receipts": [
                {"token": t1, "kind": "DELIVERED"},
                {"token": t2, "kind": "OPENED", "device_key": LONG_DEVICE},
            ]
        },
    )
    assert response.status_code == 202
    assert response.json() == {"accepted": 2, "duplicates": 0}
    assert [(r.notification_id, r.kind) for r, _ in sink.published] == [
        (n1, ReceiptKind.DELIVERED),
        (n2, ReceiptKind.OPENED),
    ]


def test_batch_with_one_bad_item_is_refused_whole(client: TestClient, sink: MemorySink) -> None:
    _, good = token()
    _, expired = token(ttl=timedelta(seconds=-5))
    response = client.post(
        "/v1/receipts",
        json={
            "receipts": [
                {"token": good, "kind": "DELIVERED"},
                {"token": flip_mac_byte(good), "kind": "DELIVERED"},
                {"token": expired, "kind": "OPENED"},
            ]
        },
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_batch"
    assert [(i["index"], i["status"], i["code"]) for i in error["items"]] == [
        (1, 401, "forged_token"),
        (2, 401, "expired_token"),
    ]
    assert sink.published == []


def test_batch_larger_than_the_maximum_is_refused(client: TestClient, sink: MemorySink) -> None:
    items = [{"token": token()[1], "kind": "DELIVERED"} for _ in range(4)]
    response = client.post("/v1/receipts", json={"receipts": items})
    assert response.status_code == 422
    assert error_code(response) == "batch_too_large"
    assert sink.published == []


def test_repeated_receipt_is_accepted_and_published_once(
    client: TestClient, sink: MemorySink
) -> None:
    nid, tok = token()
    body = {"token": tok, "kind": "DELIVERED"}
    first = client.post("/v1/receipts", json=body)
    second = client.post("/v1/receipts", json=body)
    opened = client.post("/v1/receipts", json={"token": tok, "kind": "OPENED"})
    in_batch = client.post("/v1/receipts", json={"receipts": [body, body]})
    assert [r.status_code for r in (first, second, opened, in_batch)] == [202] * 4
    assert second.json() == {"accepted": 1, "duplicates": 1}
    assert in_batch.json() == {"accepted": 2, "duplicates": 2}
    assert [(r.notification_id, r.kind) for r, _ in sink.published] == [
        (nid, ReceiptKind.DELIVERED),
        (nid, ReceiptKind.OPENED),
    ]


def test_broker_failure_is_503_and_the_receipt_is_not_remembered(
    client: TestClient, sink: MemorySink
) -> None:
    nid, tok = token()
    sink.fail = DeliveryError("broker down", topic="push.receipts", retriable=True)
    failed = client.post("/v1/receipts", json={"token": tok, "kind": "DELIVERED"})
    assert failed.status_code == 503
    assert failed.headers["retry-after"] == "7"
    assert error_code(failed) == "unavailable"
    sink.fail = None
    retried = client.post("/v1/receipts", json={"token": tok, "kind": "DELIVERED"})
    assert retried.status_code == 202
    assert retried.json()["duplicates"] == 0
    assert [r.notification_id for r, _ in sink.published] == [nid]


def test_not_ready_is_503_on_post_and_readyz(client: TestClient, sink: MemorySink) -> None:
    assert client.get("/readyz").status_code == 200
    sink.is_ready = False
    readyz = client.get("/readyz")
    assert readyz.status_code == 503
    assert readyz.json() == {"status": "not ready", "reason": "broker unreachable"}
    response = client.post("/v1/receipts", json={"token": token()[1], "kind": "DELIVERED"})
    assert response.status_code == 503
    assert error_code(response) == "not_ready"
    assert response.headers["retry-after"] == "7"
    assert sink.published == []


def test_malformed_traceparent_is_not_forwarded(client: TestClient, sink: MemorySink) -> None:
    response = client.post(
        "/v1/receipts",
        json={"token": token()[1], "kind": "DELIVERED"},
        headers={"traceparent": "not a trace\r\n"[:11]},
    )
    assert response.status_code == 202
    assert sink.published[0][1] is None


def test_unknown_paths_and_methods_answer_json(client: TestClient) -> None:
    missing = client.get("/v1/nothing")
    assert missing.status_code == 404
    assert error_code(missing) == "not_found"
    wrong = client.get("/v1/receipts")
    assert wrong.status_code == 405
    assert error_code(wrong) == "method_not_allowed"
    assert wrong.headers["allow"] == "POST"


def test_openapi_describes_the_api(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    post = doc["paths"]["/v1/receipts"]["post"]
    assert set(post["responses"]) == {"202", "400", "401", "413", "415", "422", "503"}
    schema = post["requestBody"]["content"]["application/json"]["schema"]
    assert {ref["$ref"] for ref in schema["oneOf"]} == {
        "#/components/schemas/Receipt",
        "#/components/schemas/ReceiptBatch",
    }
    receipt = doc["components"]["schemas"]["Receipt"]
    assert receipt["required"] == ["token", "kind"]
    assert doc["components"]["schemas"]["ReceiptBatch"]["properties"]["receipts"]["maxItems"] == 3
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert "get" in doc["paths"][path]


def test_metrics_count_receipts_by_kind_and_result(client: TestClient) -> None:
    _, tok = token()
    client.post("/v1/receipts", json={"token": tok, "kind": "OPENED"})
    client.post("/v1/receipts", json={"token": tok, "kind": "OPENED"})
    client.post("/v1/receipts", json={"token": flip_mac_byte(tok), "kind": "DELIVERED"})
    text = client.get("/metrics").text
    assert 'pushline_receipts_total{kind="OPENED",result="accepted"} 1.0' in text
    assert 'pushline_receipts_total{kind="OPENED",result="duplicate"} 1.0' in text
    assert 'pushline_receipts_total{kind="DELIVERED",result="forged_token"} 1.0' in text
    assert 'pushline_receipt_request_seconds_count{status="202"} 2.0' in text
    assert 'pushline_receipt_request_seconds_count{status="401"} 1.0' in text


def test_lifespan_starts_and_closes_the_sink(sink: MemorySink) -> None:
    app = create_app(sink, SIGNER, metrics=receipts_metrics(process_metrics=False))
    with TestClient(app) as c:
        assert sink.started
        assert c.get("/healthz").status_code == 200
    assert sink.closed


def test_recent_receipts_is_a_bounded_lru() -> None:
    recent = RecentReceipts(2)
    a, b, c = (
        ("a", ReceiptKind.DELIVERED),
        ("b", ReceiptKind.DELIVERED),
        ("c", ReceiptKind.OPENED),
    )
    recent.add(a)
    recent.add(b)
    assert a in recent  # touching a makes b the oldest
    recent.add(c)
    assert len(recent) == 2
    assert a in recent
    assert c in recent
    assert b not in recent
    off = RecentReceipts(0)
    off.add(a)
    assert a not in off


def test_config_from_env() -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "k:9092",
        "SCHEMA_REGISTRY_URL": "http://r:8081",
        "PUSHLINE_RECEIPT_TOKEN_KEYS": "k1:" + base64.b64encode(b"q" * 32).decode(),
        "PUSHLINE_RECEIPTS_PORT": "9999",
        "PUSHLINE_RECEIPTS_BATCH_MAX": "10",
        "PUSHLINE_TOPIC_PREFIX": "x.",
    }
    cfg = ReceiptsApiConfig.from_env(env)
    assert (cfg.host, cfg.port, cfg.batch_max, cfg.max_body_bytes, cfg.workers) == (
        "0.0.0.0",
        9999,
        10,
        65536,
        1,
    )
    assert cfg.topics.receipts == "x.push.receipts"
    assert cfg.kafka.bootstrap_servers == "k:9092"
    assert cfg.tokens.active_kid == "k1"
    with pytest.raises(ConfigError, match="PUSHLINE_RECEIPTS_MAX_BODY_BYTES"):
        ReceiptsApiConfig.from_env({**env, "PUSHLINE_RECEIPTS_MAX_BODY_BYTES": "0"})
    with pytest.raises(ConfigError, match="PUSHLINE_RECEIPT_TOKEN_KEYS"):
        ReceiptsApiConfig.from_env({k: v for k, v in env.items() if "TOKEN" not in k})
