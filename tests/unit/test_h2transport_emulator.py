"""ApnsClient / FcmClient over H2Transport against the real APNs and FCM emulators (granian's fast
listener, and the h2 listener for GOAWAY)."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime

import pytest

from dispatcher._apns import ApnsClient
from dispatcher._apps import AppRegistry
from dispatcher._fcm import FcmClient
from dispatcher._h2transport import H2Transport
from dispatcher._providers import ProviderClients, default_transport_factory
from dispatcher._results import Action, SendResult
from pushline.emulators._control import EmulatorControl
from pushline.emulators._runner import ProviderEmulators
from schemas import NotificationContent, NotificationRequest, Platform
from tests.unit.test_provider_clients import request


@pytest.fixture
def registry(emulators: ProviderEmulators) -> AppRegistry:
    return AppRegistry.from_env(emulators.env)


def apns_client(registry: AppRegistry, base_url: str | None = None) -> ApnsClient:
    config = registry.apns("default")
    assert config is not None
    if base_url is not None:
        config = dataclasses.replace(config, base_url=base_url)
    return ApnsClient(config, H2Transport(ca_file=config.ca_file))


def fcm_client(registry: AppRegistry) -> FcmClient:
    config = registry.fcm("default")
    assert config is not None
    return FcmClient(config, H2Transport(ca_file=config.ca_file))


def send(client: ApnsClient | FcmClient, reqs: list[NotificationRequest]) -> list[SendResult]:
    async def main() -> list[SendResult]:
        try:
            return list(await asyncio.gather(*(client.send(r) for r in reqs)))
        finally:
            await client._transport.aclose()

    return asyncio.run(main())


def test_emulator_apns_accepted(registry: AppRegistry, apns: EmulatorControl) -> None:
    reqs = [request() for _ in range(200)]
    results = send(apns_client(registry), reqs)
    assert [r.action for r in results] == [Action.ACCEPTED] * 200
    assert [r.provider_id for r in results] == [r.notification_id for r in reqs]
    pushes = apns.pushes()
    assert sorted(p["id"] for p in pushes) == sorted(r.notification_id for r in reqs)
    assert all(p["payload"]["aps"]["alert"]["title"] == "Hello" for p in pushes)


def test_emulator_apns_410_413_429(registry: AppRegistry, apns: EmulatorControl) -> None:
    gone, big, ok = request(), request(), request()
    big = dataclasses.replace(
        big, content=NotificationContent(title="x", custom_data={"blob": "b" * 5000})
    )
    apns.set_unregistered([gone.device_token], timestamp_ms=1_700_000_000_123)
    r410, r413 = send(apns_client(registry), [gone, big])
    assert (r410.status, r410.reason, r410.action) == (410, "Unregistered", Action.INVALID_TOKEN)
    assert r410.invalid_since == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)
    assert (r413.status, r413.reason, r413.action) == (413, "PayloadTooLarge", Action.REJECT)
    apns.set_rates(status_429=1.0, retry_after=7)
    [r429] = send(apns_client(registry), [ok])
    assert (r429.status, r429.reason, r429.action) == (429, "TooManyRequests", Action.RETRY)
    assert r429.retry_after == 7.0


def test_emulator_fcm_accepted_and_errors(registry: AppRegistry, fcm: EmulatorControl) -> None:
    reqs = [request(Platform.FCM) for _ in range(150)]  # beyond FCM's 100 streams per connection
    gone = request(Platform.FCM)
    fcm.set_unregistered([gone.device_token])
    *results, r404 = send(fcm_client(registry), [*reqs, gone])
    assert [r.action for r in results] == [Action.ACCEPTED] * 150
    assert len({r.provider_id for r in results}) == 150
    assert (r404.status, r404.reason, r404.action) == (404, "UNREGISTERED", Action.INVALID_TOKEN)
    fcm.set_rates(status_429=1.0, retry_after=3)
    [r429] = send(fcm_client(registry), [request(Platform.FCM)])
    assert (r429.status, r429.action, r429.retry_after) == (429, Action.RETRY, 3.0)


def test_emulator_goaway_resends_only_unprocessed(
    registry: AppRegistry, emulators: ProviderEmulators, apns: EmulatorControl
) -> None:
    # Each connection of the h2 listener takes 20 streams, then GOAWAY: the streams above its
    # last_stream_id are re-sent (once) on a new connection. A notification is never delivered
    # twice, because a stream the server processed is never re-sent.
    apns.set_goaway_after(20)
    client = apns_client(registry, base_url=emulators.apns_h2_url)
    reqs = [request() for _ in range(30)]
    results = send(client, reqs)
    assert [r.action for r in results] == [Action.ACCEPTED] * 30
    pushes = apns.pushes()
    assert sorted(p["id"] for p in pushes) == sorted(r.notification_id for r in reqs)
    assert apns.stats()["goaways"] >= 1

    # 5 streams per connection, 40 at once: most streams get refused twice (the retry is once
    # only), and come back as RETRY; whatever the passes, nothing is delivered twice.
    apns.reset()
    apns.set_goaway_after(5)
    client = apns_client(registry, base_url=emulators.apns_h2_url)
    reqs = [request() for _ in range(40)]
    pending, passes = reqs, 0

    async def main() -> None:
        nonlocal pending, passes
        try:
            while pending and passes < 30:
                passes += 1
                results = await asyncio.gather(*(client.send(r) for r in pending))
                for result in results:
                    assert result.action in (Action.ACCEPTED, Action.RETRY)
                    if result.action is Action.RETRY:
                        assert result.reason == "ConnectionError"
                pending = [r for r, res in zip(pending, results, strict=True) if not res.accepted]
        finally:
            await client._transport.aclose()

    asyncio.run(main())
    assert pending == []
    ids = [p["id"] for p in apns.pushes()]
    assert len(ids) == len(set(ids)) == 40


def test_provider_clients_default_transport(
    registry: AppRegistry, apns: EmulatorControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PUSHLINE_TRANSPORT", raising=False)
    assert isinstance(default_transport_factory(None), H2Transport)
    monkeypatch.setenv("PUSHLINE_TRANSPORT", "httpx")
    assert not isinstance(default_transport_factory(None), H2Transport)
    monkeypatch.delenv("PUSHLINE_TRANSPORT")
    clients = ProviderClients(registry)

    async def main() -> list[SendResult]:
        try:
            return list(await asyncio.gather(*(clients.send(request()) for _ in range(20))))
        finally:
            await clients.aclose()

    assert [r.action for r in asyncio.run(main())] == [Action.ACCEPTED] * 20
