"""The eager start behind the worker's fetch loop (streams/service/kafka/fetch_loop.py): a callback
that does not suspend runs to completion at once, one that suspends becomes a task that behaves
like the coroutine run as a task (results, exceptions, cancellation)."""

from __future__ import annotations

import asyncio

import pytest

from streams.service.kafka.fetch_loop import start_eagerly


def test_a_callback_that_never_suspends_completes_without_a_task():
    done: list[str] = []

    async def deliver():
        done.append("delivered")

    async def scenario():
        return start_eagerly(deliver()), list(done)

    pending, seen = asyncio.run(scenario())
    assert pending is None and seen == ["delivered"]  # finished before start_eagerly returned


def test_a_callback_that_suspends_finishes_as_a_task_with_its_result():
    steps: list[str] = []

    async def deliver(room: asyncio.Event):
        steps.append("before")
        await room.wait()  # a full stream buffer
        steps.append("after")
        return 42

    async def scenario():
        room = asyncio.Event()
        pending = start_eagerly(deliver(room))
        assert pending is not None and steps == ["before"]
        room.set()
        return await pending

    assert asyncio.run(scenario()) == 42 and steps == ["before", "after"]


def test_cancelling_a_suspended_callback_reaches_the_coroutine():
    cleaned: list[str] = []

    async def deliver():
        try:
            await asyncio.sleep(10)
        finally:
            cleaned.append("cancelled inside")

    async def scenario():
        pending = start_eagerly(deliver())
        await asyncio.sleep(0)
        pending.cancel()  # what wait_first does when a rebalance suspends flow
        with pytest.raises(asyncio.CancelledError):
            await pending

    asyncio.run(scenario())
    assert cleaned == ["cancelled inside"]


def test_errors_propagate_before_and_after_the_first_suspension():
    async def bad_now():
        raise ValueError("decode")

    async def bad_later():
        await asyncio.sleep(0)
        raise KeyError("later")

    async def scenario():
        with pytest.raises(ValueError):
            start_eagerly(bad_now())
        with pytest.raises(KeyError):
            await start_eagerly(bad_later())

    asyncio.run(scenario())


def test_behind_is_what_the_broker_has_past_the_next_offset_or_not_yet_answered():
    from faust.types import TP

    from streams.service.kafka.fetch_loop import _behind

    a0, a1, a2, a3, t0 = TP("a", 0), TP("a", 1), TP("a", 2), TP("a", 3), TP("ticks", 0)
    ends = {a0: 10, a1: 10, a2: None, a3: 7, t0: None}
    behind = _behind({a0, a1, a2, a3, t0}, frozenset({"a"}), ends.get, next_offset={a0: 10, a1: 4},
                     first_offsets={a3: 7})
    # a0 read to the end; a1 has 6 more; a2 no fetch answered yet; a3 not read since the
    # assignment but its first offset is the end; ticks are not ordered
    assert behind == {a1, a2}


def test_the_intake_pauses_fetching_of_a_partition_with_faust_s_own_tp_type():
    """Records carry aiokafka's TopicPartition; Faust's consumer asserts its own TP in the
    partition sets it fetches from (on_buffer_drop crashed the agent with an aiokafka one)."""
    from aiokafka.structs import TopicPartition
    from faust.types import TP

    from streams.service.kafka.fetch_loop import _as_faust_tp

    seen: list = []
    _as_faust_tp(seen.append)(TopicPartition("a", 3))
    assert seen == [TP("a", 3)] and type(seen[0]) is TP
