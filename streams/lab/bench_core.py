"""`starcast bench`: in-process throughput of the rating core (no broker, no Faust).

Prints figures, asserts nothing: validate only; validate + state; validate + state + rate on
every event; and validate + state + one rate per seller per batch of 1,000 events (what a
worker that coalesces publications does). Plus state size per seller.
"""

from __future__ import annotations

import gc
import resource
import sys
import time
from typing import Any

import orjson

from streams.core.contract import parse_event
from streams.core.engine import tune_gc
from streams.core.engine import Engine
from streams.core.rulebook import load
from streams.lab.workload import events

BATCH = 10_000
"""Events per worker batch: publications are coalesced per seller within one."""


def _timed(label: str, n: int, fn) -> dict:
    gc.collect()
    gc.freeze()  # the input list is long-lived: keep it out of every collection
    start = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    return {"stage": label, "events": n, "seconds": round(elapsed, 3), "events_per_s": round(n / elapsed)}


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
        clock = 0  # the stream clock: the largest ts seen, never moving back
        for i in range(0, n, BATCH):
            touched = set()
            for r in raw[i : i + BATCH]:
                event = engine.ingest(r)
                touched.add(event.seller_id)
                clock = max(clock, event.ts)
            engine.advance(clock)
            for seller in touched:
                engine.rating(seller, clock)

    results.append(_timed(f"validate+state+rate (once per seller per {BATCH} events)", n, coalesced))

    timelines: list[int] = []

    def with_projection():
        """As the worker does: a projection per seller re-rated after its state changed."""
        engine = Engine(rulebook)
        clock = 0
        for i in range(0, n, BATCH):
            touched = set()
            for r in raw[i : i + BATCH]:
                event = engine.ingest(r)
                touched.add(event.seller_id)
                clock = max(clock, event.ts)
            engine.advance(clock)
            for seller in touched:
                engine.rating(seller, clock)
                timelines.append(len(engine.projection(seller, clock)["timeline"]))

    results.append(_timed(f"validate+state+rate+projection (once per seller per {BATCH} events)", n,
                          with_projection))

    engine = final["engine"]
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
    s = report["state_bytes_per_seller"]
    print(f"state per seller (orjson): median {s['median']:,} B, p99 {s['p99']:,} B, max {s['max']:,} B; "
          f"{report['state_bytes_per_person']} B per person tracked")
    print(f"peak RSS {report['peak_rss_mib']} MiB")
    return 0
