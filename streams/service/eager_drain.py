"""Faust's fetch loop without two tasks and an `asyncio.wait` per message.

faust-streaming 0.15.3 hands every fetched message to the conductor with
`await self.wait_first(callback(message), self.suspend_flow.wait())`: four futures (the
callback, `suspend_flow`, and the consumer's `stopped` and `crashed` events) and an
`asyncio.wait` per message, so that a rebalance can abandon a callback blocked on a full stream
buffer. Profiled on the bench input that is 29 % of the decode-only floor's time and 17 % of
the worker's main thread, although the callback almost never blocks: it puts the event in a
stream queue that has room.

`eager_drain_messages` is the same loop, except that it runs the callback eagerly up to its
first suspension (what Python 3.12's eager tasks do). A callback that completes without
suspending, the common case, costs no task at all; one that suspends (full buffer, flow
suspended for a rebalance, producer buffer over its limit) becomes a task and goes through
Faust's `wait_first` exactly as before, so a rebalance still abandons it. The only difference
otherwise: the loop yields to the event loop every 100 messages (Faust's own `yield_every`)
instead of on every message, which lets the agent take events in larger batches.

A second change: each fetch waits at most `GETMANY_TIMEOUT` (Faust: 1 s) for records. Faust
asks only for its *active* partitions, and a partition whose stream buffer filled up leaves
that set until the buffer drains; a fetch begun while the busy partitions were out waited up
to a second on the quiet ones, with the busy ones back in and their records waiting. Measured
on the bench input: 3,300 -> 4,700 events/s from this alone, 6,600 with the eager callback and
a 20 ms broker fetch wait (settings.fetch_wait_ms).

A third: offsets that jump are not recorded as gaps (Faust commits through gaps; on our
topics a jump is records dropped around a rebalance: faust_fixes, hole 5, which also makes the
default loop's `_add_gap` a no-op).

A fourth, in `getmany`: records fetched for a partition that Faust has not marked active
yet (it is assigned, its recovery is not finished) are dropped, as before, but the partition is
sought back to the first of them, so they are fetched again once it is active. Faust moved on
past them; when no later record of the partition followed, nothing revealed the hole and the
partition's commit waited for the stall watch (15 s and more) while its freeze was held.

A fifth: records of the rating agent's topics skip the callback (the conductor, a channel
queue and Faust's stream) and go into the agent's `Intake` (intake.py), which it takes in batches.
"""

from __future__ import annotations

import asyncio
import types
from typing import Any, Coroutine

from faust.transport.consumer import CONSUMER_FETCHING

GETMANY_TIMEOUT = 0.05  # seconds; see the module docstring


class _Remainder:
    """The rest of a coroutine that already ran to its first suspension, awaitable by a Task:
    the future it yielded goes to the Task first, then results and exceptions pass through."""

    __slots__ = ("coro", "first")

    def __init__(self, coro: Coroutine, first: Any):
        self.coro, self.first = coro, first

    def __await__(self):
        coro, value = self.coro, self.first
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # noqa: BLE001 - cancellation included: passed on
                try:
                    value = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def _finish(remainder: _Remainder) -> Any:
    return await remainder


def start_eagerly(coro: Coroutine) -> asyncio.Future | None:
    """Run `coro` now until it completes (None) or suspends (a task running the rest).
    Exceptions raised before the first suspension propagate to the caller."""
    try:
        first = coro.send(None)
    except StopIteration:
        return None
    return asyncio.ensure_future(_finish(_Remainder(coro, first)))


async def eager_drain_messages(self, fetcher) -> None:  # pragma: no cover - Faust's loop, changed as the docstring says
    """faust.transport.consumer.Consumer._drain_messages (0.15.3): callback started eagerly,
    shorter fetch timeout, no gaps; the rating agent's records put in its intake."""
    callback = self.callback
    intake = getattr(self, "starcast_intake", None)
    intake_topics = intake.topics if intake is not None else frozenset()
    getmany = self.getmany
    consumer_should_stop = self._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set
    get_read_offset = self._read_offset.__getitem__
    set_read_offset = self._read_offset.__setitem__
    set_flag = self.diag.set_flag
    unset_flag = self.diag.unset_flag
    commit_every = self._commit_every
    suspend_flow = self.suspend_flow
    yield_every = 100
    num_since_yield = 0
    sleep = asyncio.sleep
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(CONSUMER_FETCHING)
            ait = getmany(timeout=GETMANY_TIMEOUT)
            await self.sleep(0)
            if not self.should_stop:
                async for tp, message in ait:
                    num_since_yield += 1
                    if num_since_yield > yield_every:
                        await sleep(0)
                        num_since_yield = 0
                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is None or offset >= r_offset:
                        # No `_add_gap` for skipped offsets: see the module docstring.
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        if tp.topic in intake_topics:  # straight to the rating agent (intake.py)
                            if intake.full():  # abandoned if a rebalance suspends flow, as below
                                await self.wait_first(intake.room(), suspend_flow.wait())
                            intake.put(message)
                        else:
                            pending = start_eagerly(callback(message))
                            if pending is not None:  # blocked: abandoned if a rebalance suspends flow
                                await self.wait_first(pending, suspend_flow.wait())
                        set_read_offset(tp, offset)
                unset_flag(CONSUMER_FETCHING)
    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        unset_flag(CONSUMER_FETCHING)


async def getmany_without_losing_records(self, timeout: float):
    """faust.transport.consumer.Consumer.getmany (0.15.3): input records of a partition not
    active yet are sought back to, not silently passed over."""
    records, active_partitions = await self._wait_next_records(timeout)
    generation_id = self.app.consumer_generation_id
    if records is None or self.should_stop:
        return
    records_it = self.scheduler.iterate(records)
    to_message = self._to_message
    passed_over: dict = {}  # tp -> first offset not delivered
    if self.flow_active:
        for tp, record in records_it:
            if not self.flow_active or self.app.consumer_generation_id != generation_id:
                break  # a rebalance: its recovery seeks every partition to the committed offset
            if active_partitions is None or tp in active_partitions or tp in self._buffered_partitions:
                self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                yield tp, to_message(tp, record)
            elif tp not in passed_over and not self._is_changelog_tp(tp):
                passed_over[tp] = record.offset
        for tp, offset in passed_over.items():
            if tp in self.assignment() and self.app.consumer_generation_id == generation_id:
                await self.seek(tp, offset)
    else:
        try:
            await self.perform_seek()
        except Exception as ex:  # noqa: BLE001 - as Faust: the next fetch tries again
            self.log.warning(f"exception performing seek when flow not active {ex}")


def install(consumer, intake=None) -> None:
    """The loop and getmany below on `consumer`; records of `intake.topics` go to `intake`."""
    consumer.starcast_intake = intake
    consumer._drain_messages = types.MethodType(eager_drain_messages, consumer)
    consumer.getmany = types.MethodType(getmany_without_losing_records, consumer)
