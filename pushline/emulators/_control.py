"""A small client for an emulator's ``/_emulator/`` control endpoints (tests, demo, bench)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Self

import httpx

from pushline.errors import StackError

__all__ = ["ControlClient", "EmulatorControl"]


class ControlClient:
    """An HTTPS client of an emulator's ``/_emulator/`` control endpoints (tests, the demo).

    One place for the client set-up and the error mapping of every emulator's control API: a
    transport failure or a refusal is a :class:`StackError` naming the emulator and the action.
    """

    emulator = "emulator"

    def __init__(
        self,
        base_url: str,
        ca_file: str | Path | None,
        timeout: float = 10.0,
        *,
        http2: bool = False,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(ca_file)) if ca_file else True
        )
        self._client = httpx.Client(
            base_url=self.base_url + "/_emulator/", http2=http2, verify=verify, timeout=timeout
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, action: str, body: dict[str, Any] | None = None) -> Any:
        try:
            response = self._client.request(method, action, json=body)
        except httpx.HTTPError as exc:
            raise StackError(
                f"{self.emulator} control {action} at {self.base_url} failed: {exc}"
            ) from exc
        if response.status_code != 200:
            raise StackError(
                f"{self.emulator} control {action} refused ({response.status_code}): "
                f"{response.text}"
            )
        return response.json()


class EmulatorControl(ControlClient):
    """Programs one running APNs or FCM emulator. ``base_url`` is either of its listeners.

    Settings apply to both listeners of the emulator (they share state), except GOAWAY, which only
    the ``h2_url`` listener can send (see ``set_goaway_after``).
    """

    emulator = "APNs/FCM emulator"

    def __init__(self, base_url: str, ca_file: str | Path, timeout: float = 10.0) -> None:
        super().__init__(base_url, ca_file, timeout, http2=True)

    def _post(self, action: str, body: dict[str, Any] | None = None) -> None:
        self._call("POST", action, body or {})

    # --- behaviour -----------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget programmed behaviour, recorded pushes and counters; reseed the fault generator."""
        self._post("reset")

    def set_unregistered(self, tokens: list[str], timestamp_ms: int | None = None) -> None:
        """These tokens answer APNs 410 Unregistered (``timestamp`` = timestamp_ms, default now)
        or FCM 404 UNREGISTERED."""
        self._post("unregistered", {"tokens": list(tokens), "timestamp_ms": timestamp_ms})

    def set_rates(
        self,
        status_429: float = 0.0,
        status_500: float = 0.0,
        status_503: float = 0.0,
        retry_after: int = 1,
        seed: int | None = None,
    ) -> None:
        """Fractions of otherwise valid requests that fail (429 and 503 carry ``Retry-After``).
        Faults are drawn from a generator seeded with ``seed`` (the start seed when None)."""
        self._post(
            "rates",
            {
                "status_429": status_429,
                "status_500": status_500,
                "status_503": status_503,
                "retry_after": retry_after,
                "seed": seed,
            },
        )

    def set_latency(self, ms: float) -> None:
        """Delay every provider response by ``ms`` milliseconds (without blocking other streams)."""
        self._post("latency", {"ms": ms})

    def set_goaway_after(self, n_streams: int | None, reason: str = "Shutdown") -> None:
        """On the ``h2_url`` listener, each connection sends GOAWAY (NO_ERROR, debug data
        ``{"reason": reason}``) after it has received ``n_streams`` streams, answers those, refuses
        later ones with REFUSED_STREAM and closes. None turns it off. The granian listener cannot
        send GOAWAY on demand and ignores this."""
        self._post("goaway", {"after_streams": n_streams, "reason": reason})

    def set_token_reason(self, token: str, reason: str, status: int | None = None) -> None:
        """Make ``token`` fail with ``reason`` (an APNs reason or an FCM errorCode); the status
        defaults to the provider's status for that reason."""
        self._post("token-reason", {"token": token, "status": status, "reason": reason})

    def set_token_update_window(self, seconds: float) -> None:
        """APNs only: how long a (connection, team) must keep a provider token before a new one is
        accepted (TooManyProviderTokenUpdates). Apple: 20 minutes."""
        self._post("token-update-window", {"seconds": seconds})

    def set_record_limit(self, limit: int) -> None:
        """Keep at most ``limit`` pushes for pushes() (default 1,000,000); later accepted pushes are
        only counted (stats()["accepted"]). Use 0 for long benchmarks."""
        self._post("record-limit", {"limit": limit})

    def expire_access_tokens(self) -> None:
        """FCM only: every access token issued so far is now expired (401 UNAUTHENTICATED)."""
        self._post("expire-access-tokens")

    # --- observation ---------------------------------------------------------------------------

    def pushes(self, since: int = 0) -> list[dict[str, Any]]:
        """Accepted pushes in order (from index ``since``). Keys: provider, token, id (apns-id or
        FCM message name), collapse_id (apns-collapse-id / android.notification.tag), priority,
        payload, connection, received_at_ms; APNs adds push_type, expiration, topic, team_id;
        FCM adds topic, condition, collapse_key, ttl_seconds, project_id."""
        result: list[dict[str, Any]] = self._call("GET", f"pushes?since={since}")["pushes"]
        return result

    def stats(self) -> dict[str, Any]:
        """Counters: requests, accepted, recorded, by_status, by_reason (``"<status> <reason>"``),
        goaway_after, goaways; APNs adds connections, FCM access_tokens."""
        result: dict[str, Any] = self._call("GET", "stats")
        return result

    def info(self) -> dict[str, Any]:
        """``{"provider", "url", "h2_url"}``."""
        result: dict[str, Any] = self._call("GET", "info")
        return result
