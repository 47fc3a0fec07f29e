"""Provider auth tokens, cached: the APNs provider JWT and the FCM OAuth2 access token."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives import serialization

from dispatcher._apps import ApnsAppConfig, FcmServiceAccount
from dispatcher._results import PushlineReason
from dispatcher._transport import Transport, TransportError
from pushline.errors import ConfigError, PushlineError

__all__ = [
    "FCM_SCOPE",
    "ApnsTokenSigner",
    "AuthError",
    "FcmAccessTokens",
]

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_MIN_APNS_AGE = 20 * 60.0  # Apple: refreshing more often is TooManyProviderTokenUpdates
_MAX_APNS_AGE = 50 * 60.0  # Apple: a token older than 60 minutes is ExpiredProviderToken
_FORCED_REFRESH_GAP = 60.0


def _load_key(pem: str, source: str) -> Any:
    try:
        return serialization.load_pem_private_key(pem.encode("utf-8"), password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"{source}: private key cannot be loaded") from None


class ApnsTokenSigner:
    """Mints and caches the ES256 provider JWT of one APNs key.

    A token is reused for ``max_age`` seconds (20-50 minutes, default 40) and only then replaced.
    :meth:`refresh` replaces it early when APNs says it expired (clock skew): only if the caller's
    token is still the current one (so a burst of 403s mints once), and at most once a minute.
    ``clock`` supplies ``iat`` (wall time); ages are measured with ``monotonic``, so a wrong wall
    clock produces the ExpiredProviderToken path rather than a minting loop. Thread-safe; minting
    never awaits, so it is also a single flight under asyncio.
    """

    def __init__(
        self,
        config: ApnsAppConfig,
        *,
        max_age: float = 40 * 60.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not _MIN_APNS_AGE <= max_age <= _MAX_APNS_AGE:
            raise ConfigError(
                f"APNs token max_age must be 1200..3000 seconds (20-50 minutes), not {max_age}"
            )
        self._key = _load_key(config.private_key.reveal(), f"APNs key {config.key_id}")
        self._key_id = config.key_id
        self._team_id = config.team_id
        self._max_age = max_age
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        # (token, monotonic time it was minted), replaced whole: token() reads it without the lock
        self._current: tuple[str, float] | None = None
        self._forced_at: float | None = None
        self.mints = 0
        """How many tokens this signer has minted (for tests and metrics)."""

    def _mint(self) -> str:
        token = jwt.encode(
            {"iss": self._team_id, "iat": int(self._clock())},
            self._key,
            algorithm="ES256",
            headers={"kid": self._key_id},
        )
        self._current = (token, self._monotonic())
        self.mints += 1
        return token

    def _fresh(self) -> str | None:
        current = self._current
        if current is not None and self._monotonic() - current[1] < self._max_age:
            return current[0]
        return None

    def token(self) -> str:
        """The current provider token, minted if there is none or it is ``max_age`` old."""
        # The usual case without the lock (it is asked for every send): one read of a pair that
        # _mint replaces whole.
        fresh = self._fresh()
        if fresh is not None:
            return fresh
        with self._lock:  # one thread mints; the others then find its token
            return self._fresh() or self._mint()

    def refresh(self, rejected: str) -> str:
        """A token to retry with after APNs refused ``rejected`` as ExpiredProviderToken."""
        with self._lock:
            now = self._monotonic()
            current = self._current
            if current is None:
                return self._mint()
            if current[0] != rejected:
                return current[0]  # someone already replaced it
            if self._forced_at is not None and now - self._forced_at < _FORCED_REFRESH_GAP:
                return current[0]  # a clock this wrong needs an operator, not a minting loop
            self._forced_at = now
            return self._mint()


class AuthError(PushlineError):
    """The OAuth2 token endpoint did not give us an access token. ``reason`` is AuthFailed
    (refused: configuration) or AuthUnavailable (transient)."""

    def __init__(self, reason: PushlineReason, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status


@dataclass(frozen=True, slots=True)
class _AccessToken:
    value: str
    expires_at: float  # monotonic


class FcmAccessTokens:
    """The OAuth2 service-account flow (RS256 JWT-bearer grant) with a cached access token.

    The token is refreshed ``refresh_ahead`` seconds before it expires; concurrent callers share
    one in-flight refresh. :meth:`invalidate` drops a token FCM refused (401), once per token.
    """

    def __init__(
        self,
        account: FcmServiceAccount,
        transport: Transport,
        *,
        refresh_ahead: float = 300.0,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._key = _load_key(
            account.private_key.reveal(), f"service account {account.client_email}"
        )
        self._account = account
        self._transport = transport
        self._refresh_ahead = refresh_ahead
        self._timeout = timeout
        self._clock = clock
        self._monotonic = monotonic
        self._current: _AccessToken | None = None
        self._pending: asyncio.Future[_AccessToken] | None = None
        self.fetches = 0
        """How many access tokens were fetched (for tests and metrics)."""

    async def token(self) -> str:
        current = self.cached()
        if current is not None:
            return current
        return (await self._refresh()).value

    def cached(self) -> str | None:
        """The current token when it needs no refresh yet, else None (then await :meth:`token`)."""
        current = self._current
        if current is not None and self._monotonic() < current.expires_at - self._refresh_ahead:
            return current.value
        return None

    def invalidate(self, refused: str) -> None:
        """FCM refused ``refused`` (401): forget it unless a newer token already replaced it."""
        if self._current is not None and self._current.value == refused:
            self._current = None

    async def _refresh(self) -> _AccessToken:
        # One fetch in flight, run as its own task: a cancelled caller must not fail the others.
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._fetch_and_store())
            self._pending.add_done_callback(self._fetch_done)
        return await asyncio.shield(self._pending)

    async def _fetch_and_store(self) -> _AccessToken:
        fetched = await self._fetch()
        self._current = fetched
        return fetched

    def _fetch_done(self, task: asyncio.Future[_AccessToken]) -> None:
        self._pending = None
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have been cancelled meanwhile

    def _assertion(self) -> str:
        now = int(self._clock())
        return jwt.encode(
            {
                "iss": self._account.client_email,
                "scope": FCM_SCOPE,
                "aud": self._account.token_uri,
                "iat": now,
                "exp": now + 3600,
            },
            self._key,
            algorithm="RS256",
            headers={"kid": self._account.private_key_id},
        )

    async def _fetch(self) -> _AccessToken:
        body = urlencode({"grant_type": _JWT_BEARER, "assertion": self._assertion()}).encode()
        started = self._monotonic()
        try:
            response = await self._transport.request(
                "POST",
                self._account.token_uri,
                [("content-type", "application/x-www-form-urlencoded")],
                body,
                self._timeout,
            )
        except TransportError as exc:
            raise AuthError(
                PushlineReason.AUTH_UNAVAILABLE, f"token endpoint unreachable: {exc}"
            ) from exc
        self.fetches += 1
        try:
            document = json.loads(response.body) if response.body else {}
        except ValueError:
            document = {}
        if not isinstance(document, dict):
            document = {}
        if response.status != 200:
            # OAuth errors name the problem ("invalid_grant: Invalid JWT Signature."), no secrets.
            message = f"{document.get('error', '')}: {document.get('error_description', '')}"
            reason = (
                PushlineReason.AUTH_UNAVAILABLE
                if response.status >= 500 or response.status == 429
                else PushlineReason.AUTH_FAILED
            )
            raise AuthError(
                reason, f"token endpoint answered {response.status} {message}", response.status
            )
        value, expires_in = document.get("access_token"), document.get("expires_in", 3600)
        if not isinstance(value, str) or not value or not isinstance(expires_in, int | float):
            raise AuthError(PushlineReason.AUTH_FAILED, "token endpoint sent no access_token")
        return _AccessToken(value, started + float(expires_in))
