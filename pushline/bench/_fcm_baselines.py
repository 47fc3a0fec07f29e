"""Baselines against the FCM emulator: httpx[http2] driven directly, and its ceiling (h2load).

Both send what the dispatcher's ``FcmClient`` sends: ``POST <FCM_URL>/v1/projects/<project>/
messages:send`` with ``authorization: Bearer <access token>`` and the ``{"message": ...}`` JSON body
(receipt token included). The access token is fetched once, untimed, from the emulator's OAuth2
token endpoint by the dispatcher's own service-account flow (``FcmAccessTokens``), so the baselines
pay for no token requests and neither does the dispatcher after its first send. aioapns has no FCM
counterpart.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from dispatcher._apps import FcmServiceAccount, load_service_account
from dispatcher._auth import AuthError, FcmAccessTokens
from dispatcher._transport import HttpxTransport
from pushline.bench._baselines import BaselineResult, H2Request, drive_requests
from pushline.errors import ConfigError, StackError

__all__ = ["FcmTarget", "fcm_h2_request", "run_httpx_fcm"]


@dataclass(frozen=True)
class FcmTarget:
    """The FCM emulator and the service account ``pushline emulate stack`` prints."""

    url: str
    ca_file: str
    project_id: str
    account: FcmServiceAccount

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> FcmTarget:
        missing = [
            n for n in ("FCM_URL", "PUSHLINE_CA_FILE", "FCM_SERVICE_ACCOUNT_FILE") if not env.get(n)
        ]
        if missing:
            raise ConfigError(f"the benchmark needs the FCM emulator: {', '.join(missing)} unset")
        account = load_service_account(
            Path(env["FCM_SERVICE_ACCOUNT_FILE"]), env.get("FCM_TOKEN_URI") or None
        )
        project_id = env.get("FCM_PROJECT_ID") or account.project_id
        if not project_id:
            raise ConfigError("the benchmark needs FCM_PROJECT_ID (the service account has none)")
        return cls(
            url=env["FCM_URL"].rstrip("/"),
            ca_file=env["PUSHLINE_CA_FILE"],
            project_id=project_id,
            account=account,
        )

    @property
    def send_url(self) -> str:
        return f"{self.url}/v1/projects/{self.project_id}/messages:send"

    def access_token(self) -> str:
        """One OAuth2 access token from the emulator's token endpoint."""

        async def fetch() -> str:
            transport = HttpxTransport(ca_file=self.ca_file)
            try:
                return await FcmAccessTokens(self.account, transport).token()
            finally:
                await transport.aclose()

        try:
            return asyncio.run(fetch())
        except AuthError as exc:
            raise StackError(f"the FCM emulator gave no access token: {exc}") from exc

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)


def _headers(access_token: str) -> dict[str, str]:
    """The dispatcher's FCM request headers."""
    return {
        "authorization": f"Bearer {access_token}",
        "content-type": "application/json; charset=UTF-8",
    }


def run_httpx_fcm(
    target: FcmTarget, bodies: Sequence[bytes], *, concurrency: int, budget_s: float
) -> BaselineResult:
    """httpx[http2] driven directly against the FCM emulator: one AsyncClient, ``concurrency``
    requests in flight, one request per body (``{"message": ...}`` as the dispatcher builds it)."""
    headers = _headers(target.access_token())

    async def main() -> BaselineResult:
        async with httpx.AsyncClient(
            http2=True, verify=target.ssl_context(), timeout=30.0
        ) as client:

            async def send(body: bytes) -> bool:
                try:
                    response = await client.post(target.send_url, content=body, headers=headers)
                except httpx.HTTPError:
                    return False
                return response.status_code == 200

            return await drive_requests("httpx", send, bodies, concurrency, budget_s)

    return asyncio.run(main())


def fcm_h2_request(target: FcmTarget, body: bytes) -> H2Request:
    """``body`` as h2load sends it to the FCM emulator, with a valid access token."""
    return H2Request(target.send_url, _headers(target.access_token()), body)
