"""An SMS HTTP API shaped like Twilio's Messages API, for the fallback sender's SMS.

``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``, form-encoded ``To``, ``From`` (or
``MessagingServiceSid``) and ``Body``, HTTP basic auth ``AccountSid:AuthToken``. Answers as Twilio
does: 201 with the Message resource (``sid`` = ``SM`` + 32 hex digits, ``status`` = ``queued``); 401
code 20003 without valid credentials; 404 code 20404 for another account's path; 400 with code 21211
(invalid 'To'), 21602 (body required), 21603 (From required), 21604 (To required), 21606 (From not a
number of the account) or 21617 (body over 1600 characters); 429 code 20429 when told to.
``GET .../Messages/{sid}.json`` fetches a sent message.

Control endpoints under ``/_emulator/`` on the same listener (no Twilio path starts with it): the
record of accepted messages, programmed failures (the next N requests, or one number), random rates
of 429 / 500 / 503, reset.
"""

from __future__ import annotations

import base64
import random
import re
import secrets
import threading
import time
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qs, quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pushline.emulators._control import ControlClient
from pushline.emulators._threaded_http import ThreadedHttpServer
from pushline.emulators._tls import TlsMaterial

__all__ = ["SmsControl", "SmsEmulator"]

API_VERSION = "2010-04-01"
_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_MAX_BODY = 1600
#: Twilio's test "From" number that always works.
DEFAULT_FROM = "+15005550006"


def twilio_error(status: int, code: int, message: str, retry_after: int | None = None) -> Response:
    """Twilio's error body: ``{"code", "message", "more_info", "status"}``."""
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status_code=status,
        headers=headers,
    )


@dataclass
class _Failure:
    status: int
    code: int
    message: str
    retry_after: int | None
    to: str | None  # None: any request
    times: int | None  # None: until reset


class _SmsState:
    def __init__(self, seed: int) -> None:
        self._lock = threading.Lock()
        self.seed = seed
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        with self._lock:
            self.messages: list[dict[str, Any]] = []
            self.by_sid: dict[str, dict[str, Any]] = {}
            self.failures: list[_Failure] = []
            self.rates = {"429": 0.0, "500": 0.0, "503": 0.0}
            self.retry_after = 1
            self.random = random.Random(self.seed if seed is None else seed)
            self.counters: dict[str, int] = {"requests": 0, "accepted": 0}
            self.by_status: dict[str, int] = {}

    def count_status(self, status: int) -> None:
        with self._lock:
            self.by_status[str(status)] = self.by_status.get(str(status), 0) + 1

    def take_failure(self, to: str) -> _Failure | None:
        with self._lock:
            for failure in self.failures:
                if failure.to is None or failure.to == to:
                    if failure.times is not None:
                        failure.times -= 1
                        if failure.times <= 0:
                            self.failures.remove(failure)
                    return failure
            draw = self.random.random()
            edge = 0.0
            for status, rate in self.rates.items():
                edge += rate
                if draw < edge:
                    return _Failure(int(status), *_RATE_ERRORS[status], self.retry_after, None, 1)
        return None


_RATE_ERRORS: dict[str, tuple[int, str]] = {
    "429": (20429, "Too Many Requests"),
    "500": (20500, "Internal Server Error"),
    "503": (20503, "Service Unavailable"),
}


class SmsEmulator:
    """The Twilio-shaped API on loopback (HTTPS when TLS material is given), in this process."""

    def __init__(
        self,
        *,
        tls: TlsMaterial | None,
        host: str = "127.0.0.1",
        port: int = 0,
        account_sid: str | None = None,
        auth_token: str | None = None,
        from_numbers: tuple[str, ...] = (DEFAULT_FROM,),
        messaging_service_sid: str | None = None,
        seed: int = 0,
    ) -> None:
        self.tls = tls
        self.account_sid = account_sid or "AC" + secrets.token_hex(16)
        self.auth_token = auth_token or secrets.token_hex(16)
        self.from_numbers = from_numbers
        self.messaging_service_sid = messaging_service_sid or "MG" + secrets.token_hex(16)
        self.state = _SmsState(seed)
        self._server = ThreadedHttpServer(
            self._app(),
            name="sms-emulator",
            host=host,
            port=port,
            cert_file=tls.cert_file if tls else None,
            key_file=tls.key_file if tls else None,
        )
        self.env: dict[str, str] = {}

    def start(self) -> dict[str, str]:
        url = self._server.start()
        scheme, rest = url.split("://", 1)
        self.env = {
            "SMS_URL": f"{scheme}://{quote(self.account_sid)}:{quote(self.auth_token)}@{rest}",
            "SMS_FROM": self.from_numbers[0],
            "SMS_CONTROL_URL": url,
        }
        return dict(self.env)

    @property
    def url(self) -> str:
        return self._server.url

    def control(self) -> SmsControl:
        return SmsControl(self.env["SMS_CONTROL_URL"], self.tls.ca_file if self.tls else None)

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> SmsEmulator:
        if not self.env:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the API ----------------------------------------------------------------------------

    def _authorized(self, request: Request) -> str | None:
        """The account sid of valid basic credentials, else None."""
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        if secrets.compare_digest(user, self.account_sid) and secrets.compare_digest(
            password, self.auth_token
        ):
            return user
        return None

    def _check_account(self, request: Request) -> Response | None:
        account = self._authorized(request)
        if account is None:
            return twilio_error(401, 20003, "Authenticate")
        if request.path_params["account"] != account:
            return twilio_error(
                404, 20404, f"The requested resource {request.url.path} was not found"
            )
        return None

    async def _create(self, request: Request) -> Response:
        with self.state._lock:
            self.state.counters["requests"] += 1
        response = await self._create_inner(request)
        self.state.count_status(response.status_code)
        return response

    async def _create_inner(self, request: Request) -> Response:
        refused = self._check_account(request)
        if refused is not None:
            return refused
        # Twilio takes application/x-www-form-urlencoded only; parsed here so the emulator needs
        # no multipart library
        raw = (await request.body()).decode("utf-8", "replace")
        form = {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}
        to = form.get("To", "").strip()
        sender = form.get("From", "").strip()
        service = form.get("MessagingServiceSid", "").strip()
        body = form.get("Body", "")
        if not to:
            return twilio_error(400, 21604, "A 'To' phone number is required.")
        if not _E164.match(to):
            return twilio_error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if not sender and not service:
            return twilio_error(400, 21603, "A 'From' phone number is required.")
        if sender and sender not in self.from_numbers:
            return twilio_error(
                400,
                21606,
                f"The From phone number {sender} is not a valid, SMS-capable inbound phone "
                "number or short code for your account.",
            )
        if service and service != self.messaging_service_sid:
            return twilio_error(400, 21701, f"The Messaging Service Sid {service} is invalid.")
        if not body.strip():
            return twilio_error(400, 21602, "Message body is required.")
        if len(body) > _MAX_BODY:
            return twilio_error(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )
        failure = self.state.take_failure(to)
        if failure is not None:
            return twilio_error(failure.status, failure.code, failure.message, failure.retry_after)
        sid = "SM" + secrets.token_hex(16)
        now = formatdate(usegmt=True)
        account = request.path_params["account"]
        resource = {
            "sid": sid,
            "account_sid": account,
            "to": to,
            "from": sender or None,
            "messaging_service_sid": service or None,
            "body": body,
            "status": "queued",
            # one segment holds 160 GSM-7 characters; concatenated ones 153 each
            "num_segments": str(1 if len(body) <= 160 else -(-len(body) // 153)),
            "num_media": "0",
            "direction": "outbound-api",
            "api_version": API_VERSION,
            "date_created": now,
            "date_updated": now,
            "date_sent": None,
            "price": None,
            "price_unit": "USD",
            "error_code": None,
            "error_message": None,
            "uri": f"/{API_VERSION}/Accounts/{account}/Messages/{sid}.json",
            "subresource_uris": {
                "media": f"/{API_VERSION}/Accounts/{account}/Messages/{sid}/Media.json"
            },
        }
        record = {
            **resource,
            "received_at_ms": int(time.time() * 1000),
            "headers": {k.lower(): v for k, v in request.headers.items() if k != "authorization"},
        }
        with self.state._lock:
            self.state.counters["accepted"] += 1
            self.state.messages.append(record)
            self.state.by_sid[sid] = resource
        return JSONResponse(resource, status_code=201)

    async def _fetch(self, request: Request) -> Response:
        refused = self._check_account(request)
        if refused is not None:
            return refused
        resource = self.state.by_sid.get(request.path_params["sid"])
        if resource is None:
            return twilio_error(
                404, 20404, f"The requested resource {request.url.path} was not found"
            )
        return JSONResponse(resource)

    # --- control ----------------------------------------------------------------------------

    async def _control_reset(self, request: Request) -> Response:
        body = await _json(request)
        self.state.reset(body.get("seed"))
        return JSONResponse({"ok": True})

    async def _control_fail(self, request: Request) -> Response:
        body = await _json(request)
        try:
            status = int(body["status"])
            code = int(body.get("code") or _default_code(status))
            times = body.get("times", 1)
            failure = _Failure(
                status=status,
                code=code,
                message=str(body.get("message") or _default_error(status)),
                retry_after=None if body.get("retry_after") is None else int(body["retry_after"]),
                to=body.get("to"),
                times=None if times is None else int(times),
            )
        except (KeyError, ValueError, TypeError) as exc:
            return JSONResponse({"error": f"bad failure: {exc}"}, status_code=400)
        with self.state._lock:
            self.state.failures.append(failure)
        return JSONResponse({"ok": True})

    async def _control_rates(self, request: Request) -> Response:
        body = await _json(request)
        with self.state._lock:
            self.state.rates = {
                "429": float(body.get("status_429", 0.0)),
                "500": float(body.get("status_500", 0.0)),
                "503": float(body.get("status_503", 0.0)),
            }
            self.state.retry_after = int(body.get("retry_after", 1))
            if body.get("seed") is not None:
                self.state.random = random.Random(int(body["seed"]))
        return JSONResponse({"ok": True})

    async def _control_messages(self, request: Request) -> Response:
        since = int(request.query_params.get("since", "0"))
        with self.state._lock:
            return JSONResponse({"messages": list(self.state.messages[since:])})

    async def _control_stats(self, request: Request) -> Response:
        with self.state._lock:
            return JSONResponse({**self.state.counters, "by_status": dict(self.state.by_status)})

    def _app(self) -> Starlette:
        base = f"/{API_VERSION}/Accounts/{{account}}/Messages"
        return Starlette(
            routes=[
                Route(f"{base}.json", self._create, methods=["POST"]),
                Route(f"{base}/{{sid}}.json", self._fetch, methods=["GET"]),
                Route("/_emulator/reset", self._control_reset, methods=["POST"]),
                Route("/_emulator/fail", self._control_fail, methods=["POST"]),
                Route("/_emulator/rates", self._control_rates, methods=["POST"]),
                Route("/_emulator/messages", self._control_messages, methods=["GET"]),
                Route("/_emulator/stats", self._control_stats, methods=["GET"]),
            ]
        )


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _default_code(status: int) -> int:
    return {400: 21211, 429: 20429}.get(status, 20000 + status)


def _default_error(status: int) -> str:
    return {
        400: "Invalid 'To' Phone Number",
        429: "Too Many Requests",
        500: "Internal Server Error",
        503: "Service Unavailable",
    }.get(status, "Error")


class SmsControl(ControlClient):
    """Client of the SMS emulator's ``/_emulator/`` endpoints (tests, demo)."""

    emulator = "SMS emulator"

    def reset(self, seed: int | None = None) -> None:
        """Forget messages, failures, rates and counters."""
        self._call("POST", "reset", {"seed": seed})

    def fail(
        self,
        status: int,
        *,
        code: int | None = None,
        to: str | None = None,
        times: int | None = 1,
        retry_after: int | None = None,
        message: str = "",
    ) -> None:
        """Answer the next ``times`` valid requests (None: until reset), or those to ``to``, with
        a Twilio error: ``status`` (400, 429, 500, 503...), ``code`` (default 21211 for 400,
        20429 for 429), optional ``Retry-After``."""
        self._call(
            "POST",
            "fail",
            {
                "status": status,
                "code": code,
                "to": to,
                "times": times,
                "retry_after": retry_after,
                "message": message,
            },
        )

    def set_rates(
        self,
        status_429: float = 0.0,
        status_500: float = 0.0,
        status_503: float = 0.0,
        retry_after: int = 1,
        seed: int | None = None,
    ) -> None:
        """Fractions of otherwise valid requests that fail, drawn from a seeded generator."""
        self._call(
            "POST",
            "rates",
            {
                "status_429": status_429,
                "status_500": status_500,
                "status_503": status_503,
                "retry_after": retry_after,
                "seed": seed,
            },
        )

    def messages(self, since: int = 0) -> list[dict[str, Any]]:
        """Accepted messages in order: the Twilio Message resource plus received_at_ms and the
        request headers (without Authorization)."""
        result: list[dict[str, Any]] = self._call("GET", f"messages?since={since}")["messages"]
        return result

    def stats(self) -> dict[str, Any]:
        """requests, accepted, by_status (status code -> count)."""
        result: dict[str, Any] = self._call("GET", "stats")
        return result
