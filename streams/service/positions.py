"""Which input offsets this worker has handled, and the holes it must read again.

Faust may skip records of an input partition around a rebalance (fetched before it, dropped,
the fetch position moved past them). The worker handles the record that comes after the hole
(state is idempotent) but keeps the partition counted as lagging until the first missing
offset comes back, so no monthly freeze runs without the skipped records; if Faust's own seek
after the assignment does not bring it within `reread_after` seconds, the worker seeks back
itself (`due_rereads`).

No Faust import: positions are keyed by (topic, partition) named tuples, offsets are integers.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

log = logging.getLogger("starcast")


class InputPositions:
    """Per input topic-partition: the next offset in sequence, the furthest one read, and the
    hole (if any) the worker waits for.

    Invariants: `next_offset[tp]` is the offset after the last message handled in sequence
    since the last rebuild (all before it are in state); `read_past[tp] >= next_offset[tp]`,
    and a hole exists exactly while `read_past[tp] > next_offset[tp]`.
    """

    def __init__(self, first_offset: Callable[[Any], int | None], reread_after: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.first_offset = first_offset  # where reading of a partition began at its assignment
        self.reread_after = reread_after
        self.clock = clock
        self.next_offset: dict = {}  # tp -> the offset after the last message handled in sequence
        self.read_past: dict = {}  # tp -> the offset after the furthest message handled
        self.rewound: dict = {}  # tp -> the offset it waits for after a skip
        self.seek_back: dict = {}  # tp -> (first missing offset, since): re-read if still missing

    def clear(self) -> None:
        """Forget everything: after a table rebuild, positions go back to the committed offsets."""
        self.next_offset.clear()
        self.rewound.clear()
        self.read_past.clear()
        self.seek_back.clear()

    def handled(self, tp: Any, offset: int, topic: str = "", partition: int = 0) -> bool:
        """Record that the message at `offset` is being handled; True unless it is a re-read of
        one handled before (records after a hole are read again once it is sought back to:
        their forecasts went out the first time, and latency must count each record once)."""
        first_time = offset >= self.read_past.get(tp, 0) or self.rewound.get(tp) == offset
        expected = self.next_offset.get(tp)
        if expected is None:  # the first message since the last assignment: reading starts here
            expected = self.first_offset(tp)
        if expected is not None and offset > expected:
            # Offsets skipped: handle this one; until the first missing offset comes back the
            # partition counts as gapped. Seeking here, in the middle of Faust's recovery seek,
            # stalled commits: `due_rereads` does it once the group has settled.
            if self.rewound.get(tp) != expected:
                log.info("starcast: %s/%d skipped from offset %d to %d: waiting for %d",
                         topic, partition, expected, offset, expected)
                self.rewound[tp] = expected
                self.seek_back[tp] = (expected, self.clock())
                self.next_offset[tp] = expected
        else:
            if expected is not None and offset < expected:  # re-delivered: harmless, rare
                log.info("starcast: %s/%d re-delivered from offset %d (next was %d)", topic, partition,
                         offset, expected)
            self.rewound.pop(tp, None)
            self.next_offset[tp] = offset + 1
        if self.read_past.get(tp, 0) <= offset:
            self.read_past[tp] = offset + 1
        return first_time

    def handled_upto(self, tp: Any, committed: int | None) -> int:
        """The offset before which every message of `tp` is in this worker's state: the next
        one in sequence since the last rebuild, else the committed offset."""
        done = self.next_offset.get(tp)
        return done if done is not None else committed or 0

    def gapped(self, partition: int) -> set[str]:
        """Topics of `partition` read past a hole (records missing before ones handled)."""
        return {tp.topic for tp, furthest in self.read_past.items()
                if tp.partition == partition and self.next_offset.get(tp, furthest) < furthest}

    def due_rereads(self) -> list[tuple[Any, int]]:
        """Holes still open `reread_after` seconds after they were found: (tp, missing offset).
        Each is returned once; the caller seeks the partition back there."""
        now, due = self.clock(), []
        for tp, (missing, since) in list(self.seek_back.items()):
            if now - since < self.reread_after:
                continue  # Faust's own seek after an assignment usually brings it back first
            del self.seek_back[tp]
            if self.rewound.get(tp) == missing and self.next_offset.get(tp) == missing:
                due.append((tp, missing))
        return due
