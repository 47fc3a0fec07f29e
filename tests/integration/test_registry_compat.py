"""The registry emulator behind the stack refuses an incompatible schema with the real error codes."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from pushline.config import SchemaRegistryConfig
from schemas import schema_str

pytestmark = pytest.mark.integration


def test_incompatible_schema_is_rejected_with_409(registry_config: SchemaRegistryConfig) -> None:
    client = SchemaRegistryClient(registry_config.to_client_conf())
    subject = f"t{uuid.uuid4().hex[:8]}.push.requests-value"
    current = schema_str("notification_request")
    first = client.register_schema(subject, Schema(current, "AVRO"))
    assert client.register_schema(subject, Schema(current, "AVRO")) == first

    broken = json.loads(current)
    broken["fields"].append({"name": "tenant", "type": "string", "doc": "no default: breaks"})
    with pytest.raises(SchemaRegistryError) as info:
        client.register_schema(subject, Schema(json.dumps(broken), "AVRO"))
    assert info.value.http_status_code == 409
    assert info.value.error_code == 409

    evolved = json.loads(current)
    evolved["fields"].append(
        {"name": "tenant", "type": ["null", "string"], "default": None, "doc": "optional"}
    )
    assert client.register_schema(subject, Schema(json.dumps(evolved), "AVRO")) != first
    assert client.get_versions(subject) == [1, 2]


def test_invalid_schema_is_rejected_with_422(registry_config: SchemaRegistryConfig) -> None:
    response = httpx.post(
        f"{registry_config.url}/subjects/bad-value/versions",
        json={"schema": json.dumps({"type": "record", "name": "X", "fields": [{"name": "a"}]})},
    )
    assert response.status_code == 422
    assert response.json()["error_code"] == 42201
