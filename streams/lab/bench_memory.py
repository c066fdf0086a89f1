"""`starcast bench --memory`: a worker's memory against the state it owns, and the price of a
cache smaller than the state.

1. For each state size (150,000 and 600,000 events of the benchmarks' workload, for 4,000 and
   16,000 sellers: 4× the state), on a new embedded broker, one worker with
   `STARCAST_STATE_CACHE_MB=64` rates all of it: peak RSS, events/s, the cache's hit rate and
   its estimated bytes at the end. Then, on the larger state, a fresh worker (empty data
   directory) restores the changelogs: seconds from start to ready, and its peak RSS.
2. On the standard bench input (300,000 events, 10,000 sellers): events/s with a cache that holds
   every seller (4 GiB), then with a cache of a tenth of the state the first run ended with
   (its `starcast_state_cache_bytes`), each in its own consumer group; with `--baseline DIR` (a
   checkout of an earlier commit, its venv shared) that commit's worker on the same input
   first, for the ratio in the same sitting.

Events/s is counted from the first to the last event handled (start-up excluded). Peak RSS is
sampled from /proc every 0.2 s. Nothing is asserted.
"""

from __future__ import annotations

import tempfile
import time
import urllib.request
from pathlib import Path

import orjson

from streams.lab.bench_service import PARTITIONS, PREFIX, create_input_topics
from streams.lab.workload import events as simulate
from streams.local.broker import EmbeddedBroker
from streams.testing import PeakRss, WorkerProcess, event_messages, send

SIZES = ((150_000, 4_000), (600_000, 16_000))
STANDARD = (300_000, 10_000)


def _figures(worker: WorkerProcess) -> dict[str, float]:
    try:
        return worker.metrics()
    except OSError:
        return {}


def rate_one(broker: EmbeddedBroker, workdir: Path, name: str, n: int, env: dict[str, str],
             timeout: float, cwd: Path | None = None) -> dict:
    """One worker, in its own consumer group, over the whole input: events/s, peak RSS and its
    state cache's figures when done."""
    worker = WorkerProcess(broker.url, PREFIX, workdir, name, partitions=PARTITIONS,
                           extra_env={"STARCAST_APP_ID": f"memory-{name}", **env}, cwd=cwd)
    worker.start()
    try:
        with PeakRss(worker.pid) as rss:
            first = last = None
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                handled = _figures(worker).get("starcast_events_total", 0.0)
                now = time.monotonic()
                if first is None and handled:
                    first = (now, handled)
                if handled >= n:
                    last = (now, handled)
                    break
                time.sleep(0.25)
            figures = _figures(worker)
            misses = _sample(worker, 'starcast_state_cache_lookups_total{result="miss"}')
    finally:
        worker.stop()
    if first is None or last is None or last[0] <= first[0]:
        raise RuntimeError(f"worker {name} did not rate {n:,} events in {timeout:.0f} s; see {workdir}")
    lookups = figures.get("starcast_state_cache_lookups_total", 0.0)
    return {"events_per_s": round((last[1] - first[1]) / (last[0] - first[0])), "peak_rss_mib": rss.peak >> 20,
            "hit_rate": round(1 - misses / lookups, 3) if lookups else None,
            "cache_mib": round(figures.get("starcast_state_cache_bytes", 0.0) / 2**20, 1),
            "evictions": int(figures.get("starcast_state_cache_evictions_total", 0.0))}


def _sample(worker: WorkerProcess, name: str) -> float:
    """One sample of the worker's /metrics, labels included in `name` (0 when absent)."""
    try:
        text = urllib.request.urlopen(worker.base + "/metrics", timeout=5).read().decode()
    except OSError:
        return 0.0
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def restore_one(broker: EmbeddedBroker, workdir: Path, name: str, app_id: str, env: dict[str, str],
                timeout: float) -> dict:
    worker = WorkerProcess(broker.url, PREFIX, workdir, name, partitions=PARTITIONS,
                           extra_env={"STARCAST_APP_ID": app_id, **env})
    started = time.monotonic()
    worker.start()
    try:
        with PeakRss(worker.pid) as rss:
            worker.wait_ready(timeout=timeout, recoveries_before=0)
            ready = time.monotonic() - started
    finally:
        worker.stop()
    return {"ready_seconds": round(ready, 1), "peak_rss_mib": rss.peak >> 20}


def _broker_with(n: int, sellers: int, seed: int) -> EmbeddedBroker:
    broker = EmbeddedBroker().start()
    create_input_topics(broker.bootstrap)
    send(broker.bootstrap, event_messages(PREFIX, list(simulate(n, sellers, seed=seed))))
    return broker


def run_memory_bench(cache_mb: int, seed: int, baseline: Path | None, as_json: bool) -> int:
    report: dict = {"cache_mb": cache_mb, "sizes": [], "standard": {}}
    env = {"STARCAST_STATE_CACHE_MB": str(cache_mb)}
    for i, (n, sellers) in enumerate(SIZES):
        workdir = Path(tempfile.mkdtemp(prefix="starcast-bench-memory-"))
        broker = _broker_with(n, sellers, seed)
        try:
            timeout = 120 + n / 500
            row = {"events": n, "sellers": sellers, **rate_one(broker, workdir, "rate", n, env, timeout)}
            if i == len(SIZES) - 1:
                row["restore"] = restore_one(broker, workdir, "fresh", "memory-rate", env, timeout)
            report["sizes"].append(row)
        finally:
            broker.stop()
    n, sellers = STANDARD
    workdir = Path(tempfile.mkdtemp(prefix="starcast-bench-memory-"))
    broker = _broker_with(n, sellers, seed)
    try:
        timeout = 120 + n / 500
        standard = report["standard"]
        if baseline is not None:
            standard["baseline"] = rate_one(broker, workdir, "baseline", n, {}, timeout, cwd=baseline)
        standard["all_held"] = rate_one(broker, workdir, "all", n, {"STARCAST_STATE_CACHE_MB": "4096"}, timeout)
        tenth = max(1, round(standard["all_held"]["cache_mib"] / 10))
        standard["tenth_mb"] = tenth
        standard["tenth"] = rate_one(broker, workdir, "tenth", n, {"STARCAST_STATE_CACHE_MB": str(tenth)}, timeout)
    finally:
        broker.stop()
    if as_json:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
        return 0
    print(f"starcast memory bench: one worker, {PARTITIONS} partitions, embedded broker, "
          f"STARCAST_STATE_CACHE_MB={cache_mb}")
    rows = report["sizes"]
    for row in rows:
        print(f"  {row['events']:>8,} events, {row['sellers']:>6,} sellers: peak RSS {row['peak_rss_mib']} MiB, "
              f"{row['events_per_s']:,} events/s, hit rate {row['hit_rate']}, cache {row['cache_mib']} MiB, "
              f"{row['evictions']:,} evictions")
    grow = rows[-1]["peak_rss_mib"] / max(rows[0]["peak_rss_mib"], 1)
    print(f"  peak RSS for 4x the state: {grow:.2f}x (goal <= 1.25x), {rows[-1]['peak_rss_mib']} MiB "
          f"(goal <= {cache_mb + 400} MiB)")
    restore = rows[-1]["restore"]
    print(f"  fresh worker on the larger state: ready in {restore['ready_seconds']} s (goal <= 10 s), "
          f"peak RSS {restore['peak_rss_mib']} MiB")
    s = report["standard"]
    print(f"  standard input ({n:,} events, {sellers:,} sellers):")
    if "baseline" in s:
        print(f"    baseline ({baseline}): {s['baseline']['events_per_s']:,} events/s, "
              f"peak RSS {s['baseline']['peak_rss_mib']} MiB")
    base = s.get("baseline", {}).get("events_per_s")
    for key, label in (("all_held", "cache holding every seller"), ("tenth", f"cache of {s['tenth_mb']} MiB "
                                                                              "(a tenth of the state)")):
        r = s[key]
        ratio = f" ({r['events_per_s'] / base:.2f}x the baseline)" if base else ""
        print(f"    {label}: {r['events_per_s']:,} events/s{ratio}, hit rate {r['hit_rate']}, "
              f"peak RSS {r['peak_rss_mib']} MiB")
    return 0
