"""validate_request: each rule refuses what the provider or fallback sender would refuse, and no more."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from producers._validation import (
    normalise_device_token,
    validate_request,
)
from pushline.errors import ValidationError
from schemas import (
    Fallback,
    FallbackChannel,
    NotificationContent,
    NotificationRequest,
    Platform,
    Priority,
    PushType,
)
from schemas._ids import is_canonical_uuid
from schemas.payloads import (
    ELLIPSIS,
    RECEIPT_TOKEN_KEY,
    RECEIPT_TOKEN_RESERVE_BYTES,
    max_payload_bytes,
    payload_size,
)

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
NID = "1b4e28ba-2fa1-41d2-883f-0016d3cca427"
APNS_TOKEN = "0123456789abcdef" * 4
FCM_TOKEN = "dY3kQ:APA91b" + "Xy_-9" * 30


def make(platform: Platform = Platform.APNS, **fields: Any) -> NotificationRequest:
    values: dict[str, Any] = {
        "notification_id": NID,
        "created_at": NOW,
        "app_id": "shop",
        "platform": platform,
        "device_token": APNS_TOKEN if platform == Platform.APNS else FCM_TOKEN,
        "expires_at": NOW + timedelta(hours=1),
        "content": NotificationContent(title="Hi", body="Your order shipped"),
    }
    values.update(fields)
    return NotificationRequest(**values)


def content(**fields: Any) -> NotificationContent:
    return NotificationContent(**fields)


def refused(req: NotificationRequest, field: str, *, truncate: bool = False) -> str:
    """Validate ``req``, expect a refusal naming ``field``; returns the message."""
    with pytest.raises(ValidationError) as info:
        validate_request(req, now=NOW, truncate=truncate)
    assert info.value.field == field
    return info.value.message


def accepted(req: NotificationRequest, *, truncate: bool = False) -> NotificationRequest:
    return validate_request(req, now=NOW, truncate=truncate)


@pytest.mark.parametrize("platform", [Platform.APNS, Platform.FCM])
def test_a_valid_request_is_returned_unchanged(platform: Platform) -> None:
    req = make(platform)
    assert accepted(req) is req


def test_default_now_is_the_current_time() -> None:
    req = make(expires_at=datetime.now(UTC) + timedelta(minutes=1))
    assert validate_request(req) is req
    with pytest.raises(ValidationError):
        validate_request(make(expires_at=datetime.now(UTC) - timedelta(seconds=1)))


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        validate_request(make(), now=datetime(2030, 1, 1))


# --- identity ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "nid",
    [
        NID.upper(),
        NID.replace("-", ""),
        "{" + NID + "}",
        "urn:uuid:" + NID,
        "not-a-uuid",
        "",
    ],
)
def test_notification_id_must_be_a_canonical_lower_case_uuid(nid: str) -> None:
    assert "canonical lower-case UUID" in refused(make(notification_id=nid), "notification_id")


def test_the_canonical_uuid_memo_never_lets_another_string_through() -> None:
    # the check remembers the last canonical string: a different one must still be asked about
    canonical = str(uuid.uuid4())
    assert is_canonical_uuid(canonical)
    assert is_canonical_uuid(canonical)  # the remembered one
    assert not is_canonical_uuid(canonical.upper())
    assert not is_canonical_uuid(canonical + "\n")
    assert is_canonical_uuid("".join(canonical))  # an equal string, another object
    assert is_canonical_uuid(canonical)


@pytest.mark.parametrize("app_id", ["", "shop app", "shop/app", "-shop", "a" * 129, "café"])
def test_app_id_charset_and_length(app_id: str) -> None:
    refused(make(app_id=app_id), "app_id")


@pytest.mark.parametrize("app_id", ["a", "com.example.shop", "shop_v2-beta", "a" * 128])
def test_app_id_accepted(app_id: str) -> None:
    accepted(make(app_id=app_id))


# --- device tokens ----------------------------------------------------------------------------


@pytest.mark.parametrize("token", [APNS_TOKEN[:-1], APNS_TOKEN + "0", "g" + APNS_TOKEN[1:], ""])
def test_apns_token_must_be_64_hex_characters(token: str) -> None:
    assert "64 hexadecimal" in refused(make(device_token=token), "device_token")


def test_apns_token_is_normalised_to_lower_case() -> None:
    out = accepted(make(device_token=APNS_TOKEN.upper()))
    assert out.device_token == APNS_TOKEN
    assert out.key == APNS_TOKEN  # the Kafka key, so the partition, does not depend on case


@pytest.mark.parametrize("length", [31, 1025])
def test_fcm_token_length_bounds(length: int) -> None:
    refused(make(Platform.FCM, device_token="a" * length), "device_token")


@pytest.mark.parametrize("length", [32, 500])
def test_fcm_token_lengths_accepted(length: int) -> None:
    accepted(make(Platform.FCM, device_token="a" * length))


def test_longest_fcm_token_is_accepted_when_the_payload_fits() -> None:
    req = make(Platform.FCM, device_token="a" * 1024)
    assert accepted(req) is req


@pytest.mark.parametrize("bad", ["/", "+", "=", " ", ".", "é"])
def test_fcm_token_charset(bad: str) -> None:
    token = FCM_TOKEN[:50] + bad + FCM_TOKEN[50:]
    assert "letters, digits" in refused(make(Platform.FCM, device_token=token), "device_token")


def test_fcm_token_case_is_kept() -> None:
    token = "AbC:" + "dEf_-" * 10
    assert accepted(make(Platform.FCM, device_token=token)).device_token == token


def test_tokens_are_checked_against_their_own_platform() -> None:
    refused(make(Platform.APNS, device_token=FCM_TOKEN), "device_token")
    assert normalise_device_token(Platform.FCM, APNS_TOKEN) == APNS_TOKEN  # hex is a valid charset


# --- times ------------------------------------------------------------------------------------


@pytest.mark.parametrize("delta", [timedelta(0), timedelta(seconds=-1), timedelta(days=-3)])
def test_expires_at_must_be_in_the_future(delta: timedelta) -> None:
    assert "not in the future" in refused(make(expires_at=NOW + delta), "expires_at")


@pytest.mark.parametrize("platform", [Platform.APNS, Platform.FCM])
def test_expiry_beyond_fcm_maximum_ttl_is_accepted(platform: Platform) -> None:
    accepted(make(platform, expires_at=NOW + timedelta(days=60)))


def test_expires_at_in_another_timezone_is_compared_as_an_instant() -> None:
    plus_two = timezone(timedelta(hours=2))
    # 13:30+02:00 is 11:30 UTC: already past NOW (12:00 UTC) although the wall clock is later.
    refused(make(expires_at=datetime(2030, 1, 1, 13, 30, tzinfo=plus_two)), "expires_at")


def test_expiry_check_can_be_skipped_but_nothing_else() -> None:
    expired = make(expires_at=NOW - timedelta(seconds=1))
    assert validate_request(expired, now=NOW, check_expiry=False) == expired
    with pytest.raises(ValidationError) as info:
        validate_request(replace(expired, app_id=""), now=NOW, check_expiry=False)
    assert info.value.field == "app_id"


def test_send_at_must_be_before_expires_at() -> None:
    expires = NOW + timedelta(hours=1)
    refused(make(expires_at=expires, send_at=expires), "send_at")
    refused(make(expires_at=expires, send_at=expires + timedelta(seconds=1)), "send_at")
    accepted(make(expires_at=expires, send_at=expires - timedelta(seconds=1)))


@pytest.mark.parametrize("ms", [0, -1])
def test_receipt_deadline_must_be_positive(ms: int) -> None:
    refused(make(receipt_deadline_ms=ms), "receipt_deadline_ms")


def test_receipt_deadline_accepted() -> None:
    accepted(make(receipt_deadline_ms=1))


def test_attempt_must_not_be_negative() -> None:
    refused(make(attempt=-1), "attempt")


# --- APNs rules -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "ok"),
    [("k" * 64, True), ("k" * 65, False), ("é" * 32, True), ("é" * 33, False)],
)
def test_apns_collapse_id_is_at_most_64_bytes(key: str, ok: bool) -> None:
    req = make(collapse_key=key)
    if ok:
        accepted(req)
    else:
        assert "bytes" in refused(req, "collapse_key")


def test_fcm_collapse_key_has_no_64_byte_limit() -> None:
    accepted(make(Platform.FCM, collapse_key="k" * 100))


def test_apns_background_push_must_not_have_high_priority() -> None:
    bg = content(custom_data={"sync": "1"})
    assert "BACKGROUND" in refused(
        make(push_type=PushType.BACKGROUND, priority=Priority.HIGH, content=bg), "priority"
    )
    for priority in (Priority.NORMAL, Priority.LOW):
        accepted(make(push_type=PushType.BACKGROUND, priority=priority, content=bg))


def test_fcm_background_push_may_have_high_priority() -> None:
    bg = content(custom_data={"sync": "1"})
    accepted(make(Platform.FCM, push_type=PushType.BACKGROUND, priority=Priority.HIGH, content=bg))


@pytest.mark.parametrize(
    "fields", [{"title": "t"}, {"subtitle": "s"}, {"body": "b"}, {"sound": "x"}, {"badge": 0}]
)
@pytest.mark.parametrize("platform", [Platform.APNS, Platform.FCM])
def test_background_push_cannot_show_anything(platform: Platform, fields: dict[str, Any]) -> None:
    req = make(
        platform, push_type=PushType.BACKGROUND, priority=Priority.NORMAL, content=content(**fields)
    )
    assert next(iter(fields)) in refused(req, "content")


@pytest.mark.parametrize("push_type", [PushType.VOIP, PushType.LIVEACTIVITY, PushType.LOCATION])
def test_apns_only_push_types_are_refused_for_fcm(push_type: PushType) -> None:
    refused(make(Platform.FCM, push_type=push_type), "push_type")
    accepted(make(Platform.APNS, push_type=push_type))


def test_badge_must_not_be_negative() -> None:
    refused(make(content=content(badge=-1)), "content.badge")
    accepted(make(content=content(badge=0)))


def test_aps_custom_key_is_refused_for_apns_only() -> None:
    refused(make(content=content(custom_data={"aps": "x"})), "content.custom_data['aps']")
    accepted(make(Platform.FCM, content=content(custom_data={"aps": "x"})))


@pytest.mark.parametrize("platform", [Platform.APNS, Platform.FCM])
def test_receipt_token_key_is_reserved(platform: Platform) -> None:
    req = make(platform, content=content(custom_data={RECEIPT_TOKEN_KEY: "forged"}))
    assert "receipt token" in refused(req, f"content.custom_data[{RECEIPT_TOKEN_KEY!r}]")


@pytest.mark.parametrize("key", ["from", "message_type", "google.c.a.e", "gcm.n.e", "googleId"])
def test_fcm_reserved_data_keys(key: str) -> None:
    refused(
        make(Platform.FCM, content=content(custom_data={key: "v"})), f"content.custom_data[{key!r}]"
    )
    accepted(make(Platform.APNS, content=content(custom_data={key: "v"})))


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"body": "broken \ud83d"}, "content.body"),
        ({"title": "\udc00"}, "content.title"),
        ({"custom_data": {"k": "\ud800"}}, "content.custom_data['k']"),
        ({"custom_data": {"\ud800": "v"}}, "content.custom_data['\\ud800']"),
    ],
)
def test_text_must_be_encodable_as_utf8(fields: dict[str, Any], field: str) -> None:
    assert "Unicode" in refused(make(content=content(**fields)), field)


@pytest.mark.parametrize(
    ("fallback", "field"),
    [
        (lambda: sms(text="broken \ud83d"), "fallback.text"),
        (lambda: email(subject="broken \udc00"), "fallback.subject"),
    ],
)
def test_fallback_text_must_be_encodable_as_utf8(fallback: Any, field: str) -> None:
    assert "Unicode" in refused(make(fallback=fallback()), field)


# --- fallback ---------------------------------------------------------------------------------


def email(address: str = "ana@example.com", **fields: Any) -> Fallback:
    return Fallback(**{"channel": FallbackChannel.EMAIL, "address": address, "text": "t", **fields})


def sms(address: str = "+4915112345678", **fields: Any) -> Fallback:
    return Fallback(**{"channel": FallbackChannel.SMS, "address": address, "text": "t", **fields})


@pytest.mark.parametrize(
    "address",
    [
        "ana@example.com",
        "ana.maria+push@mail.example.co.uk",
        "o'brien@example.ie",
        "x@a-b.io",
        "a" * 64 + "@example.com",
    ],
)
def test_plausible_email_addresses(address: str) -> None:
    accepted(make(fallback=email(address, subject="Your order")))


@pytest.mark.parametrize(
    "address",
    [
        "",
        "ana",
        "ana@",
        "@example.com",
        "ana@localhost",
        "ana example@example.com",
        "ana..maria@example.com",
        ".ana@example.com",
        "ana@-example.com",
        "ana@example-.com",
        "ana@exa_mple.com",
        "ana@example.com\r\nBcc: x@y.z",
        "a" * 65 + "@example.com",
        "ana@" + ("a" * 61 + ".") * 4 + "com",  # 255 characters
        "anä@example.com",
    ],
)
def test_implausible_email_addresses(address: str) -> None:
    refused(make(fallback=email(address)), "fallback.address")


@pytest.mark.parametrize("subject", ["line\nbreak", "line\rbreak"])
def test_email_subject_is_one_line(subject: str) -> None:
    refused(make(fallback=email(subject=subject)), "fallback.subject")


@pytest.mark.parametrize("number", ["+12025550123", "+12345678", "+123456789012345"])
def test_e164_numbers(number: str) -> None:
    accepted(make(fallback=sms(number)))


@pytest.mark.parametrize(
    "number",
    [
        "12025550123",  # no +
        "+1234567",  # 7 digits
        "+1234567890123456",  # 16 digits
        "+0123456789",  # country codes never start with 0
        "+1 202 555 0123",
        "+1-202-555-0123",
        "+1" + "".join(map(chr, range(0x662, 0x66A))),  # Arabic-Indic digits: \d, not E.164
        "ana@example.com",
    ],
)
def test_non_e164_numbers(number: str) -> None:
    assert "E.164" in refused(make(fallback=sms(number)), "fallback.address")


def test_sms_fallback_has_no_subject() -> None:
    refused(make(fallback=sms(subject="Hi")), "fallback.subject")


@pytest.mark.parametrize("text", ["", "   \n"])
@pytest.mark.parametrize("fallback", [email, sms])
def test_fallback_text_must_not_be_empty(text: str, fallback: Any) -> None:
    refused(make(fallback=fallback(text=text)), "fallback.text")


# --- payload size -----------------------------------------------------------------------------


def sized(req: NotificationRequest, total: int) -> NotificationRequest:
    """``req`` with an ASCII body so that payload + receipt-token reserve is ``total`` bytes."""
    one = replace(req, content=replace(req.content, body="x"))
    n = total - RECEIPT_TOKEN_RESERVE_BYTES - (payload_size(one, now=NOW) - 1)
    out = replace(req, content=replace(req.content, body="x" * n))
    assert payload_size(out, now=NOW) + RECEIPT_TOKEN_RESERVE_BYTES == total
    return out


@pytest.mark.parametrize(
    ("platform", "push_type", "limit"),
    [
        (Platform.APNS, PushType.ALERT, 4096),
        (Platform.APNS, PushType.VOIP, 5120),
        (Platform.FCM, PushType.ALERT, 4096),
    ],
)
def test_size_limit_boundary(platform: Platform, push_type: PushType, limit: int) -> None:
    req = make(platform, push_type=push_type)
    at_limit = sized(req, limit)
    assert accepted(at_limit) is at_limit
    message = refused(sized(req, limit + 1), "content")
    assert f"{limit + 1} bytes" in message
    assert f"maximum is {limit} bytes" in message
    assert f"{RECEIPT_TOKEN_RESERVE_BYTES} reserved" in message


def test_size_counts_utf8_bytes_not_characters() -> None:
    # 1000 characters, 4000 bytes: under 4096 characters but over 4096 bytes with the reserve
    refused(make(content=content(body="😀" * 1000)), "content")
    accepted(make(content=content(body="a" * 1000)))


def test_the_receipt_token_reserve_is_counted() -> None:
    # 4096 bytes fit APNs on their own, but not once the dispatcher adds the receipt token
    req = sized(make(), 4096 + RECEIPT_TOKEN_RESERVE_BYTES)
    assert payload_size(req) == 4096
    refused(req, "content")


@pytest.mark.parametrize("platform", [Platform.APNS, Platform.FCM])
def test_truncate_shortens_an_oversized_alert_to_fit(platform: Platform) -> None:
    req = make(platform, content=content(title="Hi", body="Grüße 😀 " * 600))
    refused(req, "content")
    out = accepted(req, truncate=True)
    assert (out.content.body or "").endswith(ELLIPSIS)
    assert payload_size(out, now=NOW) + RECEIPT_TOKEN_RESERVE_BYTES <= max_payload_bytes(out)
    assert accepted(out) is out  # the result is itself valid


def test_truncate_also_normalises_the_token() -> None:
    req = make(device_token=APNS_TOKEN.upper(), content=content(body="x" * 5000))
    out = accepted(req, truncate=True)
    assert out.device_token == APNS_TOKEN
    assert (out.content.body or "").endswith(ELLIPSIS)


def test_truncate_cannot_save_oversized_custom_data() -> None:
    req = make(content=content(body="hi", custom_data={"blob": "x" * 4000}))
    assert "custom_data" in refused(req, "content", truncate=True)


def test_rules_are_checked_before_truncation() -> None:
    req = make(notification_id="nope", content=content(body="x" * 5000))
    refused(req, "notification_id", truncate=True)
