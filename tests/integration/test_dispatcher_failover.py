"""kill -9 of one dispatcher mid-run while a second takes over: nothing lost, nothing doubled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict

import pytest

from producers import NotificationProducer
from pushline.config import KafkaConfig, SchemaRegistryConfig, TopicsConfig
from pushline.stack import StackHandle
from pushline.topics import ensure_topics
from schemas import OutcomeState, Platform
from tests.integration.pipeline import all_final, control, outcome_reader, request, terminal

pytestmark = pytest.mark.integration


def _start(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pushline", "dispatcher"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_kill_9_mid_run_gives_every_notification_exactly_one_terminal_outcome(
    stack: StackHandle,
    kafka_config: KafkaConfig,
    registry_config: SchemaRegistryConfig,
    topics_config: TopicsConfig,
) -> None:
    ensure_topics(kafka_config, topics_config)
    env = {
        **os.environ,
        **stack.env,
        "PUSHLINE_TOPIC_PREFIX": topics_config.prefix,
        "PUSHLINE_TOPIC_PARTITIONS": str(topics_config.partitions),
        "PUSHLINE_DISPATCHER_GROUP_ID": f"{topics_config.prefix}dispatcher",
        "PUSHLINE_DISPATCHER_SESSION_TIMEOUT_MS": "6000",
        "PUSHLINE_OPS_PORT": "0",
        "PUSHLINE_LOG_LEVEL": "WARNING",
    }
    reqs = [request(Platform.APNS) for _ in range(600)]
    ids = {r.notification_id for r in reqs}
    reader = outcome_reader(kafka_config, registry_config, topics_config)
    first = second = None
    with control(stack.env, "APNS") as apns:
        apns.reset()
        apns.set_latency(30)
        try:
            first, second = _start(env), _start(env)
            time.sleep(8)  # both joined the group and share the partitions
            with NotificationProducer(kafka_config, registry_config, topics_config) as producer:
                for i, r in enumerate(reqs):
                    producer.send(r)
                    if i % 50 == 49:
                        producer.flush()
                        time.sleep(0.25)
                    if i == 300:
                        first.send_signal(signal.SIGKILL)
            got = reader.wait_for(all_final(ids), timeout=120)
            time.sleep(2)  # a late duplicate would show up now
            got = reader.snapshot()
        finally:
            for proc in (first, second):
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(30)
            reader.close()
        pushes = apns.pushes()
        apns.reset()
    assert first is not None and first.returncode == -signal.SIGKILL
    assert second is not None and second.returncode == 0, "SIGTERM must end in a clean exit"

    final = terminal(got)
    counts = {nid: len(final.get(nid, [])) for nid in ids}
    assert {n for n, c in counts.items() if c != 1} == set(), "exactly one terminal outcome each"
    assert all(final[nid][0].state is OutcomeState.ACCEPTED for nid in ids)

    collapse_ids: dict[str, set[str]] = defaultdict(set)
    for push in pushes:
        if push["id"] in ids:
            collapse_ids[push["id"]].add(push["collapse_id"])
    assert set(collapse_ids) == ids
    assert {nid for nid, c in collapse_ids.items() if len(c) != 1} == set()
