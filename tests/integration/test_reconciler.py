"""The reconciler on the embedded stack: joins, deadlines, fallbacks, restarts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from pushline.config import KafkaConfig, SchemaRegistryConfig, TopicsConfig
from pushline.stack import StackHandle
from pushline.topics import ensure_topics
from receipts._reconciler import Reconciler, ReconcilerConfig
from schemas import (
    DeliveryReceipt,
    DispatchOutcome,
    Fallback,
    FallbackChannel,
    FallbackRequest,
    NotificationStatus,
    OutcomeState,
    Platform,
    ReceiptKind,
)
from tests.integration.pipeline import EventWriter, TopicReader, event_reader

pytestmark = pytest.mark.integration

EMAIL = Fallback(channel=FallbackChannel.EMAIL, address="u@example.com", text="hi", subject="s")
SMS = Fallback(channel=FallbackChannel.SMS, address="+4915112345678", text="hi")


def outcome(nid: str, key: str, deadline_ms: int = 3000, **kw: Any) -> DispatchOutcome:
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "notification_id": nid,
        "device_key": key,
        "device_token": "b" * 64,
        "platform": Platform.APNS,
        "app_id": "shop",
        "state": OutcomeState.ACCEPTED,
        "requested_at": now,
        "decided_at": now,
        "receipt_deadline_ms": deadline_ms,
    }
    values.update(kw)
    return DispatchOutcome(**values)


def receipt(nid: str, key: str, kind: ReceiptKind = ReceiptKind.DELIVERED) -> DeliveryReceipt:
    return DeliveryReceipt(
        notification_id=nid, device_key=key, kind=kind, received_at=datetime.now(UTC)
    )


@pytest.fixture
def topics(kafka_config: KafkaConfig, topics_config: TopicsConfig) -> TopicsConfig:
    ensure_topics(kafka_config, topics_config)
    return topics_config


@pytest.fixture
def readers(
    kafka_config: KafkaConfig, registry_config: SchemaRegistryConfig, topics: TopicsConfig
) -> Iterator[dict[str, TopicReader]]:
    rs = {
        "status": event_reader(kafka_config, registry_config, topics.status, NotificationStatus),
        "fallbacks": event_reader(kafka_config, registry_config, topics.fallbacks, FallbackRequest),
    }
    yield rs
    for r in rs.values():
        r.close()


class InProcess:
    def __init__(self, reconciler: Reconciler) -> None:
        self.reconciler = reconciler
        self.thread = threading.Thread(target=reconciler.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.reconciler.stop()
        self.thread.join(30)
        assert not self.thread.is_alive()


def _reconciler(
    kafka: KafkaConfig, registry: SchemaRegistryConfig, topics: TopicsConfig
) -> InProcess:
    config = ReconcilerConfig.from_env(
        {}, group_id=f"{topics.prefix}reconciler", session_timeout_ms=6000, commit_interval_s=0.2
    )
    return InProcess(Reconciler(kafka=kafka, registry=registry, topics=topics, config=config))


def test_receipts_before_and_after_outcomes_and_deadline_fallbacks(
    kafka_config: KafkaConfig,
    registry_config: SchemaRegistryConfig,
    topics: TopicsConfig,
    readers: dict[str, TopicReader],
) -> None:
    writer = EventWriter(kafka_config, registry_config)
    after, before, lost_email, lost_sms, lost_plain = (str(uuid.uuid4()) for _ in range(5))
    keys = {n: f"dev-{n[:8]}" for n in (after, before, lost_email, lost_sms, lost_plain)}
    running = _reconciler(kafka_config, registry_config, topics)
    try:
        writer.send(topics.receipts, keys[before], receipt(before, keys[before]))
        writer.flush()
        time.sleep(1)  # the receipt is held before its outcome exists
        writer.send(topics.outcomes, keys[before], outcome(before, keys[before], fallback=EMAIL))
        writer.send(topics.outcomes, keys[after], outcome(after, keys[after], fallback=EMAIL))
        writer.send(
            topics.outcomes, keys[lost_email], outcome(lost_email, keys[lost_email], fallback=EMAIL)
        )
        writer.send(
            topics.outcomes, keys[lost_sms], outcome(lost_sms, keys[lost_sms], fallback=SMS)
        )
        writer.send(topics.outcomes, keys[lost_plain], outcome(lost_plain, keys[lost_plain]))
        writer.flush()
        writer.send(topics.receipts, keys[after], receipt(after, keys[after]))
        writer.flush()
        readers["status"].wait_for(
            lambda evs: len({(s.notification_id, s.state) for s in evs}) >= 10, timeout=60
        )
        time.sleep(2)  # nothing more may follow
    finally:
        running.stop()
    by_id: dict[str, list[tuple[str, bool]]] = {}
    for st in readers["status"].snapshot():
        by_id.setdefault(st.notification_id, []).append((st.state.value, st.final))
    assert by_id == {
        after: [("ACCEPTED", False), ("DELIVERED", True)],
        before: [("ACCEPTED", False), ("DELIVERED", True)],
        lost_plain: [("ACCEPTED", False), ("SUSPECTED_LOST", True)],
        # with a fallback to come, SUSPECTED_LOST is not final: the fallback sender settles it
        lost_email: [("ACCEPTED", False), ("SUSPECTED_LOST", False)],
        lost_sms: [("ACCEPTED", False), ("SUSPECTED_LOST", False)],
    }
    fallbacks = Counter(
        (f.notification_id, f.fallback.channel) for f in readers["fallbacks"].snapshot()
    )
    assert fallbacks == Counter(
        {(lost_email, FallbackChannel.EMAIL): 1, (lost_sms, FallbackChannel.SMS): 1}
    )


def test_killed_and_restarted_reconciler_loses_nothing_and_repeats_no_fallback(
    stack: StackHandle,
    kafka_config: KafkaConfig,
    registry_config: SchemaRegistryConfig,
    topics: TopicsConfig,
    readers: dict[str, TopicReader],
) -> None:
    env = {
        **os.environ,
        **stack.env,
        "PUSHLINE_TOPIC_PREFIX": topics.prefix,
        "PUSHLINE_TOPIC_PARTITIONS": str(topics.partitions),
        "PUSHLINE_RECONCILER_GROUP_ID": f"{topics.prefix}reconciler",
        "PUSHLINE_RECONCILER_SESSION_TIMEOUT_MS": "6000",
        "PUSHLINE_RECONCILER_COMMIT_INTERVAL_S": "0.2",
        "PUSHLINE_OPS_PORT": "0",
        "PUSHLINE_LOG_LEVEL": "WARNING",
    }
    cmd = [sys.executable, "-m", "pushline", "reconciler"]
    writer = EventWriter(kafka_config, registry_config)
    ids = [str(uuid.uuid4()) for _ in range(40)]
    keys = {n: f"dev-{i}" for i, n in enumerate(ids)}
    receipted = set(ids[::2])
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    second = None
    try:
        time.sleep(6)  # joined
        # the first half's deadlines pass while the first process runs, the second half's while
        # no process runs at all: both must fire exactly once
        for n in ids[:20]:
            writer.send(
                topics.outcomes, keys[n], outcome(n, keys[n], deadline_ms=2000, fallback=EMAIL)
            )
        writer.flush()
        for n in ids[:20]:
            if n in receipted:
                writer.send(topics.receipts, keys[n], receipt(n, keys[n]))
        writer.flush()
        readers["fallbacks"].wait_for(lambda evs: len(evs) >= 10, timeout=30)
        for n in ids[20:]:
            writer.send(
                topics.outcomes, keys[n], outcome(n, keys[n], deadline_ms=4000, fallback=SMS)
            )
        writer.flush()
        time.sleep(1)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        for n in ids[20:]:
            if n in receipted:
                writer.send(topics.receipts, keys[n], receipt(n, keys[n]))
        writer.flush()
        second = subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        readers["status"].wait_for(
            lambda evs: (
                {s.notification_id for s in evs if s.state.value in ("DELIVERED", "SUSPECTED_LOST")}
                >= set(ids)
            ),
            timeout=90,
        )
        time.sleep(3)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
    assert second is not None and second.returncode == 0
    fallbacks = Counter(f.notification_id for f in readers["fallbacks"].snapshot())
    extra = sorted(ids.index(n) for n in fallbacks if n in receipted)
    assert not extra, f"fallbacks for receipted notifications #{extra}"
    assert fallbacks == Counter({n: 1 for n in ids if n not in receipted})
    last: dict[str, str] = {}
    for s in readers["status"].snapshot():
        if s.state.value in ("DELIVERED", "SUSPECTED_LOST"):
            last[s.notification_id] = s.state.value
    assert last == {n: ("DELIVERED" if n in receipted else "SUSPECTED_LOST") for n in ids}
