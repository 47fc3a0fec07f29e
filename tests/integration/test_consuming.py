"""consume_available: a batch without waiting for the batch to fill."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from pushline.config import KafkaConfig
from pushline.consuming import consume_available

pytestmark = pytest.mark.integration


def test_returns_what_is_there_without_waiting_for_a_full_batch(
    kafka_config: KafkaConfig,
) -> None:
    topic = f"consuming-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(kafka_config.to_librdkafka())
    for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        future.result(15)
    producer = Producer(kafka_config.to_librdkafka())
    for i in range(3):
        producer.produce(topic, value=f"m{i}".encode())
    assert producer.flush(15) == 0
    consumer = Consumer(
        kafka_config.to_librdkafka(
            **{"group.id": topic, "enable.auto.commit": False, "auto.offset.reset": "earliest"}
        )
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    try:
        values: list[bytes | None] = []
        deadline = time.monotonic() + 20
        while len(values) < 3 and time.monotonic() < deadline:
            started = time.monotonic()
            batch = consume_available(consumer, 500, timeout=10.0)
            if batch:
                # 500 were asked for and 3 exist: consume(500, 10.0) alone would sit out the 10 s
                assert time.monotonic() - started < 5.0
            values += [m.value() for m in batch if m.error() is None]
        assert values == [b"m0", b"m1", b"m2"]
        assert consume_available(consumer, 500, timeout=0.2) == []
    finally:
        consumer.close()
