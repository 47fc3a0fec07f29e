"""The event dataclasses: dict and Avro round trips, normalisation, helpers."""

from __future__ import annotations

import dataclasses
import inspect
import io
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import fastavro
import pytest
from schema_samples import NID, T0, T2, TOKEN, full_events, minimal_events

from pushline.errors import ValidationError
from schemas import (
    EVENT_SCHEMAS,
    Channel,
    DispatchOutcome,
    FallbackChannel,
    NotificationContent,
    NotificationRequest,
    OutcomeState,
    Platform,
    Priority,
    PushType,
    ReceiptKind,
    StatusState,
    TokenVerdict,
    load_schema,
)
from schemas._convert import utc_now_millis
from schemas._events import unchecked_dispatch_outcome

ALL = full_events() + minimal_events()


def _id(event: object) -> str:
    full = event in full_events()
    return f"{type(event).__name__}-{'full' if full else 'minimal'}"


def _avro_roundtrip(event: Any) -> dict[str, Any]:
    schema = fastavro.parse_schema(load_schema(EVENT_SCHEMAS[type(event)]))
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, event.to_dict(), strict=True)
    buf.seek(0)
    record = fastavro.schemaless_reader(buf, schema, schema)
    assert isinstance(record, dict)
    assert buf.read() == b"", "reader left bytes behind"
    return record


def test_samples_cover_every_event_class() -> None:
    assert {type(e) for e in full_events()} == set(EVENT_SCHEMAS)
    assert {type(e) for e in minimal_events()} == set(EVENT_SCHEMAS)


@pytest.mark.parametrize("event", ALL, ids=_id)
def test_dict_roundtrip(event: Any) -> None:
    assert type(event).from_dict(event.to_dict()) == event


@pytest.mark.parametrize("event", ALL, ids=_id)
def test_avro_roundtrip(event: Any) -> None:
    record = _avro_roundtrip(event)
    assert record == event.to_dict()
    assert type(event).from_dict(record) == event


@pytest.mark.parametrize("event", ALL, ids=_id)
def test_to_dict_has_exactly_the_schema_fields(event: Any) -> None:
    schema = load_schema(EVENT_SCHEMAS[type(event)])
    assert list(event.to_dict()) == [f["name"] for f in schema["fields"]]


@pytest.mark.parametrize("event", full_events(), ids=_id)
def test_full_samples_set_every_optional_field(event: Any) -> None:
    """Otherwise the 'full' round trip would not prove the optional fields survive."""
    unset = [k for k, v in event.to_dict().items() if v is None]
    assert unset == []


def test_to_dict_writes_plain_symbols_and_nested_dicts() -> None:
    d = full_events()[0].to_dict()
    assert type(d["platform"]) is str
    assert d["platform"] == "APNS"
    assert d["push_type"] == "LIVEACTIVITY"
    assert d["content"]["custom_data"] == {"order": "1234", "ünï": "cødé"}
    assert d["fallback"] == {
        "channel": "SMS",
        "address": "+4915112345678",
        "text": "Your code: 1234",
        "subject": "Code",
    }


def test_to_dict_copies_custom_data() -> None:
    data = {"a": "1"}
    content = NotificationContent(custom_data=data)
    out = content.to_dict()
    out["custom_data"]["b"] = "2"
    assert content.custom_data == {"a": "1"}
    assert data == {"a": "1"}


def test_timestamps_are_utc_with_millisecond_precision() -> None:
    cest = timezone(timedelta(hours=2))
    req = NotificationRequest(
        NID,
        datetime(2025, 6, 1, 14, 0, 0, 123456, tzinfo=cest),
        "shop",
        Platform.APNS,
        TOKEN,
        T2,
        send_at=datetime(2025, 6, 1, 12, 0, 0, 999999, tzinfo=UTC),
    )
    assert req.created_at == datetime(2025, 6, 1, 12, 0, 0, 123000, tzinfo=UTC)
    assert req.created_at.tzinfo is UTC
    assert req.send_at == datetime(2025, 6, 1, 12, 0, 0, 999000, tzinfo=UTC)
    # so the event survives the wire unchanged
    assert NotificationRequest.from_dict(_avro_roundtrip(req)) == req


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValidationError) as info:
        NotificationRequest(NID, datetime(2025, 1, 1), "shop", Platform.APNS, TOKEN, T2)
    assert info.value.field == "created_at"


def test_non_datetime_timestamp_is_refused() -> None:
    with pytest.raises(ValidationError) as info:
        DispatchOutcome(
            notification_id=NID,
            device_key="d",
            device_token=TOKEN,
            platform=Platform.APNS,
            app_id="shop",
            state=OutcomeState.ACCEPTED,
            requested_at=T0,
            decided_at="2025-01-01T00:00:00Z",  # type: ignore[arg-type]
        )
    assert info.value.field == "decided_at"


def test_enum_fields_accept_symbol_strings() -> None:
    req = NotificationRequest(NID, T0, "shop", "FCM", TOKEN, T2, priority="NORMAL")  # type: ignore[arg-type]
    assert req.platform is Platform.FCM
    assert req.priority is Priority.NORMAL
    with pytest.raises(ValidationError) as info:
        NotificationRequest(NID, T0, "shop", "HMS", TOKEN, T2)  # type: ignore[arg-type]
    assert info.value.field == "platform"
    assert "APNS, FCM" in info.value.message


def test_from_dict_accepts_epoch_millis_and_uuid_objects() -> None:
    d = minimal_events()[0].to_dict()
    d["created_at"] = int(T0.timestamp() * 1000)
    d["notification_id"] = uuid.UUID(NID)
    req = NotificationRequest.from_dict(d)
    assert req.created_at == T0
    assert req.notification_id == NID


def test_from_dict_fills_defaults_for_absent_optional_fields() -> None:
    req = NotificationRequest.from_dict(
        {
            "notification_id": NID,
            "created_at": T0,
            "app_id": "shop",
            "platform": "APNS",
            "device_token": TOKEN,
            "expires_at": T2,
        }
    )
    assert req == NotificationRequest(NID, T0, "shop", Platform.APNS, TOKEN, T2)


def test_key_and_collapse_id() -> None:
    req = NotificationRequest(NID, T0, "shop", Platform.APNS, TOKEN, T2)
    assert req.key == TOKEN
    assert req.collapse_id == NID
    keyed = dataclasses.replace(req, device_key="device-1", collapse_key="c-1")
    assert keyed.key == "device-1"
    assert keyed.collapse_id == "c-1"


def test_events_are_frozen() -> None:
    req = full_events()[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.app_id = "other"


def test_push_type_apns_header() -> None:
    assert PushType.ALERT.apns_header == "alert"
    assert PushType.LIVEACTIVITY.apns_header == "liveactivity"
    assert PushType.PUSHTOTALK.apns_header == "pushtotalk"
    assert {p.apns_header for p in PushType} == {
        "alert", "background", "voip", "location", "complication", "fileprovider", "mdm",
        "liveactivity", "pushtotalk",
    }  # fmt: skip


def test_priority_provider_values() -> None:
    assert [p.apns_value for p in (Priority.HIGH, Priority.NORMAL, Priority.LOW)] == [10, 5, 1]
    assert [p.fcm_value for p in (Priority.HIGH, Priority.NORMAL, Priority.LOW)] == [
        "HIGH",
        "NORMAL",
        "NORMAL",
    ]


def test_outcome_terminal() -> None:
    assert not OutcomeState.RETRY_SCHEDULED.terminal
    assert all(s.terminal for s in OutcomeState if s is not OutcomeState.RETRY_SCHEDULED)


def test_enums_match_schema_symbols() -> None:
    """Python members and Avro symbols are the same list, in the same order."""
    enums = {
        e.__name__: e
        for e in (
            Platform,
            PushType,
            Priority,
            FallbackChannel,
            OutcomeState,
            Channel,
            ReceiptKind,
            StatusState,
            TokenVerdict,
        )
    }
    found: dict[str, list[str]] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "enum":
                found[node["name"]] = node["symbols"]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for name in EVENT_SCHEMAS.values():
        walk(load_schema(name))
    assert set(found) == set(enums)
    for name, symbols in found.items():
        assert [m.value for m in enums[name]] == symbols, name


@pytest.mark.parametrize(
    "outcome", [e for e in ALL if isinstance(e, DispatchOutcome)], ids=lambda e: _id(e)
)
def test_unchecked_dispatch_outcome_equals_the_checked_constructor(outcome: Any) -> None:
    fields = {f.name: getattr(outcome, f.name) for f in dataclasses.fields(DispatchOutcome)}
    # every field is a parameter, so a field added to the event cannot be forgotten here
    assert set(inspect.signature(unchecked_dispatch_outcome).parameters) == set(fields)
    built = unchecked_dispatch_outcome(**fields)
    assert built == outcome
    assert {n: getattr(built, n) for n in fields} == fields
    assert unchecked_dispatch_outcome(**fields) == DispatchOutcome(**fields)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.state = OutcomeState.FAILED  # type: ignore[misc]


def test_utc_now_millis_is_normalised_and_current() -> None:
    before = datetime.now(UTC) - timedelta(milliseconds=1)
    now = utc_now_millis()
    assert now.tzinfo is UTC and now.microsecond % 1000 == 0
    assert before <= now <= datetime.now(UTC)
