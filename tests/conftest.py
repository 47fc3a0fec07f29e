"""Shared fixtures. See tests/README.md for the test levels."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import dispatcher
from pushline.config import KafkaConfig, SchemaRegistryConfig, TopicsConfig
from pushline.stack import StackHandle, stack_from_env_or_spawn


def _stale_compiled_modules() -> str | None:
    """The message to stop with when a module that setup.py compiles (mypyc) is newer than its
    build next to it: the interpreter imports the extension first, so the tests would run the old
    code. Every extension of a package with a source beside it is checked, so this follows
    setup.py's list by itself. (Files, not ``module.__file__``: mypyc reports made-up paths for
    grouped modules.)"""
    root = Path(dispatcher.__file__ or "").parent.parent
    for compiled in sorted(root.glob("*/*.so")):
        source = compiled.with_name(compiled.name.split(".", 1)[0] + ".py")
        if source.exists() and source.stat().st_mtime > compiled.stat().st_mtime:
            return (
                f"{source} changed after it was compiled ({compiled.name}): run `make test` "
                f"(it rebuilds), or `pip install -e .`, or delete {source.parent.name}/*.so "
                "to test plain Python"
            )
    return None


def pytest_configure(config: pytest.Config) -> None:
    stale = _stale_compiled_modules()
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
