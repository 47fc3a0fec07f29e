from __future__ import annotations

from typing import Any

import pytest

from dispatcher import DispatcherConfig
from dispatcher._loop import outcome_producer_settings
from pushline.config import KafkaConfig, SchemaRegistryConfig, TopicsConfig
from pushline.errors import ConfigError
from receipts._fallback_config import FallbackConfig

ENV = {"KAFKA_BOOTSTRAP_SERVERS": "b1:9092,b2:9092"}


def test_kafka_config_maps_fields_and_passes_librdkafka_keys_through() -> None:
    cfg = KafkaConfig.from_env(
        {
            **ENV,
            "PUSHLINE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "PUSHLINE_KAFKA_SASL_MECHANISM": "PLAIN",
            "PUSHLINE_KAFKA_SASL_USERNAME": "key",
            "PUSHLINE_KAFKA_SASL_PASSWORD": "s3cret",
            "PUSHLINE_LIBRDKAFKA__SOCKET_TIMEOUT_MS": "1234",
        }
    )
    conf = cfg.to_librdkafka(**{"acks": "all"})
    assert conf["bootstrap.servers"] == "b1:9092,b2:9092"
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["sasl.username"] == "key"
    assert conf["sasl.password"] == "s3cret"
    assert conf["socket.timeout.ms"] == "1234"
    assert conf["acks"] == "all"
    assert "ssl.ca.location" not in conf  # unset fields are left to librdkafka
    assert "s3cret" not in repr(cfg)


def test_caller_settings_win_over_pass_through_keys() -> None:
    cfg = KafkaConfig.from_env({**ENV, "PUSHLINE_LIBRDKAFKA__LINGER_MS": "50"})
    assert cfg.to_librdkafka(**{"linger.ms": 5})["linger.ms"] == 5


def test_missing_required_setting_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="KAFKA_BOOTSTRAP_SERVERS is not set"):
        KafkaConfig.from_env({})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"PUSHLINE_TOPIC_PARTITIONS": "many"},
            "PUSHLINE_TOPIC_PARTITIONS='many' is not a valid int",
        ),
        ({"PUSHLINE_TOPIC_PARTITIONS": "0"}, "at least 1"),
        ({"PUSHLINE_TOPIC_REPLICATION_FACTOR": "0"}, "at least 1"),
        ({"PUSHLINE_TOPIC_RETENTION_SCALE": "-1"}, "positive"),
    ],
)
def test_bad_topic_settings_are_one_clear_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TopicsConfig.from_env(env)


def test_bad_boolean_is_refused() -> None:
    with pytest.raises(ConfigError, match="not a boolean"):
        SchemaRegistryConfig.from_env(
            {"SCHEMA_REGISTRY_URL": "http://r", "PUSHLINE_SCHEMA_AUTO_REGISTER": "perhaps"}
        )


def test_topic_names_take_the_prefix_and_unknown_names_are_refused() -> None:
    topics = TopicsConfig.from_env({"PUSHLINE_TOPIC_PREFIX": "prod."})
    assert topics.requests == "prod.push.requests"
    assert topics.invalid_tokens == "prod.push.invalid-tokens"
    assert topics.retention_ms("push.status") == 30 * 86_400_000
    with pytest.raises(ConfigError, match="unknown topic"):
        topics.name("push.nope")


def test_registry_basic_auth_is_passed_and_hidden() -> None:
    cfg = SchemaRegistryConfig.from_env(
        {"SCHEMA_REGISTRY_URL": "https://r", "PUSHLINE_SCHEMA_REGISTRY_BASIC_AUTH": "k:secret"}
    )
    assert cfg.to_client_conf() == {"url": "https://r", "basic.auth.user.info": "k:secret"}
    assert "secret" not in repr(cfg)


def test_group_consumers_get_the_service_settings_and_the_fetch_wait() -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": "b:9092", "PUSHLINE_KAFKA_FETCH_WAIT_MAX_MS": "10"}
    kafka = KafkaConfig.from_env(env)

    def stats(_: str) -> None:
        pass

    conf = kafka.to_consumer_librdkafka("g", 6000, stats)
    assert conf["fetch.wait.max.ms"] == 10
    assert conf["group.id"] == "g" and conf["session.timeout.ms"] == 6000
    assert conf["enable.auto.commit"] is False  # offsets only after the work was acknowledged
    assert conf["auto.offset.reset"] == "earliest" and conf["stats_cb"] is stats
    assert "fetch.wait.max.ms" not in kafka.to_librdkafka()  # producers would warn about it
    # a caller's explicit value wins; unset leaves librdkafka's default
    overridden = kafka.to_consumer_librdkafka(
        "g", 6000, stats, **{"fetch.wait.max.ms": 100, "enable.partition.eof": True}
    )
    assert overridden["fetch.wait.max.ms"] == 100 and overridden["enable.partition.eof"] is True
    plain = KafkaConfig.from_env({"KAFKA_BOOTSTRAP_SERVERS": "b:9092"})
    assert "fetch.wait.max.ms" not in plain.to_consumer_librdkafka("g", 6000, stats)


@pytest.mark.parametrize(
    ("config", "name"),
    [
        ("topics", "PUSHLINE_TOPIC_PARTITIONS"),
        ("topics", "PUSHLINE_TOPIC_REPLICATION_FACTOR"),
        ("dispatcher", "PUSHLINE_DISPATCHER_MAX_IN_FLIGHT"),
        ("dispatcher", "PUSHLINE_DISPATCHER_MAX_ATTEMPTS"),
        ("fallback", "PUSHLINE_FALLBACK_MAX_IN_FLIGHT"),
        ("fallback", "PUSHLINE_FALLBACK_MAX_ATTEMPTS"),
    ],
)
def test_a_value_below_its_minimum_is_refused_by_name(config: str, name: str) -> None:
    cls: Any = {"topics": TopicsConfig, "dispatcher": DispatcherConfig, "fallback": FallbackConfig}
    with pytest.raises(ConfigError, match=f"^{name} must be at least 1, not 0$"):
        cls[config].from_env({name: "0"})
    assert cls[config].from_env({name: "1"}) is not None  # the minimum itself is fine


def test_an_override_below_its_minimum_is_refused_too() -> None:
    with pytest.raises(
        ConfigError, match=r"^PUSHLINE_TOPIC_PARTITIONS must be at least 1, not -2$"
    ):
        TopicsConfig.from_env({}, partitions=-2)


def test_the_outcome_producer_lingers_as_configured_and_stays_idempotent() -> None:
    kafka = KafkaConfig.from_env({"KAFKA_BOOTSTRAP_SERVERS": "b:9092"})
    default = outcome_producer_settings(kafka, DispatcherConfig.from_env({}))
    assert default["linger.ms"] == 10
    assert default["enable.idempotence"] is True and default["acks"] == "all"
    env = {"PUSHLINE_DISPATCHER_OUTCOME_LINGER_MS": "0"}  # 0 is librdkafka's "send at once"
    assert outcome_producer_settings(kafka, DispatcherConfig.from_env(env))["linger.ms"] == 0
    with pytest.raises(
        ConfigError, match=r"^PUSHLINE_DISPATCHER_OUTCOME_LINGER_MS must be at least 0, not -1$"
    ):
        DispatcherConfig.from_env({"PUSHLINE_DISPATCHER_OUTCOME_LINGER_MS": "-1"})
