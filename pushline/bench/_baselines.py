"""Baselines against the same APNs emulator: other clients driven directly, and its ceiling.

- ``httpx``: ``httpx.AsyncClient(http2=True)`` (what the dispatcher's transport starts from);
- ``aioapns``: the aioapns library, re-pointed at the emulator (it hardcodes Apple's hosts);
- ``h2load``: nghttp2's load generator (C), many streams on a few connections: the emulator's
  own ceiling, so we know when the emulator rather than the client is the bottleneck.

The FCM counterparts (httpx and h2load against the FCM emulator) are in ``_fcm_baselines``; they
share :func:`drive_requests` and :func:`run_h2load` with these.

Each client sends the same requests the dispatcher sends (same payload bytes including a receipt
token, same APNs headers) with bounded concurrency, after a short warm-up that opens the
connection. Per-request latency is measured from just before the client is asked to send to when
its answer is back, the same span as the dispatcher's ``DispatchOutcome.latency_ms``.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import httpx
import jwt

from pushline.bench._stats import percentile
from pushline.errors import ConfigError

__all__ = [
    "ApnsPush",
    "ApnsTarget",
    "BaselineResult",
    "H2Request",
    "apns_h2_request",
    "drive_requests",
    "run_aioapns",
    "run_h2load",
    "run_httpx",
]

WARMUP_REQUESTS = 200
H2LOAD_INSTALL_HINT = "install it with `apt-get install nghttp2-client` (Debian/Ubuntu)"


@dataclass(frozen=True)
class ApnsTarget:
    """The APNs emulator and the test credentials ``pushline emulate stack`` prints."""

    url: str
    ca_file: str
    key_pem: str
    key_id: str
    team_id: str
    topic: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ApnsTarget:
        names = ("APNS_URL", "PUSHLINE_CA_FILE", "APNS_KEY_FILE", "APNS_KEY_ID", "APNS_TEAM_ID")
        missing = [n for n in (*names, "APNS_TOPIC") if not env.get(n)]
        if missing:
            raise ConfigError(f"the benchmark needs the APNs emulator: {', '.join(missing)} unset")
        try:
            key_pem = Path(env["APNS_KEY_FILE"]).read_text()
        except OSError as exc:
            raise ConfigError(f"APNS_KEY_FILE cannot be read: {exc}") from exc
        return cls(
            url=env["APNS_URL"].rstrip("/"),
            ca_file=env["PUSHLINE_CA_FILE"],
            key_pem=key_pem,
            key_id=env["APNS_KEY_ID"],
            team_id=env["APNS_TEAM_ID"],
            topic=env["APNS_TOPIC"],
        )

    def jwt(self) -> str:
        """A fresh ES256 provider token; one per client run (APNs wants it kept for 20+ minutes)."""
        return jwt.encode(
            {"iss": self.team_id, "iat": int(time.time())},
            self.key_pem,
            algorithm="ES256",
            headers={"kid": self.key_id},
        )

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)


@dataclass(frozen=True)
class ApnsPush:
    """One request as the dispatcher would send it (body bytes already built)."""

    token: str
    payload: bytes
    apns_id: str
    collapse_id: str
    expiration: int


@dataclass(frozen=True)
class BaselineResult:
    """``per_s`` is None when the baseline could not run; ``reason`` then says why."""

    name: str
    per_s: float | None
    requests: int = 0
    errors: int = 0
    seconds: float | None = None
    concurrency: int | None = None
    cpu_us_per_request: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    reason: str | None = None

    @classmethod
    def skipped(cls, name: str, reason: str) -> BaselineResult:
        return cls(name=name, per_s=None, reason=reason)


PushT = TypeVar("PushT")


async def drive_requests(
    name: str,
    send: Callable[[PushT], Awaitable[bool]],
    pushes: Sequence[PushT],
    concurrency: int,
    budget_s: float,
) -> BaselineResult:
    """Send ``pushes`` with ``concurrency`` workers until done or ``budget_s`` has passed;
    ``send`` answers whether the provider accepted the push."""
    for push in pushes[:WARMUP_REQUESTS]:  # opens the connection, warms caches; not counted
        await send(push)
    latencies: list[float] = []
    errors = 0
    next_index = 0
    deadline = time.monotonic() + budget_s

    async def worker() -> None:
        nonlocal next_index, errors
        while next_index < len(pushes) and time.monotonic() < deadline:
            push = pushes[next_index]
            next_index += 1
            started = time.perf_counter()
            ok = await send(push)
            latencies.append((time.perf_counter() - started) * 1000)
            if not ok:
                errors += 1

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    done = len(latencies)
    ok = done - errors
    return BaselineResult(
        name=name,
        per_s=ok / seconds if seconds > 0 and ok else None,
        requests=done,
        errors=errors,
        seconds=seconds,
        concurrency=concurrency,
        cpu_us_per_request=cpu * 1e6 / done if done else None,
        p50_ms=percentile(latencies, 0.50),
        p99_ms=percentile(latencies, 0.99),
        reason=None if ok else "every request failed",
    )


def _headers(target: ApnsTarget, bearer: str, push: ApnsPush) -> dict[str, str]:
    return {
        "authorization": f"bearer {bearer}",
        "apns-topic": target.topic,
        "apns-push-type": "alert",
        "apns-id": push.apns_id,
        "apns-priority": "10",
        "apns-expiration": str(push.expiration),
        "apns-collapse-id": push.collapse_id,
        "content-type": "application/json",
    }


def run_httpx(
    target: ApnsTarget, pushes: Sequence[ApnsPush], *, concurrency: int, budget_s: float
) -> BaselineResult:
    """httpx[http2] driven directly: one AsyncClient, ``concurrency`` requests in flight."""

    async def main() -> BaselineResult:
        bearer = target.jwt()
        url = target.url + "/3/device/"
        async with httpx.AsyncClient(
            http2=True, verify=target.ssl_context(), timeout=30.0
        ) as client:

            async def send(push: ApnsPush) -> bool:
                try:
                    response = await client.post(
                        url + push.token,
                        content=push.payload,
                        headers=_headers(target, bearer, push),
                    )
                except httpx.HTTPError:
                    return False
                return response.status_code == 200

            return await drive_requests("httpx", send, pushes, concurrency, budget_s)

    return asyncio.run(main())


def run_aioapns(
    target: ApnsTarget, pushes: Sequence[ApnsPush], *, concurrency: int, budget_s: float
) -> BaselineResult:
    """aioapns driven directly. It has no setting for the host: its connection pool connects to
    ``protocol_class.APNS_SERVER:APNS_PORT`` (Apple's), so we give the pool a protocol subclass
    naming the emulator; TLS is verified against the emulator's CA through ``ssl_context``."""
    try:
        from aioapns import APNs, NotificationRequest, PushType  # noqa: PLC0415 - optional extra
        from aioapns.connection import APNsProductionClientProtocol  # noqa: PLC0415
    except ImportError:
        return BaselineResult.skipped(
            "aioapns", "aioapns is not installed (pip install 'pushline[bench]')"
        )
    parts = urlsplit(target.url)
    if parts.hostname is None or parts.port is None:
        return BaselineResult.skipped("aioapns", f"APNS_URL {target.url} names no host and port")
    host, port = parts.hostname, parts.port

    class EmulatorProtocol(APNsProductionClientProtocol):
        APNS_SERVER = host
        APNS_PORT = port

    # aioapns takes the payload as a dict and serializes it itself; decode ours once, untimed.
    messages = {p.apns_id: json.loads(p.payload) for p in pushes}

    async def main() -> BaselineResult:
        client = APNs(
            key=target.key_pem,
            key_id=target.key_id,
            team_id=target.team_id,
            topic=target.topic,
            max_connections=1,
            ssl_context=target.ssl_context(),
            err_func=_ignore_error,  # failures are counted, not logged per request
        )
        client.pool.protocol_class = EmulatorProtocol

        async def send(push: ApnsPush) -> bool:
            request = NotificationRequest(
                device_token=push.token,
                message=messages[push.apns_id],
                notification_id=push.apns_id,
                time_to_live=max(1, push.expiration - int(time.time())),
                priority=10,
                collapse_key=push.collapse_id,
                push_type=PushType.ALERT,
            )
            try:
                result = await client.send_notification(request)
            except (ConnectionError, OSError):
                return False
            return bool(result.is_successful)

        try:
            return await drive_requests("aioapns", send, pushes, concurrency, budget_s)
        finally:
            client.pool.close()

    return asyncio.run(main())


async def _ignore_error(request: object, result: object) -> None:
    return None


_FINISHED = re.compile(r"finished in ([\d.]+)(ms|s),\s*([\d.]+) req/s")
_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")


@dataclass(frozen=True)
class H2Request:
    """The one request h2load repeats: where, with which headers, with which body."""

    url: str
    headers: Mapping[str, str]
    body: bytes


def apns_h2_request(target: ApnsTarget, push: ApnsPush) -> H2Request:
    """``push`` as h2load sends it to the APNs emulator, with a valid provider token."""
    headers = _headers(target, target.jwt(), push)
    del headers["apns-id"]  # one fixed apns-id for every request would be odd; APNs makes one
    return H2Request(f"{target.url}/3/device/{push.token}", headers, push.payload)


def run_h2load(
    request: H2Request,
    *,
    requests: int,
    connections: int = 4,
    streams: int = 100,
    timeout_s: float = 120.0,
) -> BaselineResult:
    """An emulator's ceiling: h2load with ``connections`` x ``streams`` concurrent streams, each
    repeating ``request``, one thread (h2load is C; one thread outruns the emulator)."""
    h2load = shutil.which("h2load")
    if h2load is None:
        return BaselineResult.skipped("h2load", f"h2load is not on PATH; {H2LOAD_INSTALL_HINT}")
    with tempfile.TemporaryDirectory(prefix="pushline-bench-") as tmp:
        body = Path(tmp) / "payload.json"
        body.write_bytes(request.body)
        command = [
            h2load,
            f"--requests={requests}",
            f"--clients={connections}",
            f"--max-concurrent-streams={streams}",
            "--threads=1",
            f"--data={body}",
            *(f"--header={k}: {v}" for k, v in request.headers.items()),
            request.url,
        ]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired:
            return BaselineResult.skipped("h2load", f"h2load did not finish in {timeout_s:.0f}s")
    finished, status = _FINISHED.search(done.stdout), _STATUS.search(done.stdout)
    if done.returncode != 0 or finished is None or status is None:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return BaselineResult.skipped("h2load", f"h2load failed ({done.returncode}): {tail[0]}")
    seconds = float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1)
    ok = int(status.group(1))
    failed = sum(int(status.group(i)) for i in (2, 3, 4))
    return BaselineResult(
        name="h2load",
        per_s=ok / seconds if ok and seconds > 0 else None,
        requests=ok + failed,
        errors=failed,
        seconds=seconds,
        concurrency=connections * streams,
        reason=f"{failed} of {ok + failed} requests were not 2xx" if failed else None,
    )
