"""The intake between the worker's fetch loop and the rating agent (streams/service/kafka/intake.py):
batches as take_events gave them, back-pressure, and emptied with Faust's queues on revocation."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st
from mode.utils.queues import FlowControlEvent

from streams.service.kafka.intake import Intake


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
