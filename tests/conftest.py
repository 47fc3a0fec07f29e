"""Shared fixtures. See tests/README.md for the test levels."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import dispatcher._hpack
from pushline.config import KafkaConfig, SchemaRegistryConfig, TopicsConfig
from pushline.stack import StackHandle, stack_from_env_or_spawn


def _stale_compiled_module() -> str | None:
    """The message to stop with when ``dispatcher/_hpack.py`` is newer than its mypyc build: the
    interpreter imports the extension first, so the tests would run the old code."""
    compiled = Path(dispatcher._hpack.__file__ or "")
    if compiled.suffix != ".so":
        return None
    source = compiled.with_name("_hpack.py")
    if source.stat().st_mtime <= compiled.stat().st_mtime:
        return None
    return (
        f"{source} changed after it was compiled ({compiled.name}): run `make test` (it "
        "rebuilds), or `pip install -e .`, or delete dispatcher/_hpack*.so to test plain Python"
    )


def pytest_configure(config: pytest.Config) -> None:
    stale = _stale_compiled_module()
    if stale is not None:
        pytest.exit(stale, returncode=2)


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
