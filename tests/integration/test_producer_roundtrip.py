"""Produce through `producers`, read back with a plain confluent-kafka consumer and AvroDeserializer."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from confluent_kafka import Consumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from producers import (
    AsyncNotificationProducer,
    NotificationProducer,
    ProducerOptions,
    new_notification,
)
from pushline.config import KafkaConfig, SchemaRegistryConfig, TopicsConfig
from pushline.errors import DeliveryError
from pushline.topics import ensure_topics
from schemas import (
    Fallback,
    FallbackChannel,
    NotificationContent,
    NotificationRequest,
    Platform,
    Priority,
    PushType,
)
from tests.integration.pipeline import murmur2

pytestmark = pytest.mark.integration

APNS_TOKEN = "a1" * 32
FCM_TOKEN = "cXk2:APA91b" + "Z" * 140


def _read(
    kafka: KafkaConfig, registry: SchemaRegistryConfig, topic: str, count: int
) -> list[tuple[Any, dict[str, Any]]]:
    deserializer = AvroDeserializer(SchemaRegistryClient(registry.to_client_conf()))
    consumer = Consumer(
        kafka.to_librdkafka(
            **{
                "group.id": f"test-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 6000,
            }
        )
    )
    out = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 30
        while len(out) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            value = deserializer(msg.value(), SerializationContext(topic, MessageField.VALUE))
            out.append((msg, value))
    finally:
        consumer.close()
    return out


def _full_request() -> NotificationRequest:
    return new_notification(
        app_id="shop",
        platform=Platform.APNS,
        device_token=APNS_TOKEN,
        content=NotificationContent(
            title="Title",
            subtitle="Sub",
            body="Body ✓",
            badge=3,
            sound="ping.caf",
            category="ORDER",
            thread_id="orders",
            content_available=False,
            mutable_content=True,
            custom_data={"order": "1234", "deep_link": "shop://o/1234"},
        ),
        ttl=timedelta(hours=2),
        device_key="device-1",
        user_id="user-1",
        push_type=PushType.ALERT,
        priority=Priority.HIGH,
        collapse_key="order-1234",
        receipt_deadline_ms=60_000,
        fallback=Fallback(
            channel=FallbackChannel.EMAIL,
            address="u@example.com",
            text="Your order shipped",
            subject="Shipped",
        ),
    )


def test_produced_requests_read_back_field_by_field(
    kafka_config: KafkaConfig, registry_config: SchemaRegistryConfig, topics_config: TopicsConfig
) -> None:
    ensure_topics(kafka_config, topics_config)
    sent = [
        _full_request(),
        new_notification(
            app_id="shop", platform=Platform.FCM, device_token=FCM_TOKEN, title="Hi", body="there"
        ),
    ]
    with NotificationProducer(kafka_config, registry_config, topics_config) as producer:
        ids = [producer.send(r) for r in sent]
    assert ids == [r.notification_id for r in sent]

    got = _read(kafka_config, registry_config, topics_config.requests, len(sent))
    by_id = {value["notification_id"]: (msg, value) for msg, value in got}
    assert set(by_id) == set(ids)
    for request in sent:
        msg, value = by_id[request.notification_id]
        expected = request.to_dict()
        assert set(value) == set(expected)
        for name, want in expected.items():
            assert value[name] == want, name
        assert NotificationRequest.from_dict(value) == request
        # keyed by device key, on the partition Java's murmur2 picks
        assert msg.key() == request.key.encode()
        assert msg.partition() == (murmur2(msg.key()) & 0x7FFFFFFF) % topics_config.partitions
        assert dict(msg.headers())["traceparent"].startswith(b"00-")
    assert by_id[ids[0]][0].key() == b"device-1"
    assert by_id[ids[1]][0].key() == FCM_TOKEN.encode()


def test_truncation_option_shortens_an_oversized_alert(
    kafka_config: KafkaConfig, registry_config: SchemaRegistryConfig, topics_config: TopicsConfig
) -> None:
    ensure_topics(kafka_config, topics_config)
    big = new_notification(
        app_id="shop", platform=Platform.APNS, device_token=APNS_TOKEN, title="t", body="x" * 6000
    )
    options = ProducerOptions(truncate=True)
    with NotificationProducer(kafka_config, registry_config, topics_config, options) as producer:
        producer.send(big)
    [(_, value)] = _read(kafka_config, registry_config, topics_config.requests, 1)
    assert value["notification_id"] == big.notification_id
    assert len(value["content"]["body"]) < 4096
    assert value["content"]["body"].endswith("…")


def test_async_producer_returns_after_ack(
    kafka_config: KafkaConfig, registry_config: SchemaRegistryConfig, topics_config: TopicsConfig
) -> None:
    ensure_topics(kafka_config, topics_config)
    requests = [
        replace(_full_request(), notification_id=str(uuid.uuid4()), device_key=f"d{i}")
        for i in range(20)
    ]

    async def produce() -> list[str]:
        async with AsyncNotificationProducer(kafka_config, registry_config, topics_config) as p:
            return list(await asyncio.gather(*(p.send(r) for r in requests)))

    ids = asyncio.run(produce())
    assert ids == [r.notification_id for r in requests]
    got = _read(kafka_config, registry_config, topics_config.requests, len(requests))
    assert {v["notification_id"] for _, v in got} == set(ids)


def test_delivery_errors_are_raised_at_flush(
    registry_config: SchemaRegistryConfig, topics_config: TopicsConfig
) -> None:
    unreachable = KafkaConfig.from_env({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"})
    options = ProducerOptions(librdkafka={"message.timeout.ms": 1500}, flush_timeout=10)
    producer = NotificationProducer(unreachable, registry_config, topics_config, options)
    nid = producer.send(_full_request())
    with pytest.raises(DeliveryError) as info:
        producer.flush()
    assert nid in str(info.value)
    assert info.value.topic == topics_config.requests
