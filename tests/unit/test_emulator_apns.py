"""The APNs emulator's rules (sans-IO): every header rule and reason of PROVIDERS.md."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest

from pushline.emulators._behaviour import Request, Response, push_view
from pushline.emulators._tls import ApnsCredentials, generate_apns_credentials
from pushline.emulators.apns import APNS_REASONS, ApnsConfig, ApnsEmulator, ApnsKey

TOKEN = "ab" * 32
BODY = b'{"aps":{"alert":"hi"}}'


@pytest.fixture(scope="module")
def creds(tmp_path_factory: pytest.TempPathFactory) -> ApnsCredentials:
    return generate_apns_credentials(tmp_path_factory.mktemp("apns"), topic="com.example.app")


@pytest.fixture
def emulator(creds: ApnsCredentials) -> ApnsEmulator:
    key = ApnsKey(creds.key_id, creds.team_id, creds.public_key_pem, (creds.topic,))
    return ApnsEmulator(ApnsConfig(keys=(key,), token_update_window=60.0))


# One issue time for the whole module: like a real provider, the tests reuse one JWT, so a second
# ticking over mid-test never looks like a token refresh (429 TooManyProviderTokenUpdates).
MODULE_IAT = int(time.time())


def sign(creds: ApnsCredentials, iat: int | None = None, **overrides: Any) -> str:
    claims = {"iss": creds.team_id, "iat": MODULE_IAT if iat is None else iat}
    headers = {"kid": creds.key_id}
    headers.update(overrides.pop("headers", {}))
    claims.update(overrides)
    return jwt.encode(claims, Path(creds.key_file).read_text(), algorithm="ES256", headers=headers)


def send(
    em: ApnsEmulator,
    creds: ApnsCredentials,
    *,
    token: str = TOKEN,
    body: bytes = BODY,
    method: str = "POST",
    path: str | None = None,
    jwt_token: str | None = None,
    connection: str = "c1",
    omit: tuple[str, ...] = (),
    **headers: str,
) -> Response:
    base = {
        "authorization": f"bearer {jwt_token or sign(creds)}",
        "apns-topic": creds.topic,
        "apns-push-type": "alert",
    }
    base.update({k.replace("_", "-"): v for k, v in headers.items()})
    pairs = tuple((k, v) for k, v in base.items() if k not in omit)
    request = Request(method, path or f"/3/device/{token}", "", pairs, body, connection)
    return asyncio.run(em.handle(request))


def reason(response: Response) -> str:
    return str(json.loads(response.body)["reason"])


def test_accepts_and_records_a_valid_push(em_creds: tuple[ApnsEmulator, ApnsCredentials]) -> None:
    em, creds = em_creds
    apns_id = str(uuid.uuid4())
    r = send(
        em,
        creds,
        apns_id=apns_id,
        apns_collapse_id="c" * 64,
        apns_priority="5",
        apns_expiration="0",
    )
    assert (r.status, r.body) == (200, b"")
    assert dict(r.headers)["apns-id"] == apns_id
    [push] = [push_view(p) for p in em.behaviour.pushes]
    assert push["token"] == TOKEN
    assert push["id"] == apns_id
    assert push["collapse_id"] == "c" * 64
    assert push["priority"] == 5
    assert push["expiration"] == 0
    assert push["topic"] == creds.topic
    assert push["payload"] == {"aps": {"alert": "hi"}}


def test_generates_a_lower_case_uuid_when_apns_id_is_absent(
    em_creds: tuple[ApnsEmulator, ApnsCredentials],
) -> None:
    em, creds = em_creds
    r = send(em, creds)
    generated = dict(r.headers)["apns-id"]
    assert str(uuid.UUID(generated)) == generated


@pytest.fixture
def em_creds(
    emulator: ApnsEmulator, creds: ApnsCredentials
) -> tuple[ApnsEmulator, ApnsCredentials]:
    return emulator, creds


@pytest.mark.parametrize(
    ("kwargs", "status", "expected"),
    [
        ({"path": "/3/other"}, 404, "BadPath"),
        ({"method": "GET"}, 405, "MethodNotAllowed"),
        ({"token": ""}, 400, "MissingDeviceToken"),
        ({"token": "ab" * 31}, 400, "BadDeviceToken"),
        ({"token": "zz" * 32}, 400, "BadDeviceToken"),
        ({"omit": ("apns-topic",)}, 400, "MissingTopic"),
        ({"apns_topic": "not a topic"}, 400, "BadTopic"),
        ({"apns_topic": "com.other.app"}, 400, "TopicDisallowed"),
        ({"apns_push_type": "voip"}, 400, "BadTopic"),
        ({"apns_push_type": "voip", "apns_topic": "com.other.app.voip"}, 400, "TopicDisallowed"),
        ({"apns_push_type": "alert", "apns_topic": "com.example.app.voip"}, 400, "BadTopic"),
        ({"apns_push_type": "banner"}, 400, "InvalidPushType"),
        ({"apns_id": "not-a-uuid"}, 400, "BadMessageId"),
        ({"apns_id": str(uuid.uuid4()).upper()}, 400, "BadMessageId"),
        ({"apns_priority": "7"}, 400, "BadPriority"),
        ({"apns_push_type": "background"}, 400, "BadPriority"),
        ({"apns_push_type": "background", "apns_priority": "10"}, 400, "BadPriority"),
        ({"apns_expiration": "tomorrow"}, 400, "BadExpirationDate"),
        ({"apns_expiration": "-1"}, 400, "BadExpirationDate"),
        ({"apns_collapse_id": "é" * 33}, 400, "BadCollapseId"),
        ({"body": b""}, 400, "PayloadEmpty"),
        ({"body": b"x" * 4097}, 413, "PayloadTooLarge"),
        ({"omit": ("authorization",)}, 403, "MissingProviderToken"),
        ({"jwt_token": "garbage"}, 403, "InvalidProviderToken"),
    ],
)
def test_refusals(
    em_creds: tuple[ApnsEmulator, ApnsCredentials],
    kwargs: dict[str, Any],
    status: int,
    expected: str,
) -> None:
    em, creds = em_creds
    r = send(em, creds, **kwargs)
    assert (r.status, reason(r)) == (status, expected)
    assert APNS_REASONS[expected] == status
    assert em.behaviour.pushes == []


def test_push_types_with_their_topic_suffixes_are_accepted(
    em_creds: tuple[ApnsEmulator, ApnsCredentials],
) -> None:
    em, creds = em_creds
    cases = {
        "alert": ("", "10"),
        "background": ("", "5"),
        "voip": (".voip", "10"),
        "complication": (".complication", "10"),
        "fileprovider": (".pushkit.fileprovider", "10"),
        "liveactivity": (".push-type.liveactivity", "10"),
        "pushtotalk": (".voip-ptt", "10"),
        "location": (".location-query", "10"),
    }
    for push_type, (suffix, priority) in cases.items():
        r = send(
            em,
            creds,
            apns_push_type=push_type,
            apns_topic=creds.topic + suffix,
            apns_priority=priority,
        )
        assert r.status == 200, (push_type, r.body)


def test_voip_payload_limit_is_5120(em_creds: tuple[ApnsEmulator, ApnsCredentials]) -> None:
    em, creds = em_creds
    voip = {"apns_push_type": "voip", "apns_topic": creds.topic + ".voip"}
    assert send(em, creds, body=b"x" * 5120, **voip).status == 200
    assert send(em, creds, body=b"x" * 5121, **voip).status == 413
    assert send(em, creds, body=b"x" * 4096).status == 200


def test_duplicate_headers(em_creds: tuple[ApnsEmulator, ApnsCredentials]) -> None:
    em, creds = em_creds
    headers = (
        ("authorization", f"bearer {sign(creds)}"),
        ("apns-topic", creds.topic),
        ("apns-priority", "10"),
        ("apns-priority", "10"),
    )
    r = asyncio.run(em.handle(Request("POST", f"/3/device/{TOKEN}", "", headers, BODY, "c")))
    assert (r.status, reason(r)) == (400, "DuplicateHeaders")


def test_provider_token_rules(em_creds: tuple[ApnsEmulator, ApnsCredentials]) -> None:
    em, creds = em_creds
    now = int(time.time())
    expired = send(em, creds, jwt_token=sign(creds, iat=now - 3601))
    assert (expired.status, reason(expired)) == (403, "ExpiredProviderToken")
    unknown_kid = send(em, creds, jwt_token=sign(creds, headers={"kid": "ZZZZZZZZZZ"}))
    assert reason(unknown_kid) == "InvalidProviderToken"
    wrong_team = send(em, creds, jwt_token=sign(creds, iss="OTHERTEAM1"))
    assert reason(wrong_team) == "InvalidProviderToken"
    other_key = generate_apns_credentials(
        Path(creds.key_file).parent / "other", key_id=creds.key_id
    )
    forged = jwt.encode(
        {"iss": creds.team_id, "iat": now},
        Path(other_key.key_file).read_text(),
        algorithm="ES256",
        headers={"kid": creds.key_id},
    )
    bad_signature = send(em, creds, jwt_token=forged)
    assert (bad_signature.status, reason(bad_signature)) == (403, "InvalidProviderToken")
    future = send(em, creds, jwt_token=sign(creds, iat=now + 600))
    assert reason(future) == "InvalidProviderToken"
    assert send(em, creds, jwt_token=sign(creds, iat=now - 3500)).status == 200


def test_token_refreshed_too_often_on_a_connection(
    em_creds: tuple[ApnsEmulator, ApnsCredentials],
) -> None:
    em, creds = em_creds
    now = int(time.time())
    first, second = sign(creds, iat=now - 10), sign(creds, iat=now)
    assert send(em, creds, jwt_token=first, connection="A").status == 200
    assert send(em, creds, jwt_token=first, connection="A").status == 200  # same token: fine
    r = send(em, creds, jwt_token=second, connection="A")
    assert (r.status, reason(r)) == (429, "TooManyProviderTokenUpdates")
    assert "retry-after" not in dict(r.headers)
    assert send(em, creds, jwt_token=second, connection="B").status == 200  # other connection
    em.token_update_window = 0.0  # the window has passed
    assert send(em, creds, jwt_token=second, connection="A").status == 200


def test_unregistered_token_answers_410_with_timestamp(
    em_creds: tuple[ApnsEmulator, ApnsCredentials],
) -> None:
    em, creds = em_creds
    em.behaviour.set_unregistered([TOKEN], 1_700_000_000_123)
    r = send(em, creds)
    assert r.status == 410
    assert json.loads(r.body) == {"reason": "Unregistered", "timestamp": 1_700_000_000_123}


@pytest.mark.parametrize("name", sorted(APNS_REASONS))
def test_every_reason_can_be_programmed(
    em_creds: tuple[ApnsEmulator, ApnsCredentials], name: str
) -> None:
    em, creds = em_creds
    em.set_token_reason(TOKEN, None, name)
    r = send(em, creds)
    assert (r.status, reason(r)) == (APNS_REASONS[name], name)
    assert ("timestamp" in json.loads(r.body)) == (r.status == 410)


def test_token_bound_to_another_bundle(creds: ApnsCredentials) -> None:
    key = ApnsKey(creds.key_id, creds.team_id, creds.public_key_pem, (creds.topic, "com.example.b"))
    em = ApnsEmulator(ApnsConfig(keys=(key,)))
    assert send(em, creds).status == 200
    r = send(em, creds, apns_topic="com.example.b")
    assert (r.status, reason(r)) == (400, "DeviceTokenNotForTopic")


def test_fault_rates_are_deterministic_for_a_seed(
    em_creds: tuple[ApnsEmulator, ApnsCredentials],
) -> None:
    em, creds = em_creds

    def run() -> list[tuple[int, str | None]]:
        em.reset()
        em.behaviour.set_rates(0.2, 0.1, 0.1, retry_after=7, seed=42)
        out = []
        for _ in range(200):
            r = send(em, creds)
            out.append((r.status, dict(r.headers).get("retry-after")))
        return out

    first = run()
    assert first == run()
    statuses = [s for s, _ in first]
    assert {200, 429, 500, 503} <= set(statuses)
    assert 20 < statuses.count(429) < 60
    assert all(ra == "7" for s, ra in first if s in (429, 503))
    assert all(ra is None for s, ra in first if s in (200, 500))
