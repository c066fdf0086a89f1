"""Live updates for seller pages: the hub between the output topics and Server-Sent Events.

Every worker reads star-forecasts, star-warnings and star-ratings-monthly itself (all
partitions, from their end when it starts) and publishes each record to the hub under its
seller, so any worker streams any seller and a rebalance changes nothing for a stream.

A stream costs nothing while idle: its handler waits on its queue alone. The hub's `heartbeat`,
called every second, wakes one fifteenth of the subscribers (each every 15 s, spread so that
10,000 idle streams never beat together), and `close` wakes all of them to end; no stream
keeps a timer of its own.

Bounded everywhere:
- each subscriber has a queue of `queue` events; one that falls that far behind is dropped
  (its stream ends, the client reconnects with Last-Event-ID);
- each watched seller keeps its last `replay` events for reconnecting clients; sellers are
  watched from their first subscriber on, and at most `sellers` of them are kept (the least
  recently subscribed to is forgotten first, unless someone still listens).

No Faust import: the worker feeds `publish`, the view reads `subscribe`.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LiveEvent:
    id: str  # <kind letter><partition>-<offset>: unique per record
    kind: str  # forecast, warning or official
    data: bytes  # the record's JSON

    def encode(self) -> bytes:
        return b"id: %s\nevent: %s\ndata: %s\n\n" % (self.id.encode(), self.kind.encode(), self.data)


KINDS = {"star-forecasts": "forecast", "star-warnings": "warning", "star-ratings-monthly": "official"}


def event_of(topic: str, partition: int, offset: int, value: bytes) -> LiveEvent:
    """The live event of an output record (`topic` without the deployment's prefix)."""
    kind = KINDS[topic]
    return LiveEvent(f"{kind[0]}{partition}-{offset}", kind, value)


HEARTBEAT_SECONDS = 15.0
HEARTBEAT = LiveEvent("", "heartbeat", b"")  # a queue marker: the handler writes a comment line


@dataclass(eq=False)
class Subscriber:
    """A stream's queue of LiveEvents; None in the queue, or `dropped` set, ends the stream."""

    queue: asyncio.Queue
    phase: int = 0  # the second, modulo HEARTBEAT_SECONDS, of its heartbeats
    dropped: asyncio.Event = field(default_factory=asyncio.Event)

    def end(self) -> None:
        self.dropped.set()
        try:
            self.queue.put_nowait(None)  # wakes a handler waiting on an empty queue
        except asyncio.QueueFull:
            pass  # a full queue: the handler is busy and sees `dropped` at its next event


class Hub:
    def __init__(self, replay: int = 64, sellers: int = 1000, queue: int = 256) -> None:
        self.replay, self.max_sellers, self.queue_size = replay, sellers, queue
        self._recent: OrderedDict[str, deque[LiveEvent]] = OrderedDict()
        self._subscribers: dict[str, set[Subscriber]] = {}
        self._seconds = 0  # heartbeat calls so far
        self._subscribed = 0
        self.dropped = 0  # subscribers dropped for being slow

    def publish(self, seller_id: str, event: LiveEvent) -> None:
        recent = self._recent.get(seller_id)
        if recent is None:
            return  # nobody watches this seller
        recent.append(event)
        for subscriber in list(self._subscribers.get(seller_id, ())):
            try:
                subscriber.queue.put_nowait(event)
            except asyncio.QueueFull:
                self.dropped += 1
                subscriber.end()
                self.unsubscribe(seller_id, subscriber)

    def subscribe(self, seller_id: str, last_event_id: str | None = None) -> tuple[Subscriber, list[LiveEvent] | None]:
        """A new subscriber, and the events after `last_event_id` it missed (None when there is
        no such id here: the caller sends the current state instead)."""
        recent = self._recent.pop(seller_id, None)
        if recent is None:
            recent = deque(maxlen=self.replay)
        self._recent[seller_id] = recent  # the most recently subscribed to, last
        self._forget()
        self._subscribed += 1
        subscriber = Subscriber(asyncio.Queue(self.queue_size), self._subscribed % int(HEARTBEAT_SECONDS))
        self._subscribers.setdefault(seller_id, set()).add(subscriber)
        missed: list[LiveEvent] | None = None
        if last_event_id:
            ids = [event.id for event in recent]
            if last_event_id in ids:
                missed = list(recent)[ids.index(last_event_id) + 1:]
        return subscriber, missed

    def unsubscribe(self, seller_id: str, subscriber: Subscriber) -> None:
        subscribers = self._subscribers.get(seller_id)
        if subscribers is not None:
            subscribers.discard(subscriber)
            if not subscribers:
                del self._subscribers[seller_id]

    def close(self) -> None:
        """End every stream (the worker stops): each subscriber is told as if dropped."""
        for subscribers in list(self._subscribers.values()):
            for subscriber in subscribers:
                subscriber.end()
        self._subscribers.clear()

    def heartbeat(self) -> None:
        """Called every second: a heartbeat to the streams whose phase this second is, unless
        something is queued for them already."""
        phase = self._seconds % int(HEARTBEAT_SECONDS)
        self._seconds += 1
        for subscribers in self._subscribers.values():
            for subscriber in subscribers:
                if subscriber.phase == phase and subscriber.queue.empty():
                    subscriber.queue.put_nowait(HEARTBEAT)

    def latest_id(self, seller_id: str) -> str | None:
        recent = self._recent.get(seller_id)
        return recent[-1].id if recent else None

    def listeners(self) -> int:
        return sum(len(s) for s in self._subscribers.values())

    def _forget(self) -> None:
        for seller_id in list(self._recent):
            if len(self._recent) <= self.max_sellers:
                return
            if seller_id not in self._subscribers:
                del self._recent[seller_id]
