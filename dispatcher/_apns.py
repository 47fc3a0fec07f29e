"""The APNs provider-API client: one NotificationRequest in, one :class:`SendResult` out.

Compiled by mypyc when installed: ``setup.py`` says what that asks of it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Final

from dispatcher._apps import ApnsAppConfig
from dispatcher._auth import ApnsTokenSigner
from dispatcher._results import Action, SendResult, classify, parse_retry_after
from dispatcher._transport import (
    StartingTransport,
    Transport,
    TransportError,
    TransportResponse,
)
from schemas import NotificationRequest, Platform, Priority, PushType
from schemas._ids import is_canonical_uuid
from schemas.payloads import apns_payload

__all__ = ["APNS_TOPIC_SUFFIX", "ApnsClient", "apns_id_for"]

APNS_TOPIC_SUFFIX: Final[Mapping[PushType, str]] = MappingProxyType(
    {
        PushType.ALERT: "",
        PushType.BACKGROUND: "",
        PushType.VOIP: ".voip",
        PushType.COMPLICATION: ".complication",
        PushType.FILEPROVIDER: ".pushkit.fileprovider",
        PushType.LIVEACTIVITY: ".push-type.liveactivity",
        PushType.PUSHTOTALK: ".voip-ptt",
        PushType.LOCATION: ".location-query",
        PushType.MDM: "",  # the configured topic is the com.apple.mgmt.External.* id
    }
)
"""What Apple appends to the bundle id for each push type's apns-topic."""

_NO_CUSTOM: Mapping[str, str] = MappingProxyType({})
_ID_NAMESPACE = uuid.UUID("6f1c7a0e-5d0b-4a55-9a39-1f7f0c2f8e11")


def apns_id_for(notification_id: str) -> str:
    """The apns-id of a notification: its own id (a canonical UUID), so a re-send carries the same
    apns-id; anything else is mapped to a stable UUID5."""
    if is_canonical_uuid(notification_id):  # the usual case, without building a UUID
        return notification_id
    try:
        parsed = uuid.UUID(notification_id)
    except ValueError:
        return str(uuid.uuid5(_ID_NAMESPACE, notification_id))
    return str(parsed)


class ApnsClient:
    """Sends to APNs with token auth for one app (one team: APNs wants one team per connection,
    so give each client its own transport)."""

    def __init__(
        self,
        config: ApnsAppConfig,
        transport: Transport,
        *,
        timeout: float = 10.0,
        signer: ApnsTokenSigner | None = None,
        token_max_age: float = 40 * 60.0,
    ) -> None:
        self.config = config
        self._transport = transport
        self._timeout = timeout
        self.signer = signer or ApnsTokenSigner(config, max_age=token_max_age)
        self._url = config.url + "/3/device/"
        self._try_start = transport.try_start if isinstance(transport, StartingTransport) else None
        # The headers that depend on the push type and priority only, made once per pair.
        self._fixed_headers: dict[tuple[PushType, Priority], tuple[tuple[str, str], ...]] = {}
        # the last bearer token and its header (the token changes every 40 minutes)
        self._authorization: tuple[str | None, tuple[str, str]] = (None, ("authorization", ""))

    def _headers(self, req: NotificationRequest, bearer: str) -> list[tuple[str, str]]:
        fixed = self._fixed_headers.get((req.push_type, req.priority))
        if fixed is None:
            fixed = self._fixed_headers[(req.push_type, req.priority)] = self._fixed(req)
        last_bearer, authorization = self._authorization
        if bearer is not last_bearer:
            authorization = ("authorization", f"bearer {bearer}")
            self._authorization = (bearer, authorization)
        return [
            authorization,
            *fixed,
            ("apns-id", apns_id_for(req.notification_id)),
            ("apns-expiration", str(max(1, int(req.expires_at.timestamp())))),
            ("apns-collapse-id", req.collapse_id),
        ]

    def _fixed(self, req: NotificationRequest) -> tuple[tuple[str, str], ...]:
        background = req.push_type is PushType.BACKGROUND
        # Apple: background pushes must use priority 5; 10 would be refused (BadPriority).
        priority = Priority.NORMAL.apns_value if background else req.priority.apns_value
        return (
            ("apns-topic", self.config.topic + APNS_TOPIC_SUFFIX[req.push_type]),
            ("apns-push-type", req.push_type.apns_header),
            ("apns-priority", str(priority)),
            ("content-type", "application/json"),
        )

    async def send(
        self, req: NotificationRequest, *, extra_custom: Mapping[str, str] = _NO_CUSTOM
    ) -> SendResult:
        started = time.perf_counter()
        url = self._url + req.device_token
        body = apns_payload(req, extra_custom)
        bearer = self.signer.token()
        # The first attempt inline, not through _attempt: one coroutine frame less per send.
        try:
            response = await self._transport.request(
                "POST", url, self._headers(req, bearer), body, self._timeout
            )
        except TransportError as exc:
            return _transport_failure(req, exc, started)
        result = _result(req, response, started)
        if result.action is Action.REFRESH_AUTH:
            # ExpiredProviderToken: mint a fresh JWT and retry once. A second refusal is a clock or
            # key problem no retry fixes.
            result = await self._attempt(req, url, body, self.signer.refresh(bearer), started)
            if result.action is Action.REFRESH_AUTH:
                result = result._replace(action=Action.CONFIG_ALERT)
        return result

    def try_send(
        self,
        req: NotificationRequest,
        extra_custom: Mapping[str, str],
        on_result: Callable[[SendResult], None],
    ) -> bool:
        """:meth:`send` without a coroutine, when the transport can start the request now:
        ``on_result`` gets the result later (REFRESH_AUTH included: the caller then uses
        :meth:`send`, which refreshes the token). False: nothing was sent."""
        if self._try_start is None:
            return False
        started = time.perf_counter()
        url = self._url + req.device_token
        body = apns_payload(req, extra_custom)

        def done(answer: TransportResponse | TransportError) -> None:
            if isinstance(answer, TransportError):
                on_result(_transport_failure(req, answer, started))
            else:
                on_result(_result(req, answer, started))

        headers = self._headers(req, self.signer.token())
        return self._try_start("POST", url, headers, body, self._timeout, done)

    async def _attempt(
        self, req: NotificationRequest, url: str, body: bytes, bearer: str, started: float
    ) -> SendResult:
        try:
            response = await self._transport.request(
                "POST", url, self._headers(req, bearer), body, self._timeout
            )
        except TransportError as exc:
            return _transport_failure(req, exc, started)
        return _result(req, response, started)


def _transport_failure(req: NotificationRequest, exc: TransportError, started: float) -> SendResult:
    return SendResult(
        platform=Platform.APNS,
        action=classify(Platform.APNS, None, exc.reason),
        reason=exc.reason,
        latency_ms=(time.perf_counter() - started) * 1000,
        collapse_id=req.collapse_id,
        error=str(exc),
    )


def _result(req: NotificationRequest, response: TransportResponse, started: float) -> SendResult:
    latency_ms = (time.perf_counter() - started) * 1000
    provider_id = response.header("apns-id")
    if response.status == 200:
        return SendResult(
            platform=Platform.APNS,
            action=Action.ACCEPTED,
            status=200,
            provider_id=provider_id,
            latency_ms=latency_ms,
            collapse_id=req.collapse_id,
        )
    reason: str | None = None
    invalid_since: datetime | None = None
    error: str | None = None
    try:
        document = json.loads(response.body) if response.body else None
    except ValueError:
        document = None
        error = f"unparseable APNs error body ({len(response.body)} bytes)"
    if isinstance(document, dict):
        raw_reason = document.get("reason")
        reason = raw_reason if isinstance(raw_reason, str) else None
        stamp = document.get("timestamp")
        if isinstance(stamp, int | float) and not isinstance(stamp, bool) and stamp > 0:
            invalid_since = datetime.fromtimestamp(stamp / 1000, UTC)
    return SendResult(
        platform=Platform.APNS,
        action=classify(Platform.APNS, response.status, reason),
        status=response.status,
        reason=reason,
        provider_id=provider_id,
        invalid_since=invalid_since,
        retry_after=parse_retry_after(response.header("retry-after")),
        latency_ms=latency_ms,
        collapse_id=req.collapse_id,
        error=error,
    )
