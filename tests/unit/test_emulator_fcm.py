"""The FCM emulator's rules (sans-IO): the OAuth2 token flow and Google's error bodies."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest

from pushline.emulators._behaviour import Request, Response
from pushline.emulators._tls import FcmCredentials, generate_fcm_credentials
from pushline.emulators.fcm import FCM_ERRORS, FCM_SCOPE, FcmConfig, FcmEmulator, FcmServiceAccount

TOKEN_URI = "https://127.0.0.1:9/token"
DEVICE = "d" * 40 + ":APA91b" + "x" * 100


@pytest.fixture(scope="module")
def creds(tmp_path_factory: pytest.TempPathFactory) -> FcmCredentials:
    return generate_fcm_credentials(tmp_path_factory.mktemp("fcm"), token_uri=TOKEN_URI)


@pytest.fixture
def em(creds: FcmCredentials) -> FcmEmulator:
    account = FcmServiceAccount(
        creds.client_email, creds.private_key_id, creds.public_key_pem, creds.project_id
    )
    return FcmEmulator(FcmConfig(accounts=(account,), token_uris=(TOKEN_URI,)))


def assertion(creds: FcmCredentials, **overrides: Any) -> str:
    sa = json.loads(Path(creds.service_account_file).read_text())
    now = int(time.time())
    claims = {
        "iss": sa["client_email"],
        "scope": FCM_SCOPE,
        "aud": sa["token_uri"],
        "iat": now,
        "exp": now + 3600,
    }
    key = overrides.pop("key", sa["private_key"])
    claims.update(overrides)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": sa["private_key_id"]})


def call(
    em: FcmEmulator, path: str, body: bytes, headers: tuple[tuple[str, str], ...] = ()
) -> Response:
    return asyncio.run(em.handle(Request("POST", path, "", headers, body, "c1")))


def get_token(em: FcmEmulator, creds: FcmCredentials, **overrides: Any) -> Response:
    form = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer"}
    form["assertion"] = assertion(creds, **overrides)
    return call(em, "/token", urlencode(form).encode())


def access_token(em: FcmEmulator, creds: FcmCredentials) -> str:
    r = get_token(em, creds)
    assert r.status == 200, r.body
    return str(json.loads(r.body)["access_token"])


def send(
    em: FcmEmulator, creds: FcmCredentials, message: dict[str, Any] | None = None, **extra: Any
) -> tuple[int, dict[str, Any], dict[str, str]]:
    token = extra.pop("bearer", None) or access_token(em, creds)
    project = extra.pop("project", creds.project_id)
    document: dict[str, Any] = {"message": message if message is not None else {"token": DEVICE}}
    document.update(extra)
    r = call(
        em,
        f"/v1/projects/{project}/messages:send",
        json.dumps(document).encode(),
        (("authorization", f"Bearer {token}"), ("content-type", "application/json")),
    )
    return r.status, json.loads(r.body), dict(r.headers)


def error_code(document: dict[str, Any]) -> str | None:
    for detail in document["error"].get("details", []):
        if "errorCode" in detail:
            return str(detail["errorCode"])
    return None


def test_token_endpoint_issues_a_bearer_token(em: FcmEmulator, creds: FcmCredentials) -> None:
    r = get_token(em, creds)
    document = json.loads(r.body)
    assert r.status == 200
    assert document["expires_in"] == 3599
    assert document["token_type"] == "Bearer"
    assert document["access_token"]


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"aud": "https://oauth2.googleapis.com/token"}, "invalid_grant"),
        ({"iss": "someone@else.iam.gserviceaccount.com"}, "invalid_grant"),
        ({"scope": "https://www.googleapis.com/auth/userinfo.email"}, "invalid_scope"),
        ({"exp": int(time.time()) + 7200}, "invalid_grant"),
        ({"iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600}, "invalid_grant"),
    ],
)
def test_token_endpoint_refusals(
    em: FcmEmulator, creds: FcmCredentials, overrides: dict[str, Any], error: str
) -> None:
    r = get_token(em, creds, **overrides)
    assert r.status == 400
    assert json.loads(r.body)["error"] == error


def test_token_endpoint_checks_the_signature(
    em: FcmEmulator, creds: FcmCredentials, tmp_path: Path
) -> None:
    other = generate_fcm_credentials(tmp_path, token_uri=TOKEN_URI)
    other_key = json.loads(Path(other.service_account_file).read_text())["private_key"]
    r = get_token(em, creds, key=other_key)
    assert (r.status, json.loads(r.body)) == (
        400,
        {"error": "invalid_grant", "error_description": "Invalid JWT Signature."},
    )


def test_token_endpoint_needs_the_jwt_bearer_grant(em: FcmEmulator) -> None:
    r = call(em, "/token", b"grant_type=client_credentials")
    assert (r.status, json.loads(r.body)["error"]) == (400, "unsupported_grant_type")


def test_send_success_and_record(em: FcmEmulator, creds: FcmCredentials) -> None:
    message = {
        "token": DEVICE,
        "notification": {"title": "t", "body": "b"},
        "data": {"k": "v"},
        "android": {
            "priority": "HIGH",
            "ttl": "3600s",
            "collapse_key": "news",
            "notification": {"tag": "n-1"},
        },
    }
    status, document, _ = send(em, creds, message, validate_only=False)
    assert status == 200
    assert document["name"].startswith(f"projects/{creds.project_id}/messages/")
    [push] = em.behaviour.pushes
    assert push["id"] == document["name"]
    assert push["token"] == DEVICE
    assert push["collapse_id"] == "n-1"
    assert push["collapse_key"] == "news"
    assert push["ttl_seconds"] == 3600
    assert push["payload"] == message


def test_message_names_look_like_googles_and_differ(em: FcmEmulator, creds: FcmCredentials) -> None:
    token = access_token(em, creds)
    names = [send(em, creds, bearer=token)[1]["name"] for _ in range(50)]
    pattern = re.compile(rf"projects/{creds.project_id}/messages/0:[0-9]{{16}}%[0-9a-f]{{16}}")
    assert all(pattern.fullmatch(name) for name in names), names[0]
    assert len(set(names)) == 50


@pytest.mark.parametrize(
    "body",
    [
        b'{"message": ',
        b'{"message":{"token":"%s","data":{"k":"\\ud800"}}}' % DEVICE.encode(),  # lone surrogate
        b'{"message":{"token":"%s","android":{"ttl":NaN}}}' % DEVICE.encode(),
    ],
)
def test_a_body_that_is_not_json_is_invalid_argument(
    em: FcmEmulator, creds: FcmCredentials, body: bytes
) -> None:
    token = access_token(em, creds)
    r = call(
        em,
        f"/v1/projects/{creds.project_id}/messages:send",
        body,
        (("authorization", f"Bearer {token}"),),
    )
    assert r.status == 400
    error = json.loads(r.body)["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["message"].startswith("Invalid JSON payload received. ")
    assert em.behaviour.pushes == []


def test_validate_only_is_not_recorded(em: FcmEmulator, creds: FcmCredentials) -> None:
    status, _, _ = send(em, creds, validate_only=True)
    assert status == 200
    assert em.behaviour.pushes == []


def test_unauthenticated(em: FcmEmulator, creds: FcmCredentials) -> None:
    status, document, _ = send(em, creds, bearer="ya29.unknown")
    assert status == 401
    assert document["error"]["status"] == "UNAUTHENTICATED"
    assert document["error"]["code"] == 401
    token = access_token(em, creds)
    em.expire_access_tokens()
    status, document, _ = send(em, creds, bearer=token)
    assert status == 401
    assert document["error"]["details"][0]["reason"] == "ACCESS_TOKEN_EXPIRED"
    r = call(em, f"/v1/projects/{creds.project_id}/messages:send", b"{}")
    assert r.status == 401


def test_other_project_is_permission_denied(em: FcmEmulator, creds: FcmCredentials) -> None:
    status, document, _ = send(em, creds, project="another-project")
    assert (status, document["error"]["status"]) == (403, "PERMISSION_DENIED")


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ({"token": "short"}, "message.token"),
        ({"token": "x" * 40 + "/bad"}, "message.token"),
        ({}, "message"),
        ({"token": DEVICE, "topic": "news"}, "message"),
        ({"token": DEVICE, "android": {"ttl": "3600"}}, "message.android.ttl"),
        ({"token": DEVICE, "android": {"ttl": "2419201s"}}, "message.android.ttl"),
        ({"token": DEVICE, "android": {"priority": "URGENT"}}, "message.android.priority"),
        ({"token": DEVICE, "data": {"n": 1}}, "message.data[0].value"),
        ({"token": DEVICE, "data": {"k": "v" * 4100}}, "message"),
        ({"topic": "news", "data": {"k": "v" * 2100}}, "message"),
        ({"token": DEVICE, "colour": "red"}, "message"),
    ],
)
def test_invalid_argument(
    em: FcmEmulator, creds: FcmCredentials, message: dict[str, Any], field: str
) -> None:
    status, document, _ = send(em, creds, message)
    assert status == 400
    error = document["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert error_code(document) == "INVALID_ARGUMENT"
    [bad_request] = [d for d in error["details"] if d["@type"].endswith("google.rpc.BadRequest")]
    assert bad_request["fieldViolations"][0]["field"] == field
    assert em.behaviour.pushes == []


def test_limits_that_are_allowed(em: FcmEmulator, creds: FcmCredentials) -> None:
    for message in (
        {"token": DEVICE, "android": {"ttl": "0s"}},
        {"token": DEVICE, "android": {"ttl": "2419200s", "priority": "NORMAL"}},
        {"token": DEVICE, "android": {"ttl": "1.5s"}},
        {"topic": "news"},
        {"condition": "'a' in topics && 'b' in topics"},
        {"token": DEVICE, "data": {"k": "v" * 3900}},
    ):
        status, document, _ = send(em, creds, message)
        assert status == 200, (message, document)


def test_unregistered_is_not_found(em: FcmEmulator, creds: FcmCredentials) -> None:
    em.behaviour.set_unregistered([DEVICE], None)
    status, document, _ = send(em, creds)
    assert status == 404
    assert document["error"]["status"] == "NOT_FOUND"
    assert error_code(document) == "UNREGISTERED"


@pytest.mark.parametrize("code", sorted(FCM_ERRORS))
def test_every_error_code_can_be_programmed(
    em: FcmEmulator, creds: FcmCredentials, code: str
) -> None:
    em.behaviour.retry_after = 9
    em.set_token_reason(DEVICE, None, code)
    status, document, headers = send(em, creds)
    http, canonical, _ = FCM_ERRORS[code]
    assert status == http
    assert document["error"]["code"] == http
    assert document["error"]["status"] == canonical
    assert error_code(document) == code
    assert (headers.get("retry-after") == "9") == (http in (429, 503))


def test_random_faults(em: FcmEmulator, creds: FcmCredentials) -> None:
    token = access_token(em, creds)
    em.behaviour.set_rates(0.3, 0.2, 0.2, retry_after=3, seed=1)
    seen: dict[int, str | None] = {}
    for _ in range(100):
        status, document, headers = send(em, creds, bearer=token)
        if status != 200:
            seen[status] = error_code(document)
            assert (headers.get("retry-after") == "3") == (status in (429, 503))
    assert seen == {429: "QUOTA_EXCEEDED", 500: "INTERNAL", 503: "UNAVAILABLE"}
