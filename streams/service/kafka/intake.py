"""Input records from the fetch loop straight to the rating agent, a batch at a time.

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
  offset;
- rebalances: the intake is one of the app's flow-controlled queues, so Faust empties it when
  partitions are revoked; records fetched in an earlier consumer generation, or while the
  flow is suspended, are dropped by the agent unhandled (Faust's stream skips them too) and
  never acked (generations.py);
- commits: acks go through the consumer's own `ack`, so the commit bookkeeping (commits.py)
  is unchanged.
"""

from __future__ import annotations

import asyncio
from typing import Any, Collection


class Intake:
    def __init__(self, topics: Collection[str], maxsize: int):
        self.topics = frozenset(topics)  # full topic names the fetch loop puts here
        self.maxsize = maxsize
        self._messages: list[Any] = []
        self._arrived = asyncio.Event()  # set while there are messages
        self._enough = asyncio.Event()  # set once `_want` messages are here
        self._want = 0  # 0: nobody waits for a full batch
        self._room = asyncio.Event()  # set while below maxsize
        self._room.set()

    def __len__(self) -> int:
        return len(self._messages)

    def full(self) -> bool:
        return len(self._messages) >= self.maxsize

    def put(self, message: Any) -> None:
        messages = self._messages
        messages.append(message)
        n = len(messages)
        if n == 1:
            self._arrived.set()
        if n == self._want:
            self._enough.set()
        if n >= self.maxsize:
            self._room.clear()

    async def room(self) -> None:
        """Until the intake is below `maxsize`."""
        await self._room.wait()

    def clear(self) -> None:
        """Drop every message (app.flow_control calls this when partitions are revoked)."""
        self._messages.clear()
        self._arrived.clear()
        self._room.set()

    async def take(self, max_: int, within: float) -> list[Any]:
        """Up to `max_` messages, in the order fetched: as soon as there are `max_`, else
        `within` seconds after the first one arrived (which bounds the latency a batch adds).
        May return an empty list if the intake was cleared meanwhile."""
        while not self._messages:
            await self._arrived.wait()
        if len(self._messages) < max_:
            self._want = max_
            self._enough.clear()
            try:
                await asyncio.wait_for(self._enough.wait(), within)
            except asyncio.TimeoutError:
                pass
            finally:
                self._want = 0
        messages = self._messages
        batch = messages[:max_]
        del messages[:max_]
        if not messages:
            self._arrived.clear()
        if len(messages) < self.maxsize:
            self._room.set()
        return batch
