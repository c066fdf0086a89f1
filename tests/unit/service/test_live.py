"""The live hub (streams/service/live.py): what a subscriber gets, what a reconnecting one
missed, and the bounds on slow subscribers and watched sellers."""

from __future__ import annotations

import asyncio

from streams.service.live import HEARTBEAT, Hub, event_of


def ev(offset: int, topic: str = "star-forecasts", partition: int = 1):
    return event_of(topic, partition, offset, b'{"n": %d}' % offset)


def run(coro):
    return asyncio.run(coro)


def test_subscribers_get_their_sellers_events_in_order_and_others_nothing():
    async def scenario():
        hub = Hub()
        mine, _ = hub.subscribe("s1")
        other, _ = hub.subscribe("s2")
        hub.publish("s1", ev(1))
        hub.publish("s1", ev(2, "star-warnings"))
        hub.publish("s3", ev(3))  # nobody watches s3
        return [mine.queue.get_nowait().id for _ in range(mine.queue.qsize())], other.queue.qsize()

    assert run(scenario()) == (["f1-1", "w1-2"], 0)


def test_a_reconnecting_client_gets_exactly_what_it_missed_or_none_if_it_is_gone():
    async def scenario():
        hub = Hub(replay=3)
        first, _ = hub.subscribe("s1")
        for offset in range(1, 6):
            hub.publish("s1", ev(offset))
        hub.unsubscribe("s1", first)
        _, missed = hub.subscribe("s1", "f1-3")
        _, too_old = hub.subscribe("s1", "f1-1")  # only 3, 4, 5 are kept
        _, fresh = hub.subscribe("s1")
        return [e.id for e in missed], too_old, fresh

    assert run(scenario()) == (["f1-4", "f1-5"], None, None)


def test_a_slow_subscriber_is_dropped_not_buffered_without_bound():
    async def scenario():
        hub = Hub(queue=2)
        slow, _ = hub.subscribe("s1")
        quick, _ = hub.subscribe("s1")
        for offset in range(3):
            hub.publish("s1", ev(offset))
            if offset < 2:
                quick.queue.get_nowait()
        return slow.dropped.is_set(), quick.dropped.is_set(), hub.dropped, hub.listeners()

    assert run(scenario()) == (True, False, 1, 1)


def test_watched_sellers_are_bounded_but_one_still_listened_to_is_kept():
    async def scenario():
        hub = Hub(sellers=2)
        listening, _ = hub.subscribe("a")
        for seller in ("b", "c", "d"):
            sub, _ = hub.subscribe(seller)
            hub.unsubscribe(seller, sub)
        hub.publish("a", ev(1))
        hub.publish("b", ev(2))  # forgotten: not kept
        return listening.queue.qsize(), hub.latest_id("a"), hub.latest_id("b")

    assert run(scenario()) == (1, "f1-1", None)


def test_a_heartbeat_wakes_only_idle_streams_and_close_wakes_every_waiting_one():
    """Streams keep no timers: the hub's heartbeat and close are what wake a waiting handler."""
    async def scenario():
        hub = Hub()
        idle, _ = hub.subscribe("s1")
        busy, _ = hub.subscribe("s2")
        hub.publish("s2", ev(1))
        for _ in range(15):  # each stream's phase comes once in 15 calls
            hub.heartbeat()
        beats = (idle.queue.get_nowait(), busy.queue.get_nowait(), busy.queue.empty())
        assert idle.queue.empty()
        waiting = asyncio.ensure_future(idle.queue.get())
        await asyncio.sleep(0)
        hub.close()
        ended = await asyncio.wait_for(waiting, 1)
        return beats, ended, idle.dropped.is_set(), hub.listeners()

    (first, second, emptied), ended, dropped, listeners = run(scenario())
    assert first is HEARTBEAT and second == ev(1) and emptied
    assert ended is None and dropped and listeners == 0


def test_heartbeats_are_spread_over_the_seconds():
    async def scenario():
        hub = Hub()
        subscribers = [hub.subscribe(f"s{n}")[0] for n in range(150)]
        per_second = []
        for _ in range(15):
            hub.heartbeat()
            per_second.append(sum(s.queue.qsize() for s in subscribers) - sum(per_second))
        return per_second, {s.queue.qsize() for s in subscribers}

    per_second, queued = run(scenario())
    assert per_second == [10] * 15  # never all at once
    assert queued == {1}  # each exactly once in 15 s
