"""The producer buffer a commit flushes must really be empty afterwards (see
streams/service/faust_fixes.py). The Kafka client is a stand-in here: what is under test is
Faust's buffer in front of it, which needs no broker."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from aiokafka.structs import TopicPartition as TP

import faust
from faust.transport.producer import ProducerBuffer
from hypothesis import given
from hypothesis import strategies as st

from streams.service.faust_fixes import (DrainingProducerBuffer, StallDetector, commit_frontier, install,
                                         rewind_uncommitted)


def slow_messages(n: int, delivered: list, seconds: float = 0.15) -> list:
    """Messages whose hand-over to the client takes longer than Faust's 0.1 s flush patience."""

    async def publish_message(fut, wait=False):
        await asyncio.sleep(seconds)
        delivered.append(fut)

    channel = SimpleNamespace(publish_message=publish_message)
    return [SimpleNamespace(message=SimpleNamespace(channel=channel)) for _ in range(n)]


async def flushed(buffer_class) -> tuple[int, int]:
    app = faust.App("durable-commits-test", broker="kafka://127.0.0.1:1")
    buffer = buffer_class()
    buffer.app = app
    delivered: list = []
    await buffer.start()
    try:
        for message in slow_messages(4, delivered):
            buffer.put(message)
        await buffer.flush()
        return len(delivered), 4
    finally:
        buffer.pending = asyncio.Queue()  # what Faust's flush left behind would block its stop
        await buffer.stop()


def test_flush_returns_only_when_every_queued_write_reached_the_client():
    delivered, queued = asyncio.run(flushed(DrainingProducerBuffer))
    assert delivered == queued


def test_fausts_own_flush_returns_early_which_is_why_this_exists():
    delivered, queued = asyncio.run(flushed(ProducerBuffer))
    assert delivered < queued  # if this starts failing, Faust fixed it and the patch can go


def test_install_gives_the_apps_producer_the_draining_buffer():
    app = faust.App("durable-commits-install", broker="kafka://127.0.0.1:1")
    install(app)
    assert isinstance(app.producer.buffer, DrainingProducerBuffer)


def test_input_partitions_never_committed_go_back_to_their_first_record():
    """Stand-in consumer (the race that drops records needs a rebalance; the soak and the
    kill test cover it on a real broker): only never-committed *input* partitions rewind."""

    class Consumer:
        rewound: tuple = ()

        def _is_changelog_tp(self, tp):
            return tp.topic.endswith("-changelog")

        async def earliest_offsets(self, *tps):
            return {tp: 5 for tp in tps}  # e.g. older records deleted by retention

        class _thread:  # noqa: N801 - mirrors Faust's attribute
            @staticmethod
            async def seek_to_beginning(*tps):
                Consumer.rewound = tps

    committed = {TP("buyer-messages", 0): None, TP("buyer-messages", 1): 0, TP("buyer-messages", 2): 17,
                 TP("app-state-changelog", 0): None}
    consumer = Consumer()
    assert asyncio.run(rewind_uncommitted(consumer, committed)) == committed
    assert sorted(Consumer.rewound) == [("buyer-messages", 0), ("buyer-messages", 1)]
    # where each input partition's reading starts: the hole check in the agent begins there
    assert consumer.starcast_first_offsets == {TP("buyer-messages", 0): 5, TP("buyer-messages", 1): 5,
                                               TP("buyer-messages", 2): 17}


def test_flush_does_not_wait_for_messages_queued_after_it_began():
    """Under load the agent keeps queueing while a commit flushes: the flush must end."""

    async def scenario() -> tuple[int, int]:
        buffer = DrainingProducerBuffer()
        buffer.app = faust.App("durable-commits-load", broker="kafka://127.0.0.1:1")
        delivered: list = []
        await buffer.start()
        try:
            for message in slow_messages(3, delivered, seconds=0.05):
                buffer.put(message)
            flush = asyncio.ensure_future(buffer.flush())
            while not flush.done():  # a queue that never empties
                for message in slow_messages(2, delivered, seconds=0.05):
                    buffer.put(message)
                await asyncio.sleep(0.05)
            return len(delivered), buffer.size
        finally:
            buffer.pending = asyncio.Queue()
            await buffer.stop()

    delivered, still_queued = asyncio.run(asyncio.wait_for(scenario(), timeout=30))
    assert delivered >= 3 and still_queued > 0


def test_a_partition_whose_commit_stops_with_records_waiting_is_stuck_after_three_checks():
    detector, tp = StallDetector(checks=3), TP("ticks", 2)
    # The soak's case: offset 1 fetched (position 2) but never processed nor committed.
    assert [detector.observe(tp, 1, 2) for _ in range(4)] == [False, False, True, False]


def test_a_busy_worker_or_an_idle_caught_up_partition_is_never_stuck():
    detector, busy, idle = StallDetector(checks=3), TP("visits", 0), TP("visits", 1)
    for committed in range(100, 110):  # behind, but the worker handles messages
        assert not detector.observe(busy, committed, 500, idle=False)
    for _ in range(10):  # nothing waiting: committed == end
        assert not detector.observe(idle, 42, 42)


def test_a_committed_offset_creeping_while_nothing_is_handled_is_stuck():
    # The scaling test's case: stale acks committed a few offsets every commit, far behind
    # records already fetched, while the worker handled nothing.
    detector, tp = StallDetector(checks=3), TP("visits", 0)
    assert [detector.observe(tp, committed, 721) for committed in (134, 141, 145)] == [False, False, True]


def test_never_committed_partitions_with_records_count_as_waiting_and_reset_forgets():
    detector, tp = StallDetector(checks=2), TP("orders", 3)
    assert [detector.observe(tp, None, 7) for _ in range(2)] == [False, True]
    detector.observe(tp, None, 7)
    detector.reset()
    assert not detector.observe(tp, None, 7)


def test_a_busy_worker_is_never_judged_stuck():
    """Under a backlog a partition waits behind others: re-reading it would only add work."""
    detector, tp = StallDetector(checks=3), TP("visits", 3)
    assert not any(detector.observe(tp, 5928, 7430, idle=False) for _ in range(10))
    assert [detector.observe(tp, 5928, 7430, idle=True) for _ in range(3)] == [False, False, True]


def generation_app(name: str):
    """An app with the fixes installed, its consumer (never started) acking topic "visits"."""
    app = faust.App(name, broker="kafka://127.0.0.1:1")
    install(app)
    app.topics._acking_topics.add("visits")
    app.consumer_generation_id = 2
    return app, app.consumer


def visit(offset: int, generation: int):
    from faust.types.tuples import ConsumerMessage

    return ConsumerMessage("visits", 0, offset, 0.0, 0, [], b"k", b"v", None, generation_id=generation)


def test_acks_of_messages_fetched_before_the_last_rebalance_are_ignored():
    app, consumer = generation_app("generation-acks")
    tp = TP("visits", 0)
    # Mid-rebalance: the revoke forgot the committed offset, and an old batch finishes late.
    assert consumer.ack(visit(140, generation=1)) is False
    consumer._committed_offset[tp] = 293  # the assignment reads it from the broker
    assert consumer.ack(visit(293, generation=2)) is True
    assert consumer._acked[tp] == [293]


def test_a_commit_whose_generation_ended_during_its_flush_is_dropped():
    app, consumer = generation_app("generation-commit")
    tp = TP("visits", 0)
    sent: list = []

    async def commit(offsets):
        sent.append(dict(offsets))
        return True

    async def rebalance_during_flush():
        app.consumer_generation_id += 1  # revoked and assigned again meanwhile...
        consumer._committed_offset[tp] = 293  # ...and the committed offset read from the broker

    async def flush_only():
        pass

    consumer._commit, consumer.assignment = commit, lambda: {tp}
    app.producer.flush = rebalance_during_flush
    assert asyncio.run(consumer._commit_offsets({tp: 141})) is False
    assert sent == [] and consumer._committed_offset[tp] == 293  # not sent, not recorded

    app.producer.flush = flush_only  # the same generation throughout: committed as Faust does
    assert asyncio.run(consumer._commit_offsets({tp: 300})) is True
    assert sent == [{tp: 300}] and consumer._committed_offset[tp] == 300


def test_commit_waits_at_a_hole_at_the_first_uncommitted_offset():
    acked = [104, 101, 102, 103]  # 100 (the first uncommitted) was never handled
    assert commit_frontier(acked, 100) == (None, [])
    assert acked == [101, 102, 103, 104]  # kept for when 100 is handled
    acked.append(100)
    assert commit_frontier(acked, 100) == (105, [100, 101, 102, 103, 104]) and acked == []


def test_commit_stops_at_the_first_hole_after_the_committed_offset():
    acked = [7, 8, 9, 12, 13]
    assert commit_frontier(acked, 7) == (10, [7, 8, 9]) and acked == [12, 13]
    assert commit_frontier(acked, 10) == (None, [])


@given(st.sets(st.integers(0, 40)), st.integers(0, 20))
def test_a_commit_never_covers_an_offset_that_was_not_acked(offsets, start):
    acked = list(offsets)
    offset, covered = commit_frontier(acked, start)
    if offset is not None:  # everything from start up to the commit was handled
        assert set(range(start, offset)) <= offsets and offset > start
    else:
        assert start not in offsets
    assert sorted(covered + acked) == sorted(offsets)  # nothing lost from the bookkeeping


def test_the_consumer_commits_past_no_offset_it_did_not_ack():
    """Faust's own choice on this case: committed 100, acked 101..103 -> commit 104, losing 100."""
    app, consumer = generation_app("commit-holes")
    tp = TP("visits", 0)
    consumer._committed_offset[tp] = 100
    for offset in (101, 102, 103):
        assert consumer.ack(visit(offset, generation=2))
    assert consumer._filter_committable_offsets([tp]) == {}
    assert consumer.ack(visit(100, generation=2))
    assert consumer._filter_committable_offsets([tp]) == {tp: 104}


def test_a_never_committed_partition_commits_from_its_first_offset():
    app, consumer = generation_app("commit-holes-new")
    tp = TP("visits", 0)
    consumer.starcast_first_offsets = {tp: 0}  # set by rewind_uncommitted at assignment
    assert consumer.ack(visit(195, generation=2))  # 0..194 dropped in a rebalance
    assert consumer._filter_committable_offsets([tp]) == {}
    asyncio.run(consumer._add_gap(tp, 0, 194))  # Faust's loop records the jump as a gap...
    assert consumer._filter_committable_offsets([tp]) == {}  # ...which is not committed through
