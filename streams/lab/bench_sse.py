"""`starcast bench --sse`: seller streams under load while the worker handles a stream of events.

One worker on the embedded broker rates a simulated month of `n_sellers` sellers. Then a load
process (streams/lab/sse_load.py) opens `clients` streams, one per seller among the first
`clients` sellers, and `idle` more streams spread over the other sellers, which receive no
updates: those connections are only held (a snapshot, then a heartbeat every 15 s). While
events for the first `clients` sellers arrive at `offered` events a second for `seconds`, the
load process notes every forecast the worker publishes for them (it reads star-forecasts
itself) and when each reaches its stream. Printed: forecasts published and delivered, the
missing ones, p50/p99 from publication to delivery, errors, and the worker's RSS before the
streams opened, with them open, and at the end. Nothing is asserted.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import orjson

from streams.lab.bench_api import TOKEN, continuing, serving_month
from streams.lab.bench_service import PARTITIONS, PREFIX, _events_handled
from streams.testing import event_messages, rss_bytes, send

DRAIN_SECONDS = 5.0


def rss_mb(pid: int) -> float:
    return round(rss_bytes(pid) / 2**20, 1)


def run_sse_bench(n_events: int, n_sellers: int, seed: int, offered: float, clients: int, idle: int,
                  seconds: float, as_json: bool) -> int:
    n_sellers = max(n_sellers, clients + 1)
    report: dict = {"events": n_events, "sellers": n_sellers, "offered_per_s": offered, "clients": clients,
                    "idle": idle, "seconds": seconds}
    with serving_month(n_events, n_sellers, seed, "sse") as (broker, worker, events):
        sellers = sorted({e["seller_id"] for e in events} | {f"seller-{i:05d}" for i in range(n_sellers)})
        active, others = sellers[:clients], sellers[clients:]
        config = {"base": worker.base, "token": TOKEN, "bootstrap": broker.bootstrap,
                  "topic": f"{PREFIX}star-forecasts", "partitions": PARTITIONS, "seconds": seconds,
                  "drain": DRAIN_SECONDS, "active": active, "idle": [others[n % len(others)] for n in range(idle)]}
        stream = continuing(events, int(offered * (seconds + DRAIN_SECONDS)), clients, seed + 1)
        report["worker_rss_mb"] = {"before": rss_mb(worker.pid)}
        loader = subprocess.Popen([sys.executable, "-m", "streams.lab.sse_load"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert loader.stdin is not None and loader.stdout is not None
            loader.stdin.write(orjson.dumps(config).decode())
            loader.stdin.close()
            if loader.stdout.readline().strip() != "ready":
                raise RuntimeError("the stream load generator did not start")
            report["worker_rss_mb"]["streams_open"] = rss_mb(worker.pid)
            sender = threading.Thread(target=send, args=(broker.bootstrap, event_messages(PREFIX, stream)),
                                      kwargs={"rate": offered}, daemon=True)
            handled_before, started = _events_handled(worker), time.monotonic()
            sender.start()
            time.sleep(seconds)
            report["events_handled_per_s_meanwhile"] = round(
                (_events_handled(worker) - handled_before) / (time.monotonic() - started))
            out = loader.stdout.read()
            loader.wait(timeout=DRAIN_SECONDS + 120)
            sender.join(timeout=60)  # the broker stops next
        finally:
            if loader.poll() is None:
                loader.kill()
        report["worker_rss_mb"]["end"] = rss_mb(worker.pid)
        report["streams"] = orjson.loads(out.splitlines()[-1])
    if as_json:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
        return 0
    s, rss = report["streams"], report["worker_rss_mb"]
    print(f"starcast stream bench: one worker, {clients:,} seller streams and {idle:,} idle ones for "
          f"{seconds:.0f} s while events for those {clients:,} sellers arrive at {offered:,.0f}/s")
    print(f"  streams connected: {s['connected']:,} of {clients + idle:,}; errors: {s['active_errors']} active, "
          f"{s['idle_errors']} idle {s['error_kinds'] or ''}")
    print(f"  forecasts published for those sellers: {s['published']:,}; delivered: {s['delivered']:,}; "
          f"missing: {s['missing']:,}")
    print(f"  publication to delivery: p50 {s['p50_s'] * 1000:.0f} ms, p99 {s['p99_s'] * 1000:.0f} ms, "
          f"max {s['max_s'] * 1000:.0f} ms")
    print(f"  worker RSS: {rss['before']} MB before, {rss['streams_open']} MB with the streams open, "
          f"{rss['end']} MB at the end; events handled meanwhile: {report['events_handled_per_s_meanwhile']:,}/s")
    return 0
