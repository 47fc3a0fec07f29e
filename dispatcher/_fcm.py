"""The FCM HTTP v1 client: one NotificationRequest in, one :class:`SendResult` out.

Compiled by mypyc when installed: ``setup.py`` says what that asks of it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final, NamedTuple

import orjson

from dispatcher._apps import FcmAppConfig
from dispatcher._auth import AuthError, FcmAccessTokens
from dispatcher._results import Action, SendResult, classify, parse_retry_after
from dispatcher._transport import (
    StartingTransport,
    Transport,
    TransportError,
    TransportResponse,
)
from schemas import NotificationRequest, Platform
from schemas.payloads import fcm_request_body

__all__ = ["FcmClient", "FcmError", "parse_fcm_error"]

_NO_CUSTOM: Mapping[str, str] = MappingProxyType({})
_CONTENT_TYPE: Final = ("content-type", "application/json; charset=UTF-8")
_FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"


class FcmError(NamedTuple):
    """What an FCM error body says: the errorCode (else the canonical status), the field
    violations' fields, and the message."""

    reason: str | None
    fields: tuple[str, ...]
    message: str | None


def parse_fcm_error(body: bytes) -> FcmError:
    """Parse ``{"error": {"status", "message", "details": [...]}}``; tolerant of any shape."""
    try:
        document: Any = json.loads(body) if body else None
    except ValueError:
        return FcmError(None, (), f"unparseable FCM error body ({len(body)} bytes)")
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict):
        return FcmError(None, (), None)
    status = error.get("status") if isinstance(error.get("status"), str) else None
    message = error.get("message") if isinstance(error.get("message"), str) else None
    code: str | None = None
    fields: list[str] = []
    details = error.get("details")
    for detail in details if isinstance(details, list) else ():
        if not isinstance(detail, dict):
            continue
        if detail.get("@type") == _FCM_ERROR_TYPE and isinstance(detail.get("errorCode"), str):
            code = detail["errorCode"]
        elif detail.get("@type") == _BAD_REQUEST_TYPE:
            violations = detail.get("fieldViolations")
            for violation in violations if isinstance(violations, list) else ():
                if isinstance(violation, dict) and isinstance(violation.get("field"), str):
                    fields.append(violation["field"])
    return FcmError(code or status, tuple(fields), message)


class FcmClient:
    """Sends to FCM HTTP v1 for one app (project + service account)."""

    def __init__(
        self,
        config: FcmAppConfig,
        transport: Transport,
        *,
        timeout: float = 10.0,
        tokens: FcmAccessTokens | None = None,
    ) -> None:
        self.config = config
        self._transport = transport
        self._timeout = timeout
        self.tokens = tokens or FcmAccessTokens(config.service_account, transport)
        self._url = f"{config.url}/v1/projects/{config.project_id}/messages:send"
        self._try_start = transport.try_start if isinstance(transport, StartingTransport) else None
        # the last access token and its header (a token lives about an hour)
        self._authorization: tuple[str | None, tuple[str, str]] = (None, ("authorization", ""))

    async def send(
        self, req: NotificationRequest, *, extra_custom: Mapping[str, str] = _NO_CUSTOM
    ) -> SendResult:
        started = time.perf_counter()
        body = fcm_request_body(req, extra_custom)
        result = await self._attempt(req, body, started)
        if result.action is Action.REFRESH_AUTH:
            # 401 UNAUTHENTICATED: the access token expired or was revoked early. Fetch a new one
            # and retry once; a second refusal is a credentials problem.
            result = await self._attempt(req, body, started)
            if result.action is Action.REFRESH_AUTH:
                result = result._replace(action=Action.CONFIG_ALERT)
        return result

    def try_send(
        self,
        req: NotificationRequest,
        extra_custom: Mapping[str, str],
        on_result: Callable[[SendResult], None],
    ) -> bool:
        """:meth:`send` without a coroutine, when the access token is at hand and the transport
        can start the request now: ``on_result`` gets the result later (REFRESH_AUTH included:
        the caller then uses :meth:`send`). False: nothing was sent."""
        access_token = self.tokens.cached()
        if self._try_start is None or access_token is None:
            return False
        started = time.perf_counter()
        body = fcm_request_body(req, extra_custom)

        def done(answer: TransportResponse | TransportError) -> None:
            if isinstance(answer, TransportError):
                on_result(self._failure(req, answer.reason, str(answer), started))
                return
            result = _result(req, answer, started)
            if result.action is Action.REFRESH_AUTH:
                self.tokens.invalidate(access_token)
            on_result(result)

        return self._try_start(
            "POST", self._url, self._headers(access_token), body, self._timeout, done
        )

    def _headers(self, access_token: str) -> list[tuple[str, str]]:
        last_token, authorization = self._authorization
        if access_token is not last_token:
            authorization = ("authorization", f"Bearer {access_token}")
            self._authorization = (access_token, authorization)
        return [authorization, _CONTENT_TYPE]

    async def _attempt(self, req: NotificationRequest, body: bytes, started: float) -> SendResult:
        try:
            access_token = await self.tokens.token()
        except AuthError as exc:
            return self._failure(req, exc.reason, str(exc), started, exc.status)
        try:
            response = await self._transport.request(
                "POST", self._url, self._headers(access_token), body, self._timeout
            )
        except TransportError as exc:
            return self._failure(req, exc.reason, str(exc), started)
        result = _result(req, response, started)
        if result.action is Action.REFRESH_AUTH:
            self.tokens.invalidate(access_token)
        return result

    @staticmethod
    def _failure(
        req: NotificationRequest,
        reason: str,
        error: str,
        started: float,
        status: int | None = None,
    ) -> SendResult:
        return SendResult(
            platform=Platform.FCM,
            action=classify(Platform.FCM, None, reason),
            status=None,
            reason=reason,
            latency_ms=(time.perf_counter() - started) * 1000,
            collapse_id=req.collapse_id,
            error=error if status is None else f"{error} (token endpoint status {status})",
        )


def _result(req: NotificationRequest, response: TransportResponse, started: float) -> SendResult:
    latency_ms = (time.perf_counter() - started) * 1000
    if response.status == 200:
        name: str | None = None
        try:
            # orjson on this path (one per notification): 0.18 µs against json's 1.7 µs. Error
            # bodies keep json, which also reads what orjson refuses (NaN, a lone surrogate).
            document: Any = orjson.loads(response.body)
        except orjson.JSONDecodeError:
            document = None
        if isinstance(document, dict) and isinstance(document.get("name"), str):
            name = document["name"]
        return SendResult(
            platform=Platform.FCM,
            action=Action.ACCEPTED,
            status=200,
            provider_id=name,
            latency_ms=latency_ms,
            collapse_id=req.collapse_id,
        )
    error = parse_fcm_error(response.body)
    # A malformed token is INVALID_ARGUMENT with a message.token violation: the table refines it.
    token_field = "message.token" if "message.token" in error.fields else None
    return SendResult(
        platform=Platform.FCM,
        action=classify(Platform.FCM, response.status, error.reason, token_field),
        status=response.status,
        reason=error.reason,
        retry_after=parse_retry_after(response.header("retry-after")),
        latency_ms=latency_ms,
        collapse_id=req.collapse_id,
        error=error.message,
    )
