"""Fallback sender settings (``PUSHLINE_FALLBACK_*``, ``PUSHLINE_SMTP_*``, ``PUSHLINE_SMS_*``).

The SMTP server is named by one URL, ``smtp://USER:PASSWORD@HOST:PORT?starttls=1`` (``smtps://``
for implicit TLS; ``starttls`` defaults to 1 for ``smtp://``, as a submission port needs it), and
the SMS API by ``https://ACCOUNT_SID:AUTH_TOKEN@api.twilio.com`` (the path is the API's own). The
separate host / port / user / password / sid / token variables override the URL's parts, so a
secret can come from its own variable. Secrets never appear in ``repr()`` or a log line.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from pushline.config import config_from_env, env_field
from pushline.errors import ConfigError

__all__ = ["FallbackConfig", "SmsSettings", "SmtpSettings"]

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to submit email, resolved from :class:`FallbackConfig`."""

    host: str
    port: int
    user: str | None
    password: str | None
    starttls: bool
    implicit_tls: bool

    def __repr__(self) -> str:
        return (
            f"SmtpSettings(host={self.host!r}, port={self.port}, user={self.user!r}, "
            f"starttls={self.starttls}, implicit_tls={self.implicit_tls})"
        )


@dataclass(frozen=True)
class SmsSettings:
    """The Twilio-shaped API: base URL (scheme, host, port), account and sender."""

    base_url: str
    account_sid: str
    auth_token: str
    from_number: str | None
    messaging_service_sid: str | None

    @property
    def messages_url(self) -> str:
        return f"{self.base_url}/2010-04-01/Accounts/{self.account_sid}/Messages.json"

    def __repr__(self) -> str:
        return f"SmsSettings(base_url={self.base_url!r}, account_sid={self.account_sid!r})"


@dataclass(frozen=True)
class FallbackConfig:
    """How the fallback sender consumes push.fallbacks, sends email and SMS, and retries."""

    group_id: str = env_field(
        "PUSHLINE_FALLBACK_GROUP_ID", "Consumer group of the fallback senders.", "pushline-fallback"
    )
    smtp_url: str | None = env_field(
        "PUSHLINE_SMTP_URL,SMTP_URL",
        "SMTP server: smtp://USER:PASSWORD@HOST:PORT?starttls=1, or smtps:// for implicit TLS.",
        None,
        secret=True,
    )
    smtp_host: str | None = env_field("PUSHLINE_SMTP_HOST", "Overrides the URL's host.", None)
    smtp_port: int | None = env_field("PUSHLINE_SMTP_PORT", "Overrides the URL's port.", None)
    smtp_user: str | None = env_field("PUSHLINE_SMTP_USER", "Overrides the URL's user.", None)
    smtp_password: str | None = env_field(
        "PUSHLINE_SMTP_PASSWORD", "Overrides the URL's password.", None, secret=True
    )
    smtp_starttls: bool | None = env_field(
        "PUSHLINE_SMTP_STARTTLS", "Require STARTTLS (default: on for smtp://).", None
    )
    smtp_ssl: bool | None = env_field(
        "PUSHLINE_SMTP_SSL", "Implicit TLS (default: on for smtps://).", None
    )
    email_from: str = env_field(
        "PUSHLINE_FALLBACK_EMAIL_FROM,SMTP_FROM",
        "From address of fallback email; its domain also names the Message-ID.",
        "Pushline <no-reply@pushline.invalid>",
    )
    email_subject: str = env_field(
        "PUSHLINE_FALLBACK_EMAIL_SUBJECT",
        "Subject when the fallback names none.",
        "You have a new notification",
    )
    sms_url: str | None = env_field(
        "PUSHLINE_SMS_URL,SMS_URL",
        "Twilio-shaped SMS API: https://ACCOUNT_SID:AUTH_TOKEN@api.twilio.com.",
        None,
        secret=True,
    )
    sms_account_sid: str | None = env_field(
        "PUSHLINE_SMS_ACCOUNT_SID", "Overrides the URL's account sid.", None
    )
    sms_auth_token: str | None = env_field(
        "PUSHLINE_SMS_AUTH_TOKEN", "Overrides the URL's auth token.", None, secret=True
    )
    sms_from: str | None = env_field(
        "PUSHLINE_SMS_FROM,SMS_FROM", "Sender number (E.164) of fallback SMS.", None
    )
    sms_messaging_service_sid: str | None = env_field(
        "PUSHLINE_SMS_MESSAGING_SERVICE_SID", "Send through a Messaging Service instead.", None
    )
    ca_file: str | None = env_field(
        "PUSHLINE_FALLBACK_CA_FILE,PUSHLINE_CA_FILE",
        "Extra CA bundle trusted for SMTP and SMS TLS (besides the system's).",
        None,
    )
    max_attempts: int = env_field(
        "PUSHLINE_FALLBACK_MAX_ATTEMPTS", "Send attempts per fallback before FAILED.", 5, minimum=1
    )
    backoff_base_s: float = env_field(
        "PUSHLINE_FALLBACK_BACKOFF_BASE_S", "First retry wait; doubles per attempt.", 0.5
    )
    backoff_max_s: float = env_field(
        "PUSHLINE_FALLBACK_BACKOFF_MAX_S", "Longest retry wait (Retry-After may ask more).", 30.0
    )
    retry_after_max_s: float = env_field(
        "PUSHLINE_FALLBACK_RETRY_AFTER_MAX_S",
        "A Retry-After longer than this counts as a failure: the partition would stall.",
        300.0,
    )
    send_timeout_s: float = env_field(
        "PUSHLINE_FALLBACK_SEND_TIMEOUT_S", "Timeout of one SMTP session or SMS request.", 15.0
    )
    max_in_flight: int = env_field(
        "PUSHLINE_FALLBACK_MAX_IN_FLIGHT",
        "Fallbacks worked on at once per process.",
        200,
        minimum=1,
    )
    commit_interval_s: float = env_field(
        "PUSHLINE_FALLBACK_COMMIT_INTERVAL_S", "How often acknowledged offsets are committed.", 0.5
    )
    drain_timeout_s: float = env_field(
        "PUSHLINE_FALLBACK_DRAIN_TIMEOUT_S",
        "On SIGTERM or revocation, how long in-flight sends may take to finish.",
        30.0,
    )
    session_timeout_ms: int = env_field(
        "PUSHLINE_FALLBACK_SESSION_TIMEOUT_MS", "Consumer-group session timeout.", 10_000
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> FallbackConfig:
        cfg = config_from_env(cls, os.environ if env is None else env, **overrides)
        # parse both now, so a bad URL stops the process at start, not at the first fallback
        cfg.smtp()
        cfg.sms()
        return cfg

    def __repr__(self) -> str:  # secrets never reach a log line through repr()
        return (
            f"FallbackConfig(group_id={self.group_id!r}, smtp={self.smtp()!r}, sms={self.sms()!r})"
        )

    def smtp(self) -> SmtpSettings | None:
        """The SMTP server, or None when email is not configured."""
        if not self.smtp_url and not self.smtp_host:
            return None
        scheme, host, port, user, password, query = "smtp", None, None, None, None, {}
        if self.smtp_url:
            parts = urlsplit(self.smtp_url)
            scheme = parts.scheme.lower()
            if scheme not in ("smtp", "smtps"):
                raise ConfigError("PUSHLINE_SMTP_URL must start with smtp:// or smtps://")
            try:
                port = parts.port
            except ValueError as exc:
                raise ConfigError(f"PUSHLINE_SMTP_URL has a bad port: {exc}") from None
            host = parts.hostname
            user = unquote(parts.username) if parts.username else None
            password = unquote(parts.password) if parts.password else None
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        implicit = _flag(self.smtp_ssl, query.get("ssl"), default=scheme == "smtps")
        starttls = _flag(self.smtp_starttls, query.get("starttls"), default=not implicit)
        if implicit and starttls:
            raise ConfigError("SMTP: choose implicit TLS (smtps://) or STARTTLS, not both")
        host = self.smtp_host or host
        if not host:
            raise ConfigError("PUSHLINE_SMTP_URL names no host")
        return SmtpSettings(
            host=host,
            port=self.smtp_port or port or (465 if implicit else 587),
            user=self.smtp_user or user,
            password=self.smtp_password or password,
            starttls=starttls,
            implicit_tls=implicit,
        )

    def sms(self) -> SmsSettings | None:
        """The SMS API, or None when SMS is not configured."""
        if not self.sms_url:
            return None
        parts = urlsplit(self.sms_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("PUSHLINE_SMS_URL must be an http(s) URL with a host")
        try:
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"PUSHLINE_SMS_URL has a bad port: {exc}") from None
        sid = self.sms_account_sid or (unquote(parts.username) if parts.username else None)
        token = self.sms_auth_token or (unquote(parts.password) if parts.password else None)
        if not sid or not token:
            raise ConfigError(
                "SMS: the account sid and auth token are needed (in PUSHLINE_SMS_URL or "
                "PUSHLINE_SMS_ACCOUNT_SID / PUSHLINE_SMS_AUTH_TOKEN)"
            )
        if not self.sms_from and not self.sms_messaging_service_sid:
            raise ConfigError("SMS: set PUSHLINE_SMS_FROM or PUSHLINE_SMS_MESSAGING_SERVICE_SID")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        netloc = host if port is None else f"{host}:{port}"
        return SmsSettings(
            base_url=f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}",
            account_sid=sid,
            auth_token=token,
            from_number=self.sms_from,
            messaging_service_sid=self.sms_messaging_service_sid,
        )

    def ssl_context(self) -> ssl.SSLContext:
        """The system's trust store, plus ``ca_file`` when given (a private CA, the stack's)."""
        context = ssl.create_default_context()
        if self.ca_file:
            try:
                context.load_verify_locations(cafile=self.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"cannot load the CA file {self.ca_file!r}: {exc}") from exc
        return context


def _flag(explicit: bool | None, query: str | None, *, default: bool) -> bool:
    if explicit is not None:
        return explicit
    if query is None:
        return default
    if query.lower() in _TRUE:
        return True
    if query.lower() in _FALSE:
        return False
    raise ConfigError(f"PUSHLINE_SMTP_URL: {query!r} is not a boolean (use 1 or 0)")
