"""Fallback SMS through a Twilio-shaped Messages API: a form POST with HTTP basic auth.

httpx and Twilio's answers are turned into a :class:`ChannelResult` here and nowhere else.
"""

from __future__ import annotations

import ssl
import time
from typing import Any

import httpx

from receipts._channels import ChannelResult, parse_retry_after
from receipts._fallback_config import SmsSettings
from schemas import FallbackRequest

__all__ = ["SmsClient"]

#: Statuses that refuse the message itself; anything else may pass on another attempt.
_PERMANENT = frozenset({400, 405, 413, 415, 422})


class SmsClient:
    """Sends fallback SMS for one account; one pooled HTTP client for the process."""

    def __init__(self, settings: SmsSettings, tls: ssl.SSLContext, *, timeout_s: float = 15.0):
        self.settings = settings
        self._client = httpx.AsyncClient(
            auth=httpx.BasicAuth(settings.account_sid, settings.auth_token),
            verify=tls,
            timeout=timeout_s,
            headers={"Accept": "application/json", "User-Agent": "pushline-fallback/1"},
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def form(self, request: FallbackRequest) -> dict[str, str]:
        form = {"To": request.fallback.address.strip(), "Body": request.fallback.text}
        if self.settings.messaging_service_sid:
            form["MessagingServiceSid"] = self.settings.messaging_service_sid
        if self.settings.from_number:
            form["From"] = self.settings.from_number
        return form

    async def send(self, request: FallbackRequest) -> ChannelResult:
        started = time.perf_counter()
        try:
            response = await self._client.post(self.settings.messages_url, data=self.form(request))
        except httpx.HTTPError as exc:  # connection refused, TLS, timeout: try again
            return ChannelResult(
                ok=False,
                transient=True,
                reason=f"SMS {type(exc).__name__}: {exc}"[:300],
                latency_ms=(time.perf_counter() - started) * 1000,
            )
        latency = (time.perf_counter() - started) * 1000
        return _classify(response, latency)


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _classify(response: httpx.Response, latency_ms: float) -> ChannelResult:
    status = response.status_code
    body = _body(response)
    if status in (200, 201):
        sid = body.get("sid")
        if isinstance(sid, str) and sid:
            return ChannelResult(ok=True, status=status, provider_id=sid, latency_ms=latency_ms)
        # Accepted without a sid is not an answer we understand: do not count it as sent.
        return ChannelResult(
            ok=False,
            transient=True,
            status=status,
            reason="SMS answer without a sid",
            latency_ms=latency_ms,
        )
    code = body.get("code")
    message = " ".join(str(body.get("message") or response.reason_phrase).split())
    reason = f"Twilio {status}" + (f" code {code}" if code else "") + f": {message}"
    # 400 is Twilio refusing this message (bad number, empty body...): never retried. 401/403/404
    # are our credentials or account: retried until the budget, like 429 and 5xx.
    transient = status not in _PERMANENT
    return ChannelResult(
        ok=False,
        transient=transient,
        status=status,
        reason=reason[:300],
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
        latency_ms=latency_ms,
    )
