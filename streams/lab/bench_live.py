"""`starcast bench --live`: produce→forecast latency under live traffic, with and without the
projection.

The full bench's latency load squeezes five simulated days into ten seconds: a stress of day
rolls, thousands of times those of live traffic. Here event time advances as fast as the wall
clock, as it does in production at the offered rate. For each configuration (the projection on,
the default, its forecasts held back to one per seller per STARCAST_FORECAST_INTERVAL_MS; the
projection on every batch, as before that interval; and `STARCAST_PROJECTION=0`, the
baseline), on its own embedded broker: one worker rates the input (the benchmarks' workload: a
month, whose last follow-ups reach a few days into the next), then loads continuing it in event
time follow at each rate asked (by default a fifth, half and all of the offered rate), each a
warm-up of 4 s and 10 s measured. The clock is then in the month after the input's facts,
which leave the window through the rest of it: every projection of a busy seller walks weeks
of changes, the worker's steady state.

Before each measured load the worker has frozen the input's month (once a month, every seller
rated at the month's end), re-rated every seller for the new month (the month start's sweep)
and delivered every effect of what it handled, so the figure is the load's. Printed per load:
the rate offered, how long the worker took to handle it, the upper bucket bounds of the
p50/p90/p99 of `starcast_processing_latency_seconds` over it, the p99 of how long forecasts
held back waited (`starcast_forecast_held_seconds`), and the cores the worker, the broker and
the producer (this process) kept busy meanwhile. Then each configuration's highest sustained
rate: the highest offered whose load was handled within SUSTAINED_SLACK seconds of its end (no
backlog left growing). Nothing is asserted.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson

from streams.core.timeutil import DAY, format_ts, month_start, parse_ts
from streams.lab.bench_service import (PARTITIONS, PREFIX, create_input_topics, latency_buckets, offer, quantile,
                                       until, wait_handled)
from streams.lab.workload import events as simulate
from streams.local.broker import EmbeddedBroker
from streams.testing import WorkerProcess, cpu_seconds, event_messages, send

WARM_UP_SECONDS, LOAD_SECONDS = 4, 10
SHARES = (0.2, 0.5, 1.0)  # of the offered rate, in turn
SUSTAINED_SLACK = 2.0
"""Seconds after a load's last event within which it must be handled to count as sustained."""
UTC = ZoneInfo("UTC")
CONFIGURATIONS: tuple[tuple[str, dict[str, str]], ...] = (
    ("projection on", {}), ("projection every batch", {"STARCAST_FORECAST_INTERVAL_MS": "0"}),
    ("projection off (baseline)", {"STARCAST_PROJECTION": "0"}))


def live(count: int, n_sellers: int, seed: int, start: int, seconds: float) -> list[dict]:
    """`count` events of one simulated day from `start`, their times scaled into `seconds`: a
    live stream at count / seconds events a second, in event time as in wall time."""
    out = []
    for event in simulate(count, n_sellers, seed=seed, start=format_ts(start), days=1):
        out.append({**event, "ts": format_ts(start + int((parse_ts(event["ts"]) - start) * seconds * 1000 // DAY))})
    out.sort(key=lambda e: e["ts"])
    return out


def handled_text(seconds: float | None) -> str:
    """A load's outcome as printed: how long the worker took, or that it did not finish."""
    return f"handled in {seconds} s" if seconds is not None else "not all handled"


def _frozen(worker: WorkerProcess, month: int) -> bool:
    """Whether the worker has frozen `month` (YYYYMM): done once a month, the freeze rates every
    seller at the month's end; the month's turn, not the steady state measured."""
    return worker.metrics().get("starcast_freeze_last_month", 0) >= month


def delivered(figures: dict[str, float]) -> bool:
    """Whether, by a worker's metrics, every event handled has its effects in the Kafka client
    (its latency observed): a warm-up that re-rated every seller leaves large batches to hand
    over."""
    return figures.get("starcast_processing_latency_seconds_count", 0) >= figures.get("starcast_events_total", 0)


def settled(worker: WorkerProcess) -> bool:
    """No seller waits for the clock's sweep (the month start after the freeze re-projects every
    seller) and every event handled has its effects handed over: what a load is measured from."""
    figures = worker.metrics()
    return figures.get("starcast_sweep_waiting_sellers", 0) == 0 and delivered(figures)


def run_configuration(env: dict[str, str], n_events: int, n_sellers: int, seed: int, rates: list[float],
                      timeout: float) -> list[dict]:
    workdir = Path(tempfile.mkdtemp(prefix="starcast-bench-live-"))
    broker = EmbeddedBroker().start()
    rows = []
    try:
        events = list(simulate(n_events, n_sellers, seed=seed))
        create_input_topics(broker.bootstrap)
        send(broker.bootstrap, event_messages(PREFIX, events))
        worker = WorkerProcess(broker.url, PREFIX, workdir, "live", partitions=PARTITIONS, extra_env=env).start()
        pids = {"worker": worker.pid, "broker": broker.process.pid if broker.process else None,
                "producer": os.getpid()}

        def cpu() -> dict[str, float]:
            return {name: cpu_seconds(pid) if pid else 0.0 for name, pid in pids.items()}
        try:
            worker.wait_ready(timeout=timeout)
            if not wait_handled(worker, n_events, timeout):
                raise RuntimeError(f"the worker did not rate the {n_events:,} input events; see {workdir}")
            since = max(parse_ts(e["ts"]) for e in events) + 1
            month = int(format_ts(month_start(since, UTC) - 1)[:7].replace("-", ""))  # the input's month
            for rate in rates:
                warm = live(int(rate * WARM_UP_SECONDS), n_sellers, seed + 10, since, WARM_UP_SECONDS)
                _, ok = offer(broker, worker, warm, rate, timeout)
                if not (ok and until(lambda: _frozen(worker, month), timeout)
                        and until(lambda: settled(worker), timeout)):
                    raise RuntimeError(f"the worker did not settle after the warm-up at {rate:,.0f}/s; see {workdir}")
                load = live(int(rate * LOAD_SECONDS), n_sellers, seed + 20, parse_ts(warm[-1]["ts"]) + 1,
                            LOAD_SECONDS)
                since = parse_ts(load[-1]["ts"]) + 1  # `live` gives its events in time order
                before, cpu_before = latency_buckets(worker), cpu()
                held_before = latency_buckets(worker, "starcast_forecast_held_seconds")
                started = time.monotonic()
                achieved, ok = offer(broker, worker, load, rate, timeout)
                took = time.monotonic() - started
                after, cpu_after = latency_buckets(worker), cpu()
                held_after = latency_buckets(worker, "starcast_forecast_held_seconds")
                rows.append({"events": len(load), "offered_per_s": round(achieved),
                             "handled_seconds": round(took, 1) if ok else None,
                             **{f"p{q}_s": quantile(before, after, q / 100) for q in (50, 90, 99)},
                             "held_p99_s": quantile(held_before, held_after, 0.99) if held_after else None,
                             # the cores each process kept busy meanwhile (the producer is this one)
                             "cores_busy": {name: round((cpu_after[name] - cpu_before[name]) / took, 2)
                                            for name in pids}})
        finally:
            worker.stop()
    finally:
        broker.stop()
    return rows


def sustained(rows: list[dict]) -> int | None:
    """The highest rate offered whose load the worker handled within SUSTAINED_SLACK seconds of
    its end (None: none was)."""
    kept = [row["offered_per_s"] for row in rows if row["handled_seconds"] is not None
            and row["handled_seconds"] <= row["events"] / max(row["offered_per_s"], 1) + SUSTAINED_SLACK]
    return max(kept, default=None)


def run_live_bench(n_events: int, n_sellers: int, seed: int, rates: list[float], as_json: bool) -> int:
    timeout = 120 + n_events / 500
    configurations = {name: run_configuration(env, n_events, n_sellers, seed, rates, timeout)
                      for name, env in CONFIGURATIONS}
    most = {name: sustained(rows) for name, rows in configurations.items()}
    report = {"events": n_events, "sellers": n_sellers, "rates_per_s": rates, "configurations": configurations,
              "sustained_per_s": most}
    if as_json:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
        return 0
    offered = ", ".join(f"{rate:,.0f}" for rate in rates)
    print(f"starcast live latency: {n_events:,} events, {n_sellers:,} sellers, then {offered} events/s "
          f"with event time at the wall clock's pace, in the month after the input's ({WARM_UP_SECONDS} s warm-up, "
          f"{LOAD_SECONDS} s measured)")
    for name, rows in configurations.items():
        for row in rows:
            handled = handled_text(row["handled_seconds"])
            cores = ", ".join(f"{who} {busy}" for who, busy in row["cores_busy"].items())
            held = f"; held forecasts p99 <= {row['held_p99_s']} s" if row.get("held_p99_s") else ""
            print(f"  {name:<26} {row['offered_per_s']:>6,}/s offered, {row['events']:,} events "
                  f"{handled}; p50 <= {row['p50_s']} s, p90 <= {row['p90_s']} s, p99 <= {row['p99_s']} s{held}; "
                  f"cores busy: {cores} of {os.cpu_count()}")
    for name, rate in most.items():
        print(f"  {name:<26} sustains {f'{rate:,}/s' if rate is not None else 'none of these rates'} "
              f"(handled within {SUSTAINED_SLACK:g} s of the load's end)")
    return 0
