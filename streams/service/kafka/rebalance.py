"""Guarantee: no input record is lost around a rebalance.

Upstream (faust-streaming 0.15.3 with aiokafka 0.14.0), three ways records go missing:

1. **Never-committed partitions are not sought back.** When a running worker is given more
   partitions, aiokafka may fetch records for them before Faust marks them active; Faust's
   `getmany` drops those records while aiokafka's position moves past them. Faust then seeks
   every partition to its committed offset, but aiokafka's `seek_to_committed` skips partitions
   with no committed offset (None or 0), so the dropped records are never read (a worker idling
   with a backlog). Kept here: after that seek, input partitions without a committed offset go
   back to their first record, and where each input partition's reading starts is recorded as
   `first_offsets` (the worker's hole check and `commits.py` start there).
2. **A callback abandoned while flow is suspended.** Faust's fetch loop waits for the message
   callback or `suspend_flow`; when a rebalance suspends flow the callback is abandoned but the
   partition's read offset has moved past the message. After the recovery's seek and before flow
   resumes nothing reads it again: the partition idles with a record fetched, never handled and
   never committed (a partition's last tick lost for good). Kept here: `StallDetector`
   finds input partitions whose committed offset has not moved for three checks while records
   wait past it and the worker is idle, and `reread_stalled` seeks them back to the committed
   offset.
3. **Records fetched for a partition not active yet are dropped** (`Consumer.getmany`): a
   partition assigned but not yet active (its recovery unfinished, or a standby changelog
   partition just resumed) can have a whole fetch returned; Faust drops it and the fetch
   position moves past it. For an input partition nothing reveals the hole when no later
   record follows. For a standby changelog partition it is worse: the standby copy misses
   those records (one fetch, ~128 KiB of changelog, seen when scaling 1 -> 2 -> 1) while its
   offset moves on past them, so the worker that takes the partition over restores it from
   an incomplete copy and rates its sellers without those facts. Kept here, on both fetch
   loops: the records are dropped as before, and the partition, input or changelog, is sought
   back to the first of them, so they are fetched again once it is active (a changelog record
   read twice is applied once: recovery skips offsets it has seen).

No upstream issue is known for any of them.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Mapping

from faust.transport.drivers.aiokafka import Consumer
from faust.types import TP, Message

from streams.service.kafka.commits import ContiguousCommits


class RewindUncommitted(ContiguousCommits):
    """Consumer mixin: never-committed input partitions read from their first record."""

    async def seek_to_committed(self) -> Mapping[TP, int]:
        committed = await super().seek_to_committed()
        self.first_offsets = await rewind_uncommitted(self, committed)
        return committed

    async def reread_stalled(self, detector: "StallDetector", idle: bool) -> list:
        """Seek stuck input partitions back to their committed offset; returns what was re-read
        as (tp, committed, fetch position, high watermark)."""
        return await reread_stalled(self, detector, idle)

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        """faust.transport.consumer.Consumer.getmany (0.15.3): records of a partition not
        active yet are sought back to (3. above), not silently passed over."""
        records, active_partitions = await self._wait_next_records(timeout)
        generation_id = self.app.consumer_generation_id
        if records is None or self.should_stop:
            return
        records_it = self.scheduler.iterate(records)
        to_message = self._to_message
        passed_over: dict[TP, int] = {}  # tp -> first offset not delivered
        if self.flow_active:
            for tp, record in records_it:
                if not self.flow_active or self.app.consumer_generation_id != generation_id:
                    break  # a rebalance: its recovery seeks every partition to where it resumes
                if active_partitions is None or tp in active_partitions or tp in self._buffered_partitions:
                    self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                    yield tp, to_message(tp, record)
                elif tp not in passed_over:
                    passed_over[tp] = record.offset
            for tp, offset in passed_over.items():
                if tp in self.assignment() and self.app.consumer_generation_id == generation_id:
                    self.log.info("starcast: %s/%d fetched before it was active: reading again from %d",
                                  tp.topic, tp.partition, offset)
                    await self.seek(tp, offset)
        else:
            try:
                await self.perform_seek()
            except Exception as ex:  # noqa: BLE001 - as Faust: the next fetch tries again
                self.log.warning(f"exception performing seek when flow not active {ex}")


async def rewind_uncommitted(consumer: Any, committed: Mapping[TP, int]) -> dict[TP, int]:
    """Seek input partitions that have no committed offset to their first record; returns
    the offset each input partition's reading starts from (committed, or the earliest for a
    never-committed one). Without it, records Faust dropped at the start of a never-committed
    partition (fetched before flow resumed, which a short fetch wait makes likely) were lost
    without a trace."""
    inputs = {tp: offset for tp, offset in committed.items() if not consumer._is_changelog_tp(tp)}
    never = [tp for tp, offset in inputs.items() if not offset]
    first = {tp: offset for tp, offset in inputs.items() if offset}
    if never:
        await consumer._thread.seek_to_beginning(*never)
        earliest = await consumer.earliest_offsets(*never)
        first.update({tp: earliest.get(tp) or 0 for tp in never})
    return first


class StallDetector:
    """Which input partitions are stuck: records wait past the committed offset (fetched or
    not) and the worker handled nothing at all, for `checks` consecutive checks. A busy worker
    is never judged: under a backlog a partition can wait behind others for a long time, and
    re-reading it then would only add to the backlog. A committed offset that creeps while
    nothing is handled is no progress (stale acks of an earlier generation once committed a few
    offsets at a time)."""

    def __init__(self, checks: int = 3) -> None:
        self.checks = checks
        self._seen: dict[TP, int] = {}  # tp -> consecutive idle checks with records waiting

    def observe(self, tp: TP, committed: int | None, end: int | None, idle: bool = True) -> bool:
        """`idle`: the worker handled no message since the previous check."""
        waiting = end is not None and end > (committed or 0)
        checks = self._seen.get(tp, 0) + 1 if waiting and idle else 0
        stuck = checks >= self.checks
        self._seen[tp] = 0 if stuck else checks  # after a re-read, judge afresh
        return stuck

    def reset(self) -> None:
        """Forget everything (a rebalance moves offsets and positions legitimately)."""
        self._seen.clear()


async def reread_stalled(consumer: Consumer, detector: StallDetector, idle: bool) -> list:
    """See `RewindUncommitted.reread_stalled`."""
    try:
        assignment = consumer._thread._ensure_consumer()._fetcher._subscriptions.subscription.assignment
    except AttributeError:  # not the aiokafka driver, or not started
        return []
    reread = []
    for tp in consumer.assignment():
        state = assignment.state_value(tp) if assignment is not None else None
        if consumer._is_changelog_tp(tp) or state is None:
            continue
        position = state._position
        end = max(x for x in (position, state.highwater, 0) if x is not None)
        committed = consumer._committed_offset.get(tp)
        if detector.observe(tp, committed, end, idle):
            await consumer.seek(tp, committed or 0)
            reread.append((tp, committed, position, state.highwater))
    return reread
