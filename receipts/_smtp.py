"""Fallback email over SMTP: smtplib on a worker thread, one session per message.

Fallbacks are rare next to pushes, so a fresh session per message (connect, STARTTLS, AUTH, send,
QUIT) costs little and never meets a half-dead pooled connection. The Message-ID is derived from the
notification id alone, so a duplicate that slips through (a crash between the send and the outcome)
carries the same Message-ID and can be recognised downstream.

Every smtplib / ssl / socket error is turned into a :class:`ChannelResult` in :func:`_classify`.
"""

from __future__ import annotations

import asyncio
import re
import smtplib
import ssl
import time
from email.message import EmailMessage
from email.utils import formatdate, parseaddr

from receipts._channels import ChannelResult
from receipts._fallback_config import SmtpSettings
from schemas import FallbackRequest

__all__ = ["SmtpMailer", "message_id_for"]

_ADDRESS = re.compile(r"^[^@\s<>()\[\],;:\"\\]+@[^@\s<>()\[\],;:\"\\]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def message_id_for(notification_id: str, domain: str) -> str:
    """The Message-ID of a notification's fallback email: the same for every attempt and copy."""
    return f"<{notification_id}.fallback@{domain}>"


def _one_line(text: str) -> str:
    # A header value with CR or LF would let a subject inject headers; fold it to one line.
    return " ".join(_CONTROL.sub(" ", text).split())


class SmtpMailer:
    """Builds and submits fallback email to one SMTP server."""

    def __init__(
        self,
        settings: SmtpSettings,
        tls: ssl.SSLContext,
        *,
        email_from: str,
        default_subject: str,
        timeout_s: float = 15.0,
    ) -> None:
        self.settings = settings
        self._tls = tls
        self.email_from = email_from
        self.default_subject = default_subject
        self._timeout = timeout_s
        address = parseaddr(email_from)[1]
        self.domain = address.rpartition("@")[2] or "pushline.invalid"

    def build(self, request: FallbackRequest) -> EmailMessage | str:
        """The message for ``request``, or why it cannot be sent (an unusable address)."""
        to = request.fallback.address.strip()
        if not _ADDRESS.match(to) or _CONTROL.search(to):
            return "InvalidAddress"
        msg = EmailMessage()
        msg["From"] = self.email_from
        msg["To"] = to
        msg["Subject"] = _one_line(request.fallback.subject or self.default_subject)
        msg["Message-ID"] = message_id_for(request.notification_id, self.domain)
        msg["Date"] = formatdate(usegmt=True)
        msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: autoresponders must not answer
        msg["X-Pushline-Notification-Id"] = request.notification_id
        msg.set_content(request.fallback.text)
        return msg

    async def send(self, request: FallbackRequest) -> ChannelResult:
        built = self.build(request)
        if isinstance(built, str):
            return ChannelResult(ok=False, transient=False, reason=built)
        return await asyncio.to_thread(self._submit, built)

    def _submit(self, msg: EmailMessage) -> ChannelResult:
        started = time.perf_counter()
        message_id = str(msg["Message-ID"])
        try:
            self._session(msg)
        except Exception as exc:  # noqa: BLE001 - the mapping point: smtplib, ssl and socket errors become data
            result = _classify(exc)
        else:
            result = ChannelResult(ok=True, status=250, provider_id=message_id)
        return ChannelResult(
            ok=result.ok,
            transient=result.transient,
            status=result.status,
            reason=result.reason,
            provider_id=message_id,
            latency_ms=(time.perf_counter() - started) * 1000,
        )

    def _session(self, msg: EmailMessage) -> None:
        s = self.settings
        client: smtplib.SMTP
        if s.implicit_tls:
            client = smtplib.SMTP_SSL(s.host, s.port, timeout=self._timeout, context=self._tls)
        else:
            client = smtplib.SMTP(s.host, s.port, timeout=self._timeout)
        with client:
            client.ehlo()
            if s.starttls:
                # smtplib raises SMTPNotSupportedError if the server does not offer STARTTLS:
                # with STARTTLS configured, email never goes out in the clear.
                client.starttls(context=self._tls)
                client.ehlo()
            if s.user:
                client.login(s.user, s.password or "")
            client.send_message(msg)


def _reply(code: int, text: bytes | str) -> str:
    message = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"SMTP {code} {' '.join(message.split())}"[:300]


def _classify(exc: Exception) -> ChannelResult:
    """An SMTP failure as data. 4xx is temporary, 5xx permanent for the message; our own setup
    (credentials, TLS, connectivity) counts as temporary so it is retried until the budget."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, text = next(iter(exc.recipients.values()), (550, b"recipient refused"))
        return ChannelResult(
            ok=False, transient=400 <= code < 500, status=code, reason=_reply(code, text)
        )
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return ChannelResult(
            ok=False,
            transient=True,
            status=exc.smtp_code,
            reason=_reply(exc.smtp_code, exc.smtp_error),
        )
    if isinstance(exc, smtplib.SMTPResponseException):  # sender refused, DATA refused, ...
        code = exc.smtp_code
        if code == 530 or not 400 <= code < 600:  # 530: STARTTLS/AUTH demanded: our setup
            return ChannelResult(
                ok=False, transient=True, status=code, reason=_reply(code, exc.smtp_error)
            )
        return ChannelResult(
            ok=False, transient=code < 500, status=code, reason=_reply(code, exc.smtp_error)
        )
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return ChannelResult(ok=False, transient=True, reason=f"SMTP not supported: {exc}")
    # connection refused or dropped, timeouts, TLS verification, anything else: try again
    return ChannelResult(ok=False, transient=True, reason=f"SMTP {type(exc).__name__}: {exc}"[:300])
