"""The enums of the event model. Values are the Avro enum symbols, so ``Enum(symbol)`` decodes one.

There is no UNKNOWN member: symbols a reader does not know are resolved by the Avro enum ``default``
in the schema (see the ``doc`` of each enum in ``schemas/avro``), so Python only ever sees its own.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "Channel",
    "FallbackChannel",
    "OutcomeState",
    "Platform",
    "Priority",
    "PushType",
    "ReceiptKind",
    "StatusState",
    "TokenVerdict",
]


class Platform(StrEnum):
    """Push provider a device token belongs to."""

    APNS = "APNS"
    FCM = "FCM"


class PushType(StrEnum):
    """APNs push type; the value is the upper-cased ``apns-push-type`` header value."""

    ALERT = "ALERT"
    BACKGROUND = "BACKGROUND"
    VOIP = "VOIP"
    LOCATION = "LOCATION"
    COMPLICATION = "COMPLICATION"
    FILEPROVIDER = "FILEPROVIDER"
    MDM = "MDM"
    LIVEACTIVITY = "LIVEACTIVITY"
    PUSHTOTALK = "PUSHTOTALK"

    @property
    def apns_header(self) -> str:
        """The ``apns-push-type`` header value (``alert``, ``liveactivity``, ...)."""
        return self.value.lower()


class Priority(StrEnum):
    """Delivery priority."""

    HIGH = "HIGH"
    NORMAL = "NORMAL"
    LOW = "LOW"

    @property
    def apns_value(self) -> int:
        """The ``apns-priority`` header value: 10 (immediately), 5 (power-aware) or 1 (lowest)."""
        return _APNS_PRIORITY[self]

    @property
    def fcm_value(self) -> str:
        """FCM ``android.priority``: FCM has only HIGH and NORMAL, so LOW maps to NORMAL."""
        return "HIGH" if self is Priority.HIGH else "NORMAL"


_APNS_PRIORITY = {Priority.HIGH: 10, Priority.NORMAL: 5, Priority.LOW: 1}


class FallbackChannel(StrEnum):
    """Channel a fallback message goes out on."""

    EMAIL = "EMAIL"
    SMS = "SMS"


class Channel(StrEnum):
    """Channel a DispatchOutcome describes: the push itself or a fallback message."""

    PUSH = "PUSH"
    EMAIL = "EMAIL"
    SMS = "SMS"


class OutcomeState(StrEnum):
    """Result of one send attempt."""

    ACCEPTED = "ACCEPTED"
    INVALID_TOKEN = "INVALID_TOKEN"  # noqa: S105 - a state name, not a secret
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    FAILED = "FAILED"
    RETRY_SCHEDULED = "RETRY_SCHEDULED"
    DUPLICATE = "DUPLICATE"

    @property
    def terminal(self) -> bool:
        """True when no further attempt follows (everything but RETRY_SCHEDULED)."""
        return self is not OutcomeState.RETRY_SCHEDULED


class ReceiptKind(StrEnum):
    """What a device receipt reports."""

    DELIVERED = "DELIVERED"
    OPENED = "OPENED"


class StatusState(StrEnum):
    """State of a notification as the reconciler sees it."""

    ACCEPTED = "ACCEPTED"
    DELIVERED = "DELIVERED"
    OPENED = "OPENED"
    SUSPECTED_LOST = "SUSPECTED_LOST"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"
    INVALID_TOKEN = "INVALID_TOKEN"  # noqa: S105 - a state name, not a secret
    REJECTED = "REJECTED"
    FALLBACK_SENT = "FALLBACK_SENT"
    FALLBACK_FAILED = "FALLBACK_FAILED"


class TokenVerdict(StrEnum):
    """How sure the pipeline is that a device token is dead."""

    DEAD = "DEAD"
    SUSPECT = "SUSPECT"
