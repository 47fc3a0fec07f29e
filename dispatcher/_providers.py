"""Route a NotificationRequest to the right provider client for its app and platform."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType

from dispatcher._apns import ApnsClient
from dispatcher._apps import AppRegistry
from dispatcher._fcm import FcmClient
from dispatcher._h2transport import H2Transport
from dispatcher._results import Action, PushlineReason, SendResult
from dispatcher._transport import HttpxTransport, Transport
from pushline.errors import ConfigError
from schemas import NotificationRequest, Platform

__all__ = ["ProviderClients", "TransportFactory", "default_transport_factory"]

TransportFactory = Callable[[str | None, int], Transport]
"""Makes a transport trusting ``ca_file`` (None: the system store) with up to ``pool_size``
connections per origin."""

APNS_POOL_SIZE = 2
"""APNs allows 1,000 concurrent streams per connection: two connections carry the dispatcher's
default 1,000 sends in flight with room for a GOAWAY'd one to drain."""
FCM_POOL_SIZE = 12
"""FCM allows 100 concurrent streams per connection (its SETTINGS_MAX_CONCURRENT_STREAMS): ten
connections carry the dispatcher's default 1,000 sends in flight, two more let GOAWAY'd ones drain.
With fewer, sends queue for a free stream: ``pushline bench dispatcher --provider fcm`` measured
5,800/s at 149 µs per notification with 2 connections, 7,400/s at 117 µs with 12."""

_NO_CUSTOM: Mapping[str, str] = MappingProxyType({})


def default_transport_factory(ca_file: str | None, pool_size: int = APNS_POOL_SIZE) -> Transport:
    """``PUSHLINE_TRANSPORT``: ``h2`` (the default, :class:`H2Transport`) or ``httpx``."""
    kind = os.environ.get("PUSHLINE_TRANSPORT", "h2").strip().lower() or "h2"
    if kind == "h2":
        return H2Transport(ca_file=ca_file, pool_size=pool_size)
    if kind == "httpx":
        return HttpxTransport(ca_file=ca_file, pool_size=pool_size)
    raise ConfigError(f"PUSHLINE_TRANSPORT must be h2 or httpx, got {kind!r}")


class ProviderClients:
    """One client per (app, platform), created on first use, each with its own transport (APNs
    wants one team per connection). Never raises for a request: an app or platform without
    credentials is a CONFIG_ALERT result with reason UnknownApp."""

    def __init__(
        self,
        registry: AppRegistry,
        transport_factory: TransportFactory = default_transport_factory,
        *,
        timeout: float = 10.0,
    ) -> None:
        self.registry = registry
        self._transport_factory = transport_factory
        self._timeout = timeout
        self._clients: dict[tuple[str, Platform], ApnsClient | FcmClient] = {}
        self._transports: list[Transport] = []

    def client(self, app_id: str, platform: Platform) -> ApnsClient | FcmClient | None:
        """The client for ``app_id`` on ``platform``, or None when it has no credentials there."""
        key = (app_id, platform)
        client = self._clients.get(key)
        if client is not None:
            return client
        # No await between the lookup and the insert: concurrent sends never build two clients.
        if platform is Platform.APNS:
            apns = self.registry.apns(app_id)
            if apns is None:
                return None
            transport = self._transport_factory(apns.ca_file, APNS_POOL_SIZE)
            client = ApnsClient(apns, transport, timeout=self._timeout)
        else:
            fcm = self.registry.fcm(app_id)
            if fcm is None:
                return None
            transport = self._transport_factory(fcm.ca_file, FCM_POOL_SIZE)
            client = FcmClient(fcm, transport, timeout=self._timeout)
        self._transports.append(transport)
        self._clients[key] = client
        return client

    def send(
        self, req: NotificationRequest, extra_custom: Mapping[str, str] = _NO_CUSTOM
    ) -> Awaitable[SendResult]:
        """The send's coroutine (a plain function returning the client's coroutine: one
        coroutine frame less per send than an ``async def`` awaiting it)."""
        client = self.client(req.app_id, req.platform)
        if client is None:
            return _ready(
                SendResult(
                    platform=req.platform,
                    action=Action.CONFIG_ALERT,
                    reason=PushlineReason.UNKNOWN_APP,
                    collapse_id=req.collapse_id,
                    error=f"no {req.platform.value} credentials for app {req.app_id!r}",
                )
            )
        return client.send(req, extra_custom=extra_custom)

    def try_send(
        self,
        req: NotificationRequest,
        extra_custom: Mapping[str, str],
        on_result: Callable[[SendResult], None],
    ) -> bool:
        """:meth:`send` without a coroutine when the client can start the request now (see
        ``ApnsClient.try_send``); False: nothing was sent, use :meth:`send`."""
        client = self.client(req.app_id, req.platform)
        return client is not None and client.try_send(req, extra_custom, on_result)

    async def aclose(self) -> None:
        transports, self._transports = self._transports, []
        self._clients.clear()
        for transport in transports:
            await transport.aclose()


async def _ready(result: SendResult) -> SendResult:
    return result
