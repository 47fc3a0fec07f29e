"""The registry emulator driven by the real confluent-kafka SchemaRegistryClient and Avro serdes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.schema_registry_client import (
    ConfigCompatibilityLevel,
    ServerConfig,
)
from confluent_kafka.serialization import MessageField, SerializationContext

from pushline.emulators import RegistryServer


@pytest.fixture(scope="module")
def server() -> Iterator[RegistryServer]:
    with RegistryServer() as started:
        yield started


@pytest.fixture
def registry(server: RegistryServer) -> RegistryServer:
    server.reset()
    return server


@pytest.fixture
def client(registry: RegistryServer) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": registry.url})


def avro(schema: Any, *, indent: int | None = None) -> Schema:
    return Schema(json.dumps(schema, indent=indent), "AVRO")


def record(*fields: dict[str, Any]) -> dict[str, Any]:
    return {"type": "record", "name": "Event", "namespace": "test", "fields": list(fields)}


V1 = record({"name": "id", "type": "string"})
V2_WITH_DEFAULT = record(
    {"name": "id", "type": "string"}, {"name": "tag", "type": "string", "default": ""}
)
V2_NO_DEFAULT = record({"name": "id", "type": "string"}, {"name": "tag", "type": "string"})


def test_register_and_read_back(client: SchemaRegistryClient) -> None:
    schema_id = client.register_schema("orders-value", avro(V1))
    assert schema_id == 1
    fetched = client.get_schema(schema_id)
    assert json.loads(fetched.schema_str) == V1
    assert fetched.schema_type == "AVRO"
    latest = client.get_latest_version("orders-value")
    assert (latest.subject, latest.version, latest.schema_id) == ("orders-value", 1, schema_id)
    assert client.get_subjects() == ["orders-value"]
    assert client.get_versions("orders-value") == [1]


def test_registration_is_idempotent_and_ids_are_global(registry: RegistryServer) -> None:
    # Fresh clients each time so the client's own cache cannot answer for the registry.
    first = SchemaRegistryClient({"url": registry.url}).register_schema("a-value", avro(V1))
    again = SchemaRegistryClient({"url": registry.url}).register_schema(
        "a-value", avro(V1, indent=4)
    )
    other_subject = SchemaRegistryClient({"url": registry.url}).register_schema("b-value", avro(V1))
    different = SchemaRegistryClient({"url": registry.url}).register_schema(
        "a-value", avro(V2_WITH_DEFAULT)
    )
    assert first == again == other_subject == 1
    assert different == 2
    client = SchemaRegistryClient({"url": registry.url})
    assert client.get_versions("a-value") == [1, 2]
    assert client.get_versions("b-value") == [1]
    assert sorted(client.get_subjects_by_schema_id(1)) == ["a-value", "b-value"]
    assert [(v.subject, v.version) for v in client.get_schema_versions(1)] == [
        ("a-value", 1),
        ("b-value", 1),
    ]


def test_lookup_schema_finds_the_version(client: SchemaRegistryClient) -> None:
    client.register_schema("s", avro(V1))
    client.register_schema("s", avro(V2_WITH_DEFAULT))
    found = client.lookup_schema("s", avro(V1, indent=2))
    assert (found.subject, found.version, found.schema_id) == ("s", 1, 1)
    with pytest.raises(SchemaRegistryError) as missing_schema:
        client.lookup_schema("s", avro(record({"name": "other", "type": "int"})))
    assert (missing_schema.value.http_status_code, missing_schema.value.error_code) == (404, 40403)
    with pytest.raises(SchemaRegistryError) as missing_subject:
        client.lookup_schema("nope", avro(V1))
    assert missing_subject.value.error_code == 40401


def test_get_version_and_missing_things(client: SchemaRegistryClient) -> None:
    client.register_schema("s", avro(V1))
    assert client.get_version("s", 1).schema_id == 1
    with pytest.raises(SchemaRegistryError) as no_version:
        client.get_version("s", 7)
    assert (no_version.value.http_status_code, no_version.value.error_code) == (404, 40402)
    with pytest.raises(SchemaRegistryError) as no_subject:
        client.get_latest_version("nope")
    assert no_subject.value.error_code == 40401
    with pytest.raises(SchemaRegistryError) as no_id:
        client.get_schema(99)
    assert no_id.value.error_code == 40403


def test_backward_is_the_default_and_refuses_a_field_without_default(
    client: SchemaRegistryClient,
) -> None:
    assert client.get_compatibility() == "BACKWARD"
    client.register_schema("s", avro(V1))
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema("s", avro(V2_NO_DEFAULT))
    assert (refused.value.http_status_code, refused.value.error_code) == (409, 409)
    assert refused.value.error_message.startswith(
        'Schema being registered is incompatible with an earlier schema for subject "s"'
    )
    assert "READER_FIELD_MISSING_DEFAULT_VALUE" in refused.value.error_message
    assert client.register_schema("s", avro(V2_WITH_DEFAULT)) == 2
    assert client.get_versions("s") == [1, 2]


def test_test_compatibility(client: SchemaRegistryClient) -> None:
    client.register_schema("s", avro(V1))
    assert client.test_compatibility("s", avro(V2_WITH_DEFAULT)) is True
    assert client.test_compatibility("s", avro(V2_NO_DEFAULT)) is False
    assert client.test_compatibility("s", avro(V2_NO_DEFAULT), version=1) is False
    assert client.test_compatibility_all_versions("s", avro(V2_WITH_DEFAULT)) is True
    with pytest.raises(SchemaRegistryError) as unknown:
        client.test_compatibility("nope", avro(V1))
    assert unknown.value.error_code == 40401


def test_config_global_and_per_subject(client: SchemaRegistryClient) -> None:
    client.set_config(config=ServerConfig(compatibility=ConfigCompatibilityLevel.FULL))
    assert client.get_config().compatibility_level == ConfigCompatibilityLevel.FULL
    answer = client.set_config(
        "s", ServerConfig(compatibility=ConfigCompatibilityLevel.FORWARD_TRANSITIVE)
    )
    assert answer == {"compatibility": "FORWARD_TRANSITIVE"}
    assert client.get_config("s").compatibility_level == ConfigCompatibilityLevel.FORWARD_TRANSITIVE
    assert client.set_compatibility("t", "none") == {"compatibility": "NONE"}
    assert client.get_compatibility("t") == "NONE"
    assert client.get_compatibility() == "FULL"
    client.delete_config("s")
    with pytest.raises(SchemaRegistryError) as unset:
        client.get_config("s")
    assert unset.value.error_code == 40408
    with pytest.raises(SchemaRegistryError) as invalid:
        client.set_compatibility(level="SIDEWAYS")
    assert (invalid.value.http_status_code, invalid.value.error_code) == (422, 42203)


def set_level(client: SchemaRegistryClient, subject: str, level: str) -> None:
    client.set_config(subject, ServerConfig(compatibility=ConfigCompatibilityLevel(level)))


def outcome(client: SchemaRegistryClient, subject: str, schema: dict[str, Any]) -> str:
    try:
        client.register_schema(subject, avro(schema))
    except SchemaRegistryError as exc:
        assert exc.error_code == 409
        return "refused"
    return "registered"


FIELD = {"name": "id", "type": "string"}


@pytest.mark.parametrize(
    ("level", "add_without_default", "drop_without_default", "add_with_default"),
    [
        # Adding a field without default: new readers cannot read old data (backward), old
        # readers ignore it (forward). Dropping a field without default: the reverse.
        ("BACKWARD", "refused", "registered", "registered"),
        ("FORWARD", "registered", "refused", "registered"),
        ("FULL", "refused", "refused", "registered"),
        ("NONE", "registered", "registered", "registered"),
    ],
)
def test_levels_decide_what_may_change(
    client: SchemaRegistryClient,
    level: str,
    add_without_default: str,
    drop_without_default: str,
    add_with_default: str,
) -> None:
    base = record(FIELD, {"name": "count", "type": "int"})
    for name in ("add", "drop", "default"):
        set_level(client, name, level)
        client.register_schema(name, avro(base))
    grown = record(FIELD, {"name": "count", "type": "int"}, {"name": "x", "type": "int"})
    assert outcome(client, "add", grown) == add_without_default
    assert outcome(client, "drop", record(FIELD)) == drop_without_default
    with_default = record(
        FIELD, {"name": "count", "type": "int"}, {"name": "x", "type": "int", "default": 0}
    )
    assert outcome(client, "default", with_default) == add_with_default


# v3 is compatible with v2 but not with v1 in every direction: v1 has f:int, v2 drops it, v3
# brings it back as a string.
HISTORY = [
    record(FIELD, {"name": "f", "type": "int", "default": 0}),
    record(FIELD),
    record(FIELD, {"name": "f", "type": "string", "default": ""}),
]


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("BACKWARD", "registered"),
        ("BACKWARD_TRANSITIVE", "refused"),
        ("FORWARD", "registered"),
        ("FORWARD_TRANSITIVE", "refused"),
        ("FULL", "registered"),
        ("FULL_TRANSITIVE", "refused"),
    ],
)
def test_transitive_levels_check_every_version_others_only_the_latest(
    client: SchemaRegistryClient, level: str, expected: str
) -> None:
    set_level(client, "s", level)
    assert outcome(client, "s", HISTORY[0]) == "registered"
    assert outcome(client, "s", HISTORY[1]) == "registered"
    assert outcome(client, "s", HISTORY[2]) == expected


def test_none_accepts_an_entirely_different_schema(client: SchemaRegistryClient) -> None:
    set_level(client, "s", "NONE")
    client.register_schema("s", avro(V1))
    assert client.register_schema("s", Schema('"string"', "AVRO")) == 2
    assert client.get_latest_version("s").schema.schema_str == '"string"'


def test_deletes_through_the_client(client: SchemaRegistryClient) -> None:
    client.register_schema("s", avro(V1))
    client.register_schema("s", avro(V2_WITH_DEFAULT))
    assert client.delete_version("s", 2) == 2
    assert client.get_versions("s") == [1]
    assert client.get_versions("s", deleted=True) == [1, 2]
    assert client.delete_subject("s") == [1]
    assert client.get_subjects() == []
    assert client.get_subjects(deleted=True) == ["s"]
    assert client.delete_subject("s", permanent=True) == [1, 2]
    assert client.get_subjects(deleted=True) == []
    # The id stays resolvable so data written with it can still be read.
    assert json.loads(client.get_schema(1).schema_str) == V1


def test_avro_serializer_and_deserializer_round_trip(client: SchemaRegistryClient) -> None:
    schema = json.dumps(V2_WITH_DEFAULT)
    serializer = AvroSerializer(client, schema)
    deserializer = AvroDeserializer(client)
    ctx = SerializationContext("push.requests", MessageField.VALUE)
    value = {"id": "n-1", "tag": "hello"}
    data = serializer(value, ctx)
    assert data is not None
    schema_id = client.get_latest_version("push.requests-value").schema_id
    assert data[0] == 0
    assert int.from_bytes(data[1:5], "big") == schema_id
    assert deserializer(data, ctx) == value


def test_a_deserializer_with_a_newer_reader_schema_fills_defaults(
    client: SchemaRegistryClient,
) -> None:
    ctx = SerializationContext("t", MessageField.VALUE)
    data = AvroSerializer(client, json.dumps(V1))({"id": "old"}, ctx)
    reader = AvroDeserializer(client, json.dumps(V2_WITH_DEFAULT))
    assert reader(data, ctx) == {"id": "old", "tag": ""}


def test_a_serializer_without_auto_register_needs_a_registered_schema(
    client: SchemaRegistryClient,
) -> None:
    ctx = SerializationContext("t", MessageField.VALUE)
    strict = AvroSerializer(client, json.dumps(V1), conf={"auto.register.schemas": False})
    with pytest.raises(SchemaRegistryError) as missing:
        strict({"id": "x"}, ctx)
    assert missing.value.error_code == 40401
    client.register_schema("t-value", avro(V1))
    data = AvroSerializer(client, json.dumps(V1), conf={"auto.register.schemas": False})(
        {"id": "x"}, ctx
    )
    assert data is not None
    assert int.from_bytes(data[1:5], "big") == 1
