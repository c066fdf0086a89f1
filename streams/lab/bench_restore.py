"""`starcast bench --restore`: how a fresh worker's restore grows with the state.

For each size: one worker rates that many events of the benchmarks' workload (10,000 sellers by
default) on a new embedded broker and stops; the changelogs are read raw with aiokafka
(getmany, values decoded); then a fresh worker (empty data directory) restores them, through
the bulk restore (kafka/restore.py) and, with `faust_path`, also through Faust's per-record
recovery. Printed: records and MB restored, seconds from start to ready beside the raw read, and
the steps of the bulk restore read from the worker's log. Nothing is asserted.
"""

from __future__ import annotations

import re
import tempfile
import time
from datetime import datetime
from pathlib import Path

import orjson

from streams.lab.bench_service import (PARTITIONS, PREFIX, RESTORED, create_input_topics, raw_changelog_read,
                                       wait_handled)
from streams.lab.workload import events as simulate
from streams.local.broker import EmbeddedBroker
from streams.testing import WorkerProcess, event_messages, send

STEPS = (("assigned", "Setting newly assigned partitions"), ("read", r"restored \d+ changelog records in bulk"),
         ("rebuilt", r"rebuilt \d+ sellers"))


def _instant(line: str) -> float:
    return datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def steps(log: str, started: float, ready: float) -> dict[str, float]:
    """Seconds from the worker's start to each step's log line, and to ready."""
    out: dict[str, float] = {}
    for name, pattern in STEPS:
        lines = [line for line in log.splitlines() if re.search(pattern, line)]
        if lines:
            out[name] = round(_instant(lines[-1]) - started, 1)
    out["ready"] = round(ready - started, 1)
    return out


def restore_once(broker: EmbeddedBroker, workdir: Path, name: str, env: dict[str, str], timeout: float) -> dict:
    worker = WorkerProcess(broker.url, PREFIX, workdir, name, partitions=PARTITIONS, extra_env=env)
    started = time.time()
    try:
        worker.start().wait_ready(timeout=timeout, recoveries_before=0)
        return steps(worker.log.read_text(errors="replace"), started, time.time())
    finally:
        worker.stop()


def run_restore_bench(sizes: list[int], n_sellers: int, seed: int, faust_path: bool, as_json: bool) -> int:
    rows = []
    for n in sizes:
        workdir = Path(tempfile.mkdtemp(prefix="starcast-bench-restore-"))
        broker = EmbeddedBroker().start()
        try:
            create_input_topics(broker.bootstrap)
            send(broker.bootstrap, event_messages(PREFIX, list(simulate(n, n_sellers, seed=seed))))
            timeout = 120 + n / 500
            first = WorkerProcess(broker.url, PREFIX, workdir, "first", partitions=PARTITIONS).start()
            try:
                if not wait_handled(first, n, timeout):
                    raise RuntimeError(f"the first worker did not rate {n:,} events in {timeout:.0f} s")
                time.sleep(3)  # its last changelog batches acknowledged
            finally:
                first.stop()
            raw = raw_changelog_read(broker.bootstrap, [PREFIX + t for t in RESTORED])
            row = {"events": n, "records": raw["records"], "mb": round(raw["bytes"] / 2**20, 1),
                   "raw_read_seconds": raw["seconds"],
                   "bulk": restore_once(broker, workdir, "bulk", {}, timeout)}
            if faust_path:
                row["faust_path"] = restore_once(broker, workdir, "faust-path", {"STARCAST_BULK_RESTORE": "0"},
                                                 timeout)
            rows.append(row)
        finally:
            broker.stop()
    if as_json:
        print(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return 0
    print(f"starcast restore bench: {n_sellers:,} sellers, {PARTITIONS} partitions, embedded broker "
          "(seconds from the fresh worker's start)")
    for row in rows:
        bulk = row["bulk"]
        print(f"  {row['events']:>10,} events: {row['records']:,} records, {row['mb']} MB; raw read "
              f"{row['raw_read_seconds']} s; bulk restore: assigned {bulk.get('assigned')} s, read "
              f"{bulk.get('read')} s, memory rebuilt {bulk.get('rebuilt')} s, ready {bulk['ready']} s"
              + (f"; Faust's path: ready {row['faust_path']['ready']} s" if "faust_path" in row else ""))
    return 0
