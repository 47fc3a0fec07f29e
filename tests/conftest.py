"""Shared fixtures. See tests/README.md for the test levels."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from pushline.config import KafkaConfig, SchemaRegistryConfig, TopicsConfig
from pushline.stack import StackHandle, stack_from_env_or_spawn


@pytest.fixture(scope="session")
def stack() -> Iterator[StackHandle]:
    """The embedded stack (``pushline emulate stack`` in a child process), or the cluster named by
    KAFKA_BOOTSTRAP_SERVERS and SCHEMA_REGISTRY_URL when those are set."""
    with stack_from_env_or_spawn() as handle:
        yield handle


@pytest.fixture
def kafka_config(stack: StackHandle) -> KafkaConfig:
    return KafkaConfig.from_env(stack.env)


@pytest.fixture
def registry_config(stack: StackHandle) -> SchemaRegistryConfig:
    return SchemaRegistryConfig.from_env(stack.env)


@pytest.fixture
def topics_config() -> TopicsConfig:
    """A fresh topic prefix per test, so tests never see each other's events."""
    return TopicsConfig.from_env(
        {},
        prefix=f"t{uuid.uuid4().hex[:8]}.",
        partitions=4,
        replication_factor=int(os.environ.get("PUSHLINE_TOPIC_REPLICATION_FACTOR", "1")),
    )
