"""Dispatcher settings (``PUSHLINE_DISPATCHER_*``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pushline.config import config_from_env, env_field

__all__ = ["DispatcherConfig"]


@dataclass(frozen=True)
class DispatcherConfig:
    """How the dispatcher consumes, sends, retries and commits."""

    group_id: str = env_field(
        "PUSHLINE_DISPATCHER_GROUP_ID", "Consumer group of all dispatchers.", "pushline-dispatcher"
    )
    max_in_flight: int = env_field(
        "PUSHLINE_DISPATCHER_MAX_IN_FLIGHT",
        "Requests being worked on at once per process; consumption pauses above it. More is not "
        "faster: on the benchmark 1000 gave more notifications/s, and less CPU each, than 2000.",
        1000,
        minimum=1,
    )
    max_attempts: int = env_field(
        "PUSHLINE_DISPATCHER_MAX_ATTEMPTS",
        "Send attempts per notification (in process and through push.retries) before FAILED.",
        8,
        minimum=1,
    )
    backoff_base_s: float = env_field(
        "PUSHLINE_DISPATCHER_BACKOFF_BASE_S", "First retry wait; doubles per attempt.", 0.5
    )
    backoff_max_s: float = env_field(
        "PUSHLINE_DISPATCHER_BACKOFF_MAX_S", "Longest retry wait.", 600.0
    )
    in_process_retry_max_s: float = env_field(
        "PUSHLINE_DISPATCHER_IN_PROCESS_RETRY_MAX_S",
        "Waits up to this long are retried in process; longer ones go through push.retries.",
        2.0,
    )
    send_timeout_s: float = env_field(
        "PUSHLINE_DISPATCHER_SEND_TIMEOUT_S", "Timeout of one provider request.", 10.0
    )
    outcome_linger_ms: int = env_field(
        "PUSHLINE_DISPATCHER_OUTCOME_LINGER_MS",
        "How long the outcome producer gathers a batch (librdkafka linger.ms). Outcomes are "
        "written after the send: this delays them (and the commit), not the notification. On the "
        "benchmark the producer's thread took 13% of the dispatcher's CPU at 2 ms, 3% at 10.",
        10,
        minimum=0,
    )
    commit_interval_s: float = env_field(
        "PUSHLINE_DISPATCHER_COMMIT_INTERVAL_S",
        "How often acknowledged offsets are committed.",
        0.5,
    )
    drain_timeout_s: float = env_field(
        "PUSHLINE_DISPATCHER_DRAIN_TIMEOUT_S",
        "On SIGTERM or revocation, how long in-flight sends may take to finish.",
        20.0,
    )
    session_timeout_ms: int = env_field(
        "PUSHLINE_DISPATCHER_SESSION_TIMEOUT_MS", "Consumer-group session timeout.", 10_000
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> DispatcherConfig:
        return config_from_env(cls, os.environ if env is None else env, **overrides)
