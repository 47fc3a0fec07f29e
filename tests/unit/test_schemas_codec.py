"""The codec against confluent's in-memory registry (``mock://``): wire format, round trips,
schema evolution through the registry, and every failure mapped to CodecError."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import struct
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from schema_samples import full_events, minimal_events

from pushline.config import SchemaRegistryConfig
from pushline.errors import CodecError, ConfigError, SchemaRegistryError
from schemas import (
    EVENT_SCHEMAS,
    DispatchOutcome,
    EventDeserializer,
    EventSerializer,
    NotificationRequest,
    PushType,
    is_poison,
    make_registry_client,
    schema_id_of,
    schema_str,
)

TOPIC = "push.requests"
CTX = SerializationContext(TOPIC, MessageField.VALUE)
VERSIONS_DIR = Path(__file__).parent / "schema_versions"


@pytest.fixture
def registry() -> SchemaRegistryClient:
    """A fresh in-memory registry per test (mock clients do not share state)."""
    return make_registry_client(SchemaRegistryConfig(url="mock://schemas-unit"))


def _ctx(event: Any) -> SerializationContext:
    return SerializationContext(f"push.{EVENT_SCHEMAS[type(event)]}", MessageField.VALUE)


def _request() -> NotificationRequest:
    req = full_events()[0]
    assert isinstance(req, NotificationRequest)
    return req


def test_mock_url_gives_an_in_memory_client(registry: SchemaRegistryClient) -> None:
    assert registry.get_subjects() == []


def test_bad_registry_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="ftp://registry"):
        make_registry_client(SchemaRegistryConfig(url="ftp://registry"))


@pytest.mark.parametrize("event", full_events() + minimal_events(), ids=lambda e: type(e).__name__)
def test_roundtrip_through_the_registry(registry: SchemaRegistryClient, event: Any) -> None:
    cls = type(event)
    data = EventSerializer(cls, registry)(event, _ctx(event))
    assert EventDeserializer(cls, registry)(data, _ctx(event)) == event


def test_confluent_wire_format(registry: SchemaRegistryClient) -> None:
    data = EventSerializer(NotificationRequest, registry)(_request(), CTX)
    registered = registry.get_latest_version(f"{TOPIC}-value")  # TopicNameStrategy
    assert data[0] == 0
    (schema_id,) = struct.unpack(">I", data[1:5])
    assert schema_id == registered.schema_id
    assert schema_id_of(data) == schema_id
    assert registered.schema.schema_str is not None
    assert json.loads(registered.schema.schema_str) == json.loads(
        schema_str("notification_request")
    )
    assert registry.get_subjects() == [f"{TOPIC}-value"]


def test_each_topic_gets_its_own_subject(registry: SchemaRegistryClient) -> None:
    ser = EventSerializer(NotificationRequest, registry)
    ser(_request(), SerializationContext("a.push.requests", MessageField.VALUE))
    ser(_request(), SerializationContext("b.push.requests", MessageField.VALUE))
    assert sorted(registry.get_subjects()) == ["a.push.requests-value", "b.push.requests-value"]


def test_without_auto_register_an_unregistered_subject_is_a_registry_error(
    registry: SchemaRegistryClient,
) -> None:
    ser = EventSerializer(NotificationRequest, registry, auto_register=False)
    with pytest.raises(SchemaRegistryError) as info:
        ser(_request(), CTX)
    assert info.value.http_status == 404
    assert "push.requests" in str(info.value)
    assert not is_poison(info.value)  # a deployment problem, not this message's
    # registered out of band (as CI does), the same serializer class then works
    registry.register_schema(f"{TOPIC}-value", Schema(schema_str("notification_request"), "AVRO"))
    data = EventSerializer(NotificationRequest, registry, auto_register=False)(_request(), CTX)
    assert EventDeserializer(NotificationRequest, registry)(data, CTX) == _request()


def test_reads_data_written_with_an_older_registered_schema(
    registry: SchemaRegistryClient,
) -> None:
    """An old producer registered the previous version; today's deserializer resolves it."""
    previous = (VERSIONS_DIR / "notification_request.previous.avsc").read_text()
    old_producer = AvroSerializer(registry, previous, conf={"auto.register.schemas": True})
    record = _request().to_dict()
    for name in ("send_at", "attempt", "not_before"):
        del record[name]
    del record["content"]["subtitle"]
    data = old_producer(record, CTX)
    new_data = EventSerializer(NotificationRequest, registry)(_request(), CTX)
    assert schema_id_of(data) != schema_id_of(new_data)

    got = EventDeserializer(NotificationRequest, registry)(data, CTX)
    assert got.notification_id == _request().notification_id
    assert got.fallback == _request().fallback
    assert (got.send_at, got.attempt, got.not_before, got.content.subtitle) == (None, 0, None, None)


def test_reads_data_written_with_a_newer_registered_schema(
    registry: SchemaRegistryClient,
) -> None:
    newer = (VERSIONS_DIR / "notification_request.next.avsc").read_text()
    new_producer = AvroSerializer(registry, newer, conf={"auto.register.schemas": True})
    record = _request().to_dict()
    record["push_type"] = "WIDGETS"
    record["interruption_level"] = "passive"
    got = EventDeserializer(NotificationRequest, registry)(new_producer(record, CTX), CTX)
    assert got.push_type is PushType.ALERT
    assert got.content == _request().content


def test_serializer_refuses_the_wrong_event_class(registry: SchemaRegistryClient) -> None:
    ser = EventSerializer(DispatchOutcome, registry)
    expected = r"encode DispatchOutcome on push\.requests: got a NotificationRequest"
    with pytest.raises(CodecError, match=expected):
        ser(_request(), CTX)  # type: ignore[arg-type]


def test_unencodable_event_is_a_codec_error(registry: SchemaRegistryClient) -> None:
    bad = dataclasses.replace(_request())
    object.__setattr__(bad, "attempt", "three")  # past the type checker, as buggy code might
    with pytest.raises(CodecError, match="attempt") as info:
        EventSerializer(NotificationRequest, registry)(bad, CTX)
    assert is_poison(info.value)


def test_class_without_schema_is_refused(registry: SchemaRegistryClient) -> None:
    with pytest.raises(CodecError, match="not an event"):
        EventSerializer(dict, registry)  # type: ignore[type-var]
    with pytest.raises(CodecError, match="not an event"):
        EventDeserializer(dict, registry)  # type: ignore[type-var]


# -- decoding failures: always CodecError, with a one-line reason naming the topic --------------


@pytest.fixture
def good(registry: SchemaRegistryClient) -> bytes:
    return EventSerializer(NotificationRequest, registry)(_request(), CTX)


@pytest.fixture
def decode(registry: SchemaRegistryClient) -> EventDeserializer[NotificationRequest]:
    return EventDeserializer(NotificationRequest, registry)


def _reason(decode: EventDeserializer[NotificationRequest], data: bytes | None) -> CodecError:
    with pytest.raises(CodecError) as info:
        decode(data, CTX)
    reason = str(info.value)
    assert reason.startswith("decode NotificationRequest on push.requests: ")
    assert "\n" not in reason
    assert len(reason) <= 500
    return info.value


def test_bad_magic_byte(decode: EventDeserializer[NotificationRequest], good: bytes) -> None:
    for magic in (1, 0x7F, 0xFF):
        err = _reason(decode, bytes([magic]) + good[1:])
        assert f"bad magic byte 0x{magic:02x}" in str(err)
        assert is_poison(err)


def test_unknown_schema_id(decode: EventDeserializer[NotificationRequest], good: bytes) -> None:
    err = _reason(decode, b"\x00" + struct.pack(">I", 4242) + good[5:])
    assert isinstance(err, SchemaRegistryError)
    assert "schema id 4242 unknown to the registry" in str(err)
    assert err.http_status == 404
    assert is_poison(err)


def test_truncated_header(decode: EventDeserializer[NotificationRequest], good: bytes) -> None:
    for size in (0, 1, 4, 5):
        err = _reason(decode, good[:size])
        assert f"truncated: {size} bytes" in str(err)


def test_truncated_body(decode: EventDeserializer[NotificationRequest], good: bytes) -> None:
    for cut in (1, 2, len(good) // 2, len(good) - 6):
        err = _reason(decode, good[:-cut])
        assert "schema id 1" in str(err)
        assert is_poison(err)


def test_tombstone(decode: EventDeserializer[NotificationRequest]) -> None:
    assert "tombstone" in str(_reason(decode, None))


def test_random_bytes(decode: EventDeserializer[NotificationRequest], good: bytes) -> None:
    """Random bytes, with and without a valid header: CodecError every time, nothing else."""
    rnd = random.Random(20250304)
    for _ in range(300):
        body = rnd.randbytes(rnd.randint(0, 120))
        _reason(decode, body)
        _reason(decode, good[:5] + body)


def test_record_of_another_event_type(
    registry: SchemaRegistryClient, decode: EventDeserializer[NotificationRequest]
) -> None:
    outcome = full_events()[1]
    assert isinstance(outcome, DispatchOutcome)
    data = EventSerializer(DispatchOutcome, registry)(outcome, CTX)
    err = _reason(decode, data)
    assert "cannot be read as pushline.events.NotificationRequest" in str(err)


def test_platform_unknown_to_this_reader_is_poison(
    registry: SchemaRegistryClient, decode: EventDeserializer[NotificationRequest]
) -> None:
    """A writer that knows a platform we do not: no enum default, so no guessing (DLQ it)."""
    foreign = json.loads(schema_str("notification_request"))
    next(f for f in foreign["fields"] if f["name"] == "platform")["type"]["symbols"].append("HMS")
    # registered under another subject so the registry's compatibility rules do not interfere
    producer = AvroSerializer(registry, json.dumps(foreign))
    record = _request().to_dict()
    record["platform"] = "HMS"
    err = _reason(decode, producer(record, SerializationContext("other", MessageField.VALUE)))
    assert "HMS not found in reader symbol list" in str(err)
    assert is_poison(err)


def test_unreachable_registry_is_not_poison(good: bytes) -> None:
    client = SchemaRegistryClient(
        {"url": "http://127.0.0.1:9", "max.retries": 0, "timeout": 2}  # discard port: refused
    )
    with pytest.raises(SchemaRegistryError) as info:
        EventDeserializer(NotificationRequest, client)(good, CTX)
    assert "schema registry unreachable" in str(info.value)
    assert info.value.http_status is None
    assert not is_poison(info.value)


def test_is_poison_by_status() -> None:
    assert is_poison(CodecError("bad bytes"))
    for status in (401, 403, 404, 429, 500, 503, None):
        assert not is_poison(SchemaRegistryError("registry trouble", http_status=status))


def test_schema_id_of_rejects_non_wire_data() -> None:
    assert schema_id_of(b"\x00\x00\x00\x01\x00\x02") == 256
    with pytest.raises(CodecError, match="magic"):
        schema_id_of(b"\x01" + os.urandom(8))
