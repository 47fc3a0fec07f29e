"""pushline.aioproducer without a broker: failures surface as DeliveryError / TopicError."""

from __future__ import annotations

import asyncio
import time

import pytest

from pushline.aioproducer import PRODUCER_SETTINGS, AsyncEventProducer
from pushline.config import KafkaConfig
from pushline.errors import DeliveryError, TopicError

UNREACHABLE = KafkaConfig.from_env({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"})


def test_project_producer_settings() -> None:
    assert PRODUCER_SETTINGS["enable.idempotence"] is True
    assert PRODUCER_SETTINGS["acks"] == "all"
    assert PRODUCER_SETTINGS["partitioner"] == "murmur2_random"


def test_unacknowledged_record_raises_delivery_error() -> None:
    async def run() -> DeliveryError:
        producer = AsyncEventProducer(UNREACHABLE, **{"message.timeout.ms": 500})
        try:
            started = time.monotonic()
            with pytest.raises(DeliveryError) as info:
                await producer.produce("t.push.receipts", b"key", b"value", {"traceparent": "x"})
            assert time.monotonic() - started < 10
            return info.value
        finally:
            assert await producer.aclose(timeout=2) == 0

    error = asyncio.run(run())
    assert error.topic == "t.push.receipts"
    assert "not acknowledged" in str(error)


def test_closed_producer_refuses_records() -> None:
    async def run() -> None:
        producer = AsyncEventProducer(UNREACHABLE)
        await producer.aclose(timeout=1)
        assert not producer.running
        with pytest.raises(DeliveryError, match="closed"):
            await producer.produce("t", None, b"v")

    asyncio.run(run())


def test_metadata_of_an_unreachable_cluster_is_a_topic_error() -> None:
    async def run() -> None:
        producer = AsyncEventProducer(UNREACHABLE)
        try:
            with pytest.raises(TopicError):
                producer.partition_count("t.push.receipts", timeout=0.5)
        finally:
            await producer.aclose(timeout=1)

    asyncio.run(run())
