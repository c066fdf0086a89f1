"""Guarantee: a commit covers only a contiguous run of handled offsets.

Upstream (faust-streaming 0.15.3, `Consumer._new_offset` and `_add_gap`): the offset to commit
is the end of the first run of acked offsets, even when that run does not begin at the
committed offset. The check is skipped when the committed offset is 0 or unknown (every
partition's first generation), is off by one otherwise (committed 100, acked from 101: commits
104, losing 100), and offsets that jump are recorded as gaps and committed through.

Failure it caused: records dropped around a rebalance (fetched, never handled) were committed
past; once their partition moved to another worker they were never read, and a seller's
forecast and monthly freeze came out wrong in the 1 -> 2 -> 1 scaling test.

Kept here: the committed offset only advances over offsets that were acked, starting at the
first offset not yet committed (the committed one, or the partition's first offset when it was
never committed), and a jump is never recorded as a gap. No upstream issue is known.
"""

from __future__ import annotations

from bisect import bisect_left
from types import MappingProxyType
from typing import Mapping

from faust.transport.drivers.aiokafka import Consumer
from faust.types import TP


def commit_frontier(acked: list[int], start: int | None) -> tuple[int | None, list[int]]:
    """The offset to commit for a partition, and the acked offsets it covers (taken out of
    `acked`, which is left sorted). `start` is the first offset not yet committed (None:
    unknown, the run starts wherever the acked offsets do). Nothing is committed while `start`
    itself has not been acked, however many later offsets have."""
    acked.sort()
    first = bisect_left(acked, start) if start is not None else 0  # those before: covered already
    if first == len(acked) or (start is not None and acked[first] != start):
        stale, acked[:first] = acked[:first], []
        return None, stale
    last = first
    while last + 1 < len(acked) and acked[last + 1] == acked[last] + 1:
        last += 1
    offset = acked[last] + 1
    run, acked[:last + 1] = acked[:last + 1], []
    return offset, run


class ContiguousCommits(Consumer):
    """Consumer mixin: Faust's choice of the offset to commit replaced by `commit_frontier`."""

    first_offsets: Mapping[TP, int] = MappingProxyType({})
    """Where each input partition's reading starts (set at every assignment, rebalance.py)."""

    def _new_offset(self, tp: TP) -> int | None:
        start = self._committed_offset.get(tp)
        if not start:  # None, or 0 which Faust also treats as "never committed"
            start = self.first_offsets.get(tp, start)
        offset, covered = commit_frontier(self._acked[tp], start)
        self._acked_index[tp].difference_update(covered)
        return offset

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        return None  # a jump in offsets is records not handled, never a gap to commit through
