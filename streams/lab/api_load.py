"""The API load generator of `starcast bench --api`, run as its own process:

    python -m streams.lab.api_load BASE_URL SECONDS CLIENTS RATE TOKEN SELLER...

`CLIENTS` concurrent clients (one aiohttp session, one connection each) send GET /sellers/{id}
and GET /sellers/{id}/actions in turn for random sellers until `SECONDS` have passed, then print
one JSON line: requests, requests/s, statuses, p50/p99/max latency (s).

- `RATE` 0, closed loop: each client sends its next request when the last one is answered. With
  C clients the latency is at least C / throughput (Little's law): 500 clients at 2,000
  requests/s wait 250 ms on average whatever the server does.
- `RATE` > 0, open loop: requests are due at a fixed RATE a second, each taken by the next free
  client; a request's latency runs from the instant it was due, so time spent waiting for a free
  client counts (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import random
import sys
import time

import aiohttp
import orjson


def quantile(ordered: list[float], p: float) -> float:
    """The `p` quantile of sorted values, rounded to 0.1 ms (0 for none)."""
    return round(ordered[min(int(p * len(ordered)), len(ordered) - 1)], 4) if ordered else 0.0


async def load(base: str, seconds: float, clients: int, token: str, sellers: list[str], rate: float = 0) -> dict:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {token}"}
    due: asyncio.Queue[float | None] = asyncio.Queue()

    async def fetch(session: aiohttp.ClientSession, path: str, since: float) -> None:
        try:
            async with session.get(path, headers=headers) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, asyncio.TimeoutError):
            status = 0
        latencies.append(time.monotonic() - since)
        statuses[status] = statuses.get(status, 0) + 1

    async def client(session: aiohttp.ClientSession, rng: random.Random) -> None:
        paths = ("", "/actions")
        turn = 0
        while True:
            if rate:
                since = await due.get()
                if since is None:
                    return
            elif time.monotonic() >= deadline:
                return
            else:
                since = time.monotonic()
            await fetch(session, f"{base}/sellers/{rng.choice(sellers)}{paths[turn % 2]}", since)
            turn += 1

    async def schedule() -> None:
        """Open loop: one request due every 1/rate s until the deadline, then one end per client."""
        began, n = time.monotonic(), 0
        while (now := time.monotonic()) < deadline:
            while began + n / rate <= now:
                due.put_nowait(began + n / rate)
                n += 1
            await asyncio.sleep(min(0.005, max(began + n / rate - now, 0)))
        for _ in range(clients):
            due.put_nowait(None)

    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=30)
    began = time.monotonic()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = [client(session, random.Random(n)) for n in range(clients)]
        await asyncio.gather(*tasks, *([schedule()] if rate else []))
    elapsed = time.monotonic() - began
    latencies.sort()
    return {"requests": len(latencies), "requests_per_s": round(len(latencies) / elapsed),
            "mode": f"open loop at {rate:,.0f} requests/s" if rate else "closed loop",
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "p50_s": quantile(latencies, 0.5), "p99_s": quantile(latencies, 0.99), "max_s": quantile(latencies, 1.0)}


def main(argv: list[str]) -> int:
    base, seconds, clients, rate, token, *sellers = argv
    print(orjson.dumps(asyncio.run(load(base, float(seconds), int(clients), token, sellers, float(rate)))).decode(),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
