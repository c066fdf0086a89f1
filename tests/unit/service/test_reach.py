"""Waiting for the broker at start (streams/service/reach.py): the probe tells a Kafka broker
from a refused or dropped connection, the wait serves /healthz 503 and logs once per interval,
and aiokafka's per-attempt lines are limited."""

from __future__ import annotations

import asyncio
import logging
import struct
import urllib.error
import urllib.request

import pytest

from streams.local.broker import free_port
from streams.service.reach import RepeatLimiter, bootstrap_hosts, probe, wait_for_broker
from streams.service.settings import Settings


def test_bootstrap_hosts_reads_every_server_with_the_default_port():
    servers = Settings(broker="kafka://a:9093;kafka://b").bootstrap_servers
    assert bootstrap_hosts(servers) == [("a", 9093), ("b", 9092)]
    servers = Settings(broker="kafka://127.0.0.1:1,kafka://[::1]:2").bootstrap_servers
    assert bootstrap_hosts(servers) == [("127.0.0.1", 1), ("::1", 2)]


async def _server(answer: bool) -> tuple[asyncio.AbstractServer, int]:
    """A listener that answers a Kafka request's frame with the request's correlation id, or
    closes every connection at once."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if answer:
            size = struct.unpack(">i", await reader.readexactly(4))[0]
            body = await reader.readexactly(size)
            writer.write(struct.pack(">ii", 6, struct.unpack(">i", body[4:8])[0]) + b"\0\0")
            await writer.drain()
        writer.close()

    port = free_port()
    return await asyncio.start_server(handle, "127.0.0.1", port), port


def test_the_probe_wants_a_kafka_answer_not_just_an_accepted_connection():
    async def run() -> tuple:
        kafka, kafka_port = await _server(answer=True)
        dropper, drop_port = await _server(answer=False)
        async with kafka, dropper:
            return (await probe([("127.0.0.1", kafka_port)]),
                    await probe([("127.0.0.1", drop_port)]),
                    await probe([("127.0.0.1", drop_port)], kafka=False),
                    await probe([("127.0.0.1", free_port())]),
                    await probe([("127.0.0.1", free_port()), ("127.0.0.1", kafka_port)]))

    answered, dropped, tcp_only, refused, second = asyncio.run(run())
    assert answered is None and tcp_only is None and second is None
    assert dropped is not None and "connection closed" in dropped
    assert refused is not None and "127.0.0.1" in refused


def test_the_wait_serves_healthz_503_and_logs_once_per_interval_not_per_attempt(caplog):
    port = free_port()
    attempts = []
    seen: list[tuple[int, bytes]] = []

    async def check() -> str | None:
        attempts.append(1)
        if len(attempts) == 3:  # while waiting: what does /healthz say?
            def get() -> None:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
                except urllib.error.HTTPError as exc:
                    seen.append((exc.code, exc.read()))
            await asyncio.get_running_loop().run_in_executor(None, get)
        return None if len(attempts) >= 40 else "refused"

    with caplog.at_level(logging.WARNING, logger="starcast"):
        waited = asyncio.run(wait_for_broker("x:1", "127.0.0.1", port, check=check, log_every=60,
                                             backoff=(0.001, 0.002)))
    assert len(attempts) == 40 and waited > 0
    assert seen == [(503, b'{"status":"broker unreachable"}')]
    lines = [r.getMessage() for r in caplog.records if r.name == "starcast"]
    assert len(lines) == 2, lines  # when the wait begins and when it ends: not 40
    assert "unreachable (refused)" in lines[0] and "reachable after" in lines[1]
    with pytest.raises(OSError):  # the interim server is gone: Faust's web server takes the port
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)


def test_a_reachable_broker_is_not_waited_for():
    async def check() -> str | None:
        return None

    assert asyncio.run(wait_for_broker("x:1", "127.0.0.1", free_port(), check=check)) == 0.0


def test_the_limiter_shows_one_line_per_template_per_interval_and_counts_the_rest():
    now = [0.0]
    limiter = RepeatLimiter(every=30, clock=lambda: now[0])

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("aiokafka.conn", logging.ERROR, __file__, 1, msg, (), None)

    shown = []
    for i in range(100):  # a retry every 50 ms for 5 s
        now[0] = i * 0.05
        r = record("Unable connect to node with id %s: %s")
        if limiter.filter(r):
            shown.append(r.msg)
    assert shown == ["Unable connect to node with id %s: %s"]
    assert limiter.filter(record("Failed fetch messages from %s: %s"))  # another template: its own count
    now[0] = 31.0
    r = record("Unable connect to node with id %s: %s")
    assert limiter.filter(r) and r.msg.endswith("(99 more like it in the last 31 s)")
    info = logging.LogRecord("aiokafka.consumer.group_coordinator", logging.INFO, __file__, 1,
                             "Setting newly assigned partitions %s for group %s", (), None)
    assert all(limiter.filter(info) for _ in range(3))  # a rebalance's lines are not held back


def test_the_limiter_is_on_every_logger_aiokafka_reports_attempts_with():
    import aiokafka.client
    import aiokafka.consumer.fetcher

    from streams.service.reach import CLIENT_LOGGERS
    for module in (aiokafka.client, aiokafka.consumer.fetcher):
        assert module.log.name in CLIENT_LOGGERS
