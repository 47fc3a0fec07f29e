"""Refuse, before it reaches Kafka, a notification the provider or the fallback sender would refuse.

Every rule raises :class:`pushline.errors.ValidationError` naming the field and saying what is wrong,
so a bad request fails in the caller's process rather than as a permanent provider error (or a
dead-letter entry) minutes later in the dispatcher.

Decisions:

- APNs device tokens are hex, so case carries no meaning: they are accepted in either case and
  normalised to lower case (:func:`normalise_device_token`), which keeps the Kafka key, and so the
  partition, the same however a service spelled the token. FCM tokens are case-sensitive and kept
  as they are.
- A BACKGROUND push to APNs with priority HIGH is refused, not silently lowered: APNs requires
  priority 5 for background pushes, and quietly changing what the caller asked for hides the bug.
- A BACKGROUND push must not carry alert text, badge or sound (Apple forbids them; the payload
  builders would drop them silently, for FCM too).
- FCM supports only ALERT and BACKGROUND pushes; voip, location etc. are APNs-only push types.
- ``expires_at`` must be in the future; an FCM ttl beyond four weeks is clamped by the payload
  builder, not refused (the message simply will not be kept longer than FCM keeps it).
- A fallback subject is only meaningful for EMAIL, so one on an SMS fallback is refused rather than
  silently dropped.
- The payload size is measured exactly as the provider will see it (:mod:`schemas.payloads`) plus
  the bytes reserved for the dispatcher's receipt token; ``truncate=True`` shortens the alert
  instead of refusing it.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime

from pushline.errors import ValidationError
from schemas import Fallback, FallbackChannel, NotificationRequest, Platform, Priority, PushType
from schemas._ids import is_canonical_uuid
from schemas.payloads import (
    RECEIPT_TOKEN_KEY,
    RECEIPT_TOKEN_RESERVE_BYTES,
    max_payload_bytes,
    payload_size,
    truncate_alert,
)

__all__ = [
    "APNS_COLLAPSE_ID_MAX_BYTES",
    "APNS_TOKEN_LENGTH",
    "FCM_RESERVED_DATA_KEYS",
    "FCM_RESERVED_DATA_KEY_PREFIXES",
    "FCM_TOKEN_MAX_LENGTH",
    "FCM_TOKEN_MIN_LENGTH",
    "normalise_device_token",
    "validate_request",
]

APNS_TOKEN_LENGTH = 64
"""Hex characters in an APNs device token (PROVIDERS.md)."""
FCM_TOKEN_MIN_LENGTH = 32
FCM_TOKEN_MAX_LENGTH = 1024
"""Real FCM registration tokens are about 140-200 characters. The bounds are lenient, but a token
of more than 1024 characters is not a token, and would eat a quarter of the 4096-byte message."""
APNS_COLLAPSE_ID_MAX_BYTES = 64
"""``apns-collapse-id`` limit (larger → 400 BadCollapseId)."""
FCM_RESERVED_DATA_KEYS = frozenset({"from", "message_type"})
FCM_RESERVED_DATA_KEY_PREFIXES = ("google", "gcm")
"""FCM v1 ``Message.data``: a key must not be "from", "message_type" or start with "google" or
"gcm" (FCM refuses the message with INVALID_ARGUMENT)."""

_APP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_APNS_TOKEN = re.compile(rf"[0-9A-Fa-f]{{{APNS_TOKEN_LENGTH}}}")
_FCM_TOKEN = re.compile(r"[A-Za-z0-9_:-]+")
# E.164: "+", a country code that never starts with 0, at most 15 digits in all. [0-9], not \d,
# which would also accept non-ASCII digits.
_E164 = re.compile(r"\+[1-9][0-9]{7,14}")
# A plausible address, not RFC 5322 in full: an ASCII dot-atom local part and a domain of at least
# two LDH labels. Internationalised addresses (SMTPUTF8) are refused; the SMTP sender does not
# negotiate SMTPUTF8.
_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)
_EMAIL_MAX_LENGTH = 254  # RFC 5321 path limit minus the angle brackets
_EMAIL_LOCAL_MAX_LENGTH = 64
_FCM_PUSH_TYPES = frozenset({PushType.ALERT, PushType.BACKGROUND})


def normalise_device_token(platform: Platform, token: str) -> str:
    """The canonical form of ``token``: lower-case hex for APNs, unchanged for FCM.

    Raises ValidationError("device_token", ...) if the token cannot be a token of ``platform``.
    """
    if platform == Platform.APNS:
        if not _APNS_TOKEN.fullmatch(token):
            raise ValidationError(
                "device_token",
                f"an APNs device token is {APNS_TOKEN_LENGTH} hexadecimal characters, "
                f"got {len(token)} characters: {_preview(token)}",
            )
        return token.lower()
    if not FCM_TOKEN_MIN_LENGTH <= len(token) <= FCM_TOKEN_MAX_LENGTH:
        raise ValidationError(
            "device_token",
            f"an FCM registration token is {FCM_TOKEN_MIN_LENGTH} to {FCM_TOKEN_MAX_LENGTH} "
            f"characters, got {len(token)}",
        )
    if not _FCM_TOKEN.fullmatch(token):
        raise ValidationError(
            "device_token",
            "an FCM registration token contains only letters, digits, '_', ':' and '-': "
            f"{_preview(token)}",
        )
    return token


def validate_request(
    req: NotificationRequest,
    *,
    now: datetime | None = None,
    truncate: bool = False,
    check_expiry: bool = True,
) -> NotificationRequest:
    """``req`` checked against every rule the providers and fallback senders enforce.

    Returns the request to produce: ``req`` itself, or a copy with the APNs token normalised to
    lower case and, with ``truncate=True``, the alert shortened to fit the payload limit.
    ``now`` (tz-aware; default: the current time) is what ``expires_at`` must lie after.
    ``check_expiry=False`` skips that one rule: the dispatcher turns an expired request into an
    EXPIRED outcome, not a dead letter.
    """
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    _check_identity(req)
    token = normalise_device_token(req.platform, req.device_token)
    _check_times(req, now, check_expiry)
    _check_delivery_options(req)
    _check_content(req)
    if req.fallback is not None:
        _check_fallback(req.fallback)
    if token != req.device_token:
        req = dataclasses.replace(req, device_token=token)
    return _check_size(req, now, truncate)


def _preview(value: str, limit: int = 80) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")


def _utf8(field: str, value: str) -> bytes:
    """``value`` as UTF-8; a string with lone surrogates cannot be sent or serialized."""
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationError(field, f"is not valid Unicode text ({exc.reason})") from exc


def _check_utf8(field: str, value: str) -> None:
    """:func:`_utf8`'s check without the bytes. ASCII text always encodes: the dispatcher checks
    every request, most of them ASCII, so that case skips the encoding."""
    if not value.isascii():
        _utf8(field, value)


def _check_identity(req: NotificationRequest) -> None:
    # Not uuid.UUID(): the same rule (canonical lower-case 8-4-4-4-12 hex), at a fraction of the
    # cost on the dispatcher's hot path.
    if not is_canonical_uuid(req.notification_id):
        raise ValidationError(
            "notification_id",
            "must be a canonical lower-case UUID (8-4-4-4-12 hex digits), "
            f"got {_preview(req.notification_id)}",
        )
    if not _APP_ID.fullmatch(req.app_id):
        raise ValidationError(
            "app_id",
            "must be 1 to 128 characters of letters, digits, '.', '_' and '-', starting with a "
            f"letter or digit, got {_preview(req.app_id)}",
        )


def _check_times(req: NotificationRequest, now: datetime, check_expiry: bool) -> None:
    # Naive datetimes never get here: constructing the event refuses them (schemas._convert).
    if check_expiry and req.expires_at <= now:
        raise ValidationError(
            "expires_at",
            f"{req.expires_at.isoformat()} is not in the future (now {now.isoformat()})",
        )
    if req.send_at is not None and req.send_at >= req.expires_at:
        raise ValidationError(
            "send_at",
            f"{req.send_at.isoformat()} is not before expires_at {req.expires_at.isoformat()}",
        )


def _check_delivery_options(req: NotificationRequest) -> None:
    if req.receipt_deadline_ms is not None and req.receipt_deadline_ms <= 0:
        raise ValidationError(
            "receipt_deadline_ms",
            f"must be a positive number of milliseconds, got {req.receipt_deadline_ms}",
        )
    if req.attempt < 0:
        raise ValidationError("attempt", f"must not be negative, got {req.attempt}")
    if req.collapse_key is not None:
        size = len(_utf8("collapse_key", req.collapse_key))
        if req.platform == Platform.APNS and size > APNS_COLLAPSE_ID_MAX_BYTES:
            raise ValidationError(
                "collapse_key",
                f"is {size} bytes in UTF-8; APNs allows at most {APNS_COLLAPSE_ID_MAX_BYTES}",
            )
    if req.platform == Platform.FCM and req.push_type not in _FCM_PUSH_TYPES:
        raise ValidationError(
            "push_type",
            f"{req.push_type.value} is an APNs push type; FCM supports ALERT and BACKGROUND",
        )
    if (
        req.platform == Platform.APNS
        and req.push_type == PushType.BACKGROUND
        and req.priority == Priority.HIGH
    ):
        raise ValidationError(
            "priority", "APNs requires NORMAL (5) or LOW priority for BACKGROUND pushes, not HIGH"
        )


def _check_content(req: NotificationRequest) -> None:
    c = req.content
    for name in ("title", "subtitle", "body", "sound", "category", "thread_id"):
        value: str | None = getattr(c, name)
        if value is not None:
            _check_utf8(f"content.{name}", value)
    if c.badge is not None and c.badge < 0:
        raise ValidationError("content.badge", f"must not be negative, got {c.badge}")
    if req.push_type == PushType.BACKGROUND:
        visible = [n for n in ("title", "subtitle", "body", "sound") if getattr(c, n)]
        if c.badge is not None:
            visible.append("badge")
        if visible:
            raise ValidationError(
                "content",
                f"a BACKGROUND push cannot show anything, but has {', '.join(visible)}; "
                "send an ALERT push, or put the data in custom_data",
            )
    for key, value in c.custom_data.items():
        field = f"content.custom_data[{key!r}]"
        _check_utf8(field, key)
        _check_utf8(field, value)
        if key == RECEIPT_TOKEN_KEY:
            raise ValidationError(field, "is reserved for the receipt token the dispatcher adds")
        if req.platform == Platform.APNS and key == "aps":
            raise ValidationError(field, "is reserved by APNs for the aps dictionary")
        if req.platform == Platform.FCM and (
            key in FCM_RESERVED_DATA_KEYS or key.startswith(FCM_RESERVED_DATA_KEY_PREFIXES)
        ):
            raise ValidationError(
                field,
                "is reserved by FCM (from, message_type, google*, gcm*)",
            )


def _check_fallback(fb: Fallback) -> None:
    if not fb.text.strip():
        raise ValidationError("fallback.text", "must not be empty")
    _check_utf8("fallback.text", fb.text)
    if fb.channel == FallbackChannel.SMS:
        if not _E164.fullmatch(fb.address):
            raise ValidationError(
                "fallback.address",
                "an SMS fallback needs an E.164 number ('+', country code, 8 to 15 digits in all), "
                f"got {_preview(fb.address)}",
            )
        if fb.subject is not None:
            raise ValidationError("fallback.subject", "only an EMAIL fallback has a subject")
        return
    local = fb.address.rpartition("@")[0]
    if (
        len(fb.address) > _EMAIL_MAX_LENGTH
        or len(local) > _EMAIL_LOCAL_MAX_LENGTH
        or not _EMAIL.fullmatch(fb.address)
    ):
        raise ValidationError(
            "fallback.address", f"is not a plausible email address: {_preview(fb.address)}"
        )
    if fb.subject is not None:
        _check_utf8("fallback.subject", fb.subject)
        # A line break in a subject would let the text inject mail headers.
        if "\r" in fb.subject or "\n" in fb.subject:
            raise ValidationError("fallback.subject", "must be a single line")


def _check_size(req: NotificationRequest, now: datetime, truncate: bool) -> NotificationRequest:
    limit = max_payload_bytes(req)
    size = payload_size(req, now=now) + RECEIPT_TOKEN_RESERVE_BYTES
    if size <= limit:
        return req
    if truncate:
        shortened = truncate_alert(req, limit, now=now)
        if shortened is not None:
            return shortened
    what = f"{req.platform.value} {req.push_type.value}"
    message = (
        f"{what} payload is {size} bytes (including {RECEIPT_TOKEN_RESERVE_BYTES} reserved for "
        f"the receipt token); the maximum is {limit} bytes"
    )
    if truncate:
        message += "; shortening the alert cannot make it fit, reduce custom_data"
    else:
        message += "; shorten the content or produce with truncate=True"
    raise ValidationError("content", message)
