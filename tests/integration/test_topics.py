from __future__ import annotations

import subprocess
import sys

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from pushline.config import COMPACTED_TOPICS, TOPIC_NAMES, KafkaConfig, TopicsConfig
from pushline.errors import TopicMismatchError
from pushline.stack import StackHandle
from pushline.topics import ensure_topics

pytestmark = pytest.mark.integration


def test_ensure_creates_every_topic_then_is_idempotent(
    kafka_config: KafkaConfig, topics_config: TopicsConfig
) -> None:
    first = ensure_topics(kafka_config, topics_config)
    assert {r.name for r in first} == {topics_config.name(t) for t in TOPIC_NAMES}
    assert {r.action for r in first} == {"created"}

    second = ensure_topics(kafka_config, topics_config)
    assert [r.action for r in second] == ["ok"] * len(TOPIC_NAMES)

    admin = AdminClient(kafka_config.to_librdkafka())
    meta = admin.list_topics(timeout=10).topics
    for logical in TOPIC_NAMES:
        assert len(meta[topics_config.name(logical)].partitions) == topics_config.partitions


def test_ensure_reports_partition_mismatch_naming_topic_and_both_values(
    kafka_config: KafkaConfig, topics_config: TopicsConfig
) -> None:
    admin = AdminClient(kafka_config.to_librdkafka())
    wrong = topics_config.name("push.outcomes")
    admin.create_topics([NewTopic(wrong, 2, topics_config.replication_factor)])[wrong].result(10)

    with pytest.raises(TopicMismatchError) as info:
        ensure_topics(kafka_config, topics_config)
    message = str(info.value)
    assert wrong in message
    assert "partitions=2" in message
    assert f"partitions={topics_config.partitions}" in message
    assert [(m.topic, m.setting) for m in info.value.mismatches] == [(wrong, "partitions")]


def test_ensure_reports_retention_mismatch(
    kafka_config: KafkaConfig, topics_config: TopicsConfig
) -> None:
    ensure_topics(kafka_config, topics_config)
    longer = TopicsConfig.from_env(
        {},
        prefix=topics_config.prefix,
        partitions=topics_config.partitions,
        replication_factor=topics_config.replication_factor,
        retention_scale=2.0,
    )
    with pytest.raises(TopicMismatchError) as info:
        ensure_topics(kafka_config, longer)
    assert {m.setting for m in info.value.mismatches} == {"retention.ms"}
    # every topic kept by age; the compacted changelog has no retention to mismatch
    assert len(info.value.mismatches) == len(set(TOPIC_NAMES) - COMPACTED_TOPICS)


def test_cli_mismatch_is_one_line_with_exit_code_1(
    stack: StackHandle, topics_config: TopicsConfig
) -> None:
    env = {
        **stack.env,
        "PUSHLINE_TOPIC_PREFIX": topics_config.prefix,
        "PUSHLINE_TOPIC_PARTITIONS": "3",
        "PUSHLINE_TOPIC_REPLICATION_FACTOR": "1",
    }
    cmd = [sys.executable, "-m", "pushline", "topics", "ensure"]
    ok = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.count("created") == len(TOPIC_NAMES)

    again = subprocess.run(
        [*cmd, "--partitions", "5"], env=env, capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 1
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "partitions=3" in lines[0] and "partitions=5" in lines[0]
    assert f"{topics_config.prefix}push.requests" in lines[0]
    assert "Traceback" not in again.stderr
