"""`starcast bench --bursts`: new events' latency while the clock re-rates thousands of sellers.

At a local midnight a worker re-rates the sellers whose windows changed (the day roll), and at a
month's start every seller (each projection now ends with the new month). Those sellers are
rated `STARCAST_SWEEP_SELLERS` a batch, between batches of new events (docs/decisions.md). This
bench measures both sides of that trade on one worker:

1. The worker rates an input of SELLERS sellers (the benchmarks' workload, March), then the
   month's freeze.
2. Three loads at OFFERED events/s, event time at the wall clock's pace, each after a warm-up
   that brings the clock close to its instant and settles whatever that jump marked:
   - mid-day, no clock burst (the reference);
   - across a local midnight (a day roll);
   - across the first instant of May (a month start).
3. Per load: the p50/p90/p99 upper bucket bounds of `starcast_processing_latency_seconds` over
   it (a new event's produce → forecast), and the sweep: the most sellers waiting at once
   (`starcast_sweep_waiting_sellers`) and the seconds from the first sample with sellers waiting
   to the first with none; and the forecasts published meanwhile.

Nothing is asserted.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import orjson

from streams.core.rulebook import load
from streams.core.timeutil import DAY, format_ts, month_start, next_local_midnight, parse_ts
from streams.lab.bench_live import handled_text, live, settled
from streams.lab.bench_service import (PARTITIONS, PREFIX, create_input_topics, latency_buckets, offer, quantile,
                                       until, wait_handled)
from streams.lab.workload import events as simulate
from streams.local.broker import EmbeddedBroker
from streams.testing import WorkerProcess, event_messages, send

EVENTS, SELLERS, OFFERED = 200_000, 20_000, 250.0
WARM_UP_SECONDS, LOAD_SECONDS, BEFORE_INSTANT_SECONDS = 4, 20, 5


class SweepWatch:
    """Samples the worker's sweep gauge every 0.1 s while in use."""

    def __init__(self, worker: WorkerProcess):
        self.worker, self._stop = worker, threading.Event()
        self.samples: list[tuple[float, float]] = []  # (monotonic time, sellers waiting)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                waiting = self.worker.metrics().get("starcast_sweep_waiting_sellers", 0.0)
            except OSError:
                waiting = 0.0
            self.samples.append((time.monotonic(), waiting))
            self._stop.wait(0.1)

    def __enter__(self) -> "SweepWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def figures(self) -> dict:
        busy = [t for t, waiting in self.samples if waiting > 0]
        if not busy:
            return {"most_waiting": 0, "sweep_seconds": 0.0}
        first = busy[0]
        done = next((t for t, waiting in self.samples if t > first and waiting == 0), self.samples[-1][0])
        return {"most_waiting": int(max(w for _, w in self.samples)), "sweep_seconds": round(done - first, 1)}


def _published(worker: WorkerProcess) -> float:
    return worker.metrics().get("starcast_forecasts_published_total", 0.0)


def _load_at(broker: EmbeddedBroker, worker: WorkerProcess, instant: int, seed: int, timeout: float) -> dict:
    """A warm-up ending shortly before `instant - BEFORE_INSTANT_SECONDS`, settled; then the load,
    from BEFORE_INSTANT_SECONDS before `instant` on, measured."""
    warm_start = instant - (BEFORE_INSTANT_SECONDS + WARM_UP_SECONDS + 1) * 1000
    warm = live(int(OFFERED * WARM_UP_SECONDS), SELLERS, seed, warm_start, WARM_UP_SECONDS)
    _, ok = offer(broker, worker, warm, OFFERED, timeout)
    if not (ok and until(lambda: settled(worker), timeout)):
        raise RuntimeError(f"the worker did not settle after the warm-up before {format_ts(instant)}")
    load_ = live(int(OFFERED * LOAD_SECONDS), SELLERS, seed + 1, instant - BEFORE_INSTANT_SECONDS * 1000,
                 LOAD_SECONDS)
    before, published = latency_buckets(worker), _published(worker)
    started = time.monotonic()
    with SweepWatch(worker) as watch:
        achieved, ok = offer(broker, worker, load_, OFFERED, timeout)
        until(lambda: settled(worker), timeout, every=0.2)
    took = time.monotonic() - started
    after = latency_buckets(worker)
    return {"instant": format_ts(instant), "events": len(load_), "offered_per_s": round(achieved),
            "handled_seconds": round(took, 1) if ok else None, "forecasts": int(_published(worker) - published),
            **{f"p{q}_s": quantile(before, after, q / 100) for q in (50, 90, 99)}, **watch.figures()}


def run_bursts_bench(seed: int, as_json: bool) -> int:
    tz = load("global-2023").time_zone
    timeout = 120 + EVENTS / 500
    workdir = Path(tempfile.mkdtemp(prefix="starcast-bench-bursts-"))
    broker = EmbeddedBroker().start()
    rows: dict[str, dict] = {}
    try:
        events = list(simulate(EVENTS, SELLERS, seed=seed))
        create_input_topics(broker.bootstrap)
        send(broker.bootstrap, event_messages(PREFIX, events))
        worker = WorkerProcess(broker.url, PREFIX, workdir, "bursts", partitions=PARTITIONS).start()
        try:
            worker.wait_ready(timeout=timeout)
            if not wait_handled(worker, EVENTS, timeout):
                raise RuntimeError(f"the worker did not rate the {EVENTS:,} input events; see {workdir}")
            since = max(parse_ts(e["ts"]) for e in events) + 1
            midnight = next_local_midnight(since + DAY, tz)
            month = month_start(midnight + 32 * DAY, tz)
            for name, instant, offset in (("mid-day (no clock burst)", midnight - DAY // 2, 10),
                                          ("a day roll", midnight, 20), ("a month start", month, 30)):
                rows[name] = _load_at(broker, worker, instant, seed + offset, timeout)
        finally:
            worker.stop()
    finally:
        broker.stop()
    report = {"input_events": EVENTS, "sellers": SELLERS, "offered_per_s": OFFERED, "loads": rows}
    if as_json:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
        return 0
    print(f"starcast clock bursts: one worker, {PARTITIONS} partitions, {SELLERS:,} sellers ({EVENTS:,} events), "
          f"then {OFFERED:,.0f} events/s for {LOAD_SECONDS} s across each instant (event time at the wall "
          f"clock's pace)")
    for name, row in rows.items():
        handled = handled_text(row["handled_seconds"])
        print(f"  {name:<26} {row['instant']}: {row['events']:,} events {handled}, {row['forecasts']:,} forecasts; "
              f"p50 <= {row['p50_s']} s, "
              f"p90 <= {row['p90_s']} s, p99 <= {row['p99_s']} s (goal <= 0.25 s); sweep: "
              f"{row['most_waiting']:,} sellers waiting at most, done in {row['sweep_seconds']} s")
    return 0
