"""Which offsets of a partition may be committed.

An offset is committable only when the event it caused (outcome, retry, dead letter) has been
acknowledged by the broker, and so has every earlier offset of the same partition: sends finish out
of order (many devices in flight per partition), commits must not.
"""

from __future__ import annotations

import heapq

__all__ = ["PartitionOffsets"]


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
