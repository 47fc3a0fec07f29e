"""``pushline demo``: the pipeline on the embedded stack, with a report of what happened.

Today it starts the stack, ensures the topics, produces sample notifications through the producer
library and reads them back from Kafka with a plain consumer; later stages add the dispatcher,
reconciler and fallback sender.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
import uuid
from dataclasses import replace
from typing import Any

from confluent_kafka import Consumer
from confluent_kafka.serialization import MessageField, SerializationContext

from producers import NotificationProducer, new_notification
from pushline.config import KafkaConfig, SchemaRegistryConfig, TopicsConfig
from pushline.stack import stack_from_env_or_spawn
from pushline.topics import ensure_topics
from schemas import (
    EventDeserializer,
    Fallback,
    FallbackChannel,
    NotificationRequest,
    Platform,
    make_registry_client,
)

__all__ = ["run_demo", "sample_notifications"]


def sample_notifications(count: int, rng: random.Random | None = None) -> list[NotificationRequest]:
    """A mix of iOS and Android notifications, some with an email or SMS fallback."""
    rng = rng or random.Random()
    out = []
    for i in range(count):
        platform = Platform.APNS if i % 2 == 0 else Platform.FCM
        if platform is Platform.APNS:
            token = "".join(rng.choice("0123456789abcdef") for _ in range(64))
        else:
            token = f"{uuid.uuid4().hex[:22]}:APA91b{rng.randbytes(60).hex()}"
        req = new_notification(
            app_id="demo-shop",
            platform=platform,
            device_token=token,
            title="Your order shipped",
            body=f"Order #{1000 + i} is on its way.",
            user_id=f"user-{i}",
            receipt_deadline_ms=30_000,
        )
        if i % 3 == 0:
            channel = FallbackChannel.EMAIL if i % 2 == 0 else FallbackChannel.SMS
            address = (
                f"user{i}@example.com" if channel is FallbackChannel.EMAIL else "+4915112345678"
            )
            req = replace(
                req,
                fallback=Fallback(
                    channel=channel,
                    address=address,
                    text="Your order shipped.",
                    subject="Shipped" if channel is FallbackChannel.EMAIL else None,
                ),
            )
        out.append(req)
    return out


def _read_back(
    kafka: KafkaConfig, registry: SchemaRegistryConfig, topic: str, ids: set[str], timeout: float
) -> dict[str, tuple[int, int, NotificationRequest]]:
    deserialize = EventDeserializer(NotificationRequest, make_registry_client(registry))
    consumer = Consumer(
        kafka.to_librdkafka(
            **{
                "group.id": f"pushline-demo-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "session.timeout.ms": 6000,
            }
        )
    )
    found: dict[str, tuple[int, int, NotificationRequest]] = {}
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout
        while ids - found.keys() and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            event = deserialize(msg.value(), SerializationContext(topic, MessageField.VALUE))
            if event.notification_id in ids:
                found[event.notification_id] = (msg.partition() or 0, msg.offset() or 0, event)
    finally:
        consumer.close()
    return found


def run_demo(notifications: int = 5, as_json: bool = False) -> int:
    started = time.monotonic()
    with stack_from_env_or_spawn() as stack:
        env = {**os.environ, **stack.env}
        kafka = KafkaConfig.from_env(env)
        registry = SchemaRegistryConfig.from_env(env)
        topics = TopicsConfig.from_env(env, partitions=int(env.get("PUSHLINE_TOPIC_PARTITIONS", 6)))
        say = (lambda *a: None) if as_json else print
        say(f"stack: Kafka {stack.bootstrap_servers}, schema registry {stack.registry_url}")
        for report in ensure_topics(kafka, topics):
            say(f"  topic {report.action:7} {report.name} ({report.partitions} partitions)")
        requests = sample_notifications(notifications)
        with NotificationProducer(kafka, registry, topics) as producer:
            ids = [producer.send(r) for r in requests]
        say(f"sent {len(ids)} notifications to {topics.requests}")
        found = _read_back(kafka, registry, topics.requests, set(ids), timeout=30.0)
        rows: list[dict[str, Any]] = []
        for nid in ids:
            if nid not in found:
                continue
            partition, offset, event = found[nid]
            rows.append(
                {
                    "notification_id": nid,
                    "platform": event.platform.value,
                    "partition": partition,
                    "offset": offset,
                    "title": event.content.title,
                    "fallback": event.fallback.channel.value if event.fallback else None,
                }
            )
        missing = len(ids) - len(rows)
        if as_json:
            print(
                json.dumps(
                    {
                        "requested": len(ids),
                        "read_back": len(rows),
                        "unaccounted": missing,
                        "notifications": rows,
                    }
                )
            )
        else:
            print(f"read back {len(rows)} of {len(ids)} from Kafka:")
            print(f"  {'notification_id':36}  {'platform':8} {'part':>4} {'offset':>6}  fallback")
            for r in rows:
                print(
                    f"  {r['notification_id']:36}  {r['platform']:8} {r['partition']:>4} "
                    f"{r['offset']:>6}  {r['fallback'] or '-'}"
                )
            print(f"done in {time.monotonic() - started:.1f}s; unaccounted: {missing}")
    if missing:
        print(f"pushline: error: {missing} notifications were not read back", file=sys.stderr)
        return 1
    return 0
