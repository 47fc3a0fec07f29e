"""Requests per second of ``pushline receipts-api`` on a running stack (for ``pushline bench``).

The server runs as its own process (one worker: one Python thread, plus librdkafka's threads). The
load comes from this process: ``connections`` keep-alive HTTP/1.1 connections on a minimal asyncio
client (raw sockets; httpx would be the bottleneck), each sending a fresh, validly signed receipt
for a new notification, so every request is verified, serialized and acknowledged by the broker
(no duplicate short-cut). Reported:

- ``rps``: 202 answers per wall-clock second;
- ``rps_per_core``: 202 answers per CPU-second the server process used (user + system, all its
  threads, read from /proc), i.e. what one core sustains;
- latency percentiles, status counts, and ``produced``: records that reached push.receipts, read
  from the topic's watermarks; it must equal the 202 count.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from pushline.config import KafkaConfig, TopicsConfig
from pushline.errors import StackError
from pushline.topics import ensure_topics
from receipts._service import start_receipts_api_process
from schemas.receipt_token import ReceiptTokenConfig

__all__ = ["bench_receipts_api"]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all threads (Linux /proc)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _count_records(
    kafka: KafkaConfig, topic: str, partitions: int, expected: int, idle_s: float = 3.0
) -> int:
    """Records on ``topic``, read back (watermarks of the embedded broker can lag a few records)."""
    consumer = Consumer(
        kafka.to_librdkafka(
            **{
                "group.id": f"bench-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
            }
        )
    )
    try:
        # assign, not subscribe: no group join to wait for
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        total = 0
        idle_since = time.monotonic()
        while total < expected or time.monotonic() - idle_since < 0.5:
            batch = consumer.consume(1000, 0.5)
            records = [m for m in batch if m.error() is None]
            if records:
                total += len(records)
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > idle_s:
                break
        return total
    finally:
        consumer.close()


class _Load:
    def __init__(self, host: str, port: int, signer_cfg: ReceiptTokenConfig) -> None:
        self.host = host
        self.port = port
        self._signer = signer_cfg.signer()
        self._expires = datetime.now(UTC) + timedelta(hours=1)
        self.latencies: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.accepted_total = 0

    def _request(self, n: int) -> bytes:
        body = json.dumps(
            {
                "token": self._signer.sign(str(uuid.uuid4()), f"bench-device-{n}", self._expires),
                "kind": "DELIVERED",
            }
        ).encode()
        head = (
            f"POST /v1/receipts HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        return head + body

    async def _connection(self, index: int, stop_at: float, record_from: float) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        n = index
        try:
            while time.monotonic() < stop_at:
                request = self._request(n)
                n += 1_000_000
                started = time.monotonic()
                writer.write(request)
                status_line = await reader.readline()
                length = 0
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b""):
                        break
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                if not status_line:
                    raise StackError("the receipts API closed the connection")
                status = int(status_line.split()[1])
                self.accepted_total += status == 202
                if started >= record_from:
                    self.statuses[status] += 1
                    self.latencies.append(time.monotonic() - started)
        finally:
            writer.close()

    async def run(self, connections: int, seconds: float, warmup: float) -> None:
        now = time.monotonic()
        await asyncio.gather(
            *(self._connection(i, now + warmup + seconds, now + warmup) for i in range(connections))
        )


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _measure(
    load: _Load, pid: int, connections: int, seconds: float, warmup: float
) -> tuple[float, float]:
    """(server CPU seconds, wall seconds) of the measured window, which opens after the warm-up."""
    running = asyncio.ensure_future(load.run(connections, seconds, warmup))
    await asyncio.sleep(warmup)
    cpu0, t0 = _cpu_seconds(pid), time.monotonic()
    await running
    return _cpu_seconds(pid) - cpu0, time.monotonic() - t0


def bench_receipts_api(
    env: Mapping[str, str],
    seconds: float = 10.0,
    *,
    connections: int = 64,
    warmup: float = 2.0,
    partitions: int = 6,
) -> dict[str, Any]:
    """Start a receipts API on the stack in ``env`` (fresh topics), load it, return the numbers."""
    kafka = KafkaConfig.from_env(env)
    topics = TopicsConfig.from_env(
        env, prefix=f"bench{uuid.uuid4().hex[:8]}.", partitions=partitions
    )
    ensure_topics(kafka, topics)
    tokens = ReceiptTokenConfig.from_env(env)
    api_env = {
        **env,
        "PUSHLINE_TOPIC_PREFIX": topics.prefix,
        "PUSHLINE_TOPIC_PARTITIONS": str(partitions),
        "PUSHLINE_LOG_LEVEL": "WARNING",
    }
    with start_receipts_api_process(api_env) as api:
        host, port = api.url.rsplit("//", 1)[1].rsplit(":", 1)
        load = _Load(host.strip("[]"), int(port), tokens)
        cpu, wall = asyncio.run(_measure(load, api.process.pid, connections, seconds, warmup))
        code = api.close()
    produced = _count_records(kafka, topics.receipts, partitions, load.accepted_total)
    ok = load.statuses.get(202, 0)
    return {
        "server": "granian (embedded, 1 worker) + starlette",
        "seconds": round(wall, 3),
        "connections": connections,
        "requests": sum(load.statuses.values()),
        "statuses": {str(k): v for k, v in sorted(load.statuses.items())},
        "rps": round(ok / wall, 1),
        "server_cpu_seconds": round(cpu, 3),
        "rps_per_core": round(ok / cpu, 1) if cpu > 0 else None,
        "latency_ms": {
            "p50": round(_percentile(load.latencies, 0.50) * 1000, 2),
            "p99": round(_percentile(load.latencies, 0.99) * 1000, 2),
            "mean": round(statistics.fmean(load.latencies) * 1000, 2) if load.latencies else 0.0,
        },
        # Every 202 of the run, warm-up included, must be on the topic.
        "accepted_total": load.accepted_total,
        "produced": produced,
        "exit_code": code,
    }
