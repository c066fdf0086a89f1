"""At-least-once holes in faust-streaming 0.15.3 that the soak and scaling tests found, closed here.

1. **Commits ahead of table writes.** Faust sends table changelog writes through a
   `ProducerBuffer`, and before committing offsets it calls `producer.flush()`, whose buffer part
   (`ProducerBuffer.flush_atmost`) gives up as soon as 0.1 s pass without a message leaving the
   buffer. When the broker is slow the commit goes ahead with changelog writes still queued; a
   crash then loses the state changes of events whose offsets are already committed, and they
   are never replayed (seen as wrong monthly freezes). `DrainingProducerBuffer.flush` waits
   until every message queued before it began has been handed to the client, so the client's
   own flush that follows covers them all.

2. **Records dropped during a rebalance, never re-read.** When a running worker is given more
   partitions, aiokafka may fetch records for them before Faust marks them active; Faust's
   `getmany` silently drops those records, but aiokafka's position has moved past them. Faust
   then seeks every stream partition to its committed offset, yet aiokafka's
   `seek_to_committed` skips partitions with no committed offset (None or 0), so the dropped
   records are lost: the worker idles with a backlog (the "restart stall"). After that seek,
   input partitions without a committed offset are sent back to their beginning.

3. **Records dropped while flow is suspended.** Faust's fetch loop waits for either the message
   callback or `suspend_flow`; when a rebalance suspends flow, the callback is abandoned but the
   partition's read offset still moves past the message. If that happens after the recovery's
   seek and before flow resumes, nothing re-reads it: the partition idles with a message
   fetched, never processed and never committed (seen in the soak as one partition's last tick
   lost). `StallDetector` finds input partitions whose committed offset has not moved for three
   checks while records wait past it and the worker is idle; the worker seeks them back to the
   committed offset.

4. **Bookkeeping of one generation applied to the next.** A rebalance forgets a partition's
   acked offsets and committed offset, then sets the committed offset again from the broker. Two
   things from before it could still land afterwards: acks of events the agent was handling
   when it began (a batch finishes after the rebalance), and a commit whose offsets were
   computed before it and whose `producer.flush()` outlasted it; Faust then records (and sends)
   the old offset, so the committed offset went *back* (seen: 293 -> 134) while the acked
   offsets were beyond it, and the partition never committed again ("commit stuck behind the
   end" in the 1 -> 2 -> 1 scaling test). `install` makes acks of an earlier generation's
   messages no-ops (the message is re-read if its offset was not committed) and drops a commit
   whose generation ended before it reached the broker.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left

import faust
from faust.transport.producer import ProducerBuffer

from streams.service import eager_drain


class DrainingProducerBuffer(ProducerBuffer):
    """Flush = every message queued before the flush began has reached the client. Not "until
    the queue is empty": under load the agent keeps queueing and a commit would starve."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.queued = 0  # messages ever put
        self.handed_over = 0  # messages ever handed to the client (the queue is FIFO)

    def put(self, fut) -> None:
        self.queued += 1
        super().put(fut)

    async def _send_pending(self, fut) -> None:
        try:
            await super()._send_pending(fut)
        finally:
            self.handed_over += 1

    async def flush(self) -> None:
        target = self.queued
        while self.handed_over < target and self.state == "running":
            self.message_sent.clear()
            try:
                await asyncio.wait_for(self.message_sent.wait(), timeout=0.1)
            except asyncio.TimeoutError:
                pass
        if self.size and self.state != "running":  # stopping: Faust's own flush says so
            await super().flush()


def install(app: faust.App, fast_fetch: bool = False, intake=None) -> None:
    """Patch the app's producer and consumer, whenever they are created; `fast_fetch` also
    replaces Faust's fetch loop (eager_drain.py; the worker's default, settings.fast_fetch),
    which then puts the records of `intake.topics` in `intake` (intake.py)."""
    new_producer = app._new_producer

    def producer_with_draining_buffer():
        producer = new_producer()
        if not app.conf.producer_threaded:  # the threaded producer keeps its own queue
            buffer = DrainingProducerBuffer(loop=producer.loop, beacon=producer.beacon)
            buffer.app = app
            producer.buffer = buffer
        return producer

    app._new_producer = producer_with_draining_buffer

    new_consumer = app._new_consumer

    def consumer_rereading_uncommitted():
        consumer = new_consumer()
        seek_to_committed = consumer.seek_to_committed

        async def seek_to_committed_or_beginning():
            committed = await seek_to_committed()
            return await rewind_uncommitted(consumer, committed)

        consumer.seek_to_committed = seek_to_committed_or_beginning
        guard_generations(consumer)
        commit_only_handled_runs(consumer)
        if fast_fetch:
            eager_drain.install(consumer, intake)  # not a fix: the fetch loop without a task per message
        return consumer

    app._new_consumer = consumer_rereading_uncommitted


def commit_frontier(acked: list[int], start: int | None) -> tuple[int | None, list[int]]:
    """Hole 5: the offset to commit for a partition, and the acked offsets it covers (taken
    out of `acked`, which is left sorted). `start` is the first offset not yet committed (None:
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


def commit_only_handled_runs(consumer) -> None:
    """Hole 5: replace Faust's choice of the offset to commit by `commit_frontier`, and stop
    it recording jumps as gaps to commit through."""

    def new_offset(tp) -> int | None:
        start = consumer._committed_offset.get(tp)
        if not start:  # None, or 0 which Faust also treats as "never committed"
            start = getattr(consumer, "starcast_first_offsets", {}).get(tp, start)
        offset, covered = commit_frontier(consumer._acked[tp], start)
        consumer._acked_index[tp].difference_update(covered)
        return offset

    async def no_gap(tp, offset_from: int, offset_to: int) -> None:
        return None

    consumer._new_offset = new_offset
    consumer._add_gap = no_gap


def guard_generations(consumer) -> None:
    """Hole 4: acks and commits count only within the consumer generation they began in."""
    app = consumer.app
    ack = consumer.ack

    def ack_of_this_generation(message) -> bool:
        generation = getattr(message, "generation_id", None)
        if generation is not None and generation != app.consumer_generation_id:
            return False  # fetched before the last rebalance: not this generation's to commit
        return ack(message)

    consumer.ack = ack_of_this_generation
    commit_offsets = consumer._commit_offsets

    async def commit_offsets_of_this_generation(offsets, start_new_transaction: bool = True) -> bool:
        if consumer.in_transaction:
            return await commit_offsets(offsets, start_new_transaction)
        generation = app.consumer_generation_id
        assignment = consumer.assignment()
        committable = {tp: offset for tp, offset in offsets.items() if tp in assignment}
        if not committable:
            return False
        await app.producer.flush()  # the table writes before the offsets (hole 1)
        if app.consumer_generation_id != generation or app.rebalancing:
            consumer.log.info("starcast: commit computed before a rebalance dropped: %r", committable)
            return False
        did_commit = await consumer._commit(committable)
        if app.consumer_generation_id != generation:
            return False  # the new generation's committed offsets were set from the broker
        if did_commit:
            app.tables.on_commit(committable)
        consumer._committed_offset.update(committable)  # as Faust: a refused commit is retried higher
        app.monitor.on_tp_commit(committable)
        return did_commit

    consumer._commit_offsets = commit_offsets_of_this_generation


async def rewind_uncommitted(consumer, committed: dict) -> dict:
    """Seek input partitions that have no committed offset to their first record.

    Also records, as `consumer.starcast_first_offsets`, the offset each input partition's
    reading starts from (committed, or the earliest for a never-committed one): the agent's
    check that offsets arrive without holes starts there. Without it, records Faust dropped
    at the start of a never-committed partition (fetched before flow resumed, which a short
    fetch wait makes likely) were lost without a trace."""
    inputs = {tp: offset for tp, offset in committed.items() if not consumer._is_changelog_tp(tp)}
    never = [tp for tp, offset in inputs.items() if not offset]
    first = {tp: offset for tp, offset in inputs.items() if offset}
    if never:
        await consumer._thread.seek_to_beginning(*never)
        earliest = await consumer.earliest_offsets(*never)
        first.update({tp: earliest.get(tp) or 0 for tp in never})
    consumer.starcast_first_offsets = first
    return committed


class StallDetector:
    """Which input partitions are stuck: records wait past the committed offset (fetched or
    not) and the worker handled nothing at all, for `checks` consecutive checks. A busy worker
    is never judged: under a backlog a partition can wait behind others for a long time, and
    re-reading it then would only add to the backlog. A committed offset that creeps while
    nothing is handled is no progress (hole 4 showed one: stale acks committed a few at a time)."""

    def __init__(self, checks: int = 3):
        self.checks = checks
        self._seen: dict = {}  # tp -> consecutive idle checks with records waiting

    def observe(self, tp, committed: int | None, end: int | None, idle: bool = True) -> bool:
        """`idle`: the worker handled no message since the previous check."""
        waiting = end is not None and end > (committed or 0)
        checks = self._seen.get(tp, 0) + 1 if waiting and idle else 0
        stuck = checks >= self.checks
        self._seen[tp] = 0 if stuck else checks  # after a re-read, judge afresh
        return stuck

    def reset(self) -> None:
        """Forget everything (a rebalance moves offsets and positions legitimately)."""
        self._seen.clear()


async def reread_stalled(consumer, detector: StallDetector, idle: bool) -> list:
    """Seek stuck input partitions of a running Faust consumer back to their committed offset;
    returns what was re-read as (tp, committed, fetch position, high watermark)."""
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
