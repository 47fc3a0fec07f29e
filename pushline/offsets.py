"""Which offsets of a partition may be committed.

An offset is committable only when the event it caused (outcome, retry, dead letter) has been
acknowledged by the broker, and so has every earlier offset of the same partition: sends finish out
of order (many devices in flight per partition), commits must not.
"""

from __future__ import annotations

import heapq
import logging
import threading
from collections.abc import Callable, Iterable

from confluent_kafka import Consumer, KafkaException, TopicPartition

__all__ = ["OffsetLedger", "PartitionOffsets", "TopicPartitionKey"]

log = logging.getLogger("pushline.offsets")


class PartitionOffsets:
    """Offsets of one partition that were taken from Kafka and are not yet acknowledged."""

    def __init__(self) -> None:
        self._pending: set[int] = set()
        self._heap: list[int] = []  # pending offsets, lowest first (lazily cleaned)
        self._highest_seen = -1
        self._committed = -1  # the next offset to consume, as last committed (-1: none yet)

    def __len__(self) -> int:
        return len(self._pending)

    def taken(self, offset: int) -> None:
        """``offset`` was consumed and is being worked on."""
        if offset in self._pending:
            return
        self._pending.add(offset)
        heapq.heappush(self._heap, offset)
        self._highest_seen = max(self._highest_seen, offset)

    def done(self, offset: int) -> None:
        """Everything ``offset`` caused has been acknowledged by the broker."""
        self._pending.discard(offset)

    def committable(self) -> int | None:
        """The offset to commit (the next one to consume), if it moved since the last commit."""
        while self._heap and self._heap[0] not in self._pending:
            heapq.heappop(self._heap)
        position = self._heap[0] if self._heap else self._highest_seen + 1
        if position <= self._committed or position == 0:
            return None
        return position

    def committed(self, position: int) -> None:
        self._committed = max(self._committed, position)


TopicPartitionKey = tuple[str, int]


class OffsetLedger:
    """Offsets taken and acknowledged across a consumer's partitions, and their commits.

    One per consumer; thread-safe, because offsets are taken on the consumer's thread and marked
    done from delivery reports, which may run elsewhere. Every Pushline consumer commits through it,
    so "commit only what was acknowledged, in order" is written once.
    """

    def __init__(self, on_commit: Callable[[], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._partitions: dict[TopicPartitionKey, PartitionOffsets] = {}
        self._on_commit = on_commit

    def taken(self, topic: str, partition: int, offset: int) -> None:
        with self._lock:
            offsets = self._partitions.get((topic, partition))
            if offsets is None:
                offsets = self._partitions[(topic, partition)] = PartitionOffsets()
            offsets.taken(offset)

    def done(self, topic: str, partition: int, offset: int) -> None:
        with self._lock:
            offsets = self._partitions.get((topic, partition))
            if offsets is not None:
                offsets.done(offset)

    def busy(self, which: Iterable[TopicPartitionKey] | None = None) -> list[TopicPartitionKey]:
        """Partitions (of ``which``; None: all) with offsets still in flight."""
        wanted = None if which is None else set(which)
        with self._lock:
            return [
                tp
                for tp, offsets in self._partitions.items()
                if len(offsets) and (wanted is None or tp in wanted)
            ]

    def forget(self, which: Iterable[TopicPartitionKey]) -> None:
        with self._lock:
            for tp in which:
                self._partitions.pop(tp, None)

    def commit(
        self,
        consumer: Consumer,
        *,
        asynchronous: bool,
        only: Iterable[TopicPartitionKey] | None = None,
    ) -> bool:
        """Commit every partition's acknowledged prefix that moved; False if the commit failed
        (the next one retries it)."""
        wanted = None if only is None else set(only)
        with self._lock:
            positions = [
                (tp, position, offsets)
                for tp, offsets in self._partitions.items()
                if (wanted is None or tp in wanted)
                and (position := offsets.committable()) is not None
            ]
        if not positions:
            return True
        commit = [TopicPartition(t, p, position) for (t, p), position, _ in positions]
        try:
            if asynchronous:
                consumer.commit(offsets=commit, asynchronous=True)
            else:
                consumer.commit(offsets=commit, asynchronous=False)
        except KafkaException as exc:
            log.warning("commit failed: %s", exc)
            return False
        with self._lock:
            for _, position, offsets in positions:
                offsets.committed(position)
        if self._on_commit is not None:
            self._on_commit()
        return True
