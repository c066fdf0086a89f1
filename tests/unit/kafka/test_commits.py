"""Commits cover only contiguous runs of handled offsets (streams/service/kafka/commits.py)."""

from __future__ import annotations

import asyncio

import faust
from aiokafka.structs import TopicPartition as TP
from hypothesis import given
from hypothesis import strategies as st

from streams.service.kafka.commits import commit_frontier
from tests.unit.kafka.test_generations import generation_app, visit



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
    consumer.first_offsets = {tp: 0}  # set at every assignment (rebalance.py)
    assert consumer.ack(visit(195, generation=2))  # 0..194 dropped in a rebalance
    assert consumer._filter_committable_offsets([tp]) == {}
    asyncio.run(consumer._add_gap(tp, 0, 194))  # Faust's loop records the jump as a gap...
    assert consumer._filter_committable_offsets([tp]) == {}  # ...which is not committed through


def test_fausts_own_consumer_commits_past_a_hole_which_is_why_this_exists():
    app, consumer = generation_app("commit-holes-faust", faust.App)
    tp = TP("visits", 0)
    consumer._committed_offset[tp] = 100
    for offset in (101, 102, 103):
        consumer.ack(visit(offset, generation=2))
    assert consumer._filter_committable_offsets([tp]) == {tp: 104}  # 100 was never handled
