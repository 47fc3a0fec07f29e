"""Pushline's event model and its Avro codec.

Events are frozen dataclasses mirroring ``schemas/avro/*.avsc`` (each with ``to_dict`` /
``from_dict``); :class:`EventSerializer` / :class:`EventDeserializer` put them on Kafka in the
Confluent wire format; :class:`FastEventSerializer` / :class:`FastEventDeserializer` do exactly the
same several times faster, for hot paths. Schema changes must stay backward and forward compatible
with every file in ``schemas/avro/history`` (the unit tests check).
"""

from schemas._codec import (
    EVENT_SCHEMAS,
    SCHEMA_NAMES,
    Event,
    EventDeserializer,
    EventSerializer,
    is_poison,
    load_schema,
    make_registry_client,
    schema_id_of,
    schema_str,
)
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
from schemas._events import (
    DeliveryReceipt,
    DispatchOutcome,
    Fallback,
    FallbackRequest,
    InvalidToken,
    NotificationContent,
    NotificationRequest,
    NotificationStatus,
)
from schemas._fastcodec import FastEventDeserializer, FastEventSerializer
from schemas.receipt_token import (
    DeviceKeyRequired,
    ExpiredReceiptToken,
    ForgedReceiptToken,
    MalformedReceiptToken,
    ReceiptClaims,
    ReceiptTokenConfig,
    ReceiptTokenError,
    ReceiptTokenSigner,
)

__all__ = [
    "EVENT_SCHEMAS",
    "SCHEMA_NAMES",
    "Channel",
    "DeliveryReceipt",
    "DeviceKeyRequired",
    "DispatchOutcome",
    "Event",
    "EventDeserializer",
    "EventSerializer",
    "ExpiredReceiptToken",
    "Fallback",
    "FallbackChannel",
    "FallbackRequest",
    "FastEventDeserializer",
    "FastEventSerializer",
    "ForgedReceiptToken",
    "InvalidToken",
    "MalformedReceiptToken",
    "NotificationContent",
    "NotificationRequest",
    "NotificationStatus",
    "OutcomeState",
    "Platform",
    "Priority",
    "PushType",
    "ReceiptClaims",
    "ReceiptKind",
    "ReceiptTokenConfig",
    "ReceiptTokenError",
    "ReceiptTokenSigner",
    "StatusState",
    "TokenVerdict",
    "is_poison",
    "load_schema",
    "make_registry_client",
    "schema_id_of",
    "schema_str",
]
