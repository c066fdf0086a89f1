"""A fresh worker restores its tables from the changelogs, in bulk (kafka/restore.py), and goes
on exactly as the worker that wrote them would, and as Faust's own per-record recovery does."""

from __future__ import annotations

import re
import time

from streams import testing
from streams.core.timeutil import format_ts, parse_ts
from streams.lab.workload import events as simulated
from tests.integration.test_streaming import Worker, expected_ratings, produce_events, tick_all

PREFIX = "restore-"
DAY_MS = 86_400_000


def answers(worker: Worker, sellers: list[str]) -> dict[str, dict]:
    """Each seller's forecast as the worker's API serves it (the forecasts table), without as_of."""
    out = {}
    for seller in sellers:
        status, body = worker.get(f"/sellers/{seller}")
        out[seller] = testing.comparable(body) if status == 200 else {"status": status}
    return out


def settled(worker: Worker, sellers: list[str]) -> dict[str, dict]:
    """The answers once two reads a second apart agree: a forecast reaches the table when its
    changelog record is acknowledged, a moment after its batch counts as handled."""
    last = answers(worker, sellers)
    while True:
        time.sleep(1)
        now = answers(worker, sellers)
        if now == last:
            return now
        last = now


def until_equal(worker: Worker, sellers: list[str], expected: dict[str, dict], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while (got := answers(worker, sellers)) != expected:
        if time.monotonic() > deadline:
            wrong = sorted(s for s in sellers if got[s] != expected[s])
            raise AssertionError(f"{worker.name}: {len(wrong)} sellers differ, e.g. {wrong[:3]}")
        time.sleep(1)


def bulk_records(worker: Worker) -> int:
    """Changelog records the worker says it restored through the bulk read."""
    return sum(int(n) for n in re.findall(r"restored (\d+) changelog records in bulk", worker.log.read_text()))


def test_a_fresh_worker_restores_in_bulk_and_goes_on_as_replay_says(broker, tmp_path):
    events = list(simulated(6000, 60, seed=3))
    events.sort(key=lambda e: e["ts"])
    before, after = events[:5000], events[5000:]
    sellers = sorted({e["seller_id"] for e in events})
    for name in ("first", "bulk", "faust"):
        (tmp_path / name).mkdir()
    first = Worker(broker, PREFIX, tmp_path / "first", store="rocksdb://").start()
    try:
        produce_events(broker, PREFIX, before)
        first.wait_processed(len(before))
        written = settled(first, sellers)
    finally:
        first.stop()

    # Empty data directories, one after the other: bulk restore (the default), then Faust's path.
    # Each restores the tables, answers as the first worker did, then rates more events on the
    # restored state exactly as replay rates all of them.
    sent = before
    for name, env in (("bulk", {}), ("faust", {"STARCAST_BULK_RESTORE": "0"})):
        fresh = Worker(broker, PREFIX, tmp_path / name, store="rocksdb://")
        fresh.name, fresh.extra_env = name, env
        try:
            fresh.start()
            assert answers(fresh, sellers) == written, name
            if name == "bulk":
                assert bulk_records(fresh) >= len(sellers)  # the state of every seller, at least
            else:
                assert bulk_records(fresh) == 0
            more = after[:500] if name == "bulk" else after[500:]
            produce_events(broker, PREFIX, more)
            sent = sent + more
            fresh.wait_processed(len(more))
            when = format_ts(max(parse_ts(e["ts"]) for e in sent))
            tick_all(broker, PREFIX, when)  # every partition's clock at the last event
            expected = {s: testing.comparable(r) for s, r in expected_ratings(sent, when).items()}
            until_equal(fresh, sellers, expected)
            written = answers(fresh, sellers)
        finally:
            fresh.stop()


def test_a_store_that_cannot_vouch_for_its_records_is_restored_from_the_changelog(broker, tmp_path):
    """A local copy whose persisted offset claims records it does not hold (here: every seller's
    state removed from two partitions' stores, and the record of where their reading began with
    them) is not trusted: the restarted worker restores those partitions from the changelog,
    says so once per partition and counts it, and rates on exactly as replay does. Without the
    check it would resume after the persisted offset and rate those sellers from nothing."""
    import rocksdict

    prefix = "guard-"
    events = sorted(simulated(4000, 40, seed=8), key=lambda e: e["ts"])
    before, after = events[:3000], events[3000:]
    sellers = sorted({e["seller_id"] for e in events})
    worker = Worker(broker, prefix, tmp_path, store="rocksdb://").start()
    try:
        produce_events(broker, prefix, before)
        worker.wait_processed(len(before))
        settled(worker, sellers)
    finally:
        worker.stop()
    tables = next(p for p in (tmp_path / "data-worker").rglob("tables") if p.is_dir())
    for partition in (0, 2):
        store = tables / f"state-{partition}.db"
        (tables / f"state-{partition}.db.covered").unlink()
        db = rocksdict.Rdict(str(store), options=rocksdict.Options(raw_mode=True))
        keys = [k for k in db.keys() if not k.startswith(b"__faust")]
        assert keys, "the partition held state to remove"
        for key in keys:
            del db[key]
        db.close()

    worker.start()
    try:
        lines = [line for line in worker.log.read_text().splitlines() if "lacks" in line]
        assert len(lines) == 2 and all("state-changelog" in line for line in lines), lines
        assert worker.metrics().get("starcast_standby_fallbacks_total") == 2
        produce_events(broker, prefix, after)
        worker.wait_processed(len(after))  # counted since the restart
        # The next midnight after the last event: the day roll re-rates every seller a window
        # change is due for, so every forecast is replay's at that instant.
        when = format_ts((max(parse_ts(e["ts"]) for e in events) // DAY_MS + 1) * DAY_MS)
        tick_all(broker, prefix, when)
        expected = {s: testing.comparable(r) for s, r in expected_ratings(events, when).items()}
        until_equal(worker, sellers, expected)
    finally:
        worker.stop()
