"""The .avsc files: documented, conventional, self-contained, and compatible with their history."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import pytest
from schema_samples import full_events, minimal_events

import schemas
from pushline.errors import CodecError
from schemas import EVENT_SCHEMAS, SCHEMA_NAMES, load_schema, schema_str

AVRO_DIR = Path(schemas.__file__).parent / "avro"
HISTORY_DIR = AVRO_DIR / "history"
NAMED = ("record", "enum", "fixed")


def _named_types(node: Any) -> Iterator[dict[str, Any]]:
    """Every named type defined inline anywhere in a schema."""
    if isinstance(node, dict):
        if node.get("type") in NAMED:
            yield node
        for value in node.values():
            yield from _named_types(value)
    elif isinstance(node, list):
        for value in node:
            yield from _named_types(value)


def _records(schema: Any) -> list[dict[str, Any]]:
    return [t for t in _named_types(schema) if t["type"] == "record"]


def _history() -> list[tuple[str, Path]]:
    return [
        (name, path)
        for name in SCHEMA_NAMES
        for path in sorted(HISTORY_DIR.glob(f"{name}.v*.avsc"))
    ]


def test_one_file_per_event() -> None:
    assert sorted(p.stem for p in AVRO_DIR.glob("*.avsc")) == sorted(SCHEMA_NAMES)
    assert {load_schema(n)["name"] for n in SCHEMA_NAMES} == {c.__name__ for c in EVENT_SCHEMAS}


def test_unknown_schema_name_is_a_codec_error() -> None:
    with pytest.raises(CodecError, match="known: notification_request"):
        load_schema("../pyproject")


def test_schema_str_is_the_file_as_compact_json() -> None:
    for name in SCHEMA_NAMES:
        text = schema_str(name)
        assert json.loads(text) == json.loads((AVRO_DIR / f"{name}.avsc").read_text())
        assert "\n" not in text


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_every_record_field_and_enum_has_a_doc(name: str) -> None:
    schema = load_schema(name)
    missing = []
    for named in _named_types(schema):
        if not str(named.get("doc", "")).strip():
            missing.append(named["name"])
        for field in named.get("fields", []):
            if not str(field.get("doc", "")).strip():
                missing.append(f"{named['name']}.{field['name']}")
    assert missing == []
    assert len(_records(schema)) >= 1


def test_doc_check_sees_nested_records() -> None:
    """The walk above must reach records nested in unions, or the doc test proves little."""
    names = {r["name"] for r in _records(load_schema("notification_request"))}
    assert names == {"NotificationRequest", "NotificationContent", "Fallback"}


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_conventions(name: str) -> None:
    schema = load_schema(name)
    assert schema["namespace"] == "pushline.events"
    for record in _records(schema):
        for field in record["fields"]:
            assert re.fullmatch(r"[a-z][a-z0-9_]*", field["name"]), field["name"]
            ftype = field["type"]
            if isinstance(ftype, list):  # every union is an optional: ["null", T], default null
                assert len(ftype) == 2, field["name"]
                assert ftype[0] == "null", field["name"]
                assert "default" in field, field["name"]
                assert field["default"] is None, field["name"]
            if field["name"].endswith(("_at", "_since", "_time")):
                inner = ftype[1] if isinstance(ftype, list) else ftype
                assert inner == {"type": "long", "logicalType": "timestamp-millis"}, field["name"]
    for enum in (t for t in _named_types(schema) if t["type"] == "enum"):
        if "default" in enum:
            assert enum["default"] in enum["symbols"]


def test_shared_named_types_are_identical_in_every_file() -> None:
    """Platform, Fallback, FallbackChannel are defined inline in several files: one definition."""
    seen: dict[str, tuple[str, dict[str, Any]]] = {}
    for name in SCHEMA_NAMES:
        for named in _named_types(load_schema(name)):
            if named["name"] in seen:
                first_file, first = seen[named["name"]]
                assert named == first, f"{named['name']} differs in {name} and {first_file}"
            else:
                seen[named["name"]] = (name, named)
    assert "Platform" in seen
    assert "Fallback" in seen


def test_current_schema_is_recorded_in_history() -> None:
    """Every change to a schema adds history/<name>.v<N>.avsc; the newest is the current one."""
    for name in SCHEMA_NAMES:
        versions = sorted(
            HISTORY_DIR.glob(f"{name}.v*.avsc"), key=lambda p: int(p.stem.rsplit(".v", 1)[1])
        )
        assert versions, f"no history for {name}"
        assert json.loads(versions[-1].read_text()) == load_schema(name), versions[-1].name


def _write(schema: Any, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, record)
    return buf.getvalue()


def _read(data: bytes, writer: Any, reader: Any) -> dict[str, Any]:
    buf = io.BytesIO(data)
    record = fastavro.schemaless_reader(buf, writer, reader)
    assert isinstance(record, dict)
    assert buf.read() == b""
    return record


@pytest.mark.parametrize(("name", "path"), _history(), ids=lambda v: getattr(v, "name", v))
def test_history_version_and_current_read_each_other(name: str, path: Path) -> None:
    """Backward (current reads old data) and forward (old reads current data) on sample events."""
    current = fastavro.parse_schema(load_schema(name))
    old = fastavro.parse_schema(json.loads(path.read_text()))
    samples = [e for e in full_events() + minimal_events() if EVENT_SCHEMAS[type(e)] == name]
    assert samples
    for event in samples:
        record = event.to_dict()
        # forward: an old reader reads what the current writer writes
        as_old = _read(_write(current, record), current, old)
        # backward: the current reader reads what the old writer writes (the old view of it)
        as_current = _read(_write(old, as_old), old, current)
        for key, value in as_current.items():
            if key in as_old:
                assert value == as_old[key], key
        type(event).from_dict(as_current)
