"""Test support for starcast: worker processes, topic reads and sends, the replay oracle.

A public testing module: the integration tests, the soak and the benchmark build on it. It
starts real `starcast worker` processes against a real broker; nothing here is a mock.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson

from streams.core.contract import TOPICS
from streams.core.rulebook import load
from streams.core.timeutil import parse_ts
from streams.local.broker import free_port
from streams.local.runner import scrape, stop_group
from streams.replay import replay

MONTH_END_TICK = "2026-04-02T00:00:01Z"  # past March's end plus the 24 h grace: freezes March
FINAL_TICK = "2026-04-05T00:00:00Z"


class WorkerProcess:
    """A `starcast worker` child process with its own web port and data directory."""

    def __init__(self, broker_url: str, prefix: str, workdir: Path, name: str, store: str = "rocksdb://",
                 partitions: int = 4, extra_env: dict[str, str] | None = None, cwd: Path | None = None):
        self.name, self.prefix, self.store, self.partitions = name, prefix, store, partitions
        self.cwd = cwd  # where `python -m streams.cli` runs: another checkout's code, for a baseline
        self.broker_url = broker_url
        self.data_dir = str(workdir / f"data-{name}")
        self.log = workdir / f"{name}.log"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen | None = None

    def start(self) -> "WorkerProcess":
        env = dict(os.environ, STARCAST_BROKER=self.broker_url, STARCAST_TOPIC_PREFIX=self.prefix,
                   STARCAST_WEB_PORT=str(self.port), STARCAST_EMBEDDED_BROKER="1", STARCAST_STORE=self.store,
                   STARCAST_DATA_DIR=self.data_dir, STARCAST_PARTITIONS=str(self.partitions), **self.extra_env)
        self.process = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker", "--loglevel", "info"],
                                        env=env, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
                                        start_new_session=True, cwd=self.cwd)
        return self

    @property
    def pid(self) -> int:
        """The started worker's process id."""
        assert self.process is not None, "start() the worker first"
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ready(self) -> bool:
        try:
            urllib.request.urlopen(self.base + "/healthz", timeout=1).read()
            return True
        except (urllib.error.URLError, OSError):
            return False

    def recoveries(self) -> int:
        return self.log.read_text(errors="replace").count("Recovery]: Recovery complete") if self.log.exists() else 0

    def wait_ready(self, timeout: float = 90, recoveries_before: int | None = None) -> float:
        """Seconds until the worker serves HTTP and, if given a count, has completed one more
        table recovery than before (that is, has rejoined the group and restored its tables)."""
        started = time.monotonic()
        while not self.ready() or (recoveries_before is not None and self.recoveries() <= recoveries_before):
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited with {self.process.returncode}; see {self.log}")
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"worker {self.name} not ready after {timeout}s; see {self.log}")
            time.sleep(0.2)
        return time.monotonic() - started

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        stop_group(self.process)

    def metrics(self) -> dict[str, float]:
        return scrape(self.base + "/metrics")

    def rebalances(self) -> int:
        return self.log.read_text(errors="replace").count("Setting newly assigned partitions")


def start_all(workers: list[WorkerProcess]) -> list[WorkerProcess]:
    """Start every worker, then wait until each is ready (they join their group together)."""
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.wait_ready()
    return workers


async def _send(bootstrap: str, messages: list[tuple[str, bytes | None, bytes, int | None]], rate: float) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    started = time.monotonic()
    # Paced every 10 ms worth of messages: pacing every 100 sent them in bursts of 100 at low
    # rates (once a second at 100/s), and a latency measured then included a burst's batch.
    step = max(1, int(rate / 100))
    try:
        for i, (topic, key, value, partition) in enumerate(messages, start=1):
            await producer.send(topic, key=key, value=value, partition=partition)
            if i % step == 0:
                ahead = i / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        await producer.flush()
    finally:
        await producer.stop()


def send(bootstrap: str, messages, rate: float = 1e9) -> None:
    asyncio.run(_send(bootstrap, messages, rate))


def event_messages(prefix: str, events: list[dict]) -> list:
    return [(prefix + TOPICS[e["type"]], e["seller_id"].encode(), orjson.dumps(e), None) for e in events]


def final_instant(events: list[dict]) -> str:
    """FINAL_TICK, or the latest event if later: every partition's clock must end at the
    instant replay rates at (a simulated month can spill a few days into the next)."""
    return max(FINAL_TICK, max(e["ts"] for e in events), key=parse_ts)


def tick_messages(prefix: str, when: str, partitions: int) -> list:
    value = orjson.dumps({"now": parse_ts(when)})
    return [(prefix + "starcast-ticks", None, value, p) for p in range(partitions)]


def read_topic(bootstrap: str, topic: str, idle: float = 2.0, timeout: float = 120.0) -> list:
    """Every record of `topic`: read at least up to the end offsets listed at the start, then
    until nothing arrives for `idle` seconds. An idle pause alone once ended a read of a
    12 MB changelog early on a busy broker (the bench's state size came out 9 MB, not 13)."""
    async def read():
        from aiokafka import AIOKafkaConsumer
        from aiokafka.structs import TopicPartition

        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                    group_id=None, enable_auto_commit=False)
        await consumer.start()
        out: list = []
        try:
            await consumer.topics()  # loads the metadata
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            if not tps:
                return out
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)  # tansu may answer short: the idle rule reads on
            deadline = asyncio.get_running_loop().time() + timeout
            while True:
                batch = await consumer.getmany(timeout_ms=int(idle * 1000))
                for messages in batch.values():
                    out.extend(messages)
                if not batch:
                    behind = [tp for tp in tps if await consumer.position(tp) < ends[tp]]
                    if not behind or asyncio.get_running_loop().time() > deadline:
                        return out
        finally:
            await consumer.stop()

    return asyncio.run(read())


def produced_counts(messages: list, partitions: int) -> dict[tuple[str, int], int]:
    """Messages per (topic, partition) as the default partitioner places seller-keyed ones."""
    from streams.service.processor import partition_for

    counts: dict[tuple[str, int], int] = {}
    for topic, key, _value, partition in messages:
        p = partition if partition is not None else partition_for(key.decode(), partitions)
        counts[(topic, p)] = counts.get((topic, p), 0) + 1
    return counts


def wait_consumed(bootstrap: str, group: str, expected: dict[tuple[str, int], int], timeout: float) -> None:
    """Until the workers' consumer group has committed past every message produced.

    Ticks travel on their own topic, consumed independently of the input topics: a tick sent
    while input is still queued would move the clock (and freeze a month) ahead of the data.
    """

    async def committed() -> dict[tuple[str, int], int]:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.structs import TopicPartition

        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            return {(t, p): (await consumer.committed(TopicPartition(t, p))) or 0 for t, p in expected}
        finally:
            await consumer.stop()

    deadline = time.monotonic() + timeout
    while True:
        done = asyncio.run(committed())
        if all(done[tp] >= n for tp, n in expected.items()):
            return
        if time.monotonic() > deadline:
            behind = {f"{t}/{p}": n - done[(t, p)] for (t, p), n in expected.items() if done[(t, p)] < n}
            raise RuntimeError(f"workers still behind after {timeout}s: {behind}")
        time.sleep(1)


def comparable(rating: dict) -> dict:
    """Every field but when it was computed: `as_of`, and a monthly record's month and validity."""
    return {k: v for k, v in rating.items() if k not in ("as_of", "month", "valid_from", "valid_until")}


def official(rating: dict) -> dict:
    """What a monthly record and a rating at the month's last instant share: a monthly record
    carries no projection (it is the month's end)."""
    return {k: v for k, v in comparable(rating).items() if k != "projection"}


def expected(events: list[dict], when: str) -> dict[str, dict]:
    """`comparable` replay ratings at `when`, by seller (with their projections)."""
    lines = [orjson.dumps(e) for e in events]
    return {r["seller_id"]: comparable(r) for r in replay(lines, load(), parse_ts(when), io.StringIO())}


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class PeakRss:
    """Samples a process's RSS in the background while in use."""

    def __init__(self, pid: int, every: float = 0.2):
        self.pid, self.every, self.peak, self._stop = pid, every, 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, rss_bytes(self.pid))
            except OSError:
                return
            time.sleep(self.every)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
