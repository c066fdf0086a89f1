"""Input records from the fetch loop straight to the rating agent, a batch at a time, in
event-time order across the input topics of each partition.

Faust hands each record to an agent through the conductor, a topic channel's queue and the
stream's take-buffer, and acks it through the message's reference count. Timed inside the
worker on the bench input, that path cost ~40 µs an event of the worker's one thread (the
fetch loop spent 3 s of every 5 blocked on the full stream buffer while the agent waited ~2 s
for its next batch to be delivered), more than rating the event. With the worker's own fetch
loop (fetch_loop.py), records of the agent's topics go into an `Intake` instead; the agent takes
them as lists of Kafka messages and acks each one itself once its batch is in the Kafka client.

What Faust's path guarantees, kept here:
- back-pressure: the fetch loop waits while the intake holds `maxsize` records; a rebalance
  abandons that wait, as it abandons Faust's, and the record is read again from the committed
  offset. A topic-partition holding `per_source` records or more is left out of the next fetches
  (`on_full`, Faust's own `Consumer.on_buffer_full`) until it is taken down to half that;
- rebalances: the intake is one of the app's flow-controlled queues, so Faust empties it when
  partitions are revoked; records fetched in an earlier consumer generation, or while the
  flow is suspended, are dropped by the agent unhandled (Faust's stream skips them too) and
  never acked (generations.py);
- commits: acks go through the consumer's own `ack`, so the commit bookkeeping (commits.py)
  is unchanged.

Event-time order (Kafka Streams picks the partition whose head record is oldest the same way):
a partition's input topics are read at uneven speeds while a backlog drains, so records taken in
fetch order move the partition clock days ahead of most of its records (a sparse topic's one
fetch spans weeks), and every re-rating then projects the whole month ahead of it. Taken here:
- records of one topic-partition stay in the order fetched;
- across the topic-partitions of one partition number, a batch is the merge by event time
  (`event_time(message)`; None: no order, taken first) of the records held;
- a partition number waits while one of its topic-partitions has no record held but more on the
  broker (`behind`, set by the fetch loop from fetch high watermarks), for at most `max_idle`
  seconds, and not at all while the intake is full. Order only spares work: state is event-time
  and idempotent, so a record taken early or late rates the same.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections import deque
from typing import Any, Callable, Collection

_Source = Any  # a topic-partition: anything hashable with a `partition` attribute


def _no_order(message: Any) -> int | None:
    return None


def _nothing(source: _Source) -> None:
    return None


class Intake:
    def __init__(self, topics: Collection[str], maxsize: int, per_source: int | None = None,
                 ordered: Collection[str] | None = None,
                 event_time: Callable[[Any], int | None] = _no_order, max_idle: float = 0.5,
                 source_of: Callable[[Any], _Source] = lambda message: message.tp) -> None:
        self.topics = frozenset(topics)  # full topic names the fetch loop puts here
        self.ordered = self.topics if ordered is None else frozenset(ordered)  # those in event time
        self.maxsize = maxsize
        self.per_source = per_source or maxsize
        self.event_time = event_time
        self.max_idle = max_idle
        self.source_of = source_of
        self.on_full: Callable[[_Source], None] = _nothing  # the fetch loop's: stop fetching it
        self.on_room: Callable[[_Source], None] = _nothing  # ... and fetch it again
        self.behind: Collection[_Source] = frozenset()  # more on the broker than fetched
        self._queues: dict[_Source, deque[tuple[int, Any]]] = {}
        self._count = 0
        self._paused: set[_Source] = set()  # sources given to on_full, not yet to on_room
        self._waiting_since: dict[int, float] = {}  # partition number -> first seen waiting
        self._arrived = asyncio.Event()  # set while there are messages
        self._enough = asyncio.Event()  # set once `_want` messages are here
        self._want = 0  # 0: nobody waits for a full batch
        self._changed = asyncio.Event()  # a put or new fetch positions since the last look
        self._room = asyncio.Event()  # set while below maxsize
        self._room.set()

    def __len__(self) -> int:
        return self._count

    def full(self) -> bool:
        return self._count >= self.maxsize

    def put(self, message: Any) -> None:
        source = self.source_of(message)
        queue = self._queues.get(source)
        if queue is None:
            queue = self._queues[source] = deque()
        ts = self.event_time(message)
        queue.append((-1 if ts is None else ts, message))
        if len(queue) >= self.per_source and source not in self._paused:
            self._paused.add(source)
            self.on_full(source)
        n = self._count = self._count + 1
        if n == 1:
            self._arrived.set()
        if n == self._want:
            self._enough.set()
        if n >= self.maxsize:
            self._room.clear()
        self._changed.set()

    def fetched(self, behind: Collection[_Source]) -> None:
        """The fetch loop's view after a fetch: the sources with records on the broker not fetched."""
        self.behind = behind
        self._changed.set()

    async def room(self) -> None:
        """Until the intake is below `maxsize`."""
        await self._room.wait()

    def clear(self) -> None:
        """Drop every message (app.flow_control calls this around a rebalance). Sources left
        out of fetches are given back first: Faust may clear after the assignment has reset
        what it fetches, and a source left out then would never be fetched again."""
        paused, self._paused = self._paused, set()
        for source in paused:
            self.on_room(source)
        self._queues.clear()
        self._count = 0
        self._waiting_since.clear()
        self.behind = frozenset()
        self._arrived.clear()
        self._room.set()
        self._changed.set()

    async def take(self, max_: int, within: float) -> list[Any]:
        """Up to `max_` messages: as soon as there are `max_`, else `within` seconds after the
        first one arrived (which bounds the latency a batch adds), then as many as event-time
        order lets go (waiting while all are held). May return an empty list if the intake was
        cleared meanwhile."""
        while not self._count:
            await self._arrived.wait()
        if self._count < max_:
            self._want = max_
            self._enough.clear()
            try:
                await asyncio.wait_for(self._enough.wait(), within)
            except asyncio.TimeoutError:
                pass
            finally:
                self._want = 0
        while True:
            self._changed.clear()
            batch, wait = self._release(max_)
            if batch or not self._count:
                break
            try:
                await asyncio.wait_for(self._changed.wait(), wait)
            except asyncio.TimeoutError:
                pass
        if not self._count:
            self._arrived.clear()
        if self._count < self.maxsize:
            self._room.set()
        return batch

    def _waiting(self) -> tuple[set[int], float]:
        """Partition numbers that must wait for a source behind, and the seconds until the
        first of them may go anyway."""
        queues, now = self._queues, time.monotonic()
        waiting = set() if self.full() else {source.partition for source in self.behind if not queues.get(source)}
        since = self._waiting_since
        for partition in [p for p in since if p not in waiting]:
            del since[partition]
        first = self.max_idle
        for partition in list(waiting):
            started = since.setdefault(partition, now)
            if now - started >= self.max_idle:
                waiting.discard(partition)
            else:
                first = min(first, started + self.max_idle - now)
        return waiting, first

    def _release(self, max_: int) -> tuple[list[Any], float]:
        """Up to `max_` messages in event-time order per partition number, and how long to
        wait if none may go."""
        waiting, wait = self._waiting()
        queues, behind = self._queues, self.behind
        heads = [(queue[0][0], n, source) for n, (source, queue) in enumerate(queues.items())
                 if queue and source.partition not in waiting]
        heapq.heapify(heads)
        batch: list[Any] = []
        while heads and len(batch) < max_:
            _, n, source = heads[0]
            queue = queues[source]
            batch.append(queue.popleft()[1])
            if queue:
                heapq.heapreplace(heads, (queue[0][0], n, source))
                continue
            heapq.heappop(heads)
            # A source behind that runs out: its next records may be older than the rest, so its
            # partition stops here, unless the intake is full or it already went after max_idle.
            if source in behind and not self.full() and source.partition not in self._waiting_since:
                partition = source.partition
                heads = [head for head in heads if head[2].partition != partition]
                heapq.heapify(heads)
        self._count -= len(batch)
        if batch:
            for source in [s for s in self._paused if len(queues.get(s, ())) * 2 <= self.per_source]:
                self._paused.discard(source)
                self.on_room(source)
        return batch, wait
