"""`starcast bench --api`: the seller API under load while the worker handles a stream.

One worker on the embedded broker rates a pre-produced month (its figure is the plain
throughput, as in `starcast bench`), then, while events that continue the month arrive at
`offered` events a second, `clients` concurrent clients (streams/lab/api_load.py, its own
process) ask for sellers' forecasts and actions for `seconds`. Printed: requests a second,
p50/p99 latency and statuses, and how many events the worker handled meanwhile. Nothing is
asserted; both processes share the machine's cores with the broker.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import orjson

from streams.core.timeutil import format_ts, parse_ts
from streams.lab.bench_service import PARTITIONS, PREFIX, _events_handled, wait_handled
from streams.local.broker import EmbeddedBroker
from streams.lab.workload import events as simulate
from streams.testing import WorkerProcess, event_messages, send

TOKEN = "bench-operator-token"


@contextmanager
def serving_month(n_events: int, n_sellers: int, seed: int,
                  name: str) -> Iterator[tuple[EmbeddedBroker, WorkerProcess, list[dict]]]:
    """An embedded broker and one worker (operator token, no rate limit) that has rated a
    simulated month of `n_events`; both stop on exit."""
    workdir = Path(tempfile.mkdtemp(prefix=f"starcast-bench-{name}-"))
    broker = EmbeddedBroker().start()
    worker = WorkerProcess(broker.url, PREFIX, workdir, name, partitions=PARTITIONS,
                           extra_env={"STARCAST_API_TOKEN": TOKEN, "STARCAST_API_RATE": "0"})
    try:
        events = list(simulate(n_events, n_sellers, seed=seed))
        send(broker.bootstrap, event_messages(PREFIX, events))
        worker.start().wait_ready(timeout=300)
        if not wait_handled(worker, n_events, 120 + n_events / 500):
            raise RuntimeError(f"the worker did not handle the month; see {workdir}")
        yield broker, worker, events
    finally:
        worker.stop()
        broker.stop()


def continuing(events: list[dict], count: int, n_sellers: int, seed: int) -> list[dict]:
    """`count` events for the first `n_sellers` sellers that continue `events` in event time."""
    since = format_ts(max(parse_ts(e["ts"]) for e in events) + 1)
    return list(simulate(count, n_sellers, seed=seed, start=since, days=2))


def run_api_bench(n_events: int, n_sellers: int, seed: int, offered: float, clients: int, seconds: float,
                  as_json: bool, rate: float = 0) -> int:
    """`rate` 0: closed-loop clients; > 0: requests due at that rate (streams/lab/api_load.py)."""
    report: dict = {"events": n_events, "sellers": n_sellers, "offered_per_s": offered, "clients": clients,
                    "seconds": seconds, "request_rate": rate}
    with serving_month(n_events, n_sellers, seed, "api") as (broker, worker, events):
        sellers = sorted({e["seller_id"] for e in events})
        stream = continuing(events, int(offered * (seconds + 5)), n_sellers, seed + 1)
        sender = threading.Thread(target=send, args=(broker.bootstrap, event_messages(PREFIX, stream)),
                                  kwargs={"rate": offered}, daemon=True)
        handled_before = _events_handled(worker)
        sender.start()
        time.sleep(2)  # the stream first, then the clients
        started = time.monotonic()
        out = subprocess.run([sys.executable, "-m", "streams.lab.api_load", worker.base, str(seconds), str(clients),
                              str(rate), TOKEN, *sellers], capture_output=True, timeout=seconds + 120, check=True)
        elapsed = time.monotonic() - started
        report["api"] = orjson.loads(out.stdout.splitlines()[-1])
        report["events_handled_per_s_meanwhile"] = round((_events_handled(worker) - handled_before) / (elapsed + 2))
    if as_json:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
        return 0
    api = report["api"]
    print(f"starcast API bench: one worker, {n_sellers:,} sellers, {clients} concurrent clients for {seconds:.0f} s "
          f"while events arrive at {offered:,.0f}/s")
    print(f"  GET /sellers/{{id}} and /actions ({api['mode']}): {api['requests_per_s']:,} requests/s, "
          f"p50 {api['p50_s'] * 1000:.0f} ms, p99 {api['p99_s'] * 1000:.0f} ms, max {api['max_s'] * 1000:.0f} ms; "
          f"statuses {api['statuses']}")
    print(f"  events handled meanwhile: {report['events_handled_per_s_meanwhile']:,}/s")
    return 0
