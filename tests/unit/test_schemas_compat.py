"""Schema evolution of NotificationRequest, backward and forward, with fastavro schema resolution.

``schema_versions/notification_request.previous.avsc`` is a plausible earlier version (no send_at,
attempt, not_before or subtitle; no PUSHTOTALK push type) and ``...next.avsc`` a plausible later
one (optional image_url and interruption_level; a WIDGETS push type).
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro.read import SchemaResolutionError
from schema_samples import full_events

from schemas import NotificationRequest, Platform, PushType, load_schema

VERSIONS_DIR = Path(__file__).parent / "schema_versions"


def _schema(version: str) -> dict[str, Any]:
    if version == "current":
        return load_schema("notification_request")
    raw: dict[str, Any] = json.loads(
        (VERSIONS_DIR / f"notification_request.{version}.avsc").read_text()
    )
    return raw


def _write(version: str, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(_schema(version)), record, strict=True)
    return buf.getvalue()


def _read(data: bytes, writer: str, reader: str) -> dict[str, Any]:
    buf = io.BytesIO(data)
    record = fastavro.schemaless_reader(
        buf, fastavro.parse_schema(_schema(writer)), fastavro.parse_schema(_schema(reader))
    )
    assert isinstance(record, dict)
    assert buf.read() == b"", "reader left bytes behind"
    return record


def _full_request() -> NotificationRequest:
    req = full_events()[0]
    assert isinstance(req, NotificationRequest)
    return req


def _previous_record() -> dict[str, Any]:
    """What a producer on the previous version wrote."""
    record = _full_request().to_dict()
    for name in ("send_at", "attempt", "not_before"):
        del record[name]
    del record["content"]["subtitle"]
    record["push_type"] = "VOIP"
    return record


def _next_record() -> dict[str, Any]:
    """What a producer on the next version writes, using everything new."""
    record = _full_request().to_dict()
    record["content"]["image_url"] = "https://cdn.example.com/i.png"
    record["interruption_level"] = "time-sensitive"
    record["push_type"] = "WIDGETS"
    return record


def _fields(schema: dict[str, Any]) -> set[str]:
    return {f["name"] for f in schema["fields"]}


def test_versions_differ_as_described() -> None:
    """Guard: the version files really are older and newer, or the tests below prove nothing."""
    prev, cur, nxt = _schema("previous"), _schema("current"), _schema("next")
    assert _fields(cur) - _fields(prev) == {"send_at", "attempt", "not_before"}
    assert _fields(nxt) - _fields(cur) == {"interruption_level"}
    assert _fields(prev) < _fields(cur) < _fields(nxt)


# -- backward: a newer reader reads older data -------------------------------------------------


@pytest.mark.parametrize("reader", ["current", "next"])
def test_previous_data_is_readable_by_newer_readers(reader: str) -> None:
    record = _read(_write("previous", _previous_record()), "previous", reader)
    assert record["send_at"] is None
    assert record["attempt"] == 0
    assert record["not_before"] is None
    assert record["content"]["subtitle"] is None
    assert record["push_type"] == "VOIP"
    assert record["fallback"] == _previous_record()["fallback"]
    req = NotificationRequest.from_dict(record)
    expected = _full_request()
    assert req == dataclasses.replace(
        expected,
        content=dataclasses.replace(expected.content, subtitle=None),
        push_type=PushType.VOIP,
        send_at=None,
        attempt=0,
        not_before=None,
    )


def test_current_data_is_readable_by_next() -> None:
    record = _read(_write("current", _full_request().to_dict()), "current", "next")
    assert record["interruption_level"] is None
    assert record["content"]["image_url"] is None
    assert NotificationRequest.from_dict(record) == _full_request()


# -- forward: an older reader reads newer data -------------------------------------------------


def test_current_data_is_readable_by_previous() -> None:
    req = dataclasses.replace(_full_request(), push_type=PushType.PUSHTOTALK)
    record = _read(_write("current", req.to_dict()), "current", "previous")
    assert "send_at" not in record
    assert "subtitle" not in record["content"]
    # the symbol the old reader does not know resolves to the enum default
    assert record["push_type"] == "ALERT"
    assert record["notification_id"] == req.notification_id
    assert record["content"]["custom_data"] == dict(req.content.custom_data)


def test_next_data_is_readable_by_current() -> None:
    record = _read(_write("next", _next_record()), "next", "current")
    assert "interruption_level" not in record
    assert "image_url" not in record["content"]
    assert record["push_type"] == "ALERT"
    req = NotificationRequest.from_dict(record)
    assert req == dataclasses.replace(_full_request(), push_type=PushType.ALERT)


def test_next_data_is_readable_by_previous() -> None:
    record = _read(_write("next", _next_record()), "next", "previous")
    assert record["push_type"] == "ALERT"
    assert record["content"]["title"] == _full_request().content.title


# -- the checks above can fail ------------------------------------------------------------------


def test_a_required_field_without_default_breaks_backward_compatibility() -> None:
    broken = copy.deepcopy(_schema("current"))
    broken["fields"].append({"name": "tenant", "type": "string", "doc": "required: breaks"})
    parsed = fastavro.parse_schema(broken)
    data = _write("current", _full_request().to_dict())
    with pytest.raises(SchemaResolutionError, match="tenant"):
        fastavro.schemaless_reader(
            io.BytesIO(data), fastavro.parse_schema(_schema("current")), parsed
        )


def test_a_new_platform_is_not_readable_by_current() -> None:
    """Platform has no enum default on purpose (a dispatcher must not guess the provider): adding
    one is a breaking change, and an old reader fails instead of misrouting the push."""
    newer = copy.deepcopy(_schema("current"))
    platform = next(f for f in newer["fields"] if f["name"] == "platform")["type"]
    platform["symbols"].append("HMS")
    record = _full_request().to_dict()
    record["platform"] = "HMS"
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(newer), record)
    buf.seek(0)
    with pytest.raises(SchemaResolutionError, match="HMS"):
        fastavro.schemaless_reader(
            buf, fastavro.parse_schema(newer), fastavro.parse_schema(_schema("current"))
        )
    assert [p.value for p in Platform] == ["APNS", "FCM"]
