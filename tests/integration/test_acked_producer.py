"""AckedProducer: a full queue waits instead of dropping; a refused acknowledgement is fatal."""

from __future__ import annotations

import logging
import time
import uuid

import pytest
from confluent_kafka import KafkaError, Message
from confluent_kafka.admin import AdminClient, NewTopic

from pushline.acked_producer import AckedProducer
from pushline.config import KafkaConfig
from pushline.errors import DeliveryError

pytestmark = pytest.mark.integration
log = logging.getLogger("test")


def _topic(kafka: KafkaConfig) -> str:
    name = f"acked-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(kafka.to_librdkafka())  # kept alive until the futures resolve
    for future in admin.create_topics([NewTopic(name, 1, 1)]).values():
        future.result(15)
    return name


def test_a_full_queue_waits_and_loses_nothing(kafka_config: KafkaConfig) -> None:
    topic = _topic(kafka_config)
    fatal: list[DeliveryError] = []
    # room for one event at a time: every produce after the first meets a full queue
    producer = AckedProducer(
        kafka_config.to_librdkafka(**{"queue.buffering.max.messages": 1, "linger.ms": 0}),
        fatal.append,
        log,
    )
    acked: list[bytes | None] = []

    errors: list[KafkaError] = []

    def delivered(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(err)
        acked.append(msg.value())

    for i in range(20):
        producer.produce(topic, None, f"e{i}".encode(), [("h", "v")], delivered)
    assert producer.flush(30) == 0
    assert errors == []
    assert acked == [f"e{i}".encode() for i in range(20)]
    assert fatal == []


def test_a_refused_acknowledgement_is_reported_as_fatal(kafka_config: KafkaConfig) -> None:
    fatal: list[DeliveryError] = []
    producer = AckedProducer(
        kafka_config.to_librdkafka(
            **{"message.timeout.ms": 1500, "allow.auto.create.topics": False}
        ),
        fatal.append,
        log,
    )
    missing = f"missing-{uuid.uuid4().hex[:8]}"

    def delivered(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            producer.failed(err, msg.topic() or "")

    producer.produce(missing, "k", b"v", [], delivered)
    deadline = time.monotonic() + 30
    while not fatal and time.monotonic() < deadline:
        producer.poll(0.1)
    assert len(fatal) == 1
    assert fatal[0].topic == missing
    assert "did not acknowledge" in str(fatal[0])
