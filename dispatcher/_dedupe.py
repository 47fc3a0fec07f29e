"""Rebuild, from push.outcomes, which notification ids a partition has already finished.

The dispatcher writes two headers on every outcome so this needs no Avro decoding: the notification
id and whether the outcome was terminal. Requests, retries and outcomes share one partition count
and the device key, so partition *p* of push.requests finds its history in partition *p* of
push.outcomes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from pushline.config import KafkaConfig
from pushline.headers import message_headers

__all__ = ["HEADER_NOTIFICATION_ID", "HEADER_TERMINAL", "TerminalIds", "load_terminal_ids"]

HEADER_NOTIFICATION_ID = "pushline.notification_id"
HEADER_TERMINAL = "pushline.dispatch.terminal"


class TerminalIds:
    """Notification ids with a terminal dispatch outcome in one partition, forgotten after a window.

    A duplicate can only be dangerous while the notification may still be sent, so ids older than
    the window (longer than any expiry a producer may set) are pruned to keep memory bounded.
    """

    def __init__(self, window_s: float) -> None:
        self._window_s = window_s
        self._ids: dict[
            str, float
        ] = {}  # insertion order is age order: pruning pops from the front

    def __contains__(self, notification_id: object) -> bool:
        return notification_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, notification_id: str, at: float | None = None) -> None:
        self._ids.setdefault(notification_id, time.time() if at is None else at)

    def prune(self, now: float | None = None) -> None:
        horizon = (time.time() if now is None else now) - self._window_s
        while self._ids:
            oldest = next(iter(self._ids))
            if self._ids[oldest] >= horizon:
                break
            del self._ids[oldest]


def load_terminal_ids(
    kafka: KafkaConfig,
    outcomes_topic: str,
    partitions: Iterable[int],
    *,
    window_s: float,
    timeout_s: float = 60.0,
    marker: str = HEADER_TERMINAL,
) -> dict[int, TerminalIds]:
    """Read the given outcomes partitions to their end and collect terminal ids per partition.

    ``marker`` names the header whose value ``1`` marks an id finished: the dispatcher's terminal
    header by default; the fallback sender passes its own, so each sees only its own outcomes.

    The end is found by the fetch response's end-of-partition event, not by watermark queries,
    which some Kafka-compatible brokers (Tansu) answer wrongly.
    """
    wanted = sorted(set(partitions))
    result = {p: TerminalIds(window_s) for p in wanted}
    if not wanted:
        return result
    consumer = Consumer(
        kafka.to_librdkafka(
            **{
                "group.id": f"pushline-dedupe-{uuid.uuid4().hex}",  # never joins: assign() only
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
            }
        )
    )
    horizon_ms = (time.time() - window_s) * 1000
    try:
        consumer.assign([TopicPartition(outcomes_topic, p, OFFSET_BEGINNING) for p in wanted])
        open_partitions = set(wanted)
        deadline = time.monotonic() + timeout_s
        while open_partitions and time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=0.2):
                partition = msg.partition() or 0
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        open_partitions.discard(partition)
                    continue
                _, ts_ms = msg.timestamp()
                if ts_ms < horizon_ms:
                    continue
                headers = dict(message_headers(msg))
                nid = headers.get(HEADER_NOTIFICATION_ID)
                if nid and headers.get(marker) == b"1":
                    result[partition].add(nid.decode(), ts_ms / 1000)
        if open_partitions:
            raise TimeoutError(
                f"outcomes partitions {sorted(open_partitions)} of {outcomes_topic} were not read "
                f"to their end within {timeout_s}s"
            )
    finally:
        consumer.close()
    return result
