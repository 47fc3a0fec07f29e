"""What the provider sees: the one place that turns a NotificationRequest into an APNs or FCM payload.

The producer measures sizes with these builders before a request reaches Kafka, and the dispatcher
sends exactly what they build, so a request the producer accepted cannot be refused by the provider
for its size (PROVIDERS.md: 413 PayloadTooLarge is permanent).

Sizes are bytes of compact UTF-8 JSON (``separators=(",", ":")``, ``ensure_ascii=False``): an emoji
costs four bytes, not one character. The dispatcher adds a signed receipt token to the custom data
of every push (DESIGN.md); :data:`RECEIPT_TOKEN_RESERVE_BYTES` is kept free for it, so validation
checks ``payload_size(req) + RECEIPT_TOKEN_RESERVE_BYTES <= max_payload_bytes(req)``.

Empty strings count as unset (an empty title shows nothing and only costs bytes).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

import orjson

from schemas import NotificationRequest, Platform, PushType

__all__ = [
    "APNS_MAX_PAYLOAD",
    "APNS_MAX_VOIP_PAYLOAD",
    "ELLIPSIS",
    "FCM_MAX_PAYLOAD",
    "FCM_MAX_TTL_SECONDS",
    "RECEIPT_TOKEN_KEY",
    "RECEIPT_TOKEN_MAX_CHARS",
    "RECEIPT_TOKEN_RESERVE_BYTES",
    "apns_payload",
    "fcm_message",
    "fcm_payload_size",
    "fcm_request_body",
    "fcm_ttl_seconds",
    "max_payload_bytes",
    "payload_fits",
    "payload_size",
    "truncate_alert",
]

APNS_MAX_PAYLOAD = 4096
"""Bytes APNs accepts for every push type except voip (larger → 413 PayloadTooLarge)."""
APNS_MAX_VOIP_PAYLOAD = 5120
"""Bytes APNs accepts for a voip push."""
FCM_MAX_PAYLOAD = 4096
"""Bytes FCM accepts for a message sent to a token (topic messages: 2048; Pushline sends none)."""
FCM_MAX_TTL_SECONDS = 2_419_200
"""``android.ttl`` upper bound (four weeks, also FCM's default)."""

RECEIPT_TOKEN_KEY = "pl_rt"  # noqa: S105 (a JSON key, not a secret)
"""Custom-data key under which the dispatcher puts the signed receipt token."""
RECEIPT_TOKEN_MAX_CHARS = 200
"""Longest receipt token the dispatcher may add: printable ASCII that JSON does not escape
(e.g. base64url and ``.``), at most this many characters. The dispatcher must keep to it, or the
reserve below no longer covers the token."""
RECEIPT_TOKEN_RESERVE_BYTES = 256
"""Bytes kept free for the receipt token. The worst case is FCM with no other data, where the
token adds ``,"data":{"pl_rt":"<200 chars>"}`` = 220 bytes; APNs adds ``,"pl_rt":"<200 chars>"`` =
211 bytes. 256 covers both with headroom."""

ELLIPSIS = "…"
"""Appended to a shortened alert text (three bytes in UTF-8)."""

_NO_CUSTOM: Mapping[str, str] = MappingProxyType({})
# A cut must not leave a visibly broken character behind: a dangling zero-width joiner (half an
# emoji sequence), variation selector, or trailing space before the ellipsis.
_DANGLING = "\u200d\ufe0e\ufe0f \t\r\n"
_REGIONAL_INDICATORS = "".join(map(chr, range(0x1F1E6, 0x1F200)))  # two of them make one flag


def _dumps(obj: object) -> bytes:
    """Compact UTF-8 JSON, byte for byte what ``json.dumps(obj, separators=(",", ":"),
    ensure_ascii=False).encode()`` gives for payloads (strings, ints, bools, dicts).

    orjson, not the standard library: measured in the dispatcher's profile, building the payload
    with ``json`` cost about 10 µs of the ~160 µs a notification took; orjson takes under 1 µs.
    """
    try:
        return orjson.dumps(obj)
    except orjson.JSONEncodeError:
        # orjson refuses what json would still write (lone surrogates, huge ints): keep json's
        # behaviour there, errors included.
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# --- APNs -------------------------------------------------------------------------------------


def _apns_body(req: NotificationRequest, extra_custom: Mapping[str, str]) -> dict[str, Any]:
    c = req.content
    aps: dict[str, Any]
    if req.push_type == PushType.BACKGROUND:
        # Apple: a background notification carries content-available and nothing user-visible.
        aps = {"content-available": 1}
    else:
        aps = {}
        # the set ones of title, subtitle and body (empty counts as unset), spelled out, not a
        # dict comprehension over keyword arguments: this runs once per APNs send
        alert = {}
        if c.title:
            alert["title"] = c.title
        if c.subtitle:
            alert["subtitle"] = c.subtitle
        if c.body:
            alert["body"] = c.body
        if alert:
            aps["alert"] = alert
        if c.badge is not None:  # 0 is meaningful: it clears the badge
            aps["badge"] = c.badge
        if c.sound:
            aps["sound"] = c.sound
        if c.category:
            aps["category"] = c.category
        if c.thread_id:
            aps["thread-id"] = c.thread_id
        if c.content_available:
            aps["content-available"] = 1
        if c.mutable_content:
            aps["mutable-content"] = 1
    body: dict[str, Any] = {"aps": aps}
    # extra_custom (the dispatcher's receipt token) is applied last so custom data cannot spoof it;
    # neither may replace the aps dictionary.
    for custom in (c.custom_data, extra_custom):
        if custom:
            if "aps" in custom:
                body.update((k, v) for k, v in custom.items() if k != "aps")
            else:
                body.update(custom)
    return body


# The last request whose payload was built without extra data, and that payload. The dispatcher
# builds each request's payload twice, one right after the other: validation sizes it, then the
# send adds the receipt token. The second time appends the token to the first's bytes instead.
# Keyed by identity: a request is immutable (its custom_data read-only by contract).
_last_apns: tuple[NotificationRequest | None, bytes] = (None, b"")


def apns_payload(req: NotificationRequest, extra_custom: Mapping[str, str] = _NO_CUSTOM) -> bytes:
    """The APNs request body: compact UTF-8 JSON, ``aps`` first, custom data at the top level."""
    global _last_apns  # noqa: PLW0603 - a one-entry memo, see above
    last_req, last_payload = _last_apns
    if not extra_custom:
        payload = _dumps(_apns_body(req, extra_custom))
        _last_apns = (req, payload)
        return payload
    if (
        last_req is req
        and "aps" not in extra_custom
        and extra_custom.keys().isdisjoint(req.content.custom_data)
    ):
        # Compact JSON of a dict is its items' JSON joined by commas, in order; extra_custom
        # comes last (see _apns_body), and the payload always ends with the "}" of the body.
        # So its items are extra_custom's own JSON without the opening brace.
        extra = extra_custom if type(extra_custom) is dict else dict(extra_custom)
        return last_payload[:-1] + b"," + _dumps(extra)[1:]
    return _dumps(_apns_body(req, extra_custom))


# --- FCM --------------------------------------------------------------------------------------


def fcm_ttl_seconds(expires_at: datetime, now: datetime | None = None) -> int:
    """Whole seconds until ``expires_at``, clamped to FCM's range 0..2,419,200.

    Rounded down, so FCM never keeps a message past ``expires_at``. The value only shrinks as time
    passes, so a payload measured at validation is never smaller than the one sent later.
    """
    # POSIX seconds as floats (exact to well under a microsecond for these dates), not datetime
    # arithmetic: this runs twice per FCM notification (validation and send), and
    # ``datetime.now(UTC)``, the subtraction and the timedelta division cost 1.7 µs, this 0.35 µs.
    clock = time.time() if now is None else now.timestamp()
    seconds = math.floor(expires_at.timestamp() - clock)
    return max(0, min(FCM_MAX_TTL_SECONDS, seconds))


def fcm_message(
    req: NotificationRequest,
    extra_custom: Mapping[str, str] = _NO_CUSTOM,
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The FCM HTTP v1 ``message`` object for ``req`` (the dispatcher wraps it as ``{"message": ...}``).

    - A BACKGROUND push is a data-only message: no ``notification`` block, so the app handles it.
    - ``android.notification.tag`` is the collapse id (collapse key or notification_id), so a
      duplicate replaces the shown notification instead of appearing twice (DESIGN.md).
    - ``android.collapse_key`` is set only for an explicit collapse key: FCM keeps at most four
      collapse keys per device, so a per-notification key would make FCM drop stored messages.
    - The subtitle, category and thread id have no FCM equivalent and are not sent.
    """
    c = req.content
    msg: dict[str, Any] = {"token": req.device_token}
    # title and body if set, spelled out (see _apns_body): this runs twice per FCM notification
    notification = {}
    if req.push_type != PushType.BACKGROUND:
        if c.title:
            notification["title"] = c.title
        if c.body:
            notification["body"] = c.body
    if notification:
        msg["notification"] = notification
    data = {**c.custom_data, **extra_custom}
    if data:
        msg["data"] = data
    android: dict[str, Any] = {
        "priority": req.priority.fcm_value,
        "ttl": f"{fcm_ttl_seconds(req.expires_at, now)}s",
    }
    if req.collapse_key:
        android["collapse_key"] = req.collapse_key
    if notification:
        shown: dict[str, Any] = {"tag": req.collapse_id}
        if c.sound:
            shown["sound"] = c.sound
        if c.badge is not None:
            shown["notification_count"] = c.badge
        android["notification"] = shown
    msg["android"] = android
    return msg


def fcm_request_body(
    req: NotificationRequest,
    extra_custom: Mapping[str, str] = _NO_CUSTOM,
    *,
    now: datetime | None = None,
) -> bytes:
    """The FCM HTTP v1 request body: ``{"message": ...}`` (:func:`fcm_message`) as compact UTF-8
    JSON, the encoding :func:`fcm_payload_size` measures."""
    return _dumps({"message": fcm_message(req, extra_custom, now=now)})


def fcm_payload_size(message: Mapping[str, Any]) -> int:
    """Bytes of the FCM ``message`` object as compact UTF-8 JSON.

    FCM does not document exactly which bytes its 4096-byte limit counts; counting the whole message
    (token and android block included) over-estimates it, so a message that passes here is never
    refused by FCM for its size. The price is roughly 250 bytes of headroom.
    """
    return len(_dumps(message))


# --- Limits, sizes and truncation -------------------------------------------------------------


def max_payload_bytes(req: NotificationRequest) -> int:
    """The provider's payload limit for ``req``'s platform and push type."""
    if req.platform == Platform.FCM:
        return FCM_MAX_PAYLOAD
    return APNS_MAX_VOIP_PAYLOAD if req.push_type == PushType.VOIP else APNS_MAX_PAYLOAD


def payload_size(
    req: NotificationRequest,
    extra_custom: Mapping[str, str] = _NO_CUSTOM,
    *,
    now: datetime | None = None,
) -> int:
    """Bytes of the payload the provider will see, without the receipt token unless in extra_custom."""
    if req.platform == Platform.FCM:
        return fcm_payload_size(fcm_message(req, extra_custom, now=now))
    return len(apns_payload(req, extra_custom))


def payload_fits(req: NotificationRequest, *, now: datetime | None = None) -> bool:
    """Whether the payload plus the receipt-token reserve is within the provider's limit."""
    return payload_size(req, now=now) + RECEIPT_TOKEN_RESERVE_BYTES <= max_payload_bytes(req)


def _shorten(text: str, keep: int) -> str:
    """The first ``keep`` characters of ``text`` (cut between code points, so always valid UTF-8)
    plus an ellipsis, without a dangling joiner, selector, space or half a flag at the cut."""
    head = text[:keep].rstrip(_DANGLING)
    flag_halves = len(head) - len(head.rstrip(_REGIONAL_INDICATORS))
    if flag_halves % 2:
        head = head[:-1].rstrip(_DANGLING)
    return head + ELLIPSIS


def _with_alert(req: NotificationRequest, name: str, value: str) -> NotificationRequest:
    changes: dict[str, Any] = {name: value}
    return dataclasses.replace(req, content=dataclasses.replace(req.content, **changes))


def _longest_fitting(
    req: NotificationRequest, name: str, text: str, fits: Callable[[NotificationRequest], bool]
) -> NotificationRequest | None:
    """``req`` with alert field ``name`` cut as little as possible to fit, or None if even the
    shortest cut does not fit. Binary search over the number of characters kept."""
    lo, hi = 0, len(text) - 1  # keeping all len(text) characters is the untruncated text
    if not fits(_with_alert(req, name, _shorten(text, lo))):
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(_with_alert(req, name, _shorten(text, mid))):
            lo = mid
        else:
            hi = mid - 1
    return _with_alert(req, name, _shorten(text, lo))


def truncate_alert(
    req: NotificationRequest, limit: int | None = None, *, now: datetime | None = None
) -> NotificationRequest | None:
    """``req`` with its alert shortened so that payload + receipt-token reserve <= ``limit``.

    ``limit`` defaults to :func:`max_payload_bytes`. The body is shortened first, then the title,
    then the subtitle, each cut on a character boundary with "…" appended. Returns ``req`` itself if
    it already fits, and None if no shortening can make it fit (custom data alone too big, or a
    background push, whose payload has no alert).
    """
    budget = (max_payload_bytes(req) if limit is None else limit) - RECEIPT_TOKEN_RESERVE_BYTES

    def fits(candidate: NotificationRequest) -> bool:
        return payload_size(candidate, now=now) <= budget

    if fits(req):
        return req
    current = req
    for name in ("body", "title", "subtitle"):
        text: str | None = getattr(current.content, name)
        if not text:
            continue
        shortened = _longest_fitting(current, name, text, fits)
        if shortened is not None:
            return shortened
        # Even the shortest cut is too big: keep this field minimal and shorten the next one.
        minimal = min(text, ELLIPSIS, key=lambda s: len(_dumps(s)))
        current = _with_alert(current, name, minimal)
    return None
