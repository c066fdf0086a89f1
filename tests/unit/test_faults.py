"""The fault-injecting proxy of `starcast soak --faults` (streams/lab/faults.py), against a small
Kafka-framed echo server: frames pass unchanged; each fault does what it says, only to the
process it is aimed at."""

from __future__ import annotations

import asyncio
import os
import struct
import time
from pathlib import Path

import pytest

from streams.lab.faults import FETCH, PRODUCE, FaultProxy, owner
from streams.local.broker import free_port


class Upstream:
    """Answers each request frame with a 1,000-byte response carrying its correlation id, and
    keeps the bytes it received."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.port = free_port()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pending = b""
        try:
            while chunk := await reader.read(65536):
                self.received += chunk  # as it arrives: a frame cut half way shows as half a frame
                pending += chunk
                while len(pending) >= 4 and len(pending) >= 4 + struct.unpack(">i", pending[:4])[0]:
                    size = struct.unpack(">i", pending[:4])[0]
                    body, pending = pending[4 : 4 + size], pending[4 + size :]
                    writer.write(struct.pack(">ii", 1004, struct.unpack(">i", body[4:8])[0]) + b"r" * 1000)
                    await writer.drain()
        except ConnectionError:
            pass
        writer.close()


def request(api_key: int, correlation: int, size: int = 100) -> bytes:
    body = struct.pack(">hhi", api_key, 0, correlation) + b"q" * size
    return struct.pack(">i", len(body)) + body


async def round_trip(port: int, frame: bytes, timeout: float = 5.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(frame)
        size = struct.unpack(">i", await asyncio.wait_for(reader.readexactly(4), timeout))[0]
        return await asyncio.wait_for(reader.readexactly(size), timeout)
    finally:
        writer.close()


@pytest.fixture
def setup():
    upstream = Upstream()
    port = free_port()
    holder: dict = {}

    async def serve() -> None:
        holder["server"] = await asyncio.start_server(upstream.handle, "127.0.0.1", upstream.port)

    loop = asyncio.new_event_loop()
    loop.run_until_complete(serve())
    import threading
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    proxy = FaultProxy(upstream.port, port).start()
    proxy.watch({"me": os.getpid()})
    yield upstream, proxy, port
    proxy.stop()

    async def close() -> None:
        holder["server"].close()
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()

    asyncio.run_coroutine_threadsafe(close(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def test_owner_finds_the_process_behind_a_connection():
    async def run() -> str | None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        _, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        local_port = writer.get_extra_info("sockname")[1]
        found = owner(local_port, {"other": 1, "me": os.getpid()})
        writer.close()
        server.close()
        return found

    assert asyncio.run(run()) == "me"


def test_owner_looks_past_a_closed_connection_that_used_the_same_port():
    # A connection closed earlier from the same ephemeral port to another peer lingers in
    # TIME_WAIT with no owner (inode 0); it may be listed before the live socket.
    async def run() -> str | None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        _, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        local_port = writer.get_extra_info("sockname")[1]
        header, *rows = Path("/proc/net/tcp").read_text().splitlines()
        lingering = (f"   0: 0100007F:{local_port:04X} 0100007F:0050 06 00000000:00000000 03:00000000 "
                     "00000000     0        0 0 3 0000000000000000")
        found = owner(local_port, {"me": os.getpid()}, "\n".join([header, lingering, *rows]))
        writer.close()
        server.close()
        return found

    assert asyncio.run(run()) == "me"


def test_frames_pass_unchanged(setup):
    upstream, proxy, port = setup
    frame = request(FETCH, 7)
    answer = asyncio.run(round_trip(port, frame))
    assert answer[:4] == struct.pack(">i", 7) and len(answer) == 1004
    assert bytes(upstream.received) == frame


def test_latency_delays_each_way_and_a_fault_aimed_elsewhere_does_not(setup):
    _, proxy, port = setup
    proxy.latency(30, ["someone-else"])
    time.sleep(0.05)
    started = time.monotonic()
    asyncio.run(round_trip(port, request(FETCH, 1)))
    elsewhere = time.monotonic() - started
    proxy.latency(30, ["me"])
    time.sleep(0.05)
    started = time.monotonic()
    asyncio.run(round_trip(port, request(FETCH, 2)))
    delayed = time.monotonic() - started
    assert delayed >= 0.2 > elsewhere  # 100-300 ms each way


def test_a_cut_resets_connections_and_refuses_new_ones_while_it_lasts(setup):
    _, proxy, port = setup

    async def run() -> tuple:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        proxy.cut(1.0, ["me"])
        await asyncio.sleep(0.1)
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(reader.readexactly(1), 2)
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await round_trip(port, request(FETCH, 3))
        await asyncio.sleep(1.0)
        return await round_trip(port, request(FETCH, 4))

    assert asyncio.run(run())[:4] == struct.pack(">i", 4)


def test_a_produce_reset_delivers_half_the_request_then_resets(setup):
    upstream, proxy, port = setup
    proxy.reset("produce", ["me"])
    time.sleep(0.05)
    asyncio.run(round_trip(port, request(FETCH, 5)))  # a fetch passes: the reset waits for a produce
    before = len(upstream.received)
    frame = request(PRODUCE, 6, size=1000)
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        asyncio.run(round_trip(port, frame))
    time.sleep(0.1)
    assert bytes(upstream.received[before:]) == frame[: len(frame) // 2]
    assert proxy.resets_done["reset-produce"] == 1 and not proxy.pending_resets()


def test_a_fetch_reset_cuts_the_response_half_way(setup):
    _, proxy, port = setup
    proxy.reset("fetch", ["me"])
    time.sleep(0.05)
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        asyncio.run(round_trip(port, request(FETCH, 8)))
    assert proxy.resets_done["reset-fetch"] == 1
    assert asyncio.run(round_trip(port, request(FETCH, 9)))[:4] == struct.pack(">i", 9)  # once only


def test_a_stall_accepts_and_answers_nothing_then_resets(setup):
    _, proxy, port = setup
    proxy.stall(1.0, ["me"])
    time.sleep(0.05)

    async def run() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)  # accepted
        writer.write(request(FETCH, 10))
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(reader.readexactly(4), 0.5)  # not answered
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(reader.readexactly(4), 3)  # reset when the stall ends

    asyncio.run(run())
    assert asyncio.run(round_trip(port, request(FETCH, 11)))[:4] == struct.pack(">i", 11)
