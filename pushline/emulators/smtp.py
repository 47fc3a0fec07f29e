"""An SMTP server for the fallback sender's email: aiosmtpd, STARTTLS and AUTH, recording every message.

It runs inside the process that starts it (the dev stack, or a test) on two loopback ports:

- the **SMTP listener** (``SMTP_URL=smtp://USER:PASSWORD@127.0.0.1:PORT?starttls=1``): STARTTLS
  with the stack's test CA, then AUTH PLAIN or LOGIN, both required by default, as on a real
  submission port (587);
- the **control endpoint** (``SMTP_CONTROL_URL``, HTTPS when TLS material is given): what was
  received (``GET /_emulator/messages``) and programmed failures (``POST /_emulator/fail``: a 4xx
  temporary or 5xx permanent answer for the next N messages, or for one address). Being HTTP, it
  works across processes: the stack runs in a child process of the tests.

Failures for an address are answered at RCPT TO (where a real server refuses a mailbox), failures
for any address at the end of DATA.
"""

from __future__ import annotations

import email
import email.policy
import logging
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pushline.emulators._control import ControlClient
from pushline.emulators._threaded_http import ThreadedHttpServer
from pushline.emulators._tls import TlsMaterial
from pushline.errors import StackError

__all__ = ["SmtpControl", "SmtpEmulator"]

_SERVER_NAME = "pushline-smtp-emulator"


@dataclass
class _Rule:
    code: int
    message: str
    address: str | None  # None: any message (answered at end of DATA)
    times: int | None  # None: until reset


class _MailState:
    """What the emulator received and what it was told to refuse; shared by both threads."""

    def __init__(self, record_limit: int = 100_000) -> None:
        self._lock = threading.Lock()
        self.record_limit = record_limit
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.messages: list[dict[str, Any]] = []
            self.rules: list[_Rule] = []
            self.counters: dict[str, int] = {
                "auth_failures": 0,
                "accepted": 0,
                "refused_rcpt": 0,
                "refused_data": 0,
            }

    def count(self, name: str) -> None:
        with self._lock:
            self.counters[name] = self.counters.get(name, 0) + 1

    def add_rule(self, rule: _Rule) -> None:
        with self._lock:
            self.rules.append(rule)

    def take_rule(self, address: str | None) -> _Rule | None:
        """The first rule that applies (consuming one of its ``times``), if any."""
        with self._lock:
            for rule in self.rules:
                if rule.address is None if address is None else rule.address == address.lower():
                    if rule.times is not None:
                        rule.times -= 1
                        if rule.times <= 0:
                            self.rules.remove(rule)
                    return rule
        return None

    def record(self, message: dict[str, Any]) -> None:
        with self._lock:
            self.counters["accepted"] += 1
            message["index"] = self.counters["accepted"] - 1
            if len(self.messages) < self.record_limit:
                self.messages.append(message)

    def snapshot(self, since: int) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(m) for m in self.messages[since:]]


class _Handler:
    """aiosmtpd hooks: refuse as programmed, else record the message."""

    def __init__(self, state: _MailState) -> None:
        self.state = state

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        rule = self.state.take_rule(address)
        if rule is not None:
            self.state.count("refused_rcpt")
            return f"{rule.code} {rule.message}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        rule = self.state.take_rule(None)
        if rule is not None:
            self.state.count("refused_data")
            return f"{rule.code} {rule.message}"
        raw = envelope.original_content or b""
        self.state.record(_describe(raw, envelope, session))
        return "250 2.0.0 Message accepted for delivery"


def _describe(raw: bytes, envelope: Envelope, session: Session) -> dict[str, Any]:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    body = ""
    if isinstance(parsed, EmailMessage):
        part = parsed.get_body(preferencelist=("plain",))
        if isinstance(part, EmailMessage):
            body = str(part.get_content())
    auth = session.auth_data
    return {
        "mail_from": envelope.mail_from,
        "rcpt_tos": list(envelope.rcpt_tos),
        "from": str(parsed.get("From", "")),
        "to": str(parsed.get("To", "")),
        "subject": str(parsed.get("Subject", "")),
        "message_id": str(parsed.get("Message-ID", "")),
        "body": body,
        "headers": [[name, str(value)] for name, value in parsed.items()],
        "tls": session.ssl is not None,
        "auth_user": auth.login.decode() if isinstance(auth, LoginPassword) else None,
        "received_at_ms": int(time.time() * 1000),
        "size": len(raw),
    }


class _Controller(Controller):
    """aiosmtpd's threaded controller on a socket bound beforehand, so port 0 works."""

    def __init__(self, handler: _Handler, sock: socket.socket, **smtp_kwargs: Any) -> None:
        host, port = sock.getsockname()[:2]
        super().__init__(handler, hostname=host, port=port, **smtp_kwargs)
        self._sock = sock

    def _create_server(self) -> Awaitable[Any]:
        return self.loop.create_server(self._factory_invoker, sock=self._sock)


class SmtpEmulator:
    """The SMTP listener plus its control endpoint. ``start()`` returns ``SMTP_URL`` and
    ``SMTP_CONTROL_URL``; credentials are generated unless given."""

    def __init__(
        self,
        *,
        tls: TlsMaterial | None,
        host: str = "127.0.0.1",
        port: int = 0,
        control_port: int = 0,
        user: str = "pushline",
        password: str | None = None,
        require_starttls: bool = True,
        require_auth: bool = True,
    ) -> None:
        if require_starttls and tls is None:
            raise StackError("the SMTP emulator needs TLS material to offer STARTTLS")
        self.tls = tls
        self.host = host
        self.user = user
        self.password = password or secrets.token_urlsafe(12)
        self.require_starttls = require_starttls
        self.require_auth = require_auth
        self.state = _MailState()
        self._port = port
        self._controller: _Controller | None = None
        self._control = ThreadedHttpServer(
            _control_app(self.state),
            name="smtp-emulator-control",
            host=host,
            port=control_port,
            cert_file=tls.cert_file if tls else None,
            key_file=tls.key_file if tls else None,
        )
        self.env: dict[str, str] = {}

    @property
    def port(self) -> int:
        if self._controller is None:
            raise StackError("the SMTP emulator is not started")
        return int(self._controller.port)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and secrets.compare_digest(data.login, self.user.encode())
            and secrets.compare_digest(data.password, self.password.encode())
        )
        if not ok:
            self.state.count("auth_failures")
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    def start(self) -> dict[str, str]:
        # aiosmtpd warns about its own use of a deprecated session attribute on every AUTH
        logging.getLogger("mail.log").setLevel(logging.ERROR)
        tls_context = None
        if self.tls is not None:
            tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls_context.load_cert_chain(self.tls.cert_file, self.tls.key_file)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((self.host, self._port))
        except OSError as exc:
            sock.close()
            raise StackError(f"SMTP emulator cannot bind {self.host}:{self._port}: {exc}") from exc
        sock.listen(64)
        controller = _Controller(
            _Handler(self.state),
            sock,
            server_hostname=_SERVER_NAME,
            tls_context=tls_context,
            require_starttls=self.require_starttls,
            auth_required=self.require_auth,
            # without STARTTLS configured, AUTH must be allowed in the clear (tests only)
            auth_require_tls=self.require_starttls,
            authenticator=self._authenticate,
        )
        controller.start()
        self._controller = controller
        try:
            control_url = self._control.start()
        except BaseException:
            self.stop()
            raise
        starttls = "1" if self.require_starttls else "0"
        self.env = {
            "SMTP_URL": (
                f"smtp://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
                f"@{self.host}:{self.port}?starttls={starttls}"
            ),
            "SMTP_CONTROL_URL": control_url,
        }
        return dict(self.env)

    def control(self) -> SmtpControl:
        return SmtpControl(self.env["SMTP_CONTROL_URL"], self.tls.ca_file if self.tls else None)

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()
        self._control.stop()

    def __enter__(self) -> SmtpEmulator:
        if not self.env:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- control endpoint -------------------------------------------------------------------------


def _control_app(state: _MailState) -> Starlette:
    async def reset(request: Request) -> JSONResponse:
        state.reset()
        return JSONResponse({"ok": True})

    async def fail(request: Request) -> JSONResponse:
        try:
            body = await request.json()
            code = int(body["code"])
            address = body.get("address")
            times = body.get("times", 1)
            rule = _Rule(
                code=code,
                message=str(body.get("message") or _default_message(code)),
                address=str(address).lower() if address else None,
                times=None if times is None else int(times),
            )
        except (ValueError, KeyError, TypeError) as exc:
            return JSONResponse({"error": f"bad fail rule: {exc}"}, status_code=400)
        if not 400 <= code <= 599:
            return JSONResponse({"error": "code must be a 4xx or 5xx reply"}, status_code=400)
        state.add_rule(rule)
        return JSONResponse({"ok": True})

    async def messages(request: Request) -> JSONResponse:
        since = int(request.query_params.get("since", "0"))
        return JSONResponse({"messages": state.snapshot(since)})

    async def stats(request: Request) -> JSONResponse:
        with state._lock:
            return JSONResponse(dict(state.counters))

    return Starlette(
        routes=[
            Route("/_emulator/reset", reset, methods=["POST"]),
            Route("/_emulator/fail", fail, methods=["POST"]),
            Route("/_emulator/messages", messages, methods=["GET"]),
            Route("/_emulator/stats", stats, methods=["GET"]),
        ]
    )


def _default_message(code: int) -> str:
    if code < 500:
        return "4.3.0 Temporary failure, try again later"
    return "5.1.1 Recipient address rejected: user unknown"


class SmtpControl(ControlClient):
    """Client of the SMTP emulator's control endpoint (tests, demo)."""

    emulator = "SMTP emulator"

    def reset(self) -> None:
        """Forget received messages, programmed failures and counters."""
        self._call("POST", "reset", {})

    def fail(
        self, code: int, *, address: str | None = None, times: int | None = 1, message: str = ""
    ) -> None:
        """Answer ``code`` (4xx temporary, 5xx permanent) to the next ``times`` messages (None:
        until reset); with ``address``, only at RCPT TO of that address."""
        self._call(
            "POST", "fail", {"code": code, "address": address, "times": times, "message": message}
        )

    def messages(self, since: int = 0) -> list[dict[str, Any]]:
        """Accepted messages in order. Keys: mail_from, rcpt_tos, from, to, subject, message_id,
        body (the text/plain part), headers ([name, value] pairs), tls (STARTTLS was used),
        auth_user, received_at_ms, size, index."""
        result: list[dict[str, Any]] = self._call("GET", f"messages?since={since}")["messages"]
        return result

    def stats(self) -> dict[str, int]:
        """auth_failures, accepted, refused_rcpt, refused_data."""
        result: dict[str, int] = self._call("GET", "stats")
        return result
