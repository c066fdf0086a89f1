"""`starcast bench`: in-process throughput of the rating core (no broker, no Faust).

Prints figures, asserts nothing: validate only; validate + state; validate + state + rate on
every event; and validate + state + one rate per seller per batch of 10,000 events (what a
worker that coalesces publications does), then with the projection. Plus state size per seller.

Then a day of the next month, the worker's steady state: a month of facts is leaving the window
while new events arrive, so every projection walks the seller's changes to the month's end.
Events come in batches of LIVE_BATCH (what 20 ms hold at 5,000 events/s), each seller touched
rated once per batch, without and with its projection, on copies of the month's state. Then
PROCESSOR_DAYS days of the next month through the worker's processor (publication, warnings and
the due index included): projection off, and on with forecasts held back to one per seller per
FORECAST_INTERVAL seconds of the real clock (the worker's default) and per SHORT_INTERVAL, the
ones still held at the end sent and counted.
"""

from __future__ import annotations

import gc
import resource
import sys
import time
from typing import Any, Callable

import orjson

from streams.core.contract import parse_event
from streams.core.engine import tune_gc
from streams.core.engine import Engine
from streams.core.rulebook import load
from streams.core.timeutil import DAY, format_ts, parse_ts
from streams.lab.workload import events

BATCH = 10_000
"""Events per worker batch: publications are coalesced per seller within one."""

LIVE_BATCH = 100
"""Events per batch in the next month's phase: a live worker's batch at 5,000 events/s."""

FORECAST_INTERVAL = 5.0
"""Seconds: the worker's default STARCAST_FORECAST_INTERVAL_MS."""

SHORT_INTERVAL = 1.0
"""Seconds: a fifth of the default, to show what the interval buys."""

PROCESSOR_DAYS = 4
"""Days of the next month the processor's stages rate (from the second): about 39,000 events,
which the 5 s stage rates in about one interval on this machine and the 1 s stage in several
(a longer run would make the bench slower than its figures are worth)."""


def _timed(label: str, n: int, fn) -> dict:
    gc.collect()
    gc.freeze()  # the input list is long-lived: keep it out of every collection
    start = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    return {"stage": label, "events": n, "seconds": round(elapsed, 3), "events_per_s": round(n / elapsed)}


def _in_batches(engine: Engine, lines: list[bytes], size: int, clock: int,
                rate: Callable[[Engine, str, int], None]) -> None:
    """Apply `lines` `size` at a time with the stream clock following them (the largest ts
    seen), then `rate` each seller touched by the batch once, at that clock."""
    for i in range(0, len(lines), size):
        touched = set()
        for r in lines[i : i + size]:
            event = engine.ingest(r)
            touched.add(event.seller_id)
            clock = max(clock, event.ts)
        engine.advance(clock)
        for seller in touched:
            rate(engine, seller, clock)


def _rate(engine: Engine, seller: str, clock: int) -> None:
    engine.rating(seller, clock)


def _projecting(timelines: list[int]) -> Callable[[Engine, str, int], None]:
    """Rate and project (as the worker does after a seller's state changed), keeping each
    timeline's length."""
    def rate(engine: Engine, seller: str, clock: int) -> None:
        engine.rating(seller, clock)
        timelines.append(len(engine.projection(seller, clock)["timeline"]))
    return rate


def _next_month(rulebook: Any, raw: list[bytes], n_sellers: int, seed: int) -> tuple[dict, list[int]]:
    """The steady-state phase (module docstring): the month's events applied and every seller
    projected once (the month's first re-rating, not timed), then the second simulated day
    after them (the first holds each seller's catalogue), rated and projected batch by batch."""
    def month_engine() -> tuple[Engine, int]:
        engine = Engine(rulebook)
        clock = 0
        for r in raw:
            clock = max(clock, engine.ingest(r).ts)
        engine.advance(clock)
        for seller in engine.states:
            engine.rating(seller, clock)
            engine.projection(seller, clock)
        return engine, clock

    engine, clock = month_engine()
    start = clock + 1
    later = [orjson.dumps(e) for e in events(len(raw) // 10, n_sellers, seed + 1, start=format_ts(start), days=2)
             if parse_ts(e["ts"]) > start + DAY]
    timelines: list[int] = []
    stages = [_timed("validate+state+rate", len(later), lambda: _in_batches(engine, later, LIVE_BATCH, clock, _rate))]
    del engine
    engine, clock = month_engine()
    stages.append(_timed("validate+state+rate+projection", len(later),
                         lambda: _in_batches(engine, later, LIVE_BATCH, clock, _projecting(timelines))))
    days = [orjson.dumps(e) for e in events(len(raw) // 5, n_sellers, seed + 2, start=format_ts(start),
                                            days=PROCESSOR_DAYS + 1) if parse_ts(e["ts"]) > start + DAY]
    return {"events": len(later), "from": format_ts(start + DAY), "stages": stages,
            "projection_us_per_event": round((stages[1]["seconds"] - stages[0]["seconds"]) / len(later) * 1e6, 2),
            "processor": {"events": len(days), "days": PROCESSOR_DAYS,
                          "stages": _through_processor(rulebook, raw, days, start + DAY)}}, timelines


def _through_processor(rulebook: Any, raw: list[bytes], later: list[bytes], day: int) -> list[dict]:
    """Days of the next month through the worker's processor (one partition, every seller in
    memory): the month's events first (not timed), then a tick to `day` (the month's freeze and
    the new month's first projections, not timed), then `later` in batches of LIVE_BATCH,
    projection off and held back (at most one a seller per FORECAST_INTERVAL, then SHORT_INTERVAL)."""
    from streams.service.processor import Incoming, RatingProcessor, Tick

    def batches(lines: list[bytes], size: int, offset: int) -> list[list[Incoming | Tick]]:
        return [[Incoming(line, None, "bench", 0, offset + i + j) for j, line in enumerate(lines[i:i + size])]
                for i in range(0, len(lines), size)]

    stages = []
    for label, projection, interval in (("processor, projection off", False, None),
                                        *((f"processor, projection at most every {seconds:g} s", True, seconds)
                                          for seconds in (FORECAST_INTERVAL, SHORT_INTERVAL))):
        skew = [0.0]  # moved past every interval at the end: the held forecasts go out, timed
        processor = RatingProcessor(rulebook, 1, projection=projection, forecast_interval=interval,
                                    monotonic=lambda: time.monotonic() + skew[0])
        for batch in batches(raw, BATCH, 0):
            processor.handle_batch(batch)
        processor.handle_batch([Tick(0, day)])
        sent = [0]

        def run() -> None:
            for batch in batches(later, LIVE_BATCH, len(raw)):
                sent[0] += sum(len(e.forecasts) for e in processor.handle_batch(batch).values())
            skew[0] = 2 * (interval or 0.0)
            while processor.forecasts_due():
                sent[0] += sum(len(e.forecasts) for e in processor.handle_batch([]).values())

        stage = _timed(label, len(later), run)
        stages.append({**stage, "forecasts": sent[0]})
    return stages


def _distribution(values: list[int]) -> dict:
    ordered = sorted(values) or [0]
    pick = lambda q: ordered[min(int(len(ordered) * q), len(ordered) - 1)]  # noqa: E731
    return {"count": len(values), "median": pick(0.5), "p90": pick(0.9), "p99": pick(0.99), "max": ordered[-1]}


def run_core_bench(n_events: int, n_sellers: int, seed: int, as_json: bool) -> int:
    tune_gc()
    rulebook = load("global-2023")
    raw = [orjson.dumps(e) for e in events(n_events, n_sellers, seed)]
    n = len(raw)
    by_type: dict[str, int] = {}
    for line in raw:
        kind = orjson.loads(line)["type"]
        by_type[kind] = by_type.get(kind, 0) + 1
    results = []

    results.append(_timed("validate", n, lambda: [parse_event(r) for r in raw]))

    def state_only():
        engine = Engine(rulebook)
        for r in raw:
            engine.ingest(r)

    results.append(_timed("validate+state", n, state_only))

    def per_event():
        engine = Engine(rulebook)
        for r in raw:
            event = engine.ingest(r)
            clock = engine.states[event.seller_id].clock  # the largest ts applied to the seller
            assert clock is not None
            engine.rating(event.seller_id, clock)

    results.append(_timed("validate+state+rate (every event)", n, per_event))

    final: dict[str, Engine] = {}

    def coalesced():
        engine = final["engine"] = Engine(rulebook)
        _in_batches(engine, raw, BATCH, 0, _rate)

    results.append(_timed(f"validate+state+rate (once per seller per {BATCH} events)", n, coalesced))

    timelines: list[int] = []

    results.append(_timed(f"validate+state+rate+projection (once per seller per {BATCH} events)", n,
                          lambda: _in_batches(Engine(rulebook), raw, BATCH, 0, _projecting(timelines))))

    engine = final["engine"]
    next_month, live_timelines = _next_month(rulebook, raw, n_sellers, seed)
    sizes = sorted(len(s.to_bytes()) for s in engine.states.values())
    people = sum(len(s.people) for s in engine.states.values())
    report: dict[str, Any] = {
        "events": n,
        "sellers": len(engine.states),
        "mix": dict(sorted(by_type.items(), key=lambda kv: -kv[1])),
        "stages": results,
        "state_bytes_per_seller": {"median": sizes[len(sizes) // 2], "p99": sizes[int(len(sizes) * 0.99)],
                                   "max": sizes[-1], "total": sum(sizes)},
        "state_bytes_per_person": round(sum(sizes) / max(people, 1), 1),
        "projection_us_per_event": round((results[-1]["seconds"] - results[-2]["seconds"]) / n * 1e6, 2),
        "timeline_length": _distribution(timelines),
        "next_month": next_month,
        "next_month_timeline_length": _distribution(live_timelines),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "python": sys.version.split()[0],
    }
    if as_json:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
        return 0
    print(f"starcast core bench: {n:,} events, {len(engine.states):,} sellers (seed {seed}), one core")
    print("mix: " + ", ".join(f"{k} {v:,}" for k, v in report["mix"].items()))
    for r in results:
        print(f"  {r['stage']:<55} {r['events_per_s']:>10,} events/s  ({r['seconds']} s)")
    t = report["timeline_length"]
    print(f"projection: +{report['projection_us_per_event']} µs an event; timeline entries per projection: "
          f"median {t['median']}, p90 {t['p90']}, p99 {t['p99']}, max {t['max']} ({t['count']:,} projections)")
    nm = report["next_month"]
    print(f"a day of the next month ({nm['events']:,} events from {nm['from']}, batches of {LIVE_BATCH}):")
    for r in nm["stages"]:
        print(f"  {r['stage']:<55} {r['events_per_s']:>10,} events/s  ({r['seconds']} s)")
    t = report["next_month_timeline_length"]
    print(f"projection: +{nm['projection_us_per_event']} µs an event; timeline entries per projection: "
          f"median {t['median']}, p90 {t['p90']}, p99 {t['p99']}, max {t['max']} ({t['count']:,} projections)")
    pm = nm["processor"]
    print(f"{pm['days']} days of the next month ({pm['events']:,} events, batches of {LIVE_BATCH}) through the "
          f"worker's processor:")
    for r in pm["stages"]:
        print(f"  {r['stage']:<55} {r['events_per_s']:>10,} events/s  ({r['seconds']} s, {r['forecasts']:,} forecasts)")
    off = pm["stages"][0]["events_per_s"]
    print("  held back / off: " + ", ".join(f"{r['events_per_s'] / off:.2f} ({r['stage'].rsplit(' every ', 1)[1]})"
                                            for r in pm["stages"][1:]))
    s = report["state_bytes_per_seller"]
    print(f"state per seller (orjson): median {s['median']:,} B, p99 {s['p99']:,} B, max {s['max']:,} B; "
          f"{report['state_bytes_per_person']} B per person tracked")
    print(f"peak RSS {report['peak_rss_mib']} MiB")
    return 0
