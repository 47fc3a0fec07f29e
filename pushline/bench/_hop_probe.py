"""The broker-hop probe of paced mode, run as a process of its own.

It reads the requests topic the way a dispatcher does and records, for each request produced at or
after ``since_ms`` (the measured ones: the warm-up is older), the time it had the message minus the
message's Kafka timestamp (stamped in the producer's ``produce()``): the producer's linger and the
broker, with no dispatcher in it. Its own process, not a thread of the bench: in the bench process
the outcome reader and the paced producer hold the GIL often enough to add tens of ms to the time a
consumer thread sees its messages (measured: p99 259 ms as a thread against 108 ms for the whole
"before the send" of the dispatchers in the same run).

Run as ``python -m pushline.bench._hop_probe TOPIC PARTITIONS SINCE_MS`` with the Kafka settings in
the environment (``KafkaConfig.from_env``); it prints ``ready`` once it reads, reads until its
stdin closes, then prints ``{"hops_ms": [...]}`` on stdout.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, TIMESTAMP_NOT_AVAILABLE, Consumer, TopicPartition

from pushline.config import KafkaConfig
from pushline.consuming import consume_available

__all__ = ["read_hops"]

_READY_AFTER_S = 5.0
"""Ready after this long even without a message (a topic with nothing in it yet)."""
_SESSION_TIMEOUT_MS = 6000  # unused without a group join; librdkafka wants one


def _no_statistics(_: str) -> None:
    """Statistics are off (interval 0); librdkafka's settings still name a callback."""


def read_hops(
    kafka: KafkaConfig,
    topic: str,
    partitions: int,
    since_ms: float,
    stop: threading.Event,
    ready: Callable[[], None],
) -> list[float]:
    """Receive time - Kafka timestamp of each message of ``topic`` stamped at or after
    ``since_ms``, until ``stop`` is set. ``ready()`` once the first message (a warm-up one) has
    been read: the consumer's connections, offsets and fetches are then under way, so a measured
    request is not timed from the probe's own start-up."""
    # The dispatchers' consumer settings (fetch.wait.max.ms above all), without their statistics.
    # The group id is required by librdkafka; assign() joins no group.
    settings = kafka.to_consumer_librdkafka(
        f"pushline-bench-hop-probe-{os.getpid()}",
        _SESSION_TIMEOUT_MS,
        _no_statistics,
        **{"statistics.interval.ms": 0},
    )
    consumer = Consumer(settings)
    # From the start of each partition, not its end: the embedded broker's high watermarks are wrong
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    hops: list[float] = []
    ready_at = time.monotonic() + _READY_AFTER_S
    try:
        while not stop.is_set():
            msgs = consume_available(consumer, 500, timeout=0.05)
            if ready_at and (msgs or time.monotonic() > ready_at):
                ready()
                ready_at = 0.0
            for msg in msgs:
                received_ms = time.time() * 1000
                if msg.error() is not None:
                    continue
                kind, stamp = msg.timestamp()
                if kind != TIMESTAMP_NOT_AVAILABLE and stamp >= since_ms:
                    hops.append(received_ms - stamp)
    finally:
        consumer.close()
    return hops


def main(argv: list[str]) -> None:
    topic, partitions, since_ms = argv[0], int(argv[1]), float(argv[2])
    stop = threading.Event()

    def wait_for_eof() -> None:
        sys.stdin.read()
        stop.set()

    def ready() -> None:
        print("ready", flush=True)

    threading.Thread(target=wait_for_eof, daemon=True).start()
    hops = read_hops(KafkaConfig.from_env(os.environ), topic, partitions, since_ms, stop, ready)
    json.dump({"hops_ms": hops}, sys.stdout)


if __name__ == "__main__":  # started by BrokerHopProbe, which makes it die with the bench
    main(sys.argv[1:])
