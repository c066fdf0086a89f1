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

import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from streams.core.keys import seller_of_key
from streams.local.broker import EmbeddedBroker
from streams.lab.workload import events as simulate
from streams.testing import (MONTH_END_TICK, PeakRss, WorkerProcess, comparable, event_messages, expected,
                             final_instant, official, produced_counts, read_topic, rss_bytes, send,
                             tick_messages, wait_consumed)


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

        finish_and_compare(broker, prefix, events, messages, workers, result, workdir, log, mid_freeze)
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
        finish_and_compare(broker, prefix, events, messages, [second], result, workdir, log)
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


def run_overload(n_events: int = 50_000, n_sellers: int = 1_000, seed: int = 11, repeats: int = 3,
                 workdir: Path | None = None, paused: bool = False) -> OverloadResult:
    """Burst-test one worker and watch its memory. First the month's events go in and drain
    (the state is built); then the same events go in `repeats` more times as one burst, as fast
    as the client can. Re-deliveries leave the state as it is, so memory that grows during the
    second burst is memory holding the backlog: Faust should pause fetching when its buffers
    fill and leave the backlog in Kafka. The result describes the second burst.

    `paused`: the worker is stopped (SIGSTOP) while the burst is sent and continued after, so
    the whole burst waits for it at once, whatever the machine's speed: an overload by
    construction (the drain is timed from the continue)."""
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
        rss_start = rss_bytes(worker.pid)
        with PeakRss(worker.pid, every=0.1) as rss:
            if paused:
                os.kill(worker.pid, signal.SIGSTOP)
            started = time.monotonic()
            send(broker.bootstrap, burst)
            offered = len(burst) / (time.monotonic() - started)
            if paused:
                os.kill(worker.pid, signal.SIGCONT)
                started = time.monotonic()
            try:
                wait_consumed(broker.bootstrap, group, produced_counts(messages * (repeats + 1), worker.partitions),
                              60 + len(burst) / 100)
            finally:
                drained = time.monotonic() - started
        return OverloadResult(len(burst), offered, drained, rss_start, max(rss_start, rss.peak),
                              rss_bytes(worker.pid))
    finally:
        worker.stop()
        broker.stop()


def finish_and_compare(broker, prefix: str, events: list[dict], messages: list, workers: list[WorkerProcess],
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
        if not w.running():
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
    want_month = {seller: official(r) for seller, r in expected(events, "2026-03-31T23:59:59.999Z").items()}
    deadline = time.monotonic() + 120 + len(events) / 500
    while True:  # a freeze may still be held (a partition's topics not all read): wait for both
        forecasts = {m.key.decode(): comparable(orjson.loads(m.value))
                     for m in sorted(read_topic(broker.bootstrap, prefix + "star-forecasts"),
                                     key=lambda m: (m.partition, m.offset))}
        bad = [s for s in want if forecasts.get(s) != want[s]]
        monthly: dict[str, list[dict]] = {}
        for m in read_topic(broker.bootstrap, prefix + "star-ratings-monthly"):
            monthly.setdefault(m.key.decode(), []).append(official(orjson.loads(m.value)))
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
                    if seller_of_key(m.key).decode() in wanted:
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
    for i in range(rounds):
        print(f"round {i + 1}/{rounds} (seed {seed + i}): {n_events:,} events, {n_sellers:,} sellers, "
              f"{kills} kill points", flush=True)
        results.append(run_round(seed + i, n_events, n_sellers, kills, rate))
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


class CpuHog:
    """A process that keeps one core busy while it runs (a noisy neighbour)."""

    def __enter__(self) -> "CpuHog":
        self.process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        return self

    def __exit__(self, *exc) -> None:
        self.process.kill()
        self.process.wait()


def run_rebalances(rounds: int, n_events: int, n_sellers: int, rate: float, seed: int,
                   standbys: tuple[int, ...] = (0, 1), hog: bool = False) -> int:
    """1 → 2 → 1 scaling rounds, each with every standby replica count of `standbys`, side by
    side. `hog`: a CPU hog runs beside every second round."""
    results = []
    for i in range(rounds):
        hogged = hog and i % 2 == 1
        for standby in standbys:
            print(f"round {i + 1}/{rounds} (seed {seed + i}, standby replicas {standby}"
                  f"{', CPU hog' if hogged else ''}): {n_events:,} events, {n_sellers:,} sellers", flush=True)
            with CpuHog() if hogged else contextlib.nullcontext():
                results.append((standby, hogged, run_rebalance(seed + i, n_events, n_sellers, rate, standby)))
    print(f"\n{'seed':>6} {'standby':>7} {'hog':>4} {'events':>8} {'rebalances':>10} {'stalls':>6} {'mismatches':>10} "
          f"{'takeover s':>10} {'round s':>8}")
    for standby, hogged, r in results:
        print(f"{r.seed:>6} {standby:>7} {'yes' if hogged else 'no':>4} {r.events:>8,} {r.rebalances:>10} "
              f"{r.stalls:>6} {r.mismatches:>10} {r.recovery_seconds[0]:>10.1f} {r.seconds:>8.0f}")
    for standby in standbys:
        takeovers = sorted(r.recovery_seconds[0] for s, _, r in results if s == standby)
        print(f"standby {standby}: takeover median {takeovers[len(takeovers) // 2]:.1f} s")
    bad = sum(r.mismatches for _, _, r in results)
    print(f"total: {sum(r.events for _, _, r in results):,} events, {bad} mismatches")
    return 1 if bad else 0


def print_overload(n_events: int, n_sellers: int, seed: int) -> int:
    r = run_overload(n_events, n_sellers, seed)
    mib = 1 << 20
    print(f"burst of re-deliveries after the month was rated: {r.events:,} events offered at "
          f"{r.offered_per_second:,.0f}/s; drained in "
          f"{r.drained_seconds:.1f} s ({r.handled_per_second:,.0f}/s)")
    print(f"worker RSS: {r.rss_start_bytes / mib:.0f} MiB before the burst, {r.rss_peak_bytes / mib:.0f} MiB peak, "
          f"{r.rss_end_bytes / mib:.0f} MiB after")
    return 0
