"""The seller-stream load generator of `starcast bench --sse`, run as its own process:

    python -m streams.lab.sse_load < CONFIG_JSON

CONFIG_JSON, on stdin: {base, token, bootstrap, topic, partitions, seconds, drain, active: [seller...],
idle: [seller...]}. It opens one stream per `active` seller and one per `idle` entry (sellers
that receive no updates: the connections are only held), reads star-forecasts itself to learn
every forecast published for an active seller and when (the record's timestamp, set by the
worker's producer), prints `ready`, measures for `seconds` and waits `drain` more for late
deliveries. Then it prints one JSON line: forecasts published and delivered, the missing ones,
p50/p99/max from publication to delivery, idle connections held and errors. Only forecasts
published inside the measured window count.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.lab.api_load import quantile


async def stream(session: aiohttp.ClientSession, url: str, token: str, seen: dict | None, opened: asyncio.Event,
                 errors: list[str]) -> None:
    """Read one seller's stream until cancelled: with `seen`, note each forecast's arrival by id."""
    try:
        async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as response:
            if response.status != 200:
                errors.append(f"status {response.status}")
                return
            event_id, kind = b"", b""
            async for line in response.content:
                if line.startswith(b"id: "):
                    event_id = line[4:].strip()
                elif line.startswith(b"event: "):
                    kind = line[7:].strip()
                elif line == b"\n":
                    if kind == b"snapshot":
                        opened.set()
                    elif kind == b"forecast" and seen is not None:
                        seen[event_id.decode()] = time.time()
                    event_id, kind = b"", b""
            errors.append("stream ended")
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        errors.append(type(exc).__name__)


async def load(cfg: dict) -> dict:
    base, token = cfg["base"], cfg["token"]
    active: list[str] = cfg["active"]
    published: dict[tuple[str, str], float] = {}  # (seller, event id) -> publication time (s)
    window = [float("inf"), float("inf")]
    active_set = set(active)
    consumer = AIOKafkaConsumer(bootstrap_servers=cfg["bootstrap"], enable_auto_commit=False)
    await consumer.start()
    partitions = [TopicPartition(cfg["topic"], p) for p in range(cfg["partitions"])]
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    stop = asyncio.Event()

    async def watch() -> None:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200)
            for tp, records in batches.items():
                for record in records:
                    seller = record.key.decode() if record.key else ""
                    at = record.timestamp / 1000
                    if seller in active_set and window[0] <= at <= window[1]:
                        published[(seller, f"f{tp.partition}-{record.offset}")] = at

    watcher = asyncio.create_task(watch())
    seen: dict[str, dict[str, float]] = {seller: {} for seller in active}
    errors: list[str] = []
    idle_errors: list[str] = []
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, read_bufsize=2**20) as session:
        tasks, opened = [], []
        specs = [(seller, seen[seller], errors) for seller in active] + [(s, None, idle_errors) for s in cfg["idle"]]
        for n in range(0, len(specs), 500):  # connect in waves, each wave's snapshots received first
            wave = []
            for seller, notes, errs in specs[n:n + 500]:
                ready = asyncio.Event()
                url = f"{base}/sellers/{seller}/stream"
                tasks.append(asyncio.create_task(stream(session, url, token, notes, ready, errs)))
                wave.append(ready)
            try:
                await asyncio.wait_for(asyncio.gather(*(r.wait() for r in wave)), 60)
            except asyncio.TimeoutError:
                pass
            opened.extend(wave)
        connected = sum(r.is_set() for r in opened)
        gc.freeze()  # 11,000 connections' objects: out of every collection, or collections stall the reads
        window[0] = time.time()
        print("ready", flush=True)
        await asyncio.sleep(cfg["seconds"])
        window[1] = time.time()
        await asyncio.sleep(cfg["drain"])
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    watcher.cancel()
    await consumer.stop()
    latencies, missing = [], 0
    for (seller, event_id), at in published.items():
        arrived = seen[seller].get(event_id)
        if arrived is None:
            missing += 1
        else:
            latencies.append(max(0.0, arrived - at))
    latencies.sort()

    idle = len(cfg["idle"])
    return {"active_streams": len(active), "idle_streams": idle, "connected": connected,
            "published": len(published), "delivered": len(latencies), "missing": missing,
            "p50_s": quantile(latencies, 0.5), "p99_s": quantile(latencies, 0.99), "max_s": quantile(latencies, 1.0),
            "active_errors": len(errors), "idle_errors": len(idle_errors),
            "error_kinds": sorted(set(errors + idle_errors))[:5]}


def main(argv: list[str]) -> int:
    print(orjson.dumps(asyncio.run(load(orjson.loads(sys.stdin.buffer.read())))).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
