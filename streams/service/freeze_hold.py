"""Which input topics hold a partition's due monthly freeze.

A freeze rates the month's last instant; it must not run while an input topic of the partition
still has unhandled messages that could belong to the month. The worker asks the broker for its
input partitions' end offsets on a timer (never inside the agent: a slow broker would stall
it), only while a freeze is due; a topic whose end offset is unknown counts as lagging.

No Faust import: topics are named by their unprefixed names, positions come from the caller.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable

log = logging.getLogger("starcast")


class FreezeHold:
    def __init__(self, input_names: Iterable[str], tp: Callable[[str, int], Any],
                 handled_upto: Callable[[Any], int]) -> None:
        self.input_names = list(input_names)  # unprefixed input topic names
        self.tp = tp  # (name, partition) -> the topic-partition key
        self.handled_upto = handled_upto  # tp -> offset before which all is handled
        self.end_offsets: dict = {}  # tp -> end offset, as last asked
        self.held_by: dict[int, list[str]] = {}  # partition -> topics holding its freeze

    def lagging(self, partition: int) -> list[str]:
        """Input topics of `partition` with messages not handled yet (by the last end offsets
        asked; unknown counts as lagging)."""
        behind = []
        for name in self.input_names:
            tp = self.tp(name, partition)
            end = self.end_offsets.get(tp)
            if end is None or self.handled_upto(tp) < end:
                behind.append(name)
        return behind

    def hold(self, partition: int) -> list[str]:
        """The topics holding the partition's due freeze now (logged when that changes)."""
        behind = self.lagging(partition)
        if behind and self.held_by.get(partition) != behind:
            log.info("starcast: monthly freeze of partition %d waits for %s", partition, ", ".join(behind))
        self.held_by[partition] = behind
        return behind

    def released(self, clocks: dict[int, int]) -> list[tuple[int, int]]:
        """(partition, clock) of each partition whose freeze was held and whose lag has ended
        without a message to settle it: a tick at its own clock moves nothing and lets the
        agent freeze. Each is then no longer held."""
        out = []
        for partition, behind in list(self.held_by.items()):
            clock = clocks.get(partition)
            if behind and clock is not None and not self.lagging(partition):
                self.held_by[partition] = []
                out.append((partition, clock))
        return out

    def positions(self, partition: int) -> str:
        """Each input topic's handled offset / end offset on `partition` (for the freeze log)."""
        return ", ".join(f"{name} {self.handled_upto(tp)}/{self.end_offsets.get(tp)}"
                         for name in self.input_names for tp in [self.tp(name, partition)])
