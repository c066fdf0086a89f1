"""Seller streams (GET /sellers/{id}/stream) from two live workers: the current forecast first,
then an event produced to Kafka reaches both streams (each worker reads the output topics
itself, whoever owns the seller); a reconnect with Last-Event-ID gets nothing twice; the token
may come as a query parameter; no token is a 401."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson

from streams import testing
from streams.service.access import mint
from tests.conftest import Events as E
from tests.integration.test_streaming import _prefixes, produce_events, scripted_month, worker_pair

SECRET = "live-secret-of-at-least-32-bytes!!"


async def read_events(response: aiohttp.ClientResponse, n: int, timeout: float) -> list[dict]:
    """The next `n` events of a stream: {id, event, data}."""
    events: list[dict] = []
    current: dict = {}
    deadline = time.monotonic() + timeout
    while len(events) < n:
        line = await asyncio.wait_for(response.content.readline(), max(deadline - time.monotonic(), 0.01))
        text = line.decode().rstrip("\n")
        if not text:
            if "event" in current:
                events.append(current)
            current = {}
        elif not text.startswith(":"):
            name, _, value = text.partition(": ")
            current[name] = orjson.loads(value) if name == "data" else value
    return events


def test_a_produced_event_reaches_the_streams_of_both_workers(broker, tmp_path):
    prefix = f"live{next(_prefixes)}-"
    env = {"STARCAST_API_JWT_SECRET": SECRET}
    workers = worker_pair(broker, prefix, tmp_path, env)
    token = mint(SECRET, "fading", 3600)
    try:
        testing.start_all(workers)
        produce_events(broker, prefix, scripted_month())
        deadline = time.monotonic() + 120
        while not _known(workers[0], token):
            assert time.monotonic() < deadline, "no forecast for fading"
            time.sleep(1)

        async def scenario():
            async with aiohttp.ClientSession() as session:
                refused = await session.get(workers[0].base + "/sellers/fading/stream")
                assert refused.status == 401
                streams = [await session.get(w.base + f"/sellers/fading/stream?token={token}") for w in workers]
                firsts = [(await read_events(s, 1, 10))[0] for s in streams]
                await asyncio.to_thread(produce_events, broker, prefix,
                                        [E.message("2026-03-30T10:00:00Z", buyer="live-b", seller="fading")])
                updates = [await until_new(s) for s in streams]
                last_id = updates[0]["id"]
                for s in streams:
                    s.close()
                again = await session.get(workers[0].base + f"/sellers/fading/stream?token={token}",
                                          headers={"Last-Event-ID": last_id})
                nothing_twice = await _quiet(again)
                again.close()
                return firsts, updates, nothing_twice

        firsts, updates, nothing_twice = asyncio.run(scenario())
        for first in firsts:
            assert first["event"] == "snapshot" and first["data"]["seller_id"] == "fading"
        for update in updates:
            assert update["event"] == "forecast" and update["data"]["seller_id"] == "fading"
        assert updates[0]["id"] == updates[1]["id"]  # the same record, from either worker
        assert nothing_twice
    finally:
        for worker in workers:
            worker.stop()


def _known(worker, token: str) -> bool:
    import urllib.request

    try:
        request = urllib.request.Request(worker.base + "/sellers/fading", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


async def until_new(response: aiohttp.ClientResponse) -> dict:
    """The first forecast event rated after the produced message (a stream may first carry
    forecasts published just before it subscribed)."""
    deadline = time.monotonic() + 20
    while True:
        event, = await read_events(response, 1, max(deadline - time.monotonic(), 0.01))
        if event["event"] == "forecast" and event["data"]["as_of"] >= "2026-03-30T10:00:00":
            return event


async def _quiet(response: aiohttp.ClientResponse) -> bool:
    """True when a stream resumed after its latest event sends no event within 2 s."""
    try:
        await read_events(response, 1, 2)
    except asyncio.TimeoutError:
        return True
    return False
