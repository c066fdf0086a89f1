"""The intake between the worker's fetch loop and the rating agent (streams/service/kafka/intake.py):
batches as take_events gave them, back-pressure, emptied with Faust's queues on revocation, and
records taken in event-time order across the topic-partitions of one partition number."""

from __future__ import annotations

import asyncio
from typing import NamedTuple

from hypothesis import given, settings
from hypothesis import strategies as st
from faust.types import TP
from mode.utils.queues import FlowControlEvent

from streams.service.kafka.intake import Intake as _Intake

SOURCE = TP("t", 0)


def Intake(topics, maxsize, **kw):  # noqa: N802 - the intake of one topic-partition, messages in fetch order
    return _Intake(topics, maxsize, source_of=lambda message: SOURCE, **kw)


class Rec(NamedTuple):
    tp: TP
    ts: int | None
    n: int = 0


def ordered(maxsize=1000, **kw):
    return _Intake({"a", "b", "c"}, maxsize, event_time=lambda rec: rec.ts, **kw)


def run(coro):
    return asyncio.run(coro)


def test_a_full_batch_is_taken_at_once_and_the_rest_stays_in_order():
    async def scenario():
        intake = Intake({"t"}, maxsize=100)
        for i in range(25):
            intake.put(i)
        first = await asyncio.wait_for(intake.take(10, within=60), 1)  # no waiting: 10 are there
        return first, await intake.take(10, within=60), len(intake)

    first, second, left = run(scenario())
    assert first == list(range(10)) and second == list(range(10, 20)) and left == 5


def test_a_short_batch_is_taken_within_the_time_limit():
    async def scenario():
        intake = Intake({"t"}, maxsize=100)
        intake.put("a")
        loop = asyncio.get_running_loop()
        start = loop.time()
        batch = await intake.take(10, within=0.05)
        return batch, loop.time() - start

    batch, waited = run(scenario())
    assert batch == ["a"] and waited >= 0.04


def test_a_batch_completed_while_waiting_is_taken_when_it_is_full():
    async def scenario():
        intake = Intake({"t"}, maxsize=100)
        intake.put(0)
        taking = asyncio.ensure_future(intake.take(3, within=60))
        await asyncio.sleep(0)
        intake.put(1)
        intake.put(2)
        intake.put(3)
        return await asyncio.wait_for(taking, 1), len(intake)

    assert run(scenario()) == ([0, 1, 2], 1)


def test_take_waits_for_the_first_message():
    async def scenario():
        intake = Intake({"t"}, maxsize=100)
        taking = asyncio.ensure_future(intake.take(5, within=0.01))
        await asyncio.sleep(0.05)
        assert not taking.done()
        intake.put("x")
        return await asyncio.wait_for(taking, 1)

    assert run(scenario()) == ["x"]


def test_a_full_intake_holds_the_fetch_loop_until_a_batch_is_taken():
    async def scenario():
        intake = Intake({"t"}, maxsize=4)
        for i in range(4):
            intake.put(i)
        assert intake.full()
        waiting = asyncio.ensure_future(intake.room())
        await asyncio.sleep(0.01)
        held = not waiting.done()
        await intake.take(2, within=0)
        await asyncio.wait_for(waiting, 1)
        return held, intake.full()

    assert run(scenario()) == (True, False)


def test_faust_flow_control_empties_the_intake_like_its_own_queues():
    """Faust calls flow_control.clear() when partitions are revoked: nothing fetched before
    may be handled after, and a fetch loop waiting for room goes on."""

    async def scenario():
        flow = FlowControlEvent(initially_suspended=False)
        intake = Intake({"t"}, maxsize=2)
        flow.manage_queue(intake)
        intake.put(1)
        intake.put(2)
        waiting = asyncio.ensure_future(intake.room())
        await asyncio.sleep(0)
        flow.suspend()
        flow.clear()
        await asyncio.wait_for(waiting, 1)
        emptied = len(intake)
        intake.put(3)  # after the rebalance
        return emptied, await intake.take(5, within=0)

    assert run(scenario()) == (0, [3])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=30), min_size=1, max_size=10), st.integers(1, 12))
def test_batches_are_the_messages_put_in_order_none_lost_none_twice(bursts, max_):
    async def scenario():
        intake = Intake({"t"}, maxsize=1000)
        taken: list[int] = []
        n = 0
        for burst in bursts:
            for _ in range(burst):
                intake.put(n)
                n += 1
            batch = await intake.take(max_, within=0)
            assert 1 <= len(batch) <= max_
            taken += batch
        while len(intake):
            taken += await intake.take(max_, within=0)
        return taken, n

    taken, n = run(scenario())
    assert taken == list(range(n))


A0, B0, C0, A1 = TP("a", 0), TP("b", 0), TP("c", 0), TP("a", 1)


def test_a_batch_merges_a_partitions_topics_by_event_time_each_in_fetch_order():
    """A sparse topic fetched ahead (b, spanning days) goes in between a dense one's records."""
    async def scenario():
        intake = ordered()
        for rec in [Rec(B0, 10), Rec(B0, 40), Rec(A0, 5), Rec(A0, 20), Rec(A0, 30), Rec(A0, 50), Rec(C0, None)]:
            intake.put(rec)
        return await intake.take(100, within=0)

    taken = run(scenario())
    assert [(rec.tp.topic, rec.ts) for rec in taken] == [
        ("c", None), ("a", 5), ("b", 10), ("a", 20), ("a", 30), ("b", 40), ("a", 50)]


def test_a_topic_behind_holds_its_partition_until_its_records_come_or_max_idle():
    """Topic a of partition 0 has records on the broker not fetched yet: b's record waits for them,
    partition 1 does not; a's record then goes first; without them, b's goes after max_idle."""
    async def scenario():
        intake = ordered(max_idle=0.3)
        intake.fetched({A0})
        intake.put(Rec(B0, 30))
        intake.put(Rec(A1, 99))
        first = await intake.take(10, within=0)
        held = len(intake)
        intake.put(Rec(A0, 10))
        intake.fetched(set())  # a caught up
        second = await intake.take(10, within=0)
        intake.fetched({A0})
        intake.put(Rec(B0, 60))
        loop = asyncio.get_running_loop()
        start = loop.time()
        third = await intake.take(10, within=0)
        return first, held, second, third, loop.time() - start

    first, held, second, third, waited = run(scenario())
    assert [rec.tp for rec in first] == [A1] and held == 1
    assert [rec.ts for rec in second] == [10, 30]
    assert [rec.ts for rec in third] == [60] and waited >= 0.25


def test_a_partition_stops_where_a_topic_behind_runs_out_of_records():
    """Records of b after the last held record of a (which is behind) wait for a's next ones."""
    async def scenario():
        intake = ordered(max_idle=60)
        intake.fetched({A0})
        for rec in [Rec(A0, 10), Rec(B0, 5), Rec(B0, 20)]:
            intake.put(rec)
        return [rec.ts for rec in await intake.take(10, within=0)], len(intake)

    assert run(scenario()) == ([5, 10], 1)


def test_nothing_waits_while_the_intake_is_full():
    async def scenario():
        intake = ordered(maxsize=2, max_idle=60)
        intake.fetched({A0})
        intake.put(Rec(B0, 30))
        intake.put(Rec(B0, 40))
        return [rec.ts for rec in await asyncio.wait_for(intake.take(10, within=0), 1)]

    assert run(scenario()) == [30, 40]


def test_a_source_holding_many_records_is_left_out_of_fetches_until_taken_down_to_half():
    async def scenario():
        intake = ordered(per_source=4)
        calls: list[tuple[str, TP]] = []
        intake.on_full = lambda tp: calls.append(("full", tp))
        intake.on_room = lambda tp: calls.append(("room", tp))
        for n in range(5):
            intake.put(Rec(A0, n))
        intake.put(Rec(B0, 100))
        after_puts = list(calls)
        await intake.take(1, within=0)  # 4 of a left: still more than half
        after_one = list(calls)
        await intake.take(2, within=0)  # 2 left
        return after_puts, after_one, calls

    after_puts, after_one, calls = run(scenario())
    assert after_puts == [("full", A0)] and after_one == after_puts
    assert calls == [("full", A0), ("room", A0)]


def test_clearing_forgets_what_was_behind_and_gives_back_what_it_left_out_of_fetches():
    """A source left out of fetches when the intake is cleared (a rebalance) would never be
    fetched again if Faust had already reset its fetch set: clearing gives it back."""
    async def scenario():
        intake = ordered(max_idle=60, per_source=2)
        given_back: list[TP] = []
        intake.on_room = given_back.append
        intake.fetched({A0})
        intake.put(Rec(A1, 1))
        intake.put(Rec(A1, 2))  # A1 now left out of fetches
        intake.clear()
        intake.put(Rec(B0, 1))
        return await asyncio.wait_for(intake.take(5, within=0), 1), given_back

    taken, given_back = run(scenario())
    assert [rec.ts for rec in taken] == [1] and given_back == [A1]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([A0, B0, C0, A1]), st.integers(0, 50)), min_size=1, max_size=60),
       st.integers(1, 12), st.lists(st.integers(0, 60), max_size=5))
def test_every_record_is_taken_once_in_fetch_order_per_source_and_time_order_when_all_held(recs, max_, cuts):
    """Whatever the interleaving of puts and takes: nothing lost or taken twice, each source's
    records in fetch order; and records held together come out merged by time per partition."""
    async def scenario():
        intake = ordered()
        batches: list[list[Rec]] = []
        for n, (tp, ts) in enumerate(recs):
            if n in cuts and len(intake):
                batches.append(await intake.take(max_, within=0))
            intake.put(Rec(tp, ts, n))
        while len(intake):
            batches.append(await intake.take(max_, within=0))
        return batches

    batches = run(scenario())
    taken = [rec for batch in batches for rec in batch]
    assert sorted(rec.n for rec in taken) == list(range(len(recs)))
    for source in (A0, B0, C0, A1):
        ns = [rec.n for rec in taken if rec.tp == source]
        assert ns == sorted(ns)
    if not cuts:  # all held before the first take: per partition, each batch continues the merge
        for partition in (0, 1):
            heads = {tp: [rec for rec in taken if rec.tp == tp] for tp in (A0, B0, C0, A1) if tp.partition == partition}
            out = [rec for rec in taken if rec.tp.partition == partition]
            for rec in out:  # each record taken is the earliest head among its partition's sources
                assert rec.ts == min(queue[0].ts for queue in heads.values() if queue)
                heads[rec.tp].pop(0)
