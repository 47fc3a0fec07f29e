"""The reason table: every provider reason is a constant with the right status and action."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from dispatcher._results import (
    RULES,
    Action,
    ApnsReason,
    FcmErrorCode,
    PushlineReason,
    SendResult,
    classify,
    parse_retry_after,
)
from pushline.emulators.apns import APNS_REASONS
from pushline.emulators.fcm import FCM_ERRORS
from schemas import Platform

# Written out from PROVIDERS.md independently of the table under test.
EXPECTED_APNS: dict[str, tuple[int, Action]] = {
    "BadCollapseId": (400, Action.REJECT),
    "BadDeviceToken": (400, Action.SUSPECT_TOKEN),
    "BadExpirationDate": (400, Action.REJECT),
    "BadMessageId": (400, Action.REJECT),
    "BadPriority": (400, Action.REJECT),
    "BadTopic": (400, Action.REJECT),
    "DeviceTokenNotForTopic": (400, Action.SUSPECT_TOKEN),
    "DuplicateHeaders": (400, Action.REJECT),
    "IdleTimeout": (400, Action.REJECT),
    "InvalidPushType": (400, Action.REJECT),
    "MissingDeviceToken": (400, Action.REJECT),
    "MissingTopic": (400, Action.REJECT),
    "PayloadEmpty": (400, Action.REJECT),
    "TopicDisallowed": (400, Action.REJECT),
    "BadCertificate": (403, Action.CONFIG_ALERT),
    "BadCertificateEnvironment": (403, Action.CONFIG_ALERT),
    "ExpiredProviderToken": (403, Action.REFRESH_AUTH),
    "Forbidden": (403, Action.CONFIG_ALERT),
    "InvalidProviderToken": (403, Action.CONFIG_ALERT),
    "MissingProviderToken": (403, Action.CONFIG_ALERT),
    "BadPath": (404, Action.REJECT),
    "MethodNotAllowed": (405, Action.REJECT),
    "ExpiredToken": (410, Action.INVALID_TOKEN),
    "Unregistered": (410, Action.INVALID_TOKEN),
    "PayloadTooLarge": (413, Action.REJECT),
    "TooManyProviderTokenUpdates": (429, Action.RETRY),
    "TooManyRequests": (429, Action.RETRY),
    "InternalServerError": (500, Action.RETRY),
    "ServiceUnavailable": (503, Action.RETRY),
    "Shutdown": (503, Action.RETRY),
}

EXPECTED_FCM: dict[str, tuple[int, Action]] = {
    "INVALID_ARGUMENT": (400, Action.REJECT),
    "THIRD_PARTY_AUTH_ERROR": (401, Action.CONFIG_ALERT),
    "SENDER_ID_MISMATCH": (403, Action.INVALID_TOKEN),
    "UNREGISTERED": (404, Action.INVALID_TOKEN),
    "QUOTA_EXCEEDED": (429, Action.RETRY),
    "INTERNAL": (500, Action.RETRY),
    "UNAVAILABLE": (503, Action.RETRY),
    "UNAUTHENTICATED": (401, Action.REFRESH_AUTH),
    "PERMISSION_DENIED": (403, Action.CONFIG_ALERT),
    "NOT_FOUND": (404, Action.REJECT),
}


def test_every_apns_reason_is_a_constant_with_its_status_and_action() -> None:
    assert {r.value for r in ApnsReason} == set(EXPECTED_APNS)
    for reason in ApnsReason:
        status, action = EXPECTED_APNS[reason.value]
        assert reason.status == status, reason
        assert classify(Platform.APNS, status, reason.value) is action, reason


def test_apns_constants_agree_with_the_emulator() -> None:
    assert {r.value: r.status for r in ApnsReason} == APNS_REASONS


def test_every_fcm_error_code_is_a_constant_with_its_status_and_action() -> None:
    assert {c.value for c in FcmErrorCode} == set(EXPECTED_FCM)
    for code in FcmErrorCode:
        status, action = EXPECTED_FCM[code.value]
        assert code.status == status, code
        assert classify(Platform.FCM, status, code.value) is action, code
    for name, (status, _, _) in FCM_ERRORS.items():
        assert FcmErrorCode(name).status == status


def test_a_token_field_violation_makes_invalid_argument_a_suspect_token() -> None:
    assert classify(Platform.FCM, 400, "INVALID_ARGUMENT", "message.token") is Action.SUSPECT_TOKEN
    assert classify(Platform.FCM, 400, "INVALID_ARGUMENT", "message.data") is Action.REJECT


def test_pushline_reasons_need_no_status() -> None:
    expected = {
        PushlineReason.UNKNOWN_APP: Action.CONFIG_ALERT,
        PushlineReason.TIMEOUT: Action.RETRY,
        PushlineReason.CONNECTION_ERROR: Action.RETRY,
        PushlineReason.TLS_ERROR: Action.RETRY,
        PushlineReason.PROTOCOL_ERROR: Action.RETRY,
        PushlineReason.AUTH_FAILED: Action.CONFIG_ALERT,
        PushlineReason.AUTH_UNAVAILABLE: Action.RETRY,
    }
    assert set(expected) == set(PushlineReason)
    for platform in Platform:
        for reason, action in expected.items():
            assert classify(platform, None, reason) is action


def test_the_table_has_one_row_per_key_and_no_stray_platform() -> None:
    keys = [(r.platform, r.reason, r.field) for r in RULES]
    assert len(keys) == len(set(keys))
    for rule in RULES:
        if rule.platform is Platform.APNS:
            assert rule.reason in EXPECTED_APNS
        elif rule.platform is Platform.FCM:
            assert rule.reason in EXPECTED_FCM
        else:
            assert rule.reason in set(PushlineReason)


def test_reasons_do_not_leak_across_platforms() -> None:
    # "UNREGISTERED" is FCM's; on APNs the status decides
    assert classify(Platform.APNS, 400, "UNREGISTERED") is Action.REJECT


@pytest.mark.parametrize(
    ("status", "action"),
    [
        (200, Action.ACCEPTED),
        (400, Action.REJECT),
        (401, Action.CONFIG_ALERT),
        (403, Action.CONFIG_ALERT),
        (404, Action.REJECT),
        (410, Action.INVALID_TOKEN),
        (413, Action.REJECT),
        (429, Action.RETRY),
        (500, Action.RETRY),
        (502, Action.RETRY),
        (503, Action.RETRY),
    ],
)
def test_unknown_reasons_fall_back_on_the_status(status: int, action: Action) -> None:
    for platform in Platform:
        assert classify(platform, status, "SomethingNew") is action
        assert classify(platform, status, None) is action


def test_no_answer_at_all_is_a_retry() -> None:
    assert classify(Platform.APNS, None, None) is Action.RETRY


def test_retry_after_seconds_and_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after(" 2.5 ", now) == 2.5
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(later, now) == 90.0
    earlier = format_datetime(now - timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(earlier, now) == 0.0
    assert parse_retry_after("-3", now) == 0.0
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("nan", now) is None


def test_send_result_is_frozen() -> None:
    result = SendResult(platform=Platform.APNS, action=Action.ACCEPTED, status=200)
    assert result.accepted
    with pytest.raises(AttributeError):
        result.action = Action.RETRY  # type: ignore[misc]
