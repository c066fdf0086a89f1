"""`starcast soak`: kill -9 workers at random while a marketplace month streams in, then check
every forecast and every monthly freeze against `starcast replay` over the same events.

One round: a fresh embedded broker, two workers (RocksDB store, the default), a producer at a
fixed rate, and a chaos loop that kills a random worker (mid-batch, right after the month-end
tick so mid-freeze, or while the other is still recovering) and restarts it. At the end the
latest forecast of every seller must equal replay at the final clock, and every seller must
have exactly one monthly record equal to replay at the month's last instant.

The same code is the CI crash test (one short round) and the long soak (many seeded rounds).
"""

from __future__ import annotations

import asyncio
import io
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from streams.core.contract import TOPICS
from streams.core.rulebook import load
from streams.core.timeutil import parse_ts
from streams.replay import replay
from streams.service.broker import EmbeddedBroker, free_port
from streams.service.runner import scrape, stop_group
from streams.simulate import events as simulate

MONTH_END_TICK = "2026-04-02T00:00:01Z"  # past March's end plus the 24 h grace: freezes March
FINAL_TICK = "2026-04-05T00:00:00Z"


class WorkerProcess:
    """A `starcast worker` child process with its own web port and data directory."""

    def __init__(self, broker_url: str, prefix: str, workdir: Path, name: str, store: str = "rocksdb://",
                 partitions: int = 4, extra_env: dict[str, str] | None = None):
        self.name, self.prefix, self.store, self.partitions = name, prefix, store, partitions
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
                                        start_new_session=True)
        return self

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
            if self.process.poll() is not None:
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


async def _send(bootstrap: str, messages: list[tuple[str, bytes | None, bytes, int | None]], rate: float) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    started = time.monotonic()
    try:
        for i, (topic, key, value, partition) in enumerate(messages, start=1):
            await producer.send(topic, key=key, value=value, partition=partition)
            if i % 100 == 0:
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
        out = []
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
    return {k: v for k, v in rating.items() if k not in ("as_of", "month", "valid_from", "valid_until")}


def expected(events: list[dict], when: str) -> dict[str, dict]:
    lines = [orjson.dumps(e) for e in events]
    return {r["seller_id"]: comparable(r) for r in replay(lines, load(), parse_ts(when), io.StringIO())}


@dataclass
class RoundResult:
    seed: int
    events: int
    kills: int = 0
    rebalances: int = 0
    stalls: int = 0  # times the group's committed offsets did not reach the end in time
    forecast_mismatches: int = 0
    freeze_mismatches: int = 0
    recovery_seconds: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def mismatches(self) -> int:
        return self.forecast_mismatches + self.freeze_mismatches


def run_round(seed: int, n_events: int = 50_000, n_sellers: int = 1_000, kills: int = 5, rate: float = 2_000,
              workdir: Path | None = None, log=print, n_workers: int = 2) -> RoundResult:
    """Kill -9 random workers at random points of a streamed month; compare with replay."""
    rnd = random.Random(seed)
    workdir = Path(workdir or tempfile.mkdtemp(prefix=f"starcast-soak-{seed}-"))
    result = RoundResult(seed, n_events)
    started = time.monotonic()
    broker = EmbeddedBroker().start()
    prefix = f"soak{seed}-"
    workers = [WorkerProcess(broker.url, prefix, workdir, f"w{i}") for i in range(n_workers)]
    try:
        for w in workers:
            w.start()
        for w in workers:
            result.recovery_seconds.append(w.wait_ready())
        events = list(simulate(n_events, n_sellers, seed=seed))
        messages = event_messages(prefix, events)
        # Kill points: spread over the stream, one right after the month-end tick (mid-freeze).
        cut_points = sorted(rnd.sample(range(1, len(messages)), max(kills - 1, 0)))
        chunks = [messages[a:b] for a, b in zip([0, *cut_points], [*cut_points, len(messages)])]
        for i, chunk in enumerate(chunks):
            sender = threading.Thread(target=send, args=(broker.bootstrap, chunk, rate))
            sender.start()
            if i < len(chunks) - 1:
                time.sleep(rnd.uniform(0.2, 0.8) * len(chunk) / rate)  # mid-chunk: mid-batch
                _chaos(rnd, workers, result, log)
            sender.join()

        def mid_freeze() -> None:
            time.sleep(rnd.uniform(0.0, 0.5))
            if kills:
                _chaos(rnd, workers, result, log)

        _finish_and_compare(broker, prefix, events, messages, workers, result, workdir, log, mid_freeze)
    finally:
        for w in workers:
            w.stop()
        broker.stop()
    result.seconds = time.monotonic() - started
    return result


def run_rebalance(seed: int, n_events: int = 20_000, n_sellers: int = 500, rate: float = 1_500,
                  standby: int = 0, workdir: Path | None = None, log=print) -> RoundResult:
    """Scale 1 → 2 → 1 workers while traffic flows (graceful joins and leaves, no kills).

    `recovery_seconds` holds the time for the remaining worker to take over the leaver's
    partitions (restore their tables and serve): standby replicas should shorten it.
    """
    workdir = Path(workdir or tempfile.mkdtemp(prefix=f"starcast-rebalance-{seed}-"))
    result = RoundResult(seed, n_events)
    started = time.monotonic()
    broker = EmbeddedBroker().start()
    prefix = f"scale{seed}-"
    env = {"STARCAST_STANDBY_REPLICAS": str(standby)}
    first, second = (WorkerProcess(broker.url, prefix, workdir, f"w{i}", extra_env=env) for i in range(2))
    workers = [first, second]
    try:
        first.start().wait_ready()
        events = list(simulate(n_events, n_sellers, seed=seed))
        messages = event_messages(prefix, events)
        sender = threading.Thread(target=send, args=(broker.bootstrap, messages, rate))
        sender.start()
        time.sleep(len(messages) / rate / 4)
        second.start().wait_ready(recoveries_before=0)  # 1 → 2
        log(f"  {second.name} joined")
        time.sleep(len(messages) / rate / 4)
        before = second.recoveries()
        leave = time.monotonic()
        first.stop()  # 2 → 1: the leaver's partitions move to the stayer
        second.wait_ready(recoveries_before=before)
        result.recovery_seconds.append(time.monotonic() - leave)
        log(f"  {first.name} left; {second.name} took over in {result.recovery_seconds[-1]:.1f}s")
        sender.join()
        _finish_and_compare(broker, prefix, events, messages, [second], result, workdir, log)
        result.rebalances = sum(w.rebalances() for w in workers)
    finally:
        for w in workers:
            w.stop()
        broker.stop()
    result.seconds = time.monotonic() - started
    return result


@dataclass
class OverloadResult:
    events: int
    offered_per_second: float  # how fast the burst went in
    drained_seconds: float  # from the first message to the group having committed them all
    rss_start_bytes: int
    rss_peak_bytes: int
    rss_end_bytes: int

    @property
    def handled_per_second(self) -> float:
        return self.events / self.drained_seconds


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


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


def run_overload(n_events: int = 50_000, n_sellers: int = 1_000, seed: int = 11, repeats: int = 3,
                 workdir: Path | None = None) -> OverloadResult:
    """Burst-test one worker and watch its memory. First the month's events go in and drain
    (the state is built); then the same events go in `repeats` more times as one burst, as fast
    as the client can. Re-deliveries leave the state as it is, so memory that grows during the
    second burst is memory holding the backlog: Faust should pause fetching when its buffers
    fill and leave the backlog in Kafka. The result describes the second burst."""
    workdir = Path(workdir or tempfile.mkdtemp(prefix="starcast-overload-"))
    workdir.mkdir(parents=True, exist_ok=True)
    broker = EmbeddedBroker().start()
    prefix = "burst-"
    group = f"{prefix}starcast"
    worker = WorkerProcess(broker.url, prefix, workdir, "w0")
    try:
        worker.start().wait_ready()
        messages = event_messages(prefix, list(simulate(n_events, n_sellers, seed=seed)))
        send(broker.bootstrap, messages)
        wait_consumed(broker.bootstrap, group, produced_counts(messages, worker.partitions), 60 + n_events / 100)
        burst = messages * repeats
        rss_start = rss_bytes(worker.process.pid)
        with PeakRss(worker.process.pid, every=0.1) as rss:
            started = time.monotonic()
            send(broker.bootstrap, burst)
            offered = len(burst) / (time.monotonic() - started)
            try:
                wait_consumed(broker.bootstrap, group, produced_counts(messages * (repeats + 1), worker.partitions),
                              60 + len(burst) / 100)
            finally:
                drained = time.monotonic() - started
        return OverloadResult(len(burst), offered, drained, rss_start, max(rss_start, rss.peak),
                              rss_bytes(worker.process.pid))
    finally:
        worker.stop()
        broker.stop()


def _finish_and_compare(broker, prefix: str, events: list[dict], messages: list, workers: list[WorkerProcess],
                        result: RoundResult, workdir: Path, log, mid_freeze=None) -> None:
    """Wait for the input to be consumed, freeze March (with `mid_freeze` run right after the
    month-end tick), tick to the end, then count forecasts and freezes that differ from replay."""
    partitions = workers[0].partitions
    group = f"{prefix}starcast"
    try:
        wait_consumed(broker.bootstrap, group, produced_counts(messages, partitions), 60 + len(messages) / 200)
    except RuntimeError as exc:  # reported; the comparison below says whether data was lost
        result.stalls += 1
        log(f"round {result.seed}: {exc}")
    send(broker.bootstrap, tick_messages(prefix, MONTH_END_TICK, partitions))
    if mid_freeze is not None:
        mid_freeze()
    for w in workers:
        if w.process.poll() is not None:
            w.start()
    for w in workers:
        w.wait_ready()
    final = final_instant(events)
    send(broker.bootstrap, tick_messages(prefix, final, partitions))
    ticks = tick_messages(prefix, MONTH_END_TICK, partitions) + tick_messages(prefix, final, partitions)
    try:
        wait_consumed(broker.bootstrap, group, produced_counts(ticks, partitions), 60)
    except RuntimeError as exc:
        result.stalls += 1
        log(f"round {result.seed}: {exc}")
    want = expected(events, final)
    want_month = expected(events, "2026-03-31T23:59:59.999Z")
    deadline = time.monotonic() + 120 + len(events) / 500
    while True:  # a freeze may still be held (a partition's topics not all read): wait for both
        forecasts = {m.key.decode(): comparable(orjson.loads(m.value))
                     for m in sorted(read_topic(broker.bootstrap, prefix + "star-forecasts"),
                                     key=lambda m: (m.partition, m.offset))}
        bad = [s for s in want if forecasts.get(s) != want[s]]
        monthly: dict[str, list[dict]] = {}
        for m in read_topic(broker.bootstrap, prefix + "star-ratings-monthly"):
            monthly.setdefault(m.key.decode(), []).append(comparable(orjson.loads(m.value)))
        wrong_months = [s for s in sorted(set(want_month) | set(monthly))
                        if len(monthly.get(s, [])) != 1 or monthly[s][0] != want_month.get(s)]
        if not (bad or wrong_months) or time.monotonic() > deadline:
            break
        time.sleep(2)
    result.forecast_mismatches = len(bad) + len(set(forecasts) - set(want))
    result.freeze_mismatches = len(wrong_months)
    result.rebalances = sum(w.rebalances() for w in workers)
    if result.mismatches:
        log(f"round {result.seed}: {len(bad)} forecasts and {len(wrong_months)} freezes differ; logs in {workdir}")
        with open(workdir / "mismatches.txt", "w") as out:
            for s in bad:
                out.write(f"forecast {s}: (got, want) {_diff(forecasts.get(s) or {}, want[s])}\n")
            if bad:  # what the changelog holds for the first few, to find the missing facts
                wanted = set(bad[:3])
                for m in read_topic(broker.bootstrap, f"{prefix}starcast-state-changelog"):
                    if m.key.split(b"\x1f", 1)[0].decode() in wanted:
                        out.write(f"changelog {m.partition}/{m.offset} {m.key!r}: {m.value!r}\n")
                for e in events:
                    if e["seller_id"] in wanted:
                        out.write(f"event {orjson.dumps(e).decode()}\n")
            for s in wrong_months:
                got = monthly.get(s, [])
                out.write(f"monthly {s}: {len(got)} records; (got, want) "
                          f"{_diff(got[0] if got else {}, want_month.get(s, {}))}\n")


def _diff(got: dict, want: dict) -> dict:
    return {k: (got.get(k), want.get(k)) for k in set(got) | set(want) if got.get(k) != want.get(k)}


def _chaos(rnd: random.Random, workers: list[WorkerProcess], result: RoundResult, log) -> None:
    victim = rnd.choice(workers)
    victim.kill()
    result.kills += 1
    time.sleep(rnd.uniform(0.0, 2.0))
    before = victim.recoveries()
    victim.start()
    if rnd.random() < 0.3:  # sometimes kill it again while it is recovering
        time.sleep(rnd.uniform(0.5, 3.0))
        victim.kill()
        result.kills += 1
        before = victim.recoveries()
        victim.start()
    result.recovery_seconds.append(victim.wait_ready(recoveries_before=before))
    log(f"  killed {victim.name}; back in {result.recovery_seconds[-1]:.1f}s")


def run_soak(rounds: int, n_events: int, n_sellers: int, kills: int, rate: float, seed: int) -> int:
    results = []
    for r in range(rounds):
        print(f"round {r + 1}/{rounds} (seed {seed + r}): {n_events:,} events, {n_sellers:,} sellers, "
              f"{kills} kill points", flush=True)
        results.append(run_round(seed + r, n_events, n_sellers, kills, rate))
    print(f"\n{'seed':>6} {'events':>8} {'kills':>6} {'rebalances':>10} {'stalls':>6} {'mismatches':>10} "
          f"{'recovery p50 s':>14} {'recovery max s':>14} {'round s':>8}")
    for r in results:
        rec = sorted(r.recovery_seconds)
        print(f"{r.seed:>6} {r.events:>8,} {r.kills:>6} {r.rebalances:>10} {r.stalls:>6} {r.mismatches:>10} "
              f"{rec[len(rec) // 2]:>14.1f} {rec[-1]:>14.1f} {r.seconds:>8.0f}")
    total_kills = sum(r.kills for r in results)
    total_bad = sum(r.mismatches for r in results)
    print(f"total: {total_kills} kills, {sum(r.rebalances for r in results)} rebalances, "
          f"{sum(r.events for r in results):,} events, {total_bad} mismatches")
    return 1 if total_bad else 0


def run_rebalances(rounds: int, n_events: int, n_sellers: int, rate: float, seed: int) -> int:
    """1 → 2 → 1 scaling rounds, each without and with a standby replica, side by side."""
    results = []
    for r in range(rounds):
        for standby in (0, 1):
            print(f"round {r + 1}/{rounds} (seed {seed + r}, standby replicas {standby}): {n_events:,} events, "
                  f"{n_sellers:,} sellers", flush=True)
            results.append((standby, run_rebalance(seed + r, n_events, n_sellers, rate, standby)))
    print(f"\n{'seed':>6} {'standby':>7} {'events':>8} {'rebalances':>10} {'stalls':>6} {'mismatches':>10} "
          f"{'takeover s':>10} {'round s':>8}")
    for standby, r in results:
        print(f"{r.seed:>6} {standby:>7} {r.events:>8,} {r.rebalances:>10} {r.stalls:>6} {r.mismatches:>10} "
              f"{r.recovery_seconds[0]:>10.1f} {r.seconds:>8.0f}")
    for standby in (0, 1):
        takeovers = sorted(r.recovery_seconds[0] for s, r in results if s == standby)
        print(f"standby {standby}: takeover median {takeovers[len(takeovers) // 2]:.1f} s")
    bad = sum(r.mismatches for _, r in results)
    print(f"total: {sum(r.events for _, r in results):,} events, {bad} mismatches")
    return 1 if bad else 0


def print_overload(n_events: int, n_sellers: int, seed: int) -> int:
    r = run_overload(n_events, n_sellers, seed)
    mib = 1 << 20
    print(f"burst of re-deliveries after the month was rated: {r.events:,} events offered at {r.offered_per_second:,.0f}/s; drained in "
          f"{r.drained_seconds:.1f} s ({r.handled_per_second:,.0f}/s)")
    print(f"worker RSS: {r.rss_start_bytes / mib:.0f} MiB before the burst, {r.rss_peak_bytes / mib:.0f} MiB peak, "
          f"{r.rss_end_bytes / mib:.0f} MiB after")
    return 0
