"""The provider payloads: exact shape, sizes in bytes, limits, FCM ttl and alert truncation."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import pytest

from schemas import NotificationContent, NotificationRequest, Platform, Priority, PushType
from schemas.payloads import (
    APNS_MAX_PAYLOAD,
    APNS_MAX_VOIP_PAYLOAD,
    ELLIPSIS,
    FCM_MAX_PAYLOAD,
    FCM_MAX_TTL_SECONDS,
    RECEIPT_TOKEN_KEY,
    RECEIPT_TOKEN_MAX_CHARS,
    RECEIPT_TOKEN_RESERVE_BYTES,
    apns_payload,
    fcm_message,
    fcm_payload_size,
    fcm_request_body,
    fcm_ttl_seconds,
    max_payload_bytes,
    payload_fits,
    payload_size,
    truncate_alert,
)

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
NID = "1b4e28ba-2fa1-41d2-883f-0016d3cca427"
APNS_TOKEN = "ab" * 32
FCM_TOKEN = "dY3kQ:APA91b" + "Xy_-9" * 30
CONTENT_FIELDS = {
    "title", "subtitle", "body", "badge", "sound", "category", "thread_id",
    "content_available", "mutable_content",
}  # fmt: skip


def make(
    platform: Platform = Platform.APNS,
    *,
    expires_in: timedelta = timedelta(hours=1),
    custom: Mapping[str, str] | None = None,
    **fields: Any,
) -> NotificationRequest:
    """A request whose content is given by NotificationContent keyword arguments in ``fields``."""
    content_fields = {k: fields.pop(k) for k in list(fields) if k in CONTENT_FIELDS}
    content = NotificationContent(**content_fields, custom_data=dict(custom or {}))
    return NotificationRequest(
        notification_id=NID,
        created_at=NOW,
        app_id="shop",
        platform=platform,
        device_token=APNS_TOKEN if platform == Platform.APNS else FCM_TOKEN,
        expires_at=NOW + expires_in,
        content=content,
        **fields,
    )


def apns_json(req: NotificationRequest, extra: Mapping[str, str] | None = None) -> Any:
    return json.loads(apns_payload(req, extra or {}))


# --- APNs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("custom", "extra"),
    [
        ({}, {RECEIPT_TOKEN_KEY: "abc_DEF-123"}),
        ({"order": "42", "é": '\u2028"\\'}, {RECEIPT_TOKEN_KEY: "abc", "z": "\x00 ü 🎉"}),
        ({RECEIPT_TOKEN_KEY: "spoof", "k": "v"}, {RECEIPT_TOKEN_KEY: "real"}),  # replaced in place
        ({"k": "v"}, {"aps": "not allowed", "k2": "v2"}),
        ({"k": "v"}, MappingProxyType({RECEIPT_TOKEN_KEY: "read-only", "k2": "ü"})),
    ],
)
def test_a_payload_with_extra_data_is_the_same_bytes_when_built_after_the_plain_one(
    custom: dict[str, str], extra: Mapping[str, str]
) -> None:
    """The dispatcher sizes a payload, then sends it with the receipt token: the second build
    reuses the first one's bytes, and must give exactly what a build from scratch gives."""
    for background in (False, True):
        req = make(
            custom=custom,
            **({"push_type": PushType.BACKGROUND, "priority": Priority.NORMAL} if background else
               {"title": "T", "body": "B", "badge": 0}),
        )  # fmt: skip
        from_scratch = apns_payload(req, extra)
        plain = apns_payload(req)
        assert apns_payload(req, extra) == from_scratch
        assert apns_payload(req, extra) == from_scratch  # again, still remembered
        assert apns_payload(replace(req), extra) == from_scratch  # an equal request, not the same
        assert json.loads(from_scratch) == {**json.loads(plain), **{
            k: v for k, v in extra.items() if k != "aps"
        }}  # fmt: skip


def test_apns_payload_carries_every_content_field_under_aps() -> None:
    req = make(
        title="Order",
        subtitle="#42",
        body="Shipped",
        badge=3,
        sound="default",
        category="ORDER",
        thread_id="orders",
        content_available=True,
        mutable_content=True,
        custom={"order": "42"},
    )
    assert apns_json(req) == {
        "aps": {
            "alert": {"title": "Order", "subtitle": "#42", "body": "Shipped"},
            "badge": 3,
            "sound": "default",
            "category": "ORDER",
            "thread-id": "orders",
            "content-available": 1,
            "mutable-content": 1,
        },
        "order": "42",
    }


def test_apns_payload_is_compact_utf8_json_without_escapes() -> None:
    assert apns_payload(make(title="Grüße 😀")) == '{"aps":{"alert":{"title":"Grüße 😀"}}}'.encode()


def test_apns_alert_has_only_the_keys_that_are_set() -> None:
    assert apns_json(make(body="b", title=""))["aps"] == {"alert": {"body": "b"}}
    assert apns_json(make(sound="ping")) == {"aps": {"sound": "ping"}}


def test_apns_badge_zero_is_sent_because_it_clears_the_badge() -> None:
    assert apns_json(make(badge=0))["aps"] == {"badge": 0}


def test_apns_background_push_has_only_content_available_but_keeps_custom_data() -> None:
    req = make(
        push_type=PushType.BACKGROUND,
        priority=Priority.NORMAL,
        title="ignored",
        badge=1,
        sound="x",
        custom={"sync": "1"},
    )
    assert apns_json(req) == {"aps": {"content-available": 1}, "sync": "1"}


def test_custom_data_never_replaces_aps_and_extra_custom_wins_over_custom_data() -> None:
    req = make(body="b", custom={"aps": "evil", RECEIPT_TOKEN_KEY: "forged", "k": "v"})
    body = apns_json(req, {RECEIPT_TOKEN_KEY: "real", "aps": "evil too"})
    assert body == {"aps": {"alert": {"body": "b"}}, RECEIPT_TOKEN_KEY: "real", "k": "v"}


# --- FCM --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "custom", [{}, {"order": "42", "é": '\u2028"\\ 🎉'}, {"k": "\x00"}], ids=["none", "text", "ctl"]
)
def test_fcm_request_body_is_the_compact_json_of_the_message(custom: dict[str, str]) -> None:
    for req in (
        make(Platform.FCM, custom=custom, title="T", body="ü"),
        make(Platform.FCM, custom=custom),
    ):
        extra = {RECEIPT_TOKEN_KEY: "abc_DEF-1"}
        expected = json.dumps(
            {"message": fcm_message(req, extra, now=NOW)}, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8")
        assert fcm_request_body(req, extra, now=NOW) == expected


def test_fcm_message_shape() -> None:
    req = make(
        Platform.FCM,
        title="Order",
        subtitle="not on android",
        body="Shipped",
        badge=2,
        sound="default",
        custom={"order": "42"},
    )
    assert fcm_message(req, {RECEIPT_TOKEN_KEY: "t"}, now=NOW) == {
        "token": FCM_TOKEN,
        "notification": {"title": "Order", "body": "Shipped"},
        "data": {"order": "42", RECEIPT_TOKEN_KEY: "t"},
        "android": {
            "priority": "HIGH",
            "ttl": "3600s",
            "notification": {"tag": NID, "sound": "default", "notification_count": 2},
        },
    }


def test_fcm_collapse_key_sets_collapse_key_and_tag() -> None:
    android = fcm_message(make(Platform.FCM, body="b", collapse_key="score"), now=NOW)["android"]
    assert android["collapse_key"] == "score"
    assert android["notification"]["tag"] == "score"


@pytest.mark.parametrize(
    ("priority", "expected"),
    [(Priority.HIGH, "HIGH"), (Priority.NORMAL, "NORMAL"), (Priority.LOW, "NORMAL")],
)
def test_fcm_priority(priority: Priority, expected: str) -> None:
    msg = fcm_message(make(Platform.FCM, body="b", priority=priority), now=NOW)
    assert msg["android"]["priority"] == expected


def test_fcm_background_is_data_only() -> None:
    req = make(Platform.FCM, push_type=PushType.BACKGROUND, title="t", custom={"sync": "1"})
    assert fcm_message(req, now=NOW) == {
        "token": FCM_TOKEN,
        "data": {"sync": "1"},
        "android": {"priority": "HIGH", "ttl": "3600s"},
    }


def test_fcm_without_data_has_no_data_map() -> None:
    assert "data" not in fcm_message(make(Platform.FCM, body="b"), now=NOW)


@pytest.mark.parametrize(
    ("expires_in", "ttl"),
    [
        (timedelta(seconds=3600.9), 3600),  # rounded down: never kept past expires_at
        (timedelta(seconds=FCM_MAX_TTL_SECONDS), FCM_MAX_TTL_SECONDS),
        (timedelta(days=28, seconds=1), FCM_MAX_TTL_SECONDS),
        (timedelta(days=365), FCM_MAX_TTL_SECONDS),
        (timedelta(seconds=0.5), 0),
        (timedelta(seconds=-30), 0),
    ],
)
def test_fcm_ttl_is_clamped_to_fcm_range(expires_in: timedelta, ttl: int) -> None:
    assert fcm_ttl_seconds(NOW + expires_in, NOW) == ttl
    msg = fcm_message(make(Platform.FCM, expires_in=expires_in), now=NOW)
    assert msg["android"]["ttl"] == f"{ttl}s"


def test_fcm_ttl_without_now_counts_from_the_clock() -> None:
    expires_at = datetime.now(UTC) + timedelta(seconds=100.5)
    assert fcm_ttl_seconds(expires_at) in (99, 100)  # 99 only if a second passed in between
    assert fcm_ttl_seconds(datetime.now(UTC) - timedelta(seconds=5)) == 0


def test_fcm_payload_size_counts_utf8_bytes_of_compact_json() -> None:
    msg = fcm_message(make(Platform.FCM, body="😀é"), now=NOW)
    expected = json.dumps(msg, separators=(",", ":"), ensure_ascii=False).encode()
    assert fcm_payload_size(msg) == len(expected)
    ascii_msg = fcm_message(make(Platform.FCM, body="ab"), now=NOW)
    assert fcm_payload_size(msg) - fcm_payload_size(ascii_msg) == (4 + 2) - 2


# --- limits and the receipt-token reserve -----------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "push_type", "limit"),
    [
        (Platform.APNS, PushType.ALERT, APNS_MAX_PAYLOAD),
        (Platform.APNS, PushType.BACKGROUND, APNS_MAX_PAYLOAD),
        (Platform.APNS, PushType.VOIP, APNS_MAX_VOIP_PAYLOAD),
        (Platform.FCM, PushType.ALERT, FCM_MAX_PAYLOAD),
    ],
)
def test_max_payload_bytes(platform: Platform, push_type: PushType, limit: int) -> None:
    assert max_payload_bytes(make(platform, push_type=push_type)) == limit


def test_limits_are_the_documented_provider_limits() -> None:
    assert (APNS_MAX_PAYLOAD, APNS_MAX_VOIP_PAYLOAD, FCM_MAX_PAYLOAD) == (4096, 5120, 4096)


@pytest.mark.parametrize("platform", [Platform.APNS, Platform.FCM])
@pytest.mark.parametrize("custom", [{}, {"k": "v"}])
def test_reserve_covers_the_longest_receipt_token(
    platform: Platform, custom: dict[str, str]
) -> None:
    req = make(platform, body="b", custom=custom)
    token = {RECEIPT_TOKEN_KEY: "A" * RECEIPT_TOKEN_MAX_CHARS}
    added = payload_size(req, token, now=NOW) - payload_size(req, now=NOW)
    assert 0 < added <= RECEIPT_TOKEN_RESERVE_BYTES


def with_payload_size(req: NotificationRequest, total: int) -> NotificationRequest:
    """``req`` with an ASCII body sized so that payload + reserve is exactly ``total`` bytes."""
    base = payload_size(make_body(req, "x"), now=NOW) - 1
    out = make_body(req, "x" * (total - RECEIPT_TOKEN_RESERVE_BYTES - base))
    assert payload_size(out, now=NOW) + RECEIPT_TOKEN_RESERVE_BYTES == total
    return out


def make_body(req: NotificationRequest, body: str) -> NotificationRequest:
    return replace(req, content=replace(req.content, body=body))


@pytest.mark.parametrize(
    ("platform", "push_type", "limit"),
    [
        (Platform.APNS, PushType.ALERT, 4096),
        (Platform.APNS, PushType.VOIP, 5120),
        (Platform.FCM, PushType.ALERT, 4096),
    ],
)
def test_payload_fits_exactly_at_the_limit_and_not_one_byte_over(
    platform: Platform, push_type: PushType, limit: int
) -> None:
    req = make(platform, push_type=push_type, title="t")
    assert payload_fits(with_payload_size(req, limit), now=NOW)
    assert not payload_fits(with_payload_size(req, limit + 1), now=NOW)


def test_voip_size_is_refused_for_alert_pushes() -> None:
    voip = with_payload_size(make(push_type=PushType.VOIP), 5120)
    assert payload_fits(voip)
    alert = make_body(make(), voip.content.body or "")
    assert not payload_fits(alert)


def test_size_counts_bytes_not_characters() -> None:
    # 1000 emoji are 1000 characters but 4000 bytes: with the reserve, over the 4096 limit.
    req = make(body="😀" * 1000)
    assert payload_size(req) == len(b'{"aps":{"alert":{"body":""}}}') + 4000
    assert not payload_fits(req)


# --- truncation -------------------------------------------------------------------------------


def budget(req: NotificationRequest) -> int:
    return max_payload_bytes(req) - RECEIPT_TOKEN_RESERVE_BYTES


def test_truncate_returns_the_request_itself_when_it_fits() -> None:
    req = make(body="short")
    assert truncate_alert(req, now=NOW) is req


@pytest.mark.parametrize("platform", [Platform.APNS, Platform.FCM])
def test_truncate_cuts_the_body_as_little_as_possible(platform: Platform) -> None:
    original = "word " * 2000
    req = make(platform, title="Title", body=original)
    out = truncate_alert(req, now=NOW)
    assert out is not None
    body = out.content.body or ""
    assert out.content.title == "Title"
    assert body.endswith(ELLIPSIS)
    assert original.startswith(body[: -len(ELLIPSIS)])
    # maximal: the next character would not fit (a space at the cut is trimmed, hence <= 1)
    assert 0 <= budget(req) - payload_size(out, now=NOW) <= 1


@pytest.mark.parametrize("char", ["é", "中", "😀"])
def test_truncate_cuts_multibyte_text_on_character_boundaries(char: str) -> None:
    original = ("a" + char) * 3000
    req = make(body=original)
    out = truncate_alert(req, now=NOW)
    assert out is not None
    payload = apns_payload(out)
    body = json.loads(payload.decode("utf-8", errors="strict"))["aps"]["alert"]["body"]
    assert body.endswith(ELLIPSIS)
    assert original.startswith(body[: -len(ELLIPSIS)])
    slack = budget(req) - len(payload)
    assert 0 <= slack < len(char.encode())  # the next character did not fit


def test_truncate_never_leaves_a_dangling_zero_width_joiner() -> None:
    coder = "👩\u200d💻"  # woman technologist: three code points joined by a ZWJ
    req = make(body=coder * 500)
    for limit in range(3000, 3030):  # every cut position inside the sequence
        out = truncate_alert(req, limit)
        assert out is not None
        body = out.content.body or ""
        assert not body[: -len(ELLIPSIS)].endswith("\u200d")
        assert len(apns_payload(out)) + RECEIPT_TOKEN_RESERVE_BYTES <= limit


def test_truncate_never_splits_a_flag() -> None:
    flag = "\U0001f1e9\U0001f1ea"  # DE: two regional indicators
    req = make(body=flag * 1000)
    for limit in range(3000, 3010):
        out = truncate_alert(req, limit)
        assert out is not None
        kept = (out.content.body or "")[: -len(ELLIPSIS)]
        assert len(kept) % 2 == 0
        assert kept == flag * (len(kept) // 2)


def test_truncate_shortens_the_title_when_the_body_is_not_enough() -> None:
    req = make(title="T" * 5000, body="Hello")
    out = truncate_alert(req, now=NOW)
    assert out is not None
    assert (out.content.title or "").endswith(ELLIPSIS)
    assert len(out.content.title or "") > 3000
    assert payload_size(out) <= budget(req)


def test_truncate_honours_an_explicit_limit() -> None:
    req = make(body="x" * 1000)
    out = truncate_alert(req, 600)
    assert out is not None
    assert len(apns_payload(out)) + RECEIPT_TOKEN_RESERVE_BYTES == 600


def test_truncate_gives_up_when_custom_data_alone_is_too_big() -> None:
    req = make(body="hello", custom={"blob": "x" * 4000})
    assert truncate_alert(req, now=NOW) is None


def test_truncate_gives_up_for_a_background_push_which_has_no_alert() -> None:
    req = make(push_type=PushType.BACKGROUND, custom={"blob": "x" * 4000})
    assert truncate_alert(req, now=NOW) is None
