"""Ops plumbing: the HTTP endpoint over real sockets, the dispatcher metrics, JSON logs."""

from __future__ import annotations

import io
import json
import logging
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from pushline.errors import ConfigError
from pushline.ops import (
    REDACTED,
    OpsConfig,
    OpsServer,
    configure_json_logging,
    dispatcher_metrics,
)

# ---------------------------------------------------------------- server


class Flags:
    def __init__(self) -> None:
        self.ready: Any = True
        self.healthy: Any = True

    def ready_probe(self) -> Any:
        if isinstance(self.ready, Exception):
            raise self.ready
        return self.ready

    def healthy_probe(self) -> Any:
        if isinstance(self.healthy, Exception):
            raise self.healthy
        return self.healthy


@pytest.fixture
def flags() -> Flags:
    return Flags()


@pytest.fixture
def server(flags: Flags) -> Iterator[OpsServer]:
    metrics = dispatcher_metrics(process_metrics=False)
    metrics.sends.labels(app="shop", platform="APNS", state="ACCEPTED", reason="").inc(3)
    metrics.provider_latency.labels(platform="FCM").observe(0.004)
    with OpsServer("127.0.0.1", 0, metrics.registry, flags.ready_probe, flags.healthy_probe) as srv:
        yield srv


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_endpoint_serves_the_registry(server: OpsServer) -> None:
    assert server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}"
    r = httpx.get(f"{server.url}/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    got = samples(r.text)
    key = frozenset({"app": "shop", "platform": "APNS", "state": "ACCEPTED", "reason": ""}.items())
    assert got[("pushline_sends_total", key)] == 3.0
    fcm = frozenset({("platform", "FCM")})
    assert got[("pushline_provider_latency_seconds_count", fcm)] == 1.0
    bucket = frozenset({("platform", "FCM"), ("le", "0.005")})
    assert got[("pushline_provider_latency_seconds_bucket", bucket)] == 1.0


def test_metrics_endpoint_negotiates_openmetrics(server: OpsServer) -> None:
    r = httpx.get(f"{server.url}/metrics", headers={"Accept": "application/openmetrics-text"})
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.text.rstrip().endswith("# EOF")


def test_healthz_follows_the_probe(server: OpsServer, flags: Flags) -> None:
    r = httpx.get(f"{server.url}/healthz")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
    flags.healthy = False
    r = httpx.get(f"{server.url}/healthz")
    assert r.status_code == 503
    assert r.json()["status"] == "unhealthy"
    flags.healthy = RuntimeError("event loop stalled")
    r = httpx.get(f"{server.url}/healthz")
    assert r.status_code == 503
    assert "event loop stalled" in r.json()["reason"]


def test_readyz_gives_a_reason(server: OpsServer, flags: Flags) -> None:
    assert httpx.get(f"{server.url}/readyz").status_code == 200
    flags.ready = (False, "partitions not assigned yet")
    r = httpx.get(f"{server.url}/readyz")
    assert r.status_code == 503
    assert r.json() == {"status": "not ready", "reason": "partitions not assigned yet"}
    flags.ready = False
    assert httpx.get(f"{server.url}/readyz").json()["reason"] == "not ready"
    flags.ready = (True, "")
    assert httpx.get(f"{server.url}/readyz").json() == {"status": "ready"}


def test_unknown_path_and_head(server: OpsServer) -> None:
    assert httpx.get(f"{server.url}/nope").status_code == 404
    r = httpx.head(f"{server.url}/healthz")
    assert r.status_code == 200
    assert r.content == b""


def test_keep_alive_connection_serves_many_requests(server: OpsServer) -> None:
    with httpx.Client(base_url=server.url) as client:
        for _ in range(20):
            assert client.get("/healthz").status_code == 200


def test_stop_closes_the_port(flags: Flags) -> None:
    srv = OpsServer("127.0.0.1", 0, CollectorRegistry(), flags.ready_probe, flags.healthy_probe)
    srv.start()
    url = srv.url
    assert httpx.get(f"{url}/healthz").status_code == 200
    srv.stop()
    srv.stop()  # idempotent
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/healthz", timeout=2)


def test_busy_port_is_a_config_error(server: OpsServer, flags: Flags) -> None:
    other = OpsServer(
        "127.0.0.1", server.port, CollectorRegistry(), flags.ready_probe, flags.healthy_probe
    )
    with pytest.raises(ConfigError, match=str(server.port)):
        other.start()


def test_wildcard_host_url_is_loopback(flags: Flags) -> None:
    with OpsServer("0.0.0.0", 0, CollectorRegistry(), flags.ready_probe, flags.healthy_probe) as s:
        assert s.url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{s.url}/healthz").status_code == 200


def test_ops_config_from_env() -> None:
    assert OpsConfig.from_env({}) == OpsConfig("0.0.0.0", 9100, "INFO")
    cfg = OpsConfig.from_env(
        {"PUSHLINE_OPS_HOST": "127.0.0.1", "PUSHLINE_OPS_PORT": "0", "PUSHLINE_LOG_LEVEL": "debug"}
    )
    assert cfg == OpsConfig("127.0.0.1", 0, "DEBUG")
    with pytest.raises(ConfigError, match="PUSHLINE_OPS_PORT"):
        OpsConfig.from_env({"PUSHLINE_OPS_PORT": "70000"})
    with pytest.raises(ConfigError, match="PUSHLINE_OPS_PORT"):
        OpsConfig.from_env({"PUSHLINE_OPS_PORT": "http"})
    with pytest.raises(ConfigError, match="PUSHLINE_LOG_LEVEL"):
        OpsConfig.from_env({"PUSHLINE_LOG_LEVEL": "LOUD"})


# ---------------------------------------------------------------- metrics


def test_fresh_registries_are_independent() -> None:
    a = dispatcher_metrics(process_metrics=False)
    b = dispatcher_metrics(process_metrics=False)
    a.commits.inc()
    assert a.registry.get_sample_value("pushline_commits_total") == 1.0
    assert b.registry.get_sample_value("pushline_commits_total") == 0.0


def test_metric_names_and_labels() -> None:
    m = dispatcher_metrics(process_metrics=False)
    m.retries.labels(platform="FCM", kind="topic").inc()
    m.dlq.labels(source_topic="push.requests", error="CodecError").inc(2)
    m.inflight_sends.inc(5)
    m.outcomes_produced.inc()
    get = m.registry.get_sample_value
    assert get("pushline_retries_total", {"platform": "FCM", "kind": "topic"}) == 1.0
    assert get("pushline_dlq_total", {"source_topic": "push.requests", "error": "CodecError"}) == 2
    assert get("pushline_inflight_sends") == 5.0
    assert get("pushline_outcomes_produced_total") == 1.0
    m.provider_latency.labels(platform="APNS").observe(12.0)
    assert get("pushline_provider_latency_seconds_bucket", {"platform": "APNS", "le": "10.0"}) == 0
    assert get("pushline_provider_latency_seconds_bucket", {"platform": "APNS", "le": "+Inf"}) == 1
    names = {f.name for f in m.registry.collect()}
    assert all(n.startswith("pushline_") for n in names)


def test_process_metrics_are_included_by_default() -> None:
    m = dispatcher_metrics()
    assert m.registry.get_sample_value("process_cpu_seconds_total") is not None


def librdkafka_stats(partitions: dict[str, dict[str, Any]], topic: str = "push.requests") -> str:
    """The shape of librdkafka's statistics JSON (trimmed to the fields that matter)."""
    return json.dumps(
        {
            "name": "rdkafka#consumer-1",
            "type": "consumer",
            "ts": 1,
            "brokers": {},
            "topics": {
                topic: {
                    "topic": topic,
                    "partitions": {
                        p: {"partition": int(p), "hi_offset": 100, "committed_offset": 90, **v}
                        for p, v in partitions.items()
                    },
                }
            },
            "cgrp": {"state": "up"},
        }
    )


def test_lag_from_librdkafka_stats() -> None:
    m = dispatcher_metrics(process_metrics=False)
    get = m.registry.get_sample_value
    stats = librdkafka_stats(
        {
            "0": {"consumer_lag": 10, "assigned": True, "desired": True},
            "1": {"consumer_lag": 0, "assigned": True, "desired": True},
            "2": {"consumer_lag": -1, "assigned": True, "desired": True},  # not known yet
            "-1": {"consumer_lag": -1, "assigned": False, "desired": False},  # internal UA
        }
    )
    assert m.update_lag_from_stats(stats) == 2
    assert get("pushline_consumer_lag", {"topic": "push.requests", "partition": "0"}) == 10
    assert get("pushline_consumer_lag", {"topic": "push.requests", "partition": "1"}) == 0
    assert get("pushline_consumer_lag", {"topic": "push.requests", "partition": "2"}) is None
    assert get("pushline_consumer_lag", {"topic": "push.requests", "partition": "-1"}) is None

    # another consumer reports another topic: the first topic's series stay
    m.update_lag_from_stats(
        librdkafka_stats({"0": {"consumer_lag": 4, "assigned": True}}, "push.retries")
    )
    assert get("pushline_consumer_lag", {"topic": "push.retries", "partition": "0"}) == 4
    assert get("pushline_consumer_lag", {"topic": "push.requests", "partition": "0"}) == 10

    # after a rebalance partition 0 is revoked: its series goes instead of going stale
    m.update_lag_from_stats(
        librdkafka_stats(
            {
                "0": {"consumer_lag": 10, "assigned": False, "desired": False},
                "1": {"consumer_lag": 7, "assigned": True, "desired": True},
            }
        )
    )
    assert get("pushline_consumer_lag", {"topic": "push.requests", "partition": "0"}) is None
    assert get("pushline_consumer_lag", {"topic": "push.requests", "partition": "1"}) == 7


@pytest.mark.parametrize("doc", ["", "not json", "[1,2]", '{"topics": {"t": 5}}', "null"])
def test_unreadable_stats_never_raise(doc: str) -> None:
    m = dispatcher_metrics(process_metrics=False)
    assert m.update_lag_from_stats(doc) == 0


# ---------------------------------------------------------------- logging


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    stream = io.StringIO()
    configure_json_logging("DEBUG", "dispatcher", stream=stream)
    yield stream
    for h in list(root.handlers):
        if h not in saved_handlers:
            root.removeHandler(h)
    root.setLevel(saved_level)
    logging.captureWarnings(False)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_line_fields(log_stream: io.StringIO) -> None:
    logging.getLogger("pushline.test").info(
        "sent %d", 3, extra={"notification_id": "abc", "attempt": 2, "obj": object()}
    )
    (line,) = lines(log_stream)
    assert line["level"] == "INFO"
    assert line["logger"] == "pushline.test"
    assert line["component"] == "dispatcher"
    assert line["msg"] == "sent 3"
    assert line["notification_id"] == "abc"
    assert line["attempt"] == 2
    assert line["obj"].startswith("<object object")
    assert line["ts"].endswith("+00:00") and "T" in line["ts"]
    assert "exc" not in line


def test_exceptions_are_serialised(log_stream: io.StringIO) -> None:
    def fail() -> None:
        raise KeyError("missing")

    try:
        fail()
    except KeyError:
        logging.getLogger("pushline.test").exception("boom")
    (line,) = lines(log_stream)
    assert line["level"] == "ERROR"
    assert line["exc"]["type"] == "builtins.KeyError"
    assert line["exc"]["message"] == "'missing'"
    assert "in fail" in line["exc"]["traceback"]


def test_secrets_are_redacted(log_stream: io.StringIO) -> None:
    logging.getLogger("pushline.test").warning(
        "config",
        extra={
            "password": "hunter2",
            "client_secret": "s3cr3t",
            "device_token": "abcd" * 16,
            "private_key": "-----BEGIN PRIVATE KEY-----",
            "apiKey": "AIza",
            "headers": {"Authorization": "Bearer xyz", "content-type": "application/json"},
            "items": [{"access_token": "ya29"}, {"name": "ok"}],
            "device_key": "dev-1",
            "tokenizer": "kept",
        },
    )
    (line,) = lines(log_stream)
    text = log_stream.getvalue()
    for secret in ("hunter2", "s3cr3t", "abcd" * 16, "BEGIN PRIVATE", "AIza", "xyz", "ya29"):
        assert secret not in text
    assert line["password"] == REDACTED
    assert line["client_secret"] == REDACTED
    assert line["device_token"] == REDACTED
    assert line["private_key"] == REDACTED
    assert line["apiKey"] == REDACTED
    assert line["headers"] == {"Authorization": REDACTED, "content-type": "application/json"}
    assert line["items"] == [{"access_token": REDACTED}, {"name": "ok"}]
    assert line["device_key"] == "dev-1"
    assert line["tokenizer"] == "kept"


def test_reconfiguring_replaces_the_handler(log_stream: io.StringIO) -> None:
    second = io.StringIO()
    configure_json_logging(logging.WARNING, "reconciler", stream=second, redact=["msisdn"])
    log = logging.getLogger("pushline.test")
    log.info("dropped")
    log.warning("kept", extra={"msisdn": "+4412345"})
    assert log_stream.getvalue() == ""
    (line,) = lines(second)
    assert (line["msg"], line["component"], line["msisdn"]) == ("kept", "reconciler", REDACTED)


def test_warnings_become_json_lines(log_stream: io.StringIO) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("old api", DeprecationWarning, stacklevel=1)
    (line,) = lines(log_stream)
    assert line["logger"] == "py.warnings"
    assert "old api" in line["msg"]


def test_unknown_level_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="LOUD"):
        configure_json_logging("LOUD", "x", stream=io.StringIO())
