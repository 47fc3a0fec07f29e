"""The emulator processes over real HTTP/2 + TLS, checked with independent clients.

APNs is driven with curl (libcurl + nghttp2, strict TLS against the generated CA); FCM with
httpx[http2]. No broker is needed, so this is a unit-level test of the emulators themselves.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from pushline.emulators._control import EmulatorControl
from pushline.emulators._runner import ProviderEmulators

TOKEN = "0123456789abcdef" * 4

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl with HTTP/2")


@pytest.fixture
def env(emulators: ProviderEmulators) -> Iterator[dict[str, str]]:
    for control in (emulators.apns_control(), emulators.fcm_control()):
        with control:
            control.reset()
    yield emulators.env


@pytest.fixture
def apns(emulators: ProviderEmulators) -> Iterator[EmulatorControl]:
    with emulators.apns_control() as control:
        yield control


# One issue time per module, as a provider reuses one JWT: a second ticking over between two
# requests must not look like a token refresh (429 TooManyProviderTokenUpdates).
MODULE_IAT = int(time.time())


def provider_jwt(env: dict[str, str], iat: int | None = None) -> str:
    return jwt.encode(
        {"iss": env["APNS_TEAM_ID"], "iat": MODULE_IAT if iat is None else iat},
        Path(env["APNS_KEY_FILE"]).read_text(),
        algorithm="ES256",
        headers={"kid": env["APNS_KEY_ID"]},
    )


def curl_push(
    env: dict[str, str],
    *urls: str,
    body: str = '{"aps":{"alert":"hello"}}',
    jwt_token: str | None = None,
    extra: tuple[str, ...] = (),
) -> list[tuple[int, dict[str, str], str]]:
    """POST each url with curl over one HTTP/2 connection; (status, headers, body) per url."""
    bearer = jwt_token or provider_jwt(env)
    args = ["curl", "--silent", "--show-error", "--http2", "--cacert", env["PUSHLINE_CA_FILE"]]
    args += ["--header", f"authorization: bearer {bearer}"]
    args += ["--header", f"apns-topic: {env['APNS_TOPIC']}", "--header", "apns-push-type: alert"]
    args += list(extra)
    out_dir = Path(env["PUSHLINE_CA_FILE"]).parent
    results = []
    for i, url in enumerate(urls):
        if i:
            args.append("--next")
            args += ["--http2", "--cacert", env["PUSHLINE_CA_FILE"]]
            args += ["--header", f"authorization: bearer {bearer}"]
            args += ["--header", f"apns-topic: {env['APNS_TOPIC']}"]
            args += list(extra)
        args += ["--data-binary", body, "--dump-header", str(out_dir / f"h{i}.txt")]
        args += ["--output", str(out_dir / f"b{i}.txt"), url]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    for i in range(len(urls)):
        lines = (out_dir / f"h{i}.txt").read_text().splitlines()
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        results.append((status, headers, (out_dir / f"b{i}.txt").read_text()))
    return results


def test_env_has_exactly_the_documented_keys(env: dict[str, str]) -> None:
    assert set(env) == set(ProviderEmulators.ENV_KEYS)
    assert env["APNS_URL"].startswith("https://127.0.0.1:")
    assert env["FCM_TOKEN_URI"] == env["FCM_URL"] + "/token"
    assert len(env["APNS_KEY_ID"]) == 10 and len(env["APNS_TEAM_ID"]) == 10
    assert Path(env["APNS_KEY_FILE"]).read_text().startswith("-----BEGIN PRIVATE KEY-----")
    account = json.loads(Path(env["FCM_SERVICE_ACCOUNT_FILE"]).read_text())
    assert account["project_id"] == env["FCM_PROJECT_ID"]
    assert account["token_uri"] == env["FCM_TOKEN_URI"]
    assert {"client_email", "private_key", "private_key_id"} <= set(account)


def test_apns_200_with_apns_id(env: dict[str, str], apns: EmulatorControl) -> None:
    [(status, headers, body)] = curl_push(env, f"{env['APNS_URL']}/3/device/{TOKEN}")
    assert status == 200
    assert body == ""
    [push] = apns.pushes()
    assert headers["apns-id"] == push["id"]
    assert push["payload"] == {"aps": {"alert": "hello"}}


def test_apns_echoes_apns_id(env: dict[str, str]) -> None:
    apns_id = "e3f1c2a4-0b5d-4c6e-8f70-123456789abc"
    [(status, headers, _)] = curl_push(
        env, f"{env['APNS_URL']}/3/device/{TOKEN}", extra=("--header", f"apns-id: {apns_id}")
    )
    assert (status, headers["apns-id"]) == (200, apns_id)


def test_apns_410_unregistered_with_timestamp(env: dict[str, str], apns: EmulatorControl) -> None:
    apns.set_unregistered([TOKEN], timestamp_ms=1_712_000_000_000)
    [(status, _, body)] = curl_push(env, f"{env['APNS_URL']}/3/device/{TOKEN}")
    assert status == 410
    assert json.loads(body) == {"reason": "Unregistered", "timestamp": 1_712_000_000_000}
    assert apns.pushes() == []


def test_apns_413_payload_too_large(env: dict[str, str]) -> None:
    big = json.dumps({"aps": {"alert": "x" * 4100}})
    [(status, _, body)] = curl_push(env, f"{env['APNS_URL']}/3/device/{TOKEN}", body=big)
    assert (status, json.loads(body)) == (413, {"reason": "PayloadTooLarge"})


def test_apns_403_expired_provider_token(env: dict[str, str]) -> None:
    old = provider_jwt(env, iat=int(time.time()) - 3700)
    [(status, _, body)] = curl_push(env, f"{env['APNS_URL']}/3/device/{TOKEN}", jwt_token=old)
    assert (status, json.loads(body)) == (403, {"reason": "ExpiredProviderToken"})


def test_apns_bad_path_and_device_token(env: dict[str, str]) -> None:
    results = curl_push(
        env, f"{env['APNS_URL']}/3/devices/{TOKEN}", f"{env['APNS_URL']}/3/device/1234"
    )
    assert [(s, json.loads(b)["reason"]) for s, _, b in results] == [
        (404, "BadPath"),
        (400, "BadDeviceToken"),
    ]


def test_apns_refresh_rule_per_connection(env: dict[str, str], apns: EmulatorControl) -> None:
    apns.set_token_update_window(3600)
    url = f"{env['APNS_URL']}/3/device/{TOKEN}"
    now = int(time.time())
    first, second = provider_jwt(env, iat=now - 5), provider_jwt(env, iat=now)  # two issue times
    # One curl process = one connection: a different token on it is a refresh.
    args = ["curl", "--silent", "--http2", "--cacert", env["PUSHLINE_CA_FILE"]]
    common = ["--header", f"apns-topic: {env['APNS_TOPIC']}", "--data-binary", '{"aps":{}}']
    write_out = ["--write-out", "%{http_code}\\n", "--output", os.devnull]
    proc = subprocess.run(
        [*args, "--header", f"authorization: bearer {first}", *common, *write_out, url, "--next",
         "--http2", "--cacert", env["PUSHLINE_CA_FILE"], "--header", f"authorization: bearer {second}",
         *common, *write_out, url],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert proc.stdout.split() == ["200", "429"]
    assert apns.stats()["by_reason"]["429 TooManyProviderTokenUpdates"] == 1


def test_apns_goaway_after_n_streams(
    env: dict[str, str], emulators: ProviderEmulators, apns: EmulatorControl
) -> None:
    apns.set_goaway_after(2)
    url = f"{emulators.apns_h2_url}/3/device/{TOKEN}"
    results = curl_push(env, url, url, url, url)
    assert [status for status, _, _ in results] == [200, 200, 200, 200]
    connections = [push["connection"] for push in apns.pushes()]
    # Two streams per connection, then GOAWAY: curl had to open a second connection.
    assert connections[0] == connections[1] != connections[2] == connections[3]
    assert apns.stats()["goaways"] == 2


def test_apns_latency(env: dict[str, str], apns: EmulatorControl) -> None:
    apns.set_latency(300)
    started = time.monotonic()
    [(status, _, _)] = curl_push(env, f"{env['APNS_URL']}/3/device/{TOKEN}")
    assert status == 200
    assert time.monotonic() - started >= 0.3


def fcm_access_token(client: httpx.Client, env: dict[str, str]) -> str:
    account = json.loads(Path(env["FCM_SERVICE_ACCOUNT_FILE"]).read_text())
    now = int(time.time())
    assertion = jwt.encode(
        {
            "iss": account["client_email"],
            "scope": "https://www.googleapis.com/auth/firebase.messaging",
            "aud": account["token_uri"],
            "iat": now,
            "exp": now + 3600,
        },
        account["private_key"],
        algorithm="RS256",
        headers={"kid": account["private_key_id"]},
    )
    r = client.post(
        account["token_uri"],
        data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion},
    )
    assert r.status_code == 200, r.text
    assert r.http_version == "HTTP/2"
    assert r.json()["expires_in"] == 3599
    return str(r.json()["access_token"])


def test_fcm_token_flow_send_and_errors(env: dict[str, str], emulators: ProviderEmulators) -> None:
    device = "fcm-device-" + "a" * 150
    with (
        httpx.Client(
            http2=True, verify=ssl.create_default_context(cafile=env["PUSHLINE_CA_FILE"])
        ) as client,
        emulators.fcm_control() as fcm,
    ):
        token = fcm_access_token(client, env)
        send_url = f"{env['FCM_URL']}/v1/projects/{env['FCM_PROJECT_ID']}/messages:send"
        headers = {"authorization": f"Bearer {token}"}
        message = {"token": device, "android": {"notification": {"tag": "n-1"}}}
        ok = client.post(send_url, headers=headers, json={"message": message})
        assert ok.status_code == 200
        assert ok.json()["name"].startswith(f"projects/{env['FCM_PROJECT_ID']}/messages/")
        [push] = fcm.pushes()
        assert (push["token"], push["collapse_id"]) == (device, "n-1")

        fcm.set_unregistered([device])
        gone = client.post(send_url, headers=headers, json={"message": {"token": device}})
        assert gone.status_code == 404
        assert gone.json()["error"]["status"] == "NOT_FOUND"
        assert gone.json()["error"]["details"][0]["errorCode"] == "UNREGISTERED"

        fcm.set_rates(status_429=1.0, retry_after=5)
        busy = client.post(send_url, headers=headers, json={"message": {"token": "b" * 64}})
        assert busy.status_code == 429
        assert busy.headers["retry-after"] == "5"
        assert busy.json()["error"]["details"][0]["errorCode"] == "QUOTA_EXCEEDED"

        unauthenticated = client.post(
            send_url, headers={"authorization": "Bearer nope"}, json={"message": {"token": device}}
        )
        assert unauthenticated.status_code == 401
        assert unauthenticated.json()["error"]["status"] == "UNAUTHENTICATED"


def test_stop_leaves_no_process(tmp_path: Path) -> None:
    emulators = ProviderEmulators(tmp_path)
    emulators.start()
    pids = [p._proc.pid for p in (emulators.apns, emulators.fcm) if p and p._proc]
    assert len(pids) == 2
    emulators.stop()
    for pid in pids:
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        )
