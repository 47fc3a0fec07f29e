"""Sample events for the schema tests: every field set, and only the required ones."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from schemas import (
    Channel,
    DeliveryReceipt,
    DispatchOutcome,
    Fallback,
    FallbackChannel,
    FallbackRequest,
    InvalidToken,
    NotificationContent,
    NotificationRequest,
    NotificationStatus,
    OutcomeState,
    Platform,
    Priority,
    PushType,
    ReceiptKind,
    StatusState,
    TokenVerdict,
)

NID = "0b8f6a52-7c0e-4c55-9a39-3f1e1f7c2d11"
TOKEN = "a" * 64
T0 = datetime(2025, 3, 4, 5, 6, 7, 123000, tzinfo=UTC)
T1 = datetime(2025, 3, 4, 5, 6, 8, 456000, tzinfo=UTC)
T2 = datetime(2025, 3, 5, 5, 6, 7, 789000, tzinfo=UTC)

FALLBACK = Fallback(
    channel=FallbackChannel.SMS, address="+4915112345678", text="Your code: 1234", subject="Code"
)


def full_events() -> list[Any]:
    """One event of every class with every optional field set (and non-default values)."""
    return [
        NotificationRequest(
            notification_id=NID,
            created_at=T0,
            app_id="shop",
            platform=Platform.APNS,
            device_token=TOKEN,
            expires_at=T2,
            content=NotificationContent(
                title="Title ✓",
                subtitle="Sub",
                body="Body",
                badge=7,
                sound="ping.caf",
                category="ORDER",
                thread_id="orders",
                content_available=True,
                mutable_content=True,
                custom_data={"order": "1234", "ünï": "cødé"},
            ),
            device_key="device-1",
            user_id="user-1",
            push_type=PushType.LIVEACTIVITY,
            priority=Priority.LOW,
            collapse_key="order-1234",
            receipt_deadline_ms=60_000,
            fallback=FALLBACK,
            send_at=T1,
            attempt=3,
            not_before=T1,
        ),
        DispatchOutcome(
            notification_id=NID,
            device_key="device-1",
            device_token=TOKEN,
            platform=Platform.APNS,
            app_id="shop",
            user_id="user-1",
            state=OutcomeState.INVALID_TOKEN,
            provider_status=410,
            reason="Unregistered",
            provider_message_id="5e1f8a0c-0000-4000-8000-000000000001",
            attempt=2,
            latency_ms=12.5,
            requested_at=T0,
            sent_at=T1,
            decided_at=T1,
            token_invalid_since=T0,
            receipt_deadline_ms=60_000,
            fallback=FALLBACK,
            channel=Channel.SMS,
            collapse_id="order-1234",
        ),
        DeliveryReceipt(
            notification_id=NID,
            device_key="device-1",
            kind=ReceiptKind.OPENED,
            device_time=T0,
            received_at=T1,
            app_version="5.2.1",
            os_version="iOS 18.2",
            platform=Platform.APNS,
        ),
        NotificationStatus(
            notification_id=NID,
            device_key="device-1",
            state=StatusState.FALLBACK_SENT,
            reason="receipt deadline missed",
            occurred_at=T1,
            recorded_at=T2,
            platform=Platform.FCM,
            app_id="shop",
            user_id="user-1",
            final=True,
        ),
        FallbackRequest(
            notification_id=NID,
            device_key="device-1",
            app_id="shop",
            user_id="user-1",
            fallback=FALLBACK,
            reason="receipt deadline missed",
            requested_at=T1,
            platform=Platform.FCM,
        ),
        InvalidToken(
            device_token=TOKEN,
            device_key="device-1",
            app_id="shop",
            platform=Platform.APNS,
            verdict=TokenVerdict.DEAD,
            reason="Unregistered",
            invalid_since=T0,
            notification_id=NID,
            detected_at=T1,
            provider_status=410,
        ),
    ]


def minimal_events() -> list[Any]:
    """One event of every class with only the required fields."""
    return [
        NotificationRequest(NID, T0, "shop", Platform.FCM, "fcm-token:APA91b", T2),
        DispatchOutcome(
            notification_id=NID,
            device_key="fcm-token:APA91b",
            device_token="fcm-token:APA91b",
            platform=Platform.FCM,
            app_id="shop",
            state=OutcomeState.ACCEPTED,
            requested_at=T0,
            decided_at=T1,
        ),
        DeliveryReceipt(
            notification_id=NID, device_key="d", kind=ReceiptKind.DELIVERED, received_at=T1
        ),
        NotificationStatus(
            notification_id=NID,
            device_key="d",
            state=StatusState.ACCEPTED,
            occurred_at=T0,
            recorded_at=T1,
            platform=Platform.APNS,
            app_id="shop",
            final=False,
        ),
        FallbackRequest(
            notification_id=NID,
            device_key="d",
            app_id="shop",
            fallback=Fallback(channel=FallbackChannel.EMAIL, address="u@example.com", text="hi"),
            reason="FAILED",
            requested_at=T1,
            platform=Platform.APNS,
        ),
        InvalidToken(
            device_token=TOKEN,
            device_key="d",
            app_id="shop",
            platform=Platform.FCM,
            verdict=TokenVerdict.SUSPECT,
            reason="INVALID_ARGUMENT",
            notification_id=NID,
            detected_at=T1,
        ),
    ]
