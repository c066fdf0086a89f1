"""Waiting for the broker at start.

A worker started before its broker (or while the network to it is down) does not exit: it
tries the bootstrap servers with backoff (0.5 s doubling to 10 s), answers `/healthz` with 503
`{"status": "broker unreachable"}` meanwhile, and logs when the wait begins, once per
`LOG_EVERY` seconds while it lasts, and when it ends. A probe is an ApiVersions request to a
bootstrap server (a connection accepted and then dropped is not a broker); the worker itself
starts once one is answered.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from typing import Awaitable, Callable

import orjson
from aiohttp import web

log = logging.getLogger("starcast")

LOG_EVERY = 30.0
"""Seconds between two log lines of one wait."""

BACKOFF = (0.5, 10.0)
"""The first pause between probes, and the longest."""


def bootstrap_hosts(servers: str) -> list[tuple[str, int]]:
    """(host, port) of every server in `host:port,host:port` (Settings.bootstrap_servers; port
    9092 if none is given)."""
    hosts = []
    for address in servers.split(","):
        host, _, port = address.rpartition(":") if ":" in address else (address, "", "9092")
        hosts.append((host.strip("[]"), int(port)))
    return hosts


_API_VERSIONS = struct.pack(">ihhih", 2 + 2 + 4 + 2 + 8, 18, 0, 0x57A2, 8) + b"starcast"
"""A Kafka ApiVersions request (v0, correlation id 0x57A2, client id "starcast"): any broker
answers it, before authentication too."""


async def probe(hosts: list[tuple[str, int]], timeout: float = 3.0, kafka: bool = True) -> str | None:
    """None if one of `hosts` accepts a connection and, if `kafka`, answers an ApiVersions
    request; otherwise why not (the last error)."""
    reason = "no bootstrap server"
    for host, port in hosts:
        writer = None
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
            if kafka:
                writer.write(_API_VERSIONS)
                size, correlation = struct.unpack(">ii", await asyncio.wait_for(reader.readexactly(8), timeout))
                if correlation != 0x57A2 or size < 4:
                    raise ConnectionError("not a Kafka answer")
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as exc:
            text = "connection closed" if isinstance(exc, asyncio.IncompleteReadError) else str(exc) or "timed out"
            reason = f"{host}:{port}: {text}"
            continue
        finally:
            if writer is not None:
                writer.close()
        return None
    return reason


async def wait_for_broker(servers: str, web_bind: str | None, web_port: int, tls: bool = False,
                          check: Callable[[], Awaitable[str | None]] | None = None,
                          log_every: float = LOG_EVERY, backoff: tuple[float, float] = BACKOFF) -> float:
    """Until the broker is reachable; returns the seconds waited. While it is not, serves
    `/healthz` (503) on `web_bind:web_port` if `web_bind` is given. With `tls`, a probe is a
    TCP connection only (the ApiVersions request would need the handshake first)."""
    hosts = bootstrap_hosts(servers)
    check = check or (lambda: probe(hosts, kafka=not tls))
    reason = await check()
    if reason is None:
        return 0.0
    started = time.monotonic()
    log.warning("starcast: the broker is unreachable (%s); retrying with backoff, /healthz answers 503 "
                "until it is reachable", reason)
    runner = await _health_server(web_bind, web_port) if web_bind is not None else None
    try:
        pause, logged = backoff[0], started
        while reason is not None:
            await asyncio.sleep(pause)
            pause = min(pause * 2, backoff[1])
            reason = await check()
            if reason is not None and time.monotonic() - logged >= log_every:
                logged = time.monotonic()
                log.warning("starcast: the broker is still unreachable after %.0f s (%s)", logged - started, reason)
    finally:
        if runner is not None:
            await runner.cleanup()
    waited = time.monotonic() - started
    log.warning("starcast: the broker is reachable after %.1f s; starting", waited)
    return waited


async def _health_server(bind: str, port: int) -> web.AppRunner | None:
    body = orjson.dumps({"status": "broker unreachable"})

    async def unreachable(request: web.Request) -> web.Response:
        return web.Response(body=body, status=503, content_type="application/json")

    app = web.Application()
    app.router.add_route("GET", "/healthz", unreachable)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, bind, port).start()
    except OSError as exc:  # the port taken: wait without it rather than not at all
        log.warning("starcast: /healthz not served while waiting for the broker (%s)", exc)
        await runner.cleanup()
        return None
    return runner


CLIENT_LOGGERS = ("aiokafka", "aiokafka.cluster", "aiokafka.conn", "aiokafka.consumer.consumer",
                  "aiokafka.consumer.fetcher", "aiokafka.consumer.group_coordinator", "aiokafka.producer.producer",
                  "aiokafka.producer.sender")
"""aiokafka's loggers that report each failed attempt while the broker is out of reach (its
client logs as "aiokafka")."""


class RepeatLimiter(logging.Filter):
    """Lets one warning or error of each message template through per `every` seconds; the
    next one let through says how many were held back. aiokafka retries a lost connection every
    ~50 ms and logs every attempt: a minute's cut would otherwise be thousands of lines. Lower
    levels pass (a rebalance's lines say what happened, once each)."""

    def __init__(self, every: float = LOG_EVERY, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.every, self.clock = every, clock
        self.seen: dict[tuple[str, object], list[float | int]] = {}  # (logger, template) -> [last shown, held]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.msg)
        now = self.clock()
        entry = self.seen.get(key)
        if entry is None or now - entry[0] >= self.every:
            held = int(entry[1]) if entry is not None else 0
            if len(self.seen) > 1_000:
                self.seen.clear()
            self.seen[key] = [now, 0]
            if held:
                record.msg = f"{record.msg} ({held} more like it in the last {now - entry[0]:.0f} s)"  # type: ignore[index]
            return True
        entry[1] += 1
        return False


def limit_repeats(every: float = LOG_EVERY) -> RepeatLimiter:
    """Install one RepeatLimiter on aiokafka's connection loggers."""
    limiter = RepeatLimiter(every)
    for name in CLIENT_LOGGERS:
        logging.getLogger(name).addFilter(limiter)
    return limiter
