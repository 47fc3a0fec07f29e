"""``ReceiptsApiConfig``: every setting of ``pushline receipts-api``, from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pushline.config import (
    KafkaConfig,
    SchemaRegistryConfig,
    TopicsConfig,
    config_from_env,
    env_field,
)
from pushline.errors import ConfigError
from schemas.receipt_token import ReceiptTokenConfig

__all__ = ["ReceiptsApiConfig"]

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class ReceiptsApiConfig:
    """Where the receipts API listens, what it accepts, and the clusters and keys it uses."""

    tokens: ReceiptTokenConfig
    kafka: KafkaConfig
    registry: SchemaRegistryConfig
    topics: TopicsConfig
    host: str = env_field(
        "PUSHLINE_RECEIPTS_HOST", "Address the receipts API listens on.", "0.0.0.0"
    )
    port: int = env_field("PUSHLINE_RECEIPTS_PORT", "Port of the receipts API.", 8080)
    max_body_bytes: int = env_field(
        "PUSHLINE_RECEIPTS_MAX_BODY_BYTES",
        "Largest request body accepted; larger ones get 413 (checked on Content-Length and on "
        "the bytes actually read).",
        64 * 1024,
    )
    batch_max: int = env_field(
        "PUSHLINE_RECEIPTS_BATCH_MAX", "Most receipts in one batch request.", 100
    )
    workers: int = env_field(
        "PUSHLINE_RECEIPTS_WORKERS",
        "Server processes. 1 runs the server in this process; more run granian's process "
        "manager, each worker with its own producer.",
        1,
    )
    dedupe_size: int = env_field(
        "PUSHLINE_RECEIPTS_DEDUPE_SIZE",
        "How many recent (notification_id, kind) pairs each process remembers to answer a "
        "repeated receipt without producing it again (0: off).",
        100_000,
    )
    produce_timeout_ms: int = env_field(
        "PUSHLINE_RECEIPTS_PRODUCE_TIMEOUT_MS",
        "How long a receipt may wait for the broker's acknowledgement before the request gets "
        "503 (librdkafka message.timeout.ms).",
        10_000,
    )
    retry_after_s: int = env_field(
        "PUSHLINE_RECEIPTS_RETRY_AFTER_S", "Retry-After sent with 503 answers.", 5
    )
    drain_timeout_s: float = env_field(
        "PUSHLINE_RECEIPTS_DRAIN_TIMEOUT_S",
        "On SIGTERM, how long in-flight requests and the final flush may take.",
        30.0,
    )
    log_level: str = env_field(
        "PUSHLINE_LOG_LEVEL", "DEBUG, INFO, WARNING, ERROR or CRITICAL.", "INFO"
    )

    def __post_init__(self) -> None:
        positive = {
            "PUSHLINE_RECEIPTS_MAX_BODY_BYTES": self.max_body_bytes,
            "PUSHLINE_RECEIPTS_BATCH_MAX": self.batch_max,
            "PUSHLINE_RECEIPTS_WORKERS": self.workers,
            "PUSHLINE_RECEIPTS_PRODUCE_TIMEOUT_MS": self.produce_timeout_ms,
            "PUSHLINE_RECEIPTS_RETRY_AFTER_S": self.retry_after_s,
        }
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"{name} must be at least 1, not {value}")
        if self.dedupe_size < 0:
            raise ConfigError("PUSHLINE_RECEIPTS_DEDUPE_SIZE must not be negative")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"PUSHLINE_RECEIPTS_PORT must be 0-65535, not {self.port}")
        if self.drain_timeout_s <= 0:
            raise ConfigError("PUSHLINE_RECEIPTS_DRAIN_TIMEOUT_S must be positive")
        level = self.log_level.strip().upper()
        if level not in _LOG_LEVELS:
            raise ConfigError(f"PUSHLINE_LOG_LEVEL={self.log_level!r}: use one of {_LOG_LEVELS}")
        object.__setattr__(self, "log_level", level)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ReceiptsApiConfig:
        env = os.environ if env is None else env
        if "tokens" not in overrides:
            overrides["tokens"] = ReceiptTokenConfig.from_env(env)
        if "kafka" not in overrides:
            overrides["kafka"] = KafkaConfig.from_env(env)
        if "registry" not in overrides:
            overrides["registry"] = SchemaRegistryConfig.from_env(env)
        if "topics" not in overrides:
            overrides["topics"] = TopicsConfig.from_env(env)
        return config_from_env(cls, env, **overrides)
