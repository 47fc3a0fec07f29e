"""Commits move only over offsets whose effects were all acknowledged, in order."""

from __future__ import annotations

from pushline.offsets import OffsetLedger, PartitionOffsets


def test_only_the_acknowledged_prefix_is_committable() -> None:
    offsets = PartitionOffsets()
    for o in (10, 11, 12, 13):
        offsets.taken(o)
    assert offsets.committable() == 10  # nothing done: resume at the first taken offset
    offsets.committed(10)
    offsets.done(12)
    offsets.done(13)
    assert offsets.committable() is None  # 10 and 11 still in flight: no move past them
    offsets.done(10)
    assert offsets.committable() == 11  # the next offset to consume
    offsets.committed(11)
    assert offsets.committable() is None  # did not move
    offsets.done(11)
    assert offsets.committable() == 14
    assert len(offsets) == 0


def test_a_redelivered_offset_is_counted_once() -> None:
    offsets = PartitionOffsets()
    offsets.taken(0)
    offsets.taken(0)
    offsets.done(0)
    assert len(offsets) == 0
    assert offsets.committable() == 1


def test_ledger_tracks_partitions_separately_and_forgets_revoked_ones() -> None:
    ledger = OffsetLedger()
    ledger.taken("t", 0, 5)
    ledger.taken("t", 1, 7)
    ledger.taken("u", 0, 1)
    ledger.done("t", 1, 7)
    assert sorted(ledger.busy()) == [("t", 0), ("u", 0)]
    assert ledger.busy([("t", 1)]) == []
    ledger.forget([("t", 0)])
    assert ledger.busy() == [("u", 0)]
    ledger.done("t", 0, 5)  # a late acknowledgement of a revoked partition is ignored
    assert ledger.busy() == [("u", 0)]
