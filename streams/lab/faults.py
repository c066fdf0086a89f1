"""A fault-injecting TCP proxy between Kafka clients and the broker (`starcast soak --faults`).

The embedded broker listens on a port of its own and advertises the proxy's, so every client
(workers, the load producer, the checker) reaches it through the proxy. Each accepted
connection is traced to the process that opened it (`/proc`: Linux), so a fault can be aimed
at one worker while the harness's own traffic flows untouched, which is what "the network
between this worker and the broker" means here.

Faults, each on the connections of the chosen processes (None: every client):
- `cut(seconds)`: every connection reset at once and new ones refused for `seconds`;
- `latency(seconds)`: every chunk delayed by 200 ms ± 100 ms for `seconds` (order kept);
- `reset("fetch")`: the next fetch response is cut off half way by a reset; `reset("produce")`:
  the next produce request is, on its way to the broker;
- `stall(seconds)`: connections accepted and held, nothing forwarded either way, then reset.
  A frame already read when the stall ends may still pass just before its connection is
  reset, as a broker that resumes may answer what it held.

The proxy reads Kafka's framing (a 4-byte size before each request and response) to find
fetches and produces; it never changes a byte it forwards.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

FETCH, PRODUCE = 1, 0
"""Kafka API keys (the first two bytes of a request after its size)."""


def owner(local_port: int, candidates: dict[str, int], table: str | None = None) -> str | None:
    """Which of `candidates` (name -> pid) holds the TCP socket bound to 127.0.0.1:`local_port`
    (Linux /proc), or None. `table`: the text of /proc/net/tcp (read when not given).

    Every socket on that local port is considered: a closed connection that used the same
    ephemeral port to another peer lingers in TIME_WAIT, listed with no inode (0), and may come
    before the live one."""
    wanted = f"0100007F:{local_port:04X}"
    if table is None:
        try:
            table = Path("/proc/net/tcp").read_text()
        except OSError:
            return None
    targets = set()
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 9 and fields[1] == wanted and fields[9] != "0":
            targets.add(f"socket:[{fields[9]}]")
    if not targets:
        return None
    for name, pid in candidates.items():
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in targets:
                        return name
                except OSError:
                    continue
        except OSError:
            continue
    return None


@dataclass
class _Fault:
    kind: str  # "cut", "latency", "stall", "reset-fetch", "reset-produce"
    names: frozenset[str] | None  # the processes it hits (None: every client)
    until: float  # monotonic; a reset also ends when it fires

    def hits(self, name: str | None) -> bool:
        return self.names is None or name in self.names


@dataclass(eq=False)  # hashed by identity: kept in a set
class _Conn:
    name: str | None  # the watched process that opened it, if any
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    api_keys: dict[int, int] = field(default_factory=dict)  # correlation id -> api key
    tasks: list[asyncio.Task] = field(default_factory=list)
    closed: bool = False


class FaultProxy:
    """Listens on `port` (127.0.0.1), forwards to `upstream`; runs its own event loop in a
    thread. Faults are aimed at processes by name: `watch({name: pid})` says which processes
    those are (again after a restart: a fault aimed at a name hits the new process too); other
    clients count as the harness."""

    def __init__(self, upstream_port: int, port: int, seed: int = 0) -> None:
        self.upstream_port, self.port = upstream_port, port
        self.rnd = random.Random(seed)
        self.faults: list[_Fault] = []
        self.conns: set[_Conn] = set()
        self.watched: dict[str, int] = {}
        self.resets_done: dict[str, int] = {"reset-fetch": 0, "reset-produce": 0}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fault-proxy", daemon=True)
        self.server: asyncio.AbstractServer | None = None

    # -- control, from any thread ----------------------------------------------------------

    def start(self) -> "FaultProxy":
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self.loop).result(10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self.server is not None:
                self.server.close()
            for conn in list(self.conns):
                self._drop(conn, hard=False)
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def watch(self, processes: dict[str, int]) -> None:
        """Trace connections to these processes (name -> pid)."""
        self.watched = dict(processes)

    def cut(self, seconds: float, names: Iterable[str] | None = None) -> None:
        self._call(self._cut, seconds, self._set(names))

    def latency(self, seconds: float, names: Iterable[str] | None = None) -> None:
        self._call(self._add, _Fault("latency", self._set(names), time.monotonic() + seconds))

    def stall(self, seconds: float, names: Iterable[str] | None = None) -> None:
        self._call(self._stall, seconds, self._set(names))

    def reset(self, what: str, names: Iterable[str] | None = None, within: float = 30.0) -> None:
        """Arm a reset in the middle of the next fetch response or produce request, if one
        comes within `within` seconds (disarmed after: it never fires during a later fault)."""
        assert what in ("fetch", "produce")
        self._call(self._add, _Fault(f"reset-{what}", self._set(names), time.monotonic() + within))

    def pending_resets(self) -> int:
        now = time.monotonic()
        return sum(1 for f in self.faults if f.kind.startswith("reset-") and f.until > now)

    @staticmethod
    def _set(names: Iterable[str] | None) -> frozenset[str] | None:
        return None if names is None else frozenset(names)

    def _call(self, fn, *args) -> None:
        """Run `fn` on the proxy's loop and return once it has: a fault is in force when the
        method that sets it returns."""
        async def apply() -> None:
            fn(*args)
        asyncio.run_coroutine_threadsafe(apply(), self.loop).result(10)

    # -- the loop ----------------------------------------------------------------------------

    async def _serve(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    def _add(self, fault: _Fault) -> None:
        self.faults.append(fault)

    def _fault(self, kind: str, name: str | None) -> _Fault | None:
        now = time.monotonic()
        self.faults = [f for f in self.faults if f.until > now]
        for f in self.faults:
            if f.kind == kind and f.hits(name):
                return f
        return None

    def _cut(self, seconds: float, names: frozenset[str] | None) -> None:
        fault = _Fault("cut", names, time.monotonic() + seconds)
        self.faults.append(fault)
        for conn in list(self.conns):
            if fault.hits(conn.name):
                self._drop(conn)

    def _stall(self, seconds: float, names: frozenset[str] | None) -> None:
        fault = _Fault("stall", names, time.monotonic() + seconds)
        self.faults.append(fault)
        held = [conn for conn in self.conns if fault.hits(conn.name)]

        def end() -> None:  # what was held is lost with its connections
            for conn in held:
                self._drop(conn)
        self.loop.call_later(seconds, end)

    def _drop(self, conn: _Conn, hard: bool = True) -> None:
        """Close both sides; `hard`: with a reset (RST), as a cut network or a dying peer does."""
        if conn.closed:
            return
        conn.closed = True
        self.conns.discard(conn)
        for writer in (conn.client, conn.upstream):
            if writer is None:
                continue
            sock = writer.get_extra_info("socket")
            if hard and sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
            writer.transport.abort() if hard else writer.close()
        for task in conn.tasks:
            if task is not asyncio.current_task():
                task.cancel()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        port = writer.get_extra_info("peername")[1]
        name = owner(port, self.watched) if self.watched else None
        conn = _Conn(name, writer)
        self.conns.add(conn)
        if self._fault("cut", name):
            self._drop(conn)
            return
        stalled = self._fault("stall", name)
        if stalled:  # accepted, never answered; reset when the stall ends
            self.loop.call_later(max(stalled.until - time.monotonic(), 0), self._drop, conn)
            conn.tasks.append(asyncio.current_task())  # type: ignore[arg-type]
            try:
                while await reader.read(65536):
                    pass
            except (ConnectionError, asyncio.CancelledError):
                pass
            return
        try:
            up_reader, conn.upstream = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            self._drop(conn)
            return
        conn.tasks.extend([asyncio.ensure_future(self._pump(conn, reader, conn.upstream, requests=True)),
                           asyncio.ensure_future(self._pump(conn, up_reader, writer, requests=False))])

    async def _pump(self, conn: _Conn, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    requests: bool) -> None:
        """Read Kafka frames one way and queue them for `_deliver`, each with the instant it is
        due (later than its arrival while a latency fault hits the connection; never before
        the frame ahead of it)."""
        queue: asyncio.Queue = asyncio.Queue()
        deliver = asyncio.ensure_future(self._deliver(conn, queue, writer))
        conn.tasks.append(deliver)
        due = 0.0
        try:
            while True:
                head = await reader.readexactly(4)
                body = await reader.readexactly(struct.unpack(">i", head)[0])
                if requests:
                    api_key, correlation = struct.unpack(">hxxi", body[:8])
                    conn.api_keys[correlation] = api_key
                    kind = "reset-produce" if api_key == PRODUCE else None
                else:
                    correlation = struct.unpack(">i", body[:4])[0]
                    kind = "reset-fetch" if conn.api_keys.pop(correlation, None) == FETCH else None
                now = time.monotonic()
                delay = self.rnd.uniform(0.1, 0.3) if self._fault("latency", conn.name) else 0.0
                due = max(due, now + delay)
                queue.put_nowait((due, head + body, kind))
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            queue.put_nowait(None)  # delivered what was read, then closed
        except asyncio.CancelledError:
            pass

    async def _deliver(self, conn: _Conn, queue: asyncio.Queue, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                item = await queue.get()
                if item is None:
                    self._drop(conn, hard=False)
                    return
                due, frame, kind = item
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                while self._fault("stall", conn.name):  # held; the stall's end resets the connection
                    await asyncio.sleep(0.05)
                if kind is not None and (fault := self._fault(kind, conn.name)) is not None:
                    self.faults.remove(fault)
                    self.resets_done[kind] += 1
                    writer.write(frame[: len(frame) // 2])  # half the frame, then a reset
                    await asyncio.sleep(0)
                    self._drop(conn)
                    return
                writer.write(frame)
                await writer.drain()
        except (ConnectionError, OSError):
            self._drop(conn, hard=False)
        except asyncio.CancelledError:
            pass
