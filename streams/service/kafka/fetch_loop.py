"""Guarantee: the rating agent's records reach it in batches, with Faust's back-pressure,
rebalance and commit behaviour kept, and no record passed over without being read again.

Upstream (faust-streaming 0.15.3, `Consumer._drain_messages`):
- every fetched message goes to the conductor with
  `await self.wait_first(callback(message), self.suspend_flow.wait())`: four futures and an
  `asyncio.wait` per message, so that a rebalance can abandon a callback blocked on a full
  stream buffer. Profiled on the bench input that is 29 % of the decode-only floor's time,
  although the callback almost never blocks;
- each fetch waits up to 1 s for records of the *active* partitions only; a partition whose
  stream buffer filled leaves that set, so a fetch begun while the busy partitions were out
  waited a second on the quiet ones with the busy ones' records waiting.

Kept here, in `OwnFetchLoop` (the worker's default; STARCAST_FAST_FETCH=0 keeps Faust's loop):
- records of the rating agent's topics skip the callback and go into the agent's `Intake`
  (intake.py), which it takes in batches; when the intake is full the loop waits for room or
  for a rebalance, exactly as Faust waits on a full stream buffer, and a topic-partition with
  many records held is left out of fetches through Faust's own `on_buffer_full`;
- after each fetch the intake learns which of its topic-partitions have records on the broker
  not fetched yet (fetch high watermark past the next offset to read; no high watermark yet
  counts as behind), so it can take records in event-time order;
- any other callback runs eagerly up to its first suspension (what Python 3.12's eager tasks
  do); one that suspends becomes a task and goes through Faust's `wait_first` as before;
- the loop yields every 100 messages (Faust's `yield_every`), and each fetch waits at most
  `GETMANY_TIMEOUT`;
- offsets that jump are not recorded as gaps (commits.py);
- records fetched for a partition not active yet are read again once it is (rebalance.py,
  on both loops).
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Coroutine, Generator, cast

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers.aiokafka import Consumer
from faust.types import TP

from streams.service.kafka.options import options_of

GETMANY_TIMEOUT = 0.05  # seconds; see the module docstring


class _Remainder:
    """The rest of a coroutine that already ran to its first suspension, awaitable by a Task:
    the future it yielded goes to the Task first, then results and exceptions pass through."""

    __slots__ = ("coro", "first")

    def __init__(self, coro: Coroutine, first: Any) -> None:
        self.coro, self.first = coro, first

    def __await__(self) -> Generator[Any, Any, Any]:
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


def _as_faust_tp(call: Callable[[TP], None]) -> Callable[[Any], None]:
    """`call` for a record's partition: aiokafka's TopicPartition there, Faust's TP in the
    consumer's partition sets (which assert it)."""
    return lambda tp: call(TP(tp.topic, tp.partition))


def _behind(assigned: Any, topics: frozenset, highwater: Any, next_offset: dict, first_offsets: dict) -> set:
    """The assigned partitions of `topics` with records on the broker not fetched yet, or not
    known (no fetch answered for them since the assignment)."""
    behind = set()
    for tp in assigned:
        if tp.topic in topics:
            end = highwater(tp)
            if end is None:
                behind.add(tp)
                continue
            position = next_offset.get(tp, first_offsets.get(tp))
            if position is not None and end > position:
                behind.add(tp)
    return behind


class OwnFetchLoop(Consumer):
    """Consumer mixin: Faust's fetch loop, changed as the module says."""

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - Faust's loop
        """faust.transport.consumer.Consumer._drain_messages (0.15.3), changed as above."""
        callback = self.callback
        intake = options_of(self).intake
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
        if intake is not None:
            intake.on_full, intake.on_room = _as_faust_tp(self.on_buffer_full), _as_faust_tp(self.on_buffer_drop)
            highwater, assignment = self.highwater, self.assignment
        next_offset: dict = {}  # intake tp -> the offset after the last one put there
        generation = None
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
                            if intake is not None and tp.topic in intake_topics:  # to the rating agent
                                if intake.full():  # abandoned if a rebalance suspends flow, as below
                                    await self.wait_first(intake.room(), suspend_flow.wait())
                                intake.put(message)
                                next_offset[tp] = offset + 1
                            else:
                                pending = start_eagerly(cast(Coroutine, callback(message)))
                                if pending is not None:  # blocked: abandoned if a rebalance suspends flow
                                    await self.wait_first(pending, suspend_flow.wait())
                            set_read_offset(tp, offset)
                    if intake is not None:
                        if generation != self.app.consumer_generation_id:  # positions of an earlier assignment
                            generation = self.app.consumer_generation_id
                            next_offset.clear()
                        first_offsets = getattr(self, "first_offsets", {})  # rebalance.py
                        intake.fetched(_behind(assignment(), intake.ordered, highwater, next_offset, first_offsets))
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
