"""ApnsClient, FcmClient and ProviderClients against the real APNs / FCM emulators (HTTP/2 + TLS).

No broker is needed. The emulators run once per module; each test resets their behaviour and builds
its own clients (so its own connections and provider tokens).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import socket
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from dispatcher._apns import ApnsClient, apns_id_for
from dispatcher._apps import AppRegistry, FcmAppConfig, Secret
from dispatcher._auth import ApnsTokenSigner
from dispatcher._config import DispatcherConfig
from dispatcher._fcm import FcmClient
from dispatcher._providers import (
    APNS_POOL_SIZE,
    FCM_POOL_SIZE,
    ProviderClients,
    default_transport_factory,
)
from dispatcher._results import Action, SendResult
from dispatcher._transport import HttpxTransport, Transport, TransportError
from pushline.emulators._control import EmulatorControl
from pushline.emulators._runner import ProviderEmulators
from pushline.errors import PushlineError
from schemas import NotificationContent, NotificationRequest, Platform, Priority, PushType
from tests.unit.test_dispatcher_reasons import EXPECTED_APNS, EXPECTED_FCM


@pytest.fixture
def registry(emulators: ProviderEmulators) -> AppRegistry:
    return AppRegistry.from_env({**emulators.env, "PUSHLINE_APP_IDS": "shop, news"})


def apns_token() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex


def fcm_token() -> str:
    return "fcm-" + uuid.uuid4().hex + uuid.uuid4().hex


def request(
    platform: Platform = Platform.APNS, token: str | None = None, **changes: Any
) -> NotificationRequest:
    now = datetime.now(UTC)
    if token is None:
        token = apns_token() if platform is Platform.APNS else fcm_token()
    req = NotificationRequest(
        notification_id=str(uuid.uuid4()),
        created_at=now,
        app_id="default",
        platform=platform,
        device_token=token,
        expires_at=now + timedelta(hours=1),
        content=NotificationContent(title="Hello", body="World", custom_data={"k": "v"}),
    )
    return dataclasses.replace(req, **changes)


def apns_client(registry: AppRegistry, **kwargs: Any) -> ApnsClient:
    config = registry.apns("default")
    assert config is not None
    return ApnsClient(config, HttpxTransport(ca_file=config.ca_file), **kwargs)


def fcm_client(registry: AppRegistry, config: FcmAppConfig | None = None) -> FcmClient:
    config = config or registry.fcm("default")
    assert config is not None
    return FcmClient(config, HttpxTransport(ca_file=config.ca_file))


async def send_all(
    client: ApnsClient | FcmClient, reqs: list[NotificationRequest]
) -> list[SendResult]:
    return list(await asyncio.gather(*(client.send(r) for r in reqs)))


def run_and_close(client: ApnsClient | FcmClient, coro_fn: Any) -> Any:
    async def main() -> Any:
        try:
            return await coro_fn()
        finally:
            await client._transport.aclose()

    return asyncio.run(main())


# --- APNs ---------------------------------------------------------------------------------------


def test_apns_accepted_push_carries_the_request_headers(
    registry: AppRegistry, apns: EmulatorControl
) -> None:
    client = apns_client(registry)
    req = request(collapse_key="score")
    result = run_and_close(client, lambda: client.send(req, extra_custom={"pl_rt": "receipt"}))

    assert result.action is Action.ACCEPTED and result.status == 200
    assert result.provider_id == req.notification_id  # apns-id is the notification id
    assert result.collapse_id == "score" and result.latency_ms > 0
    [push] = apns.pushes()
    assert push["id"] == req.notification_id
    assert push["token"] == req.device_token
    assert push["collapse_id"] == "score"
    assert push["priority"] == 10 and push["push_type"] == "alert"
    assert push["topic"] == registry.apns("default").topic  # type: ignore[union-attr]
    assert push["expiration"] == int(req.expires_at.timestamp())
    assert push["payload"]["aps"]["alert"] == {"title": "Hello", "body": "World"}
    assert push["payload"]["k"] == "v" and push["payload"]["pl_rt"] == "receipt"


def test_apns_collapse_id_defaults_to_the_notification_id(
    registry: AppRegistry, apns: EmulatorControl
) -> None:
    client = apns_client(registry)
    req = request()
    result = run_and_close(client, lambda: client.send(req))
    assert result.accepted
    assert apns.pushes()[0]["collapse_id"] == req.notification_id == result.collapse_id


@pytest.mark.parametrize(
    ("push_type", "suffix", "priority"),
    [
        (PushType.BACKGROUND, "", 5),  # background is forced to priority 5
        (PushType.VOIP, ".voip", 10),
        (PushType.COMPLICATION, ".complication", 10),
        (PushType.FILEPROVIDER, ".pushkit.fileprovider", 10),
        (PushType.LIVEACTIVITY, ".push-type.liveactivity", 10),
        (PushType.PUSHTOTALK, ".voip-ptt", 10),
        (PushType.LOCATION, ".location-query", 10),
    ],
)
def test_apns_topic_suffix_and_priority_per_push_type(
    registry: AppRegistry, apns: EmulatorControl, push_type: PushType, suffix: str, priority: int
) -> None:
    client = apns_client(registry)
    result = run_and_close(client, lambda: client.send(request(push_type=push_type)))
    assert result.action is Action.ACCEPTED, result
    [push] = apns.pushes()
    assert push["topic"] == client.config.topic + suffix
    assert push["push_type"] == push_type.apns_header and push["priority"] == priority


def test_apns_low_priority_is_sent_as_1(registry: AppRegistry, apns: EmulatorControl) -> None:
    client = apns_client(registry)
    result = run_and_close(client, lambda: client.send(request(priority=Priority.LOW)))
    assert result.accepted and apns.pushes()[0]["priority"] == 1


@pytest.mark.parametrize("reason", sorted(set(EXPECTED_APNS) - {"ExpiredProviderToken"}))
def test_every_apns_reason_yields_its_action(
    registry: AppRegistry, apns: EmulatorControl, reason: str
) -> None:
    status, action = EXPECTED_APNS[reason]
    client = apns_client(registry)
    req = request()
    apns.set_token_reason(req.device_token, reason)
    result = run_and_close(client, lambda: client.send(req))
    assert (result.status, result.reason, result.action) == (status, reason, action)
    assert result.platform is Platform.APNS and result.error is None
    assert (result.invalid_since is not None) == (status == 410)
    assert apns.pushes() == []


def test_apns_410_carries_invalid_since_from_the_timestamp(
    registry: AppRegistry, apns: EmulatorControl
) -> None:
    req = request()
    apns.set_unregistered([req.device_token], timestamp_ms=1_700_000_000_123)
    client = apns_client(registry)
    result = run_and_close(client, lambda: client.send(req))
    assert result.action is Action.INVALID_TOKEN and result.reason == "Unregistered"
    assert result.invalid_since == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)


def test_apns_429_retry_after_is_parsed(registry: AppRegistry, apns: EmulatorControl) -> None:
    apns.set_rates(status_429=1.0, retry_after=7)
    client = apns_client(registry)
    result = run_and_close(client, lambda: client.send(request()))
    assert (result.status, result.reason, result.action) == (429, "TooManyRequests", Action.RETRY)
    assert result.retry_after == 7.0


def test_apns_provider_token_is_cached(registry: AppRegistry, apns: EmulatorControl) -> None:
    client = apns_client(registry)
    results = run_and_close(client, lambda: send_all(client, [request() for _ in range(20)]))
    assert all(r.accepted for r in results)
    assert client.signer.mints == 1


def test_expired_provider_token_is_reminted_and_retried_once(
    registry: AppRegistry, apns: EmulatorControl
) -> None:
    # The wall clock is two hours behind when the first JWT is minted (so APNs sees it as older
    # than an hour) and right afterwards; the signer itself thinks the token is fresh.
    calls = iter([time.time() - 7200])
    config = registry.apns("default")
    assert config is not None
    signer = ApnsTokenSigner(config, clock=lambda: next(calls, time.time()))
    client = ApnsClient(config, HttpxTransport(ca_file=config.ca_file), signer=signer)
    result = run_and_close(client, lambda: client.send(request()))

    assert result.action is Action.ACCEPTED, result
    assert signer.mints == 2
    stats = apns.stats()
    assert stats["by_reason"] == {"403 ExpiredProviderToken": 1, "200 Success": 1}


def test_expired_provider_token_twice_is_a_config_alert(
    registry: AppRegistry, apns: EmulatorControl
) -> None:
    req = request()
    apns.set_token_reason(req.device_token, "ExpiredProviderToken")
    client = apns_client(registry)
    result = run_and_close(client, lambda: client.send(req))
    assert result.action is Action.CONFIG_ALERT and result.reason == "ExpiredProviderToken"
    assert apns.stats()["by_reason"] == {"403 ExpiredProviderToken": 2}  # exactly one retry


def test_300_concurrent_sends_all_succeed(registry: AppRegistry, apns: EmulatorControl) -> None:
    client = apns_client(registry)
    reqs = [request() for _ in range(300)]
    results = run_and_close(client, lambda: send_all(client, reqs))
    assert [r.action for r in results] == [Action.ACCEPTED] * 300
    assert {p["id"] for p in apns.pushes()} == {r.notification_id for r in reqs}


def test_goaway_mid_run_loses_nothing(
    registry: AppRegistry, emulators: ProviderEmulators, apns: EmulatorControl
) -> None:
    config = registry.apns("default")
    assert config is not None
    config = dataclasses.replace(config, base_url=emulators.apns_h2_url)
    client = ApnsClient(config, HttpxTransport(ca_file=config.ca_file))
    apns.set_goaway_after(5)
    reqs = [request() for _ in range(50)]

    async def scenario() -> tuple[list[SendResult], int]:
        first = await asyncio.wait_for(send_all(client, reqs), 60)
        pending = [r for r, res in zip(reqs, first, strict=True) if not res.accepted]
        passes = 0
        # httpx/httpcore fails streams a GOAWAY catches in flight, and every connection here takes
        # only 5 streams, so it takes a few passes (GOAWAY still on); each must make progress.
        while pending and passes < 20:
            passes += 1
            again = await asyncio.wait_for(send_all(client, pending), 60)
            pending = [r for r, res in zip(pending, again, strict=True) if not res.accepted]
        assert pending == []
        return first, passes

    first, _ = run_and_close(client, scenario)
    assert {r.action for r in first} <= {Action.ACCEPTED, Action.RETRY}
    for result in first:
        if result.action is Action.RETRY:
            assert result.status is None and result.reason == "ConnectionError"
    assert apns.stats()["goaways"] >= 5
    # every notification reached the emulator; a re-sent one carries the same apns-id/collapse id
    pushes = apns.pushes()
    assert {p["id"] for p in pushes} == {r.notification_id for r in reqs}
    assert all(p["collapse_id"] == p["id"] for p in pushes)


def test_connection_refused_is_a_retry(registry: AppRegistry) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = registry.apns("default")
    assert config is not None
    config = dataclasses.replace(config, base_url=f"https://127.0.0.1:{port}")
    client = ApnsClient(config, HttpxTransport(ca_file=config.ca_file))
    result = run_and_close(client, lambda: client.send(request()))
    assert (result.action, result.status, result.reason) == (
        Action.RETRY,
        None,
        "ConnectionError",
    )
    assert result.error


def test_timeout_is_a_retry(registry: AppRegistry, apns: EmulatorControl) -> None:
    apns.set_latency(1000)
    client = apns_client(registry, timeout=0.2)
    started = time.monotonic()
    result = run_and_close(client, lambda: client.send(request()))
    assert (result.action, result.status, result.reason) == (Action.RETRY, None, "Timeout")
    assert time.monotonic() - started < 0.9


def test_untrusted_certificate_is_a_tls_error(registry: AppRegistry, apns: EmulatorControl) -> None:
    config = registry.apns("default")
    assert config is not None
    client = ApnsClient(config, HttpxTransport(ca_file=None))  # system store: emulator CA unknown
    result = run_and_close(client, lambda: client.send(request()))
    assert (result.action, result.reason) == (Action.RETRY, "TLSError")
    assert apns.stats()["requests"] == 0


def test_transport_error_is_a_pushline_error() -> None:
    assert issubclass(TransportError, PushlineError)


# --- FCM ----------------------------------------------------------------------------------------


def test_fcm_accepted_message(registry: AppRegistry, fcm: EmulatorControl) -> None:
    client = fcm_client(registry)
    req = request(Platform.FCM)
    result = run_and_close(client, lambda: client.send(req, extra_custom={"pl_rt": "r"}))
    assert result.action is Action.ACCEPTED and result.status == 200
    [push] = fcm.pushes()
    assert result.provider_id == push["id"]
    assert push["id"].startswith("projects/pushline-test/messages/")
    assert push["token"] == req.device_token
    assert push["collapse_id"] == req.notification_id  # android.notification.tag


@pytest.mark.parametrize(
    "code",
    sorted(
        c for c in EXPECTED_FCM if c not in ("UNAUTHENTICATED", "PERMISSION_DENIED", "NOT_FOUND")
    ),
)
def test_every_fcm_error_code_yields_its_action(
    registry: AppRegistry, fcm: EmulatorControl, code: str
) -> None:
    status, action = EXPECTED_FCM[code]
    fcm.set_rates(retry_after=3)
    req = request(Platform.FCM)
    fcm.set_token_reason(req.device_token, code)
    client = fcm_client(registry)
    result = run_and_close(client, lambda: client.send(req))
    assert (result.status, result.reason, result.action) == (status, code, action)
    assert result.error  # FCM's message
    assert result.retry_after == (3.0 if status in (429, 503) else None)
    assert fcm.pushes() == []


def test_300_concurrent_fcm_sends_beyond_the_stream_limit(
    registry: AppRegistry, fcm: EmulatorControl
) -> None:
    # the FCM emulator advertises SETTINGS_MAX_CONCURRENT_STREAMS 100, as Google does
    client = fcm_client(registry)
    reqs = [request(Platform.FCM) for _ in range(300)]
    results = run_and_close(client, lambda: send_all(client, reqs))
    assert [r.action for r in results] == [Action.ACCEPTED] * 300
    assert {p["token"] for p in fcm.pushes()} == {r.device_token for r in reqs}


def test_fcm_malformed_token_is_a_suspect_token(
    registry: AppRegistry, fcm: EmulatorControl
) -> None:
    client = fcm_client(registry)
    result = run_and_close(client, lambda: client.send(request(Platform.FCM, token="not a token")))
    assert (result.status, result.reason, result.action) == (
        400,
        "INVALID_ARGUMENT",
        Action.SUSPECT_TOKEN,
    )


def test_fcm_unregistered_token_is_invalid(registry: AppRegistry, fcm: EmulatorControl) -> None:
    req = request(Platform.FCM)
    fcm.set_unregistered([req.device_token])
    client = fcm_client(registry)
    result = run_and_close(client, lambda: client.send(req))
    assert (result.status, result.reason, result.action) == (
        404,
        "UNREGISTERED",
        Action.INVALID_TOKEN,
    )


def test_fcm_access_token_is_cached_and_fetched_once_under_concurrency(
    registry: AppRegistry, fcm: EmulatorControl
) -> None:
    client = fcm_client(registry)
    reqs = [request(Platform.FCM) for _ in range(30)]
    results = run_and_close(client, lambda: send_all(client, reqs))
    assert all(r.accepted for r in results)
    assert client.tokens.fetches == 1


def test_fcm_access_token_refresh_after_expiry(registry: AppRegistry, fcm: EmulatorControl) -> None:
    client = fcm_client(registry)

    async def scenario() -> SendResult:
        assert (await client.send(request(Platform.FCM))).accepted
        fcm.expire_access_tokens()
        return await client.send(request(Platform.FCM))

    result = run_and_close(client, scenario)
    assert result.action is Action.ACCEPTED, result
    assert client.tokens.fetches == 2
    by_status = fcm.stats()["by_status"]
    assert by_status["401"] == 1 and by_status["200"] == 2 + 2  # two tokens, two messages


def test_fcm_refused_assertion_is_a_config_alert(
    registry: AppRegistry, fcm: EmulatorControl
) -> None:
    config = registry.fcm("default")
    assert config is not None
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = other_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    wrong = dataclasses.replace(
        config, service_account=dataclasses.replace(config.service_account, private_key=Secret(pem))
    )
    client = fcm_client(registry, wrong)
    result = run_and_close(client, lambda: client.send(request(Platform.FCM)))
    assert (result.action, result.reason, result.status) == (
        Action.CONFIG_ALERT,
        "AuthFailed",
        None,
    )
    assert "invalid_grant" in (result.error or "")
    assert fcm.pushes() == []


# --- routing ------------------------------------------------------------------------------------


def test_provider_clients_route_by_app_and_platform(
    registry: AppRegistry, apns: EmulatorControl, fcm: EmulatorControl
) -> None:
    clients = ProviderClients(registry)

    async def scenario() -> list[SendResult]:
        try:
            return [
                await clients.send(request(Platform.APNS, app_id="shop")),
                await clients.send(request(Platform.FCM, app_id="news")),
                await clients.send(request(Platform.APNS, app_id="nope")),
                await clients.send(request(Platform.APNS, app_id="default")),
            ]
        finally:
            await clients.aclose()

    apns_ok, fcm_ok, unknown, again = asyncio.run(scenario())
    assert apns_ok.accepted and fcm_ok.accepted and again.accepted
    assert (unknown.action, unknown.reason, unknown.status) == (
        Action.CONFIG_ALERT,
        "UnknownApp",
        None,
    )
    assert len(apns.pushes()) == 2 and len(fcm.pushes()) == 1


def test_platform_without_credentials_is_unknown_app(emulators: ProviderEmulators) -> None:
    apns_only = {k: v for k, v in emulators.env.items() if not k.startswith("FCM_")}
    clients = ProviderClients(AppRegistry.from_env(apns_only))

    async def scenario() -> SendResult:
        try:
            return await clients.send(request(Platform.FCM))
        finally:
            await clients.aclose()

    result = asyncio.run(scenario())
    assert (result.action, result.reason) == (Action.CONFIG_ALERT, "UnknownApp")


def test_no_secret_reaches_the_logs(
    registry: AppRegistry,
    emulators: ProviderEmulators,
    apns: EmulatorControl,
    fcm: EmulatorControl,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    clients = ProviderClients(registry)

    async def scenario() -> tuple[str, str]:
        try:
            assert (await clients.send(request(Platform.APNS))).accepted
            assert (await clients.send(request(Platform.FCM))).accepted
            apns_client_ = clients.client("default", Platform.APNS)
            fcm_client_ = clients.client("default", Platform.FCM)
            assert isinstance(apns_client_, ApnsClient) and isinstance(fcm_client_, FcmClient)
            return apns_client_.signer.token(), await fcm_client_.tokens.token()
        finally:
            await clients.aclose()

    jwt_token, access_token = asyncio.run(scenario())
    logged = caplog.text + " ".join(str(r.args) for r in caplog.records)
    assert caplog.records  # httpx/httpcore did log at DEBUG: the check below is not vacuous
    account = json.loads(Path(emulators.env["FCM_SERVICE_ACCOUNT_FILE"]).read_text())
    apns_key = Path(emulators.env["APNS_KEY_FILE"]).read_text()
    for secret in (jwt_token, access_token, account["private_key"], apns_key):
        for line in secret.strip().splitlines()[1:2] or [secret]:
            assert line not in logged


def test_apns_id_is_the_notification_id_or_a_stable_uuid5() -> None:
    canonical = "0b8f6a52-7c0e-4c55-9a39-3f1e1f7c2d11"
    assert apns_id_for(canonical) == canonical
    assert apns_id_for(canonical.upper()) == canonical  # the same UUID, canonical spelling
    other = apns_id_for("order-1234")
    assert other == apns_id_for("order-1234") and str(uuid.UUID(other)) == other
    assert other != apns_id_for("order-1235")


def test_fcm_transports_get_enough_connections_for_its_100_streams_each(
    registry: AppRegistry,
) -> None:
    made: list[tuple[str | None, int]] = []

    def factory(ca_file: str | None, pool_size: int) -> Transport:
        made.append((ca_file, pool_size))
        return default_transport_factory(ca_file, pool_size)

    clients = ProviderClients(registry, factory)
    apns_client = clients.client("shop", Platform.APNS)
    fcm_client = clients.client("news", Platform.FCM)
    assert apns_client is not None and fcm_client is not None
    assert [size for _, size in made] == [APNS_POOL_SIZE, FCM_POOL_SIZE]
    # FCM: 100 streams per connection must carry the dispatcher's default sends in flight
    assert DispatcherConfig().max_in_flight <= FCM_POOL_SIZE * 100
    assert DispatcherConfig().max_in_flight <= APNS_POOL_SIZE * 1000
    asyncio.run(clients.aclose())


def test_httpx_transport_renews_a_client_whose_connection_broke() -> None:
    # httpcore may keep using a connection a GOAWAY closed and fail every later request on it: a
    # connection-level error gives the slot a fresh client (a timeout does not).
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"https://127.0.0.1:{port}/3/device/x"
    transport = HttpxTransport()

    async def scenario() -> tuple[object, object, int]:
        try:
            with pytest.raises(TransportError):
                await transport.request("POST", url, [], b"{}", 5.0)
            slot = transport._origins[f"https://127.0.0.1:{port}"].slots[0]
            first = slot.client
            with pytest.raises(TransportError):
                await transport.request("POST", url, [], b"{}", 5.0)
            return first, slot.client, len(transport._retired)
        finally:
            await transport.aclose()

    first, second, retired = asyncio.run(scenario())
    assert first is not second
    assert retired == 2  # one per broken request, closed with the transport


# --- try_send: the dispatcher's path without a coroutine -----------------------------------------


async def try_send_result(
    client: ApnsClient | FcmClient, req: NotificationRequest
) -> SendResult | None:
    """``client.try_send``'s result, or None when it could not start."""
    answer: asyncio.Future[SendResult] = asyncio.get_running_loop().create_future()
    if not client.try_send(req, {}, answer.set_result):
        return None
    return await answer


@pytest.mark.parametrize("platform", [Platform.APNS, Platform.FCM])
def test_try_send_starts_once_a_connection_and_token_are_at_hand(
    registry: AppRegistry, apns: EmulatorControl, fcm: EmulatorControl, platform: Platform
) -> None:
    config: Any = registry.apns("default") if platform is Platform.APNS else registry.fcm("default")
    assert config is not None
    transport = default_transport_factory(config.ca_file)  # H2Transport
    client: ApnsClient | FcmClient = (
        ApnsClient(config, transport) if platform is Platform.APNS else FcmClient(config, transport)
    )
    first, second, third = (request(platform) for _ in range(3))

    async def main() -> tuple[SendResult | None, SendResult, SendResult | None]:
        before = await try_send_result(client, first)  # no connection (and no FCM token) yet
        opened = await client.send(second)
        return before, opened, await try_send_result(client, third)

    before, opened, after = run_and_close(client, main)
    assert before is None
    assert opened.action is Action.ACCEPTED
    assert after is not None and after.action is Action.ACCEPTED and after.provider_id
    control = apns if platform is Platform.APNS else fcm
    tokens = [p["token"] for p in control.pushes()]
    assert tokens == [second.device_token, third.device_token]  # False: nothing was sent


def test_try_send_hands_an_expired_provider_token_back(
    registry: AppRegistry, apns: EmulatorControl
) -> None:
    # try_send does not re-mint (send() does): the dispatcher then sends through send().
    config = registry.apns("default")
    assert config is not None
    client = ApnsClient(config, default_transport_factory(config.ca_file))
    req = request()
    apns.set_token_reason(req.device_token, "ExpiredProviderToken")

    async def main() -> SendResult | None:
        await client.send(request())  # opens the connection
        return await try_send_result(client, req)

    result = run_and_close(client, main)
    assert result is not None and result.action is Action.REFRESH_AUTH
    assert client.signer.mints == 1


def test_try_send_is_not_offered_by_the_httpx_transport(registry: AppRegistry) -> None:
    client = apns_client(registry)  # HttpxTransport
    assert run_and_close(client, lambda: try_send_result(client, request())) is None
