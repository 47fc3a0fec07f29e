"""The events on Pushline's topics, as frozen dataclasses mirroring ``schemas/avro/*.avsc``.

``to_dict()`` returns exactly the Avro record fastavro writes (enums as symbol strings, timestamps
as UTC datetimes) and ``from_dict()`` takes what fastavro reads back. Timestamps are normalised to
UTC with millisecond precision on construction, because that is all timestamp-millis keeps: an
event equals itself after a round trip.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Self

from schemas._convert import normalise, read_id, read_opt_time, read_time
from schemas._enums import (
    Channel,
    FallbackChannel,
    OutcomeState,
    Platform,
    Priority,
    PushType,
    ReceiptKind,
    StatusState,
    TokenVerdict,
)

__all__ = [
    "DeliveryReceipt",
    "DispatchOutcome",
    "Fallback",
    "FallbackRequest",
    "InvalidToken",
    "NotificationContent",
    "NotificationRequest",
    "NotificationStatus",
]


# What each event's __post_init__ normalises (see schemas._convert.normalise).
_Enums = tuple[tuple[str, type[Enum]], ...]
_FALLBACK_ENUMS: _Enums = (("channel", FallbackChannel),)
_FALLBACK_TIMES: tuple[str, ...] = ()
_NOTIFICATION_REQUEST_ENUMS: _Enums = (
    ("platform", Platform),
    ("push_type", PushType),
    ("priority", Priority),
)
_NOTIFICATION_REQUEST_TIMES: tuple[str, ...] = ("created_at", "expires_at", "send_at", "not_before")
_DISPATCH_OUTCOME_ENUMS: _Enums = (
    ("platform", Platform),
    ("state", OutcomeState),
    ("channel", Channel),
)
_DISPATCH_OUTCOME_TIMES: tuple[str, ...] = (
    "requested_at",
    "sent_at",
    "decided_at",
    "token_invalid_since",
)
_DELIVERY_RECEIPT_ENUMS: _Enums = (("kind", ReceiptKind), ("platform", Platform))
_DELIVERY_RECEIPT_TIMES: tuple[str, ...] = ("device_time", "received_at")
_NOTIFICATION_STATUS_ENUMS: _Enums = (("state", StatusState), ("platform", Platform))
_NOTIFICATION_STATUS_TIMES: tuple[str, ...] = ("occurred_at", "recorded_at")
_FALLBACK_REQUEST_ENUMS: _Enums = (("platform", Platform),)
_FALLBACK_REQUEST_TIMES: tuple[str, ...] = ("requested_at",)
_INVALID_TOKEN_ENUMS: _Enums = (("platform", Platform), ("verdict", TokenVerdict))
_INVALID_TOKEN_TIMES: tuple[str, ...] = ("invalid_since", "detected_at")


def _opt_fallback(value: Any) -> Fallback | None:
    return None if value is None else Fallback.from_dict(value)


def _opt_platform(value: Any) -> Platform | None:
    return None if value is None else Platform(value)


@dataclass(frozen=True, slots=True)
class Fallback:
    """A message to send through another channel when the push is not confirmed."""

    channel: FallbackChannel
    address: str
    text: str
    subject: str | None = None

    def __post_init__(self) -> None:
        normalise(self, _FALLBACK_ENUMS, _FALLBACK_TIMES)

    def to_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel.value,
            "address": self.address,
            "text": self.text,
            "subject": self.subject,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Self:
        return cls(
            channel=FallbackChannel(d["channel"]),
            address=d["address"],
            text=d["text"],
            subject=d.get("subject"),
        )


@dataclass(frozen=True, slots=True)
class NotificationContent:
    """What the device shows or receives. ``custom_data`` is stored as given: treat it as read-only."""

    title: str | None = None
    subtitle: str | None = None
    body: str | None = None
    badge: int | None = None
    sound: str | None = None
    category: str | None = None
    thread_id: str | None = None
    content_available: bool = False
    mutable_content: bool = False
    custom_data: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "subtitle": self.subtitle,
            "body": self.body,
            "badge": self.badge,
            "sound": self.sound,
            "category": self.category,
            "thread_id": self.thread_id,
            "content_available": self.content_available,
            "mutable_content": self.mutable_content,
            # a copy, so a writer (or a caller mutating the dict) never aliases the event's map
            "custom_data": dict(self.custom_data),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Self:
        return cls(
            title=d.get("title"),
            subtitle=d.get("subtitle"),
            body=d.get("body"),
            badge=d.get("badge"),
            sound=d.get("sound"),
            category=d.get("category"),
            thread_id=d.get("thread_id"),
            content_available=d.get("content_available", False),
            mutable_content=d.get("mutable_content", False),
            custom_data=dict(d.get("custom_data") or {}),
        )


@dataclass(frozen=True, slots=True)
class NotificationRequest:
    """A request to push one notification to one device (push.requests, push.retries)."""

    notification_id: str
    created_at: datetime
    app_id: str
    platform: Platform
    device_token: str
    expires_at: datetime
    content: NotificationContent = field(default_factory=NotificationContent)
    device_key: str | None = None
    user_id: str | None = None
    push_type: PushType = PushType.ALERT
    priority: Priority = Priority.HIGH
    collapse_key: str | None = None
    receipt_deadline_ms: int | None = None
    fallback: Fallback | None = None
    send_at: datetime | None = None
    attempt: int = 0
    not_before: datetime | None = None

    def __post_init__(self) -> None:
        normalise(self, _NOTIFICATION_REQUEST_ENUMS, _NOTIFICATION_REQUEST_TIMES)

    @property
    def key(self) -> str:
        """The Kafka key: the producer's device key, else the device token."""
        return self.device_key or self.device_token

    @property
    def collapse_id(self) -> str:
        """What a duplicate collapses on: the collapse key, else the notification id."""
        return self.collapse_key or self.notification_id

    def to_dict(self) -> dict[str, Any]:
        return {
            "notification_id": self.notification_id,
            "created_at": self.created_at,
            "app_id": self.app_id,
            "platform": self.platform.value,
            "device_token": self.device_token,
            "expires_at": self.expires_at,
            "content": self.content.to_dict(),
            "device_key": self.device_key,
            "user_id": self.user_id,
            "push_type": self.push_type.value,
            "priority": self.priority.value,
            "collapse_key": self.collapse_key,
            "receipt_deadline_ms": self.receipt_deadline_ms,
            "fallback": None if self.fallback is None else self.fallback.to_dict(),
            "send_at": self.send_at,
            "attempt": self.attempt,
            "not_before": self.not_before,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Self:
        return cls(
            notification_id=read_id("notification_id", d["notification_id"]),
            created_at=read_time(d["created_at"]),
            app_id=d["app_id"],
            platform=Platform(d["platform"]),
            device_token=d["device_token"],
            expires_at=read_time(d["expires_at"]),
            content=NotificationContent.from_dict(d.get("content") or {}),
            device_key=d.get("device_key"),
            user_id=d.get("user_id"),
            push_type=PushType(d.get("push_type", PushType.ALERT)),
            priority=Priority(d.get("priority", Priority.HIGH)),
            collapse_key=d.get("collapse_key"),
            receipt_deadline_ms=d.get("receipt_deadline_ms"),
            fallback=_opt_fallback(d.get("fallback")),
            send_at=read_opt_time(d.get("send_at")),
            attempt=d.get("attempt", 0),
            not_before=read_opt_time(d.get("not_before")),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DispatchOutcome:
    """What happened to one send attempt (push.outcomes). Carries the request's receipt deadline
    and fallback, so the reconciler needs no join with push.requests."""

    notification_id: str
    device_key: str
    device_token: str
    platform: Platform
    app_id: str
    user_id: str | None = None
    state: OutcomeState
    provider_status: int | None = None
    reason: str | None = None
    provider_message_id: str | None = None
    attempt: int = 0
    latency_ms: float | None = None
    requested_at: datetime
    sent_at: datetime | None = None
    decided_at: datetime
    token_invalid_since: datetime | None = None
    receipt_deadline_ms: int | None = None
    fallback: Fallback | None = None
    channel: Channel = Channel.PUSH
    collapse_id: str | None = None

    def __post_init__(self) -> None:
        normalise(self, _DISPATCH_OUTCOME_ENUMS, _DISPATCH_OUTCOME_TIMES)

    def to_dict(self) -> dict[str, Any]:
        return {
            "notification_id": self.notification_id,
            "device_key": self.device_key,
            "device_token": self.device_token,
            "platform": self.platform.value,
            "app_id": self.app_id,
            "user_id": self.user_id,
            "state": self.state.value,
            "provider_status": self.provider_status,
            "reason": self.reason,
            "provider_message_id": self.provider_message_id,
            "attempt": self.attempt,
            "latency_ms": self.latency_ms,
            "requested_at": self.requested_at,
            "sent_at": self.sent_at,
            "decided_at": self.decided_at,
            "token_invalid_since": self.token_invalid_since,
            "receipt_deadline_ms": self.receipt_deadline_ms,
            "fallback": None if self.fallback is None else self.fallback.to_dict(),
            "channel": self.channel.value,
            "collapse_id": self.collapse_id,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Self:
        return cls(
            notification_id=read_id("notification_id", d["notification_id"]),
            device_key=d["device_key"],
            device_token=d["device_token"],
            platform=Platform(d["platform"]),
            app_id=d["app_id"],
            user_id=d.get("user_id"),
            state=OutcomeState(d["state"]),
            provider_status=d.get("provider_status"),
            reason=d.get("reason"),
            provider_message_id=d.get("provider_message_id"),
            attempt=d.get("attempt", 0),
            latency_ms=d.get("latency_ms"),
            requested_at=read_time(d["requested_at"]),
            sent_at=read_opt_time(d.get("sent_at")),
            decided_at=read_time(d["decided_at"]),
            token_invalid_since=read_opt_time(d.get("token_invalid_since")),
            receipt_deadline_ms=d.get("receipt_deadline_ms"),
            fallback=_opt_fallback(d.get("fallback")),
            channel=Channel(d.get("channel", Channel.PUSH)),
            collapse_id=d.get("collapse_id"),
        )


_new_object = object.__new__
_set_slot = object.__setattr__


def unchecked_dispatch_outcome(
    *,
    notification_id: str,
    device_key: str,
    device_token: str,
    platform: Platform,
    app_id: str,
    user_id: str | None,
    state: OutcomeState,
    provider_status: int | None,
    reason: str | None,
    provider_message_id: str | None,
    attempt: int,
    latency_ms: float | None,
    requested_at: datetime,
    sent_at: datetime | None,
    decided_at: datetime,
    token_invalid_since: datetime | None,
    receipt_deadline_ms: int | None,
    fallback: Fallback | None,
    collapse_id: str | None,
    channel: Channel = Channel.PUSH,
) -> DispatchOutcome:
    """A DispatchOutcome built without ``__post_init__``: for the dispatcher's hot path, whose
    values are normalised already (enum members; UTC datetimes in whole milliseconds, as decoded
    from Avro or made by :func:`schemas._convert.utc_now_millis`). Equal to ``DispatchOutcome(...)``
    with the same values, at a third of the cost (the unit tests compare the two on every field).
    A caller with values from elsewhere uses the checked constructor."""
    o = _new_object(DispatchOutcome)
    _set_slot(o, "notification_id", notification_id)
    _set_slot(o, "device_key", device_key)
    _set_slot(o, "device_token", device_token)
    _set_slot(o, "platform", platform)
    _set_slot(o, "app_id", app_id)
    _set_slot(o, "user_id", user_id)
    _set_slot(o, "state", state)
    _set_slot(o, "provider_status", provider_status)
    _set_slot(o, "reason", reason)
    _set_slot(o, "provider_message_id", provider_message_id)
    _set_slot(o, "attempt", attempt)
    _set_slot(o, "latency_ms", latency_ms)
    _set_slot(o, "requested_at", requested_at)
    _set_slot(o, "sent_at", sent_at)
    _set_slot(o, "decided_at", decided_at)
    _set_slot(o, "token_invalid_since", token_invalid_since)
    _set_slot(o, "receipt_deadline_ms", receipt_deadline_ms)
    _set_slot(o, "fallback", fallback)
    _set_slot(o, "channel", channel)
    _set_slot(o, "collapse_id", collapse_id)
    return o


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryReceipt:
    """A device confirmed it received or opened a notification (push.receipts)."""

    notification_id: str
    device_key: str
    kind: ReceiptKind
    device_time: datetime | None = None
    received_at: datetime
    app_version: str | None = None
    os_version: str | None = None
    platform: Platform | None = None

    def __post_init__(self) -> None:
        normalise(self, _DELIVERY_RECEIPT_ENUMS, _DELIVERY_RECEIPT_TIMES)

    def to_dict(self) -> dict[str, Any]:
        return {
            "notification_id": self.notification_id,
            "device_key": self.device_key,
            "kind": self.kind.value,
            "device_time": self.device_time,
            "received_at": self.received_at,
            "app_version": self.app_version,
            "os_version": self.os_version,
            "platform": None if self.platform is None else self.platform.value,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Self:
        return cls(
            notification_id=read_id("notification_id", d["notification_id"]),
            device_key=d["device_key"],
            kind=ReceiptKind(d["kind"]),
            device_time=read_opt_time(d.get("device_time")),
            received_at=read_time(d["received_at"]),
            app_version=d.get("app_version"),
            os_version=d.get("os_version"),
            platform=_opt_platform(d.get("platform")),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class NotificationStatus:
    """A state change of a notification, as the reconciler sees it (push.status)."""

    notification_id: str
    device_key: str
    state: StatusState
    reason: str | None = None
    occurred_at: datetime
    recorded_at: datetime
    platform: Platform
    app_id: str
    user_id: str | None = None
    final: bool

    def __post_init__(self) -> None:
        normalise(self, _NOTIFICATION_STATUS_ENUMS, _NOTIFICATION_STATUS_TIMES)

    def to_dict(self) -> dict[str, Any]:
        return {
            "notification_id": self.notification_id,
            "device_key": self.device_key,
            "state": self.state.value,
            "reason": self.reason,
            "occurred_at": self.occurred_at,
            "recorded_at": self.recorded_at,
            "platform": self.platform.value,
            "app_id": self.app_id,
            "user_id": self.user_id,
            "final": self.final,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Self:
        return cls(
            notification_id=read_id("notification_id", d["notification_id"]),
            device_key=d["device_key"],
            state=StatusState(d["state"]),
            reason=d.get("reason"),
            occurred_at=read_time(d["occurred_at"]),
            recorded_at=read_time(d["recorded_at"]),
            platform=Platform(d["platform"]),
            app_id=d["app_id"],
            user_id=d.get("user_id"),
            final=d["final"],
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class FallbackRequest:
    """Ask the fallback sender to send a notification's fallback (push.fallbacks)."""

    notification_id: str
    device_key: str
    app_id: str
    user_id: str | None = None
    fallback: Fallback
    reason: str
    requested_at: datetime
    platform: Platform

    def __post_init__(self) -> None:
        normalise(self, _FALLBACK_REQUEST_ENUMS, _FALLBACK_REQUEST_TIMES)

    def to_dict(self) -> dict[str, Any]:
        return {
            "notification_id": self.notification_id,
            "device_key": self.device_key,
            "app_id": self.app_id,
            "user_id": self.user_id,
            "fallback": self.fallback.to_dict(),
            "reason": self.reason,
            "requested_at": self.requested_at,
            "platform": self.platform.value,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Self:
        return cls(
            notification_id=read_id("notification_id", d["notification_id"]),
            device_key=d["device_key"],
            app_id=d["app_id"],
            user_id=d.get("user_id"),
            fallback=Fallback.from_dict(d["fallback"]),
            reason=d["reason"],
            requested_at=read_time(d["requested_at"]),
            platform=Platform(d["platform"]),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class InvalidToken:
    """A device token a provider refused, for the apps' token stores (push.invalid-tokens)."""

    device_token: str
    device_key: str
    app_id: str
    platform: Platform
    verdict: TokenVerdict
    reason: str
    invalid_since: datetime | None = None
    notification_id: str
    detected_at: datetime
    provider_status: int | None = None

    def __post_init__(self) -> None:
        normalise(self, _INVALID_TOKEN_ENUMS, _INVALID_TOKEN_TIMES)

    def to_dict(self) -> dict[str, Any]:
        return {
            "device_token": self.device_token,
            "device_key": self.device_key,
            "app_id": self.app_id,
            "platform": self.platform.value,
            "verdict": self.verdict.value,
            "reason": self.reason,
            "invalid_since": self.invalid_since,
            "notification_id": self.notification_id,
            "detected_at": self.detected_at,
            "provider_status": self.provider_status,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Self:
        return cls(
            device_token=d["device_token"],
            device_key=d["device_key"],
            app_id=d["app_id"],
            platform=Platform(d["platform"]),
            verdict=TokenVerdict(d["verdict"]),
            reason=d["reason"],
            invalid_since=read_opt_time(d.get("invalid_since")),
            notification_id=read_id("notification_id", d["notification_id"]),
            detected_at=read_time(d["detected_at"]),
            provider_status=d.get("provider_status"),
        )
