"""`pushline dispatcher` as operators run it: probes, metrics, JSON logs, clean SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from pushline.config import KafkaConfig, SchemaRegistryConfig, TopicsConfig
from pushline.processes import free_port
from pushline.stack import StackHandle
from pushline.topics import ensure_topics
from schemas import Platform
from tests.integration.pipeline import all_final, outcome_reader, request, send_all

pytestmark = pytest.mark.integration


def test_dispatcher_process_serves_probes_and_metrics_and_stops_cleanly(
    stack: StackHandle,
    kafka_config: KafkaConfig,
    registry_config: SchemaRegistryConfig,
    topics_config: TopicsConfig,
) -> None:
    ensure_topics(kafka_config, topics_config)
    port = free_port()
    env = {
        **os.environ,
        **stack.env,
        "PUSHLINE_TOPIC_PREFIX": topics_config.prefix,
        "PUSHLINE_TOPIC_PARTITIONS": str(topics_config.partitions),
        "PUSHLINE_DISPATCHER_GROUP_ID": f"{topics_config.prefix}dispatcher",
        "PUSHLINE_DISPATCHER_SESSION_TIMEOUT_MS": "6000",
        "PUSHLINE_OPS_PORT": str(port),
        "PUSHLINE_OPS_HOST": "127.0.0.1",
    }
    base = f"http://127.0.0.1:{port}"
    reader = outcome_reader(kafka_config, registry_config, topics_config)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pushline", "dispatcher"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        ready = None
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"{base}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        assert ready is not None and ready.status_code == 200
        assert httpx.get(f"{base}/healthz").status_code == 200

        r = request(Platform.APNS)
        send_all(kafka_config, registry_config, topics_config, [r])
        reader.wait_for(all_final({r.notification_id}))
        metrics = httpx.get(f"{base}/metrics").text
        assert (
            'pushline_sends_total{app="default",platform="APNS",reason="",state="ACCEPTED"} 1.0'
            in (metrics)
        )
        assert "pushline_provider_latency_seconds_bucket" in metrics

        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(40) == 0
        assert time.monotonic() - started < 35
    finally:
        reader.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stderr is not None
    lines = [line for line in proc.stderr.read().splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    assert any(rec["msg"] == "dispatcher starting" for rec in records)
    assert any(rec["msg"] == "dispatcher stopped" for rec in records)
    assert all(rec["component"] == "dispatcher" for rec in records)
    # no credential ever reaches a log line
    text = "\n".join(lines)
    assert "BEGIN PRIVATE KEY" not in text
    assert env["PUSHLINE_RECEIPT_TOKEN_KEYS"].split(":", 1)[1] not in text
