"""What the dispatcher bench sends, per provider: the notifications, the emulator they go to, and
the baselines (other clients, the emulator's ceiling) with byte-identical requests."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from producers import new_notification
from pushline.bench._baselines import (
    ApnsPush,
    ApnsTarget,
    BaselineResult,
    apns_h2_request,
    run_aioapns,
    run_h2load,
    run_httpx,
)
from pushline.bench._fcm_baselines import FcmTarget, fcm_h2_request, run_httpx_fcm
from pushline.bench._model import BenchOptions, Say
from pushline.errors import ConfigError
from schemas import NotificationRequest, Platform
from schemas.payloads import RECEIPT_TOKEN_KEY, apns_payload, fcm_request_body
from schemas.receipt_token import ReceiptTokenConfig

__all__ = ["APP_ID", "Baselines", "emulator_endpoint", "make_requests", "run_baselines"]

APP_ID = "bench"
"""The app id of every bench notification; the dispatchers get the emulators' credentials under it."""

Baselines = tuple[dict[str, BaselineResult], BaselineResult]
"""The client baselines by name, and the emulator's ceiling."""


def _device_token(provider: str) -> str:
    if provider == "fcm":
        # Real FCM registration tokens are about 140-200 characters of [A-Za-z0-9_:-].
        return secrets.token_urlsafe(120)
    return os.urandom(32).hex()


def make_requests(provider: str, count: int) -> list[NotificationRequest]:
    platform = Platform.FCM if provider == "fcm" else Platform.APNS
    return [
        new_notification(
            app_id=APP_ID,
            platform=platform,
            device_token=_device_token(provider),
            title="Your order shipped",
            body=f"Order #{100_000 + i} is on its way.",
        )
        for i in range(count)
    ]


def emulator_endpoint(provider: str, env: Mapping[str, str]) -> tuple[str, str]:
    """The URL and CA file of the emulator ``provider`` sends to (for its control API)."""
    name = "FCM_URL" if provider == "fcm" else "APNS_URL"
    if not env.get(name) or not env.get("PUSHLINE_CA_FILE"):
        raise ConfigError(f"the benchmark needs the {provider} emulator: {name} unset")
    return env[name], env["PUSHLINE_CA_FILE"]


def _receipt_tokens(requests: Sequence[NotificationRequest], env: Mapping[str, str]) -> list[str]:
    """The receipt tokens the dispatcher would add to these requests' payloads."""
    receipts = ReceiptTokenConfig.from_env(env)
    signer = receipts.signer()
    token_expiry = datetime.now(UTC) + receipts.ttl  # as the dispatcher signs them
    return [signer.sign(r.notification_id, r.key, token_expiry) for r in requests]


def _apns_pushes(requests: Sequence[NotificationRequest], env: Mapping[str, str]) -> list[ApnsPush]:
    """The requests as the dispatcher sends them: same payload bytes, receipt token included."""
    return [
        ApnsPush(
            token=r.device_token,
            payload=apns_payload(r, {RECEIPT_TOKEN_KEY: token}),
            apns_id=r.notification_id,
            collapse_id=r.collapse_id,
            expiration=int(r.expires_at.timestamp()),
        )
        for r, token in zip(requests, _receipt_tokens(requests, env), strict=True)
    ]


def _fcm_bodies(requests: Sequence[NotificationRequest], env: Mapping[str, str]) -> list[bytes]:
    """The request bodies the dispatcher's FcmClient sends, encoded the way it encodes them."""
    return [
        fcm_request_body(r, {RECEIPT_TOKEN_KEY: token})
        for r, token in zip(requests, _receipt_tokens(requests, env), strict=True)
    ]


def run_baselines(options: BenchOptions, env: Mapping[str, str], say: Say) -> Baselines:
    """The client baselines, one at a time, then the emulator's ceiling with h2load."""
    count = min(options.baseline_requests, options.notifications)
    requests = make_requests(options.provider, count)
    baselines: dict[str, BaselineResult] = {}
    if options.provider == "fcm":
        fcm = FcmTarget.from_env(env)
        bodies = _fcm_bodies(requests, env)
        baselines["aioapns"] = BaselineResult.skipped("aioapns", "APNs only")
        say(f"baseline httpx: up to {len(bodies)} requests to the FCM emulator")
        baselines["httpx"] = run_httpx_fcm(
            fcm,
            bodies,
            concurrency=options.baseline_concurrency,
            budget_s=options.baseline_budget_s,
        )
        ceiling_request = fcm_h2_request(fcm, bodies[0])
    else:
        apns = ApnsTarget.from_env(env)
        pushes = _apns_pushes(requests, env)
        for name, runner in (("aioapns", run_aioapns), ("httpx", run_httpx)):
            say(f"baseline {name}: up to {len(pushes)} requests")
            baselines[name] = runner(
                apns,
                pushes,
                concurrency=options.baseline_concurrency,
                budget_s=options.baseline_budget_s,
            )
        ceiling_request = apns_h2_request(apns, pushes[0])
    say(f"ceiling: h2load, {options.ceiling_requests} requests")
    return baselines, run_h2load(ceiling_request, requests=options.ceiling_requests)
