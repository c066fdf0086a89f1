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
