"""Provider results as data: every APNs reason and FCM errorCode, the one table that maps each to
an :class:`Action`, and the :class:`SendResult` a provider client returns.

The table (:data:`RULES`) is the only place that decides what a provider answer means; the clients
parse responses into ``(status, reason, field)`` and look them up here. Names follow PROVIDERS.md.
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Final, NamedTuple

from schemas import Platform

__all__ = [
    "RULES",
    "Action",
    "ApnsReason",
    "FcmErrorCode",
    "PushlineReason",
    "Rule",
    "SendResult",
    "classify",
    "parse_retry_after",
    "status_action",
]


class Action(StrEnum):
    """What the dispatcher does with a send result."""

    ACCEPTED = "ACCEPTED"
    """The provider queued the message (not proof of display: only a receipt is)."""
    RETRY = "RETRY"
    """Transient: back off (never sooner than ``retry_after``) and send again."""
    INVALID_TOKEN = "INVALID_TOKEN"  # noqa: S105 - an action name, not a secret
    """The token is dead (uninstalled, expired, another sender's): publish InvalidToken, never retry."""
    SUSPECT_TOKEN = "SUSPECT_TOKEN"  # noqa: S105
    """The provider refused the token, but that often means a wrong environment or topic rather
    than an uninstall: a permanent failure, reported as a suspect (not dead) token."""
    REJECT = "REJECT"
    """Permanent failure of this request (bad header, payload too large, a bug): never retry."""
    CONFIG_ALERT = "CONFIG_ALERT"
    """Our credentials or app configuration are wrong: alert an operator; do not drop silently."""
    REFRESH_AUTH = "REFRESH_AUTH"
    """The provider refused our auth token as expired. Clients handle it internally (new token,
    one retry), so a caller only sees it in the table, never in a returned result."""


class ApnsReason(StrEnum):
    """Every ``reason`` APNs returns (PROVIDERS.md); :attr:`status` is its HTTP status."""

    BAD_COLLAPSE_ID = "BadCollapseId"
    BAD_DEVICE_TOKEN = "BadDeviceToken"  # noqa: S105
    BAD_EXPIRATION_DATE = "BadExpirationDate"
    BAD_MESSAGE_ID = "BadMessageId"
    BAD_PRIORITY = "BadPriority"
    BAD_TOPIC = "BadTopic"
    DEVICE_TOKEN_NOT_FOR_TOPIC = "DeviceTokenNotForTopic"  # noqa: S105 - a reason, not a secret
    DUPLICATE_HEADERS = "DuplicateHeaders"
    IDLE_TIMEOUT = "IdleTimeout"
    INVALID_PUSH_TYPE = "InvalidPushType"
    MISSING_DEVICE_TOKEN = "MissingDeviceToken"  # noqa: S105
    MISSING_TOPIC = "MissingTopic"
    PAYLOAD_EMPTY = "PayloadEmpty"
    TOPIC_DISALLOWED = "TopicDisallowed"
    BAD_CERTIFICATE = "BadCertificate"
    BAD_CERTIFICATE_ENVIRONMENT = "BadCertificateEnvironment"
    EXPIRED_PROVIDER_TOKEN = "ExpiredProviderToken"  # noqa: S105
    FORBIDDEN = "Forbidden"
    INVALID_PROVIDER_TOKEN = "InvalidProviderToken"  # noqa: S105
    MISSING_PROVIDER_TOKEN = "MissingProviderToken"  # noqa: S105
    BAD_PATH = "BadPath"
    METHOD_NOT_ALLOWED = "MethodNotAllowed"
    EXPIRED_TOKEN = "ExpiredToken"  # noqa: S105
    UNREGISTERED = "Unregistered"
    PAYLOAD_TOO_LARGE = "PayloadTooLarge"
    TOO_MANY_PROVIDER_TOKEN_UPDATES = "TooManyProviderTokenUpdates"  # noqa: S105
    TOO_MANY_REQUESTS = "TooManyRequests"
    INTERNAL_SERVER_ERROR = "InternalServerError"
    SERVICE_UNAVAILABLE = "ServiceUnavailable"
    SHUTDOWN = "Shutdown"

    @property
    def status(self) -> int:
        return _STATUS[(Platform.APNS, self.value)]


class FcmErrorCode(StrEnum):
    """Every FCM v1 ``errorCode`` (PROVIDERS.md), plus the canonical ``status`` values FCM returns
    without an errorCode (an expired access token, a wrong project); :attr:`status` is the HTTP status."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    THIRD_PARTY_AUTH_ERROR = "THIRD_PARTY_AUTH_ERROR"
    SENDER_ID_MISMATCH = "SENDER_ID_MISMATCH"
    UNREGISTERED = "UNREGISTERED"
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
    INTERNAL = "INTERNAL"
    UNAVAILABLE = "UNAVAILABLE"
    # canonical statuses seen without an FcmError detail
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    NOT_FOUND = "NOT_FOUND"

    @property
    def status(self) -> int:
        return _STATUS[(Platform.FCM, self.value)]


class PushlineReason(StrEnum):
    """Reasons Pushline reports itself, when no provider answer exists (status None)."""

    UNKNOWN_APP = "UnknownApp"
    """No credentials for this app id and platform."""
    TIMEOUT = "Timeout"
    CONNECTION_ERROR = "ConnectionError"
    """Connect refused or reset, or the connection went away (GOAWAY) with the stream unanswered."""
    TLS_ERROR = "TLSError"
    PROTOCOL_ERROR = "ProtocolError"
    AUTH_FAILED = "AuthFailed"
    """The OAuth2 token endpoint refused our service-account assertion."""
    AUTH_UNAVAILABLE = "AuthUnavailable"
    """The OAuth2 token endpoint could not be reached or failed transiently."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the table: a provider answer and what to do about it.

    ``platform`` None means the row applies to both (Pushline's own reasons). ``field`` refines an
    FCM INVALID_ARGUMENT by its ``google.rpc.BadRequest`` field violation.
    """

    platform: Platform | None
    reason: str
    status: int | None
    action: Action
    field: str | None = None


_A = Platform.APNS
_F = Platform.FCM
_R = ApnsReason
_E = FcmErrorCode

RULES: Final[tuple[Rule, ...]] = (
    # --- APNs 400: permanent; a token the provider refuses is suspect, not dead
    Rule(_A, _R.BAD_COLLAPSE_ID, 400, Action.REJECT),
    Rule(_A, _R.BAD_DEVICE_TOKEN, 400, Action.SUSPECT_TOKEN),
    Rule(_A, _R.BAD_EXPIRATION_DATE, 400, Action.REJECT),
    Rule(_A, _R.BAD_MESSAGE_ID, 400, Action.REJECT),
    Rule(_A, _R.BAD_PRIORITY, 400, Action.REJECT),
    Rule(_A, _R.BAD_TOPIC, 400, Action.REJECT),
    Rule(_A, _R.DEVICE_TOKEN_NOT_FOR_TOPIC, 400, Action.SUSPECT_TOKEN),
    Rule(_A, _R.DUPLICATE_HEADERS, 400, Action.REJECT),
    Rule(_A, _R.IDLE_TIMEOUT, 400, Action.REJECT),
    Rule(_A, _R.INVALID_PUSH_TYPE, 400, Action.REJECT),
    Rule(_A, _R.MISSING_DEVICE_TOKEN, 400, Action.REJECT),
    Rule(_A, _R.MISSING_TOPIC, 400, Action.REJECT),
    Rule(_A, _R.PAYLOAD_EMPTY, 400, Action.REJECT),
    Rule(_A, _R.TOPIC_DISALLOWED, 400, Action.REJECT),
    # --- APNs 403: our credentials; an expired JWT is re-minted once by the client
    Rule(_A, _R.BAD_CERTIFICATE, 403, Action.CONFIG_ALERT),
    Rule(_A, _R.BAD_CERTIFICATE_ENVIRONMENT, 403, Action.CONFIG_ALERT),
    Rule(_A, _R.EXPIRED_PROVIDER_TOKEN, 403, Action.REFRESH_AUTH),
    Rule(_A, _R.FORBIDDEN, 403, Action.CONFIG_ALERT),
    Rule(_A, _R.INVALID_PROVIDER_TOKEN, 403, Action.CONFIG_ALERT),
    Rule(_A, _R.MISSING_PROVIDER_TOKEN, 403, Action.CONFIG_ALERT),
    # --- APNs 404/405: our bug; 410: dead token; 413: the producer should have refused it
    Rule(_A, _R.BAD_PATH, 404, Action.REJECT),
    Rule(_A, _R.METHOD_NOT_ALLOWED, 405, Action.REJECT),
    Rule(_A, _R.EXPIRED_TOKEN, 410, Action.INVALID_TOKEN),
    Rule(_A, _R.UNREGISTERED, 410, Action.INVALID_TOKEN),
    Rule(_A, _R.PAYLOAD_TOO_LARGE, 413, Action.REJECT),
    # --- APNs transient
    Rule(_A, _R.TOO_MANY_PROVIDER_TOKEN_UPDATES, 429, Action.RETRY),
    Rule(_A, _R.TOO_MANY_REQUESTS, 429, Action.RETRY),
    Rule(_A, _R.INTERNAL_SERVER_ERROR, 500, Action.RETRY),
    Rule(_A, _R.SERVICE_UNAVAILABLE, 503, Action.RETRY),
    Rule(_A, _R.SHUTDOWN, 503, Action.RETRY),
    # --- FCM errorCodes
    Rule(_F, _E.INVALID_ARGUMENT, 400, Action.REJECT),
    Rule(_F, _E.INVALID_ARGUMENT, 400, Action.SUSPECT_TOKEN, field="message.token"),
    Rule(_F, _E.THIRD_PARTY_AUTH_ERROR, 401, Action.CONFIG_ALERT),
    Rule(_F, _E.SENDER_ID_MISMATCH, 403, Action.INVALID_TOKEN),
    Rule(_F, _E.UNREGISTERED, 404, Action.INVALID_TOKEN),
    Rule(_F, _E.QUOTA_EXCEEDED, 429, Action.RETRY),
    Rule(_F, _E.INTERNAL, 500, Action.RETRY),
    Rule(_F, _E.UNAVAILABLE, 503, Action.RETRY),
    # --- FCM canonical statuses without an errorCode
    Rule(_F, _E.UNAUTHENTICATED, 401, Action.REFRESH_AUTH),  # access token expired or revoked
    Rule(_F, _E.PERMISSION_DENIED, 403, Action.CONFIG_ALERT),  # account lacks rights on project
    Rule(_F, _E.NOT_FOUND, 404, Action.REJECT),  # wrong URL: our bug
    # --- Pushline's own reasons (no provider answer)
    Rule(None, PushlineReason.UNKNOWN_APP, None, Action.CONFIG_ALERT),
    Rule(None, PushlineReason.TIMEOUT, None, Action.RETRY),
    Rule(None, PushlineReason.CONNECTION_ERROR, None, Action.RETRY),
    Rule(None, PushlineReason.TLS_ERROR, None, Action.RETRY),
    Rule(None, PushlineReason.PROTOCOL_ERROR, None, Action.RETRY),
    Rule(None, PushlineReason.AUTH_FAILED, None, Action.CONFIG_ALERT),
    Rule(None, PushlineReason.AUTH_UNAVAILABLE, None, Action.RETRY),
)
"""THE table: every reason / errorCode with its HTTP status and action."""

_INDEX: Final[Mapping[tuple[Platform | None, str, str | None], Rule]] = MappingProxyType(
    {(r.platform, r.reason, r.field): r for r in RULES}
)
_STATUS: Final[Mapping[tuple[Platform, str], int]] = MappingProxyType(
    {
        (r.platform, r.reason): r.status
        for r in RULES
        if r.platform is not None and r.status is not None
    }
)


def status_action(status: int) -> Action:
    """The action for an answer whose reason is missing or unknown, by HTTP status alone.

    Only a fallback: a provider adding a reason must not crash the dispatcher or drop a message.
    Unknown 4xx are permanent except 429; unknown 5xx and odd statuses are transient.
    """
    if 200 <= status < 300:
        return Action.ACCEPTED
    if status == 410:
        return Action.INVALID_TOKEN
    if status in (401, 403):
        return Action.CONFIG_ALERT
    if status in {408, 429}:
        return Action.RETRY
    if 400 <= status < 500:
        return Action.REJECT
    return Action.RETRY


def classify(
    platform: Platform, status: int | None, reason: str | None, field: str | None = None
) -> Action:
    """Look an answer up in :data:`RULES` (most specific row first), else fall back on the status."""
    if status is not None and 200 <= status < 300:
        return Action.ACCEPTED
    if reason is not None:
        for key in ((platform, reason, field), (platform, reason, None), (None, reason, None)):
            rule = _INDEX.get(key)
            if rule is not None:
                return rule.action
    if status is None:
        return Action.RETRY  # no answer at all: the transport failed
    return status_action(status)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP-date; None if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # HTTP-dates are GMT
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


class SendResult(NamedTuple):
    """What one send produced: the provider's answer as data, with the table's action.

    ``status`` and ``reason`` are None-/Pushline-valued when no answer arrived (transport failure:
    action RETRY, reason e.g. ``Timeout``, ``error`` the description). Build it with keywords;
    ``result._replace(action=...)`` for a changed copy.

    A NamedTuple (immutable, like a frozen dataclass) because one is built per send: a frozen
    dataclass's ``__init__`` sets each field through ``object.__setattr__`` and took 1.47 µs, this
    0.63 µs.
    """

    platform: Platform
    action: Action
    status: int | None = None
    reason: str | None = None
    provider_id: str | None = None
    """apns-id (echoed by APNs) or the FCM message name."""
    invalid_since: datetime | None = None
    """From the 410 ``timestamp``: when the token stopped being valid."""
    retry_after: float | None = None
    """Seconds the provider asked us to wait (Retry-After), if it did."""
    latency_ms: float = 0.0
    collapse_id: str | None = None
    error: str | None = None
    """A human-readable description (transport error, FCM error message); never a secret."""

    @property
    def accepted(self) -> bool:
        return self.action is Action.ACCEPTED
