"""Typed, frozen configuration objects, each with ``from_env()``.

Every setting is a dataclass field whose metadata names its environment variable and documents it; one
helper (:func:`_from_env`) reads them all, so the configuration reference in the README can be generated
from these classes and no setting is read anywhere else.

librdkafka settings that have no field of their own pass straight through: ``PUSHLINE_LIBRDKAFKA__<KEY>``
with the dots of the librdkafka key written as single underscores (``PUSHLINE_LIBRDKAFKA__SOCKET_TIMEOUT_MS``
becomes ``socket.timeout.ms``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pushline.errors import ConfigError

__all__ = [
    "COMPACTED_TOPICS",
    "LIBRDKAFKA_PREFIX",
    "TOPIC_NAMES",
    "KafkaConfig",
    "SchemaRegistryConfig",
    "TopicsConfig",
    "config_from_env",
    "env_field",
]

LIBRDKAFKA_PREFIX = "PUSHLINE_LIBRDKAFKA__"
_KAFKA_LOGGER = logging.getLogger("pushline.kafka")

T = TypeVar("T")


def env_field(
    env: str,
    doc: str,
    default: Any = dataclasses.MISSING,
    *,
    secret: bool = False,
    minimum: float | None = None,
) -> Any:
    """A dataclass field bound to environment variable ``env`` (several names: comma-separated).
    ``minimum``: :func:`config_from_env` refuses a smaller value (from the environment or an
    override) with a ConfigError naming the variable."""
    meta = {"env": env, "doc": doc, "secret": secret, "minimum": minimum}
    if default is dataclasses.MISSING:
        return field(metadata=meta)
    return field(default=default, metadata=meta)


def _convert(raw: str, hint: Any, name: str) -> Any:
    """Turn an environment string into the field's declared type (str, int, float, bool, optional)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return None if raw == "" else _convert(raw, inner[0], name)
    if hint is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}={raw!r} is not a boolean (use true or false)")
    if hint in (int, float):
        try:
            return hint(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not a valid {hint.__name__}") from None
    return raw


def _from_env(cls: type[T], env: Mapping[str, str], **overrides: Any) -> T:
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        names = f.metadata.get("env")
        if f.name in overrides:
            values[f.name] = overrides[f.name]
        elif not names:
            continue
        else:
            for name in names.split(","):
                if name in env:
                    values[f.name] = _convert(env[name], hints[f.name], name)
                    break
            else:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise ConfigError(f"{names.split(',')[0]} is not set")
        minimum = f.metadata.get("minimum")
        value = values.get(f.name)
        if minimum is not None and value is not None and value < minimum:
            label = names.split(",")[0] if names else f.name
            raise ConfigError(f"{label} must be at least {minimum}, not {value}")
    return cls(**values)


#: The one reader of ``env_field`` dataclasses, for the configuration classes of every package.
config_from_env = _from_env


def _librdkafka_passthrough(env: Mapping[str, str]) -> dict[str, str]:
    return {
        key[len(LIBRDKAFKA_PREFIX) :].lower().replace("_", "."): value
        for key, value in env.items()
        if key.startswith(LIBRDKAFKA_PREFIX) and len(key) > len(LIBRDKAFKA_PREFIX)
    }


@dataclass(frozen=True)
class KafkaConfig:
    """How to reach the Kafka cluster (embedded Tansu, Apache Kafka, Confluent Cloud, MSK)."""

    bootstrap_servers: str = env_field(
        "KAFKA_BOOTSTRAP_SERVERS,PUSHLINE_KAFKA_BOOTSTRAP_SERVERS",
        "Comma-separated host:port list of brokers.",
    )
    client_id: str = env_field(
        "PUSHLINE_KAFKA_CLIENT_ID", "Client id sent to the brokers.", "pushline"
    )
    security_protocol: str | None = env_field(
        "PUSHLINE_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.", None
    )
    sasl_mechanism: str | None = env_field(
        "PUSHLINE_KAFKA_SASL_MECHANISM", "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER.", None
    )
    sasl_username: str | None = env_field(
        "PUSHLINE_KAFKA_SASL_USERNAME", "SASL user name (Confluent Cloud: the API key).", None
    )
    sasl_password: str | None = env_field(
        "PUSHLINE_KAFKA_SASL_PASSWORD",
        "SASL password (Confluent Cloud: the API secret).",
        None,
        secret=True,
    )
    ssl_ca_location: str | None = env_field(
        "PUSHLINE_KAFKA_SSL_CA_LOCATION", "CA bundle used to verify the brokers.", None
    )
    fetch_wait_max_ms: int | None = env_field(
        "PUSHLINE_KAFKA_FETCH_WAIT_MAX_MS",
        "How long the services' consumers let a broker hold a fetch that found no new data "
        "(librdkafka fetch.wait.max.ms; unset: its default, 500). Apache Kafka answers as soon as "
        "data arrives, so this only bounds idle polling there; the embedded Tansu broker holds "
        "every such fetch for the whole time, so the dev stack sets 10.",
        None,
    )
    extra: Mapping[str, str] = field(
        default_factory=dict,
        metadata={"doc": f"Any other librdkafka setting, as {LIBRDKAFKA_PREFIX}<KEY>."},
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> KafkaConfig:
        env = os.environ if env is None else env
        overrides.setdefault("extra", _librdkafka_passthrough(env))
        return _from_env(cls, env, **overrides)

    def to_librdkafka(self, **settings: Any) -> dict[str, Any]:
        """The librdkafka dict: our fields, then pass-through keys, then ``settings`` from the caller."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            # Brokers close idle connections routinely; librdkafka would log each as an error.
            "log.connection.close": False,
            # librdkafka's own log lines go through Python logging, so services log them as JSON.
            "logger": _KAFKA_LOGGER,
        }
        optional = {
            "security.protocol": self.security_protocol,
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password,
            "ssl.ca.location": self.ssl_ca_location,
        }
        conf.update({k: v for k, v in optional.items() if v is not None})
        conf.update(self.extra)
        conf.update(settings)
        return conf

    def to_consumer_librdkafka(
        self,
        group_id: str,
        session_timeout_ms: int,
        stats_cb: Callable[[str], None],
        **settings: Any,
    ) -> dict[str, Any]:
        """:meth:`to_librdkafka` for a service's group consumer (dispatcher, reconciler, fallback
        sender): offsets committed by the service only (after the work they caused was
        acknowledged), a new group starts at the earliest offset, statistics every 5 s for the lag
        metric, ``fetch.wait.max.ms`` when set; ``settings`` win over all of these."""
        group: dict[str, Any] = {
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": session_timeout_ms,
            "enable.partition.eof": False,
            "statistics.interval.ms": 5000,
            "stats_cb": stats_cb,
        }
        if self.fetch_wait_max_ms is not None:
            group["fetch.wait.max.ms"] = self.fetch_wait_max_ms
        return self.to_librdkafka(**{**group, **settings})

    def __repr__(self) -> str:  # secrets never reach a log line through repr()
        return f"KafkaConfig(bootstrap_servers={self.bootstrap_servers!r}, client_id={self.client_id!r})"


@dataclass(frozen=True)
class SchemaRegistryConfig:
    """How to reach the Confluent-compatible Schema Registry."""

    url: str = env_field(
        "SCHEMA_REGISTRY_URL,PUSHLINE_SCHEMA_REGISTRY_URL", "Base URL of the Schema Registry."
    )
    basic_auth_user_info: str | None = env_field(
        "PUSHLINE_SCHEMA_REGISTRY_BASIC_AUTH",
        "user:password for registry basic auth (Confluent Cloud: key:secret).",
        None,
        secret=True,
    )
    auto_register: bool = env_field(
        "PUSHLINE_SCHEMA_AUTO_REGISTER",
        "Register the writer schema on first use. Turn off where schemas are registered by CI.",
        True,
    )

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, **overrides: Any
    ) -> SchemaRegistryConfig:
        return _from_env(cls, os.environ if env is None else env, **overrides)

    def to_client_conf(self) -> dict[str, Any]:
        """The dict ``confluent_kafka.schema_registry.SchemaRegistryClient`` takes."""
        conf: dict[str, Any] = {"url": self.url}
        if self.basic_auth_user_info:
            conf["basic.auth.user.info"] = self.basic_auth_user_info
        return conf

    def __repr__(self) -> str:
        return f"SchemaRegistryConfig(url={self.url!r})"


#: Logical topic names from DESIGN.md, with their default retention in milliseconds.
TOPIC_NAMES: dict[str, int] = {
    "push.requests": 7 * 86_400_000,
    "push.retries": 7 * 86_400_000,
    "push.outcomes": 14 * 86_400_000,
    "push.receipts": 14 * 86_400_000,
    "push.status": 30 * 86_400_000,
    "push.fallbacks": 7 * 86_400_000,
    "push.invalid-tokens": 30 * 86_400_000,
    "push.dlq": 30 * 86_400_000,
    # The reconciler's state, one record per notification: compacted, so it is never lost to age.
    "push.reconciler-changelog": 30 * 86_400_000,
}

#: Topics kept by compaction (latest record per key), not by age: their retention is not set.
COMPACTED_TOPICS = frozenset({"push.reconciler-changelog"})


@dataclass(frozen=True)
class TopicsConfig:
    """Topic names, partition count, replication factor and retention."""

    prefix: str = env_field(
        "PUSHLINE_TOPIC_PREFIX", "Prefix put before every topic name (e.g. 'prod.').", ""
    )
    partitions: int = env_field(
        "PUSHLINE_TOPIC_PARTITIONS",
        "Partition count of every topic. requests, retries, outcomes, receipts and status must share "
        "it: the reconciler joins them partition by partition. It caps the number of busy consumers.",
        12,
        minimum=1,
    )
    replication_factor: int = env_field(
        "PUSHLINE_TOPIC_REPLICATION_FACTOR", "Replication factor of every topic.", 3, minimum=1
    )
    min_insync_replicas: int | None = env_field(
        "PUSHLINE_TOPIC_MIN_INSYNC_REPLICAS",
        "min.insync.replicas of every topic (unset: the broker's default).",
        None,
    )
    retention_scale: float = env_field(
        "PUSHLINE_TOPIC_RETENTION_SCALE",
        "Multiplies every default retention (7 days for requests, 14 for outcomes, 30 for status).",
        1.0,
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> TopicsConfig:
        cfg = _from_env(cls, os.environ if env is None else env, **overrides)
        if cfg.retention_scale <= 0:
            raise ConfigError("PUSHLINE_TOPIC_RETENTION_SCALE must be positive")
        return cfg

    def name(self, logical: str) -> str:
        """The real topic name of a logical one (``push.requests`` → ``<prefix>push.requests``)."""
        if logical not in TOPIC_NAMES:
            raise ConfigError(f"unknown topic {logical!r}; known: {', '.join(TOPIC_NAMES)}")
        return f"{self.prefix}{logical}"

    def retention_ms(self, logical: str) -> int:
        return int(TOPIC_NAMES[logical] * self.retention_scale)

    @property
    def requests(self) -> str:
        return self.name("push.requests")

    @property
    def retries(self) -> str:
        return self.name("push.retries")

    @property
    def outcomes(self) -> str:
        return self.name("push.outcomes")

    @property
    def receipts(self) -> str:
        return self.name("push.receipts")

    @property
    def status(self) -> str:
        return self.name("push.status")

    @property
    def fallbacks(self) -> str:
        return self.name("push.fallbacks")

    @property
    def invalid_tokens(self) -> str:
        return self.name("push.invalid-tokens")

    @property
    def dlq(self) -> str:
        return self.name("push.dlq")

    @property
    def reconciler_changelog(self) -> str:
        return self.name("push.reconciler-changelog")
