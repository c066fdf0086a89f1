"""The API load generator of `starcast bench --api`, run as its own process:

    python -m streams.lab.api_load BASE_URL SECONDS CLIENTS TOKEN SELLER...

`CLIENTS` concurrent clients (one aiohttp session, one connection each) each send GET
/sellers/{id} and GET /sellers/{id}/actions in turn for random sellers until `SECONDS` have
passed, then print one JSON line: requests, requests/s, statuses, p50/p99/max latency (s).
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


async def load(base: str, seconds: float, clients: int, token: str, sellers: list[str]) -> dict:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {token}"}

    async def client(session: aiohttp.ClientSession, rng: random.Random) -> None:
        paths = ("", "/actions")
        turn = 0
        while time.monotonic() < deadline:
            path = f"{base}/sellers/{rng.choice(sellers)}{paths[turn % 2]}"
            turn += 1
            started = time.monotonic()
            try:
                async with session.get(path, headers=headers) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, asyncio.TimeoutError):
                status = 0
            latencies.append(time.monotonic() - started)
            statuses[status] = statuses.get(status, 0) + 1

    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=30)
    began = time.monotonic()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(client(session, random.Random(n)) for n in range(clients)))
    elapsed = time.monotonic() - began
    latencies.sort()
    return {"requests": len(latencies), "requests_per_s": round(len(latencies) / elapsed),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "p50_s": quantile(latencies, 0.5), "p99_s": quantile(latencies, 0.99), "max_s": quantile(latencies, 1.0)}


def main(argv: list[str]) -> int:
    base, seconds, clients, token, *sellers = argv
    print(orjson.dumps(asyncio.run(load(base, float(seconds), int(clients), token, sellers))).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
