"""`starcast backfill` on the embedded broker: archived months reach the history a worker serves;
a second run writes nothing; a month the worker froze itself is kept unless --force; and the
worker's own freeze publishes exactly what `replay --monthly` prints for the same input."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import urllib.request

import orjson

from streams.core.rulebook import load
from streams.core.timeutil import parse_ts
from streams.local.broker import EmbeddedBroker
from streams.local.simulate import events
from streams.replay import monthly
from streams.service import history
from streams.testing import WorkerProcess
from tests.integration.test_streaming import produce_events, read_topic, tick_all

PREFIX = "backfill-"
QUARTER = ("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z")


def month_of(start: str, seed: int) -> list[dict]:
    return list(events(None, 4, seed=seed, start=start, days=28))


def backfill(broker: EmbeddedBroker, path, at: str, *flags: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, STARCAST_BROKER=broker.url, STARCAST_TOPIC_PREFIX=PREFIX, STARCAST_PARTITIONS="4")
    return subprocess.run([sys.executable, "-m", "streams.cli", "backfill", str(path), "--at", at, *flags],
                          env=env, capture_output=True, text=True, timeout=120)


def served_history(worker: WorkerProcess, seller: str) -> list[dict]:
    with urllib.request.urlopen(f"{worker.base}/sellers/{seller}/history?months=12", timeout=10) as response:
        return orjson.loads(response.read())["months"]


def test_backfill_then_the_workers_own_freezes(tmp_path) -> None:
    broker = EmbeddedBroker().start()
    worker = WorkerProcess(broker.url, PREFIX, tmp_path, "w")
    try:
        archive = [e for n, start in enumerate(QUARTER) for e in month_of(start, 30 + n)]
        path = tmp_path / "archive.jsonl"
        path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in archive))
        want = monthly([orjson.dumps(e) for e in archive], load(), parse_ts("2026-04-02T00:00:00Z"), io.StringIO())
        assert {r["month"] for r in want} == {"2026-01", "2026-02", "2026-03"}

        first = backfill(broker, path, "2026-04-02T00:00:00Z")
        assert first.returncode == 0, first.stderr
        assert f"{len(want):,} months written" in first.stderr
        again = backfill(broker, path, "2026-04-02T00:00:00Z")
        assert again.returncode == 0 and "0 months written" in again.stderr  # idempotent
        changelog = read_topic(broker, f"{PREFIX}starcast-history-changelog")
        assert len(changelog) == len(want)  # one record per seller and month

        # A new deployment starts on the archive's history: the worker restores it and serves it.
        worker.start().wait_ready()
        seller = want[0]["seller_id"]
        served = served_history(worker, seller)
        mine = sorted((r for r in want if r["seller_id"] == seller), key=lambda r: r["month"], reverse=True)
        assert served == [history.record(r) for r in mine]

        # The worker rates April itself and freezes it: it publishes what replay --monthly prints.
        april = month_of("2026-04-01T00:00:00Z", 40)
        produce_events(broker, PREFIX, april)
        tick_all(broker, PREFIX, "2026-05-02T00:00:01Z")
        published = {}
        for _ in range(60):
            published = {(m.key.decode(), orjson.loads(m.value)["month"]): orjson.loads(m.value)
                         for m in read_topic(broker, f"{PREFIX}star-ratings-monthly", idle=1.0)}
            if len(published) >= 4:
                break
        replayed = monthly([orjson.dumps(e) for e in april], load(), parse_ts("2026-05-02T00:00:01Z"), io.StringIO())
        assert {(r["seller_id"], r["month"]): r for r in replayed} == published
        assert served_history(worker, seller)[0]["month"] == "2026-04"

        # Backfilling April from a different archive would replace the worker's own record: refused.
        other = tmp_path / "other.jsonl"
        other.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in april[: len(april) // 2]))
        written = len(read_topic(broker, f"{PREFIX}starcast-history-changelog"))
        refused = backfill(broker, other, "2026-05-02T00:00:01Z")
        assert refused.returncode == 1 and "already frozen by the service" in refused.stderr
        assert len(read_topic(broker, f"{PREFIX}starcast-history-changelog")) == written  # nothing written
        forced = backfill(broker, other, "2026-05-02T00:00:01Z", "--force")
        assert forced.returncode == 0 and "frozen by the service replaced" in forced.stderr
    finally:
        worker.stop()
        broker.stop()
