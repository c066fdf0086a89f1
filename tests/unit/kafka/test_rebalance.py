"""No input record lost around a rebalance (streams/service/kafka/rebalance.py)."""

from __future__ import annotations

import asyncio

from aiokafka.structs import TopicPartition as TP

from streams.service.kafka.rebalance import StallDetector, rewind_uncommitted



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
    first = asyncio.run(rewind_uncommitted(consumer, committed))
    assert sorted(Consumer.rewound) == [("buyer-messages", 0), ("buyer-messages", 1)]
    # where each input partition's reading starts: the hole check in the agent begins there
    assert first == {TP("buyer-messages", 0): 5, TP("buyer-messages", 1): 5,
                                               TP("buyer-messages", 2): 17}


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


def record(topic: str, partition: int, offset: int):
    from types import SimpleNamespace

    return SimpleNamespace(topic=topic, partition=partition, offset=offset, timestamp=None, timestamp_type=0,
                           headers=[], key=b"k", value=b"v", checksum=None, serialized_key_size=1,
                           serialized_value_size=1)


def fetched_before_active(app_class):
    """One fetch that returns records of an active input partition and of a standby changelog
    partition not active yet; returns (what was delivered, where the consumer sought)."""
    app = app_class("getmany-passed-over", broker="kafka://127.0.0.1:1")
    consumer = app.consumer
    active, standby = TP("visits", 0), TP("getmany-passed-over-state-changelog", 2)
    records = {active: [record("visits", 0, 7)], standby: [record(standby.topic, 2, 40), record(standby.topic, 2, 41)]}

    async def wait_next_records(timeout):
        return records, {active}

    sought = []

    async def seek(tp, offset):
        sought.append((tp, offset))

    consumer._wait_next_records = wait_next_records
    consumer.seek = seek
    consumer.assignment = lambda: {active, standby}
    consumer.highwater = lambda tp: None

    async def drain():
        return [(tp, message.offset) async for tp, message in consumer.getmany(timeout=0)]

    return asyncio.run(drain()), sought


def test_records_fetched_before_a_partition_is_active_are_read_again_changelogs_included():
    from streams.service.kafka import App

    delivered, sought = fetched_before_active(App)
    assert delivered == [(TP("visits", 0), 7)]
    assert sought == [(TP("getmany-passed-over-state-changelog", 2), 40)]  # a standby copy misses nothing


def test_fausts_own_getmany_drops_them_for_good_which_is_why_this_exists():
    import faust

    delivered, sought = fetched_before_active(faust.App)
    assert delivered == [(TP("visits", 0), 7)] and sought == []
