"""Replay at scale: events applied as read (memory bounded by the state, not the input), the
two passes without --at, and --monthly: every month's official record, as the worker's
freeze makes it."""

from __future__ import annotations

import io
import tempfile
import zlib
import tracemalloc
from typing import Iterator

import orjson
import pytest

from streams.core.groups import load_groups
from streams.core.rulebook import load
from streams.core.timeutil import parse_ts
from streams.local.simulate import events
from streams.replay import latest_ts, monthly, ratings, replay
from streams.service.processor import Incoming, RatingProcessor, partition_for

pytestmark = pytest.mark.unit

MONTHS = ("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z")


def quarter(sellers: int = 12) -> list[bytes]:
    """Three simulated months of the same sellers, in event-time order."""
    return [orjson.dumps(e) for n, start in enumerate(MONTHS)
            for e in events(None, sellers, seed=20 + n, start=start, days=28)]


class Once:
    """Lines that can be read once only, as a pipe."""

    def __init__(self, lines: list[bytes]) -> None:
        self.lines, self.reads = lines, 0

    def __iter__(self) -> Iterator[bytes]:
        self.reads += 1
        assert self.reads == 1, "read twice"
        yield from self.lines


def test_with_at_the_input_is_read_once_and_rates_as_in_any_order() -> None:
    lines = quarter()
    when = parse_ts("2026-03-29T00:00:00Z")
    once = Once(lines)
    streamed = replay(once, load(), when, io.StringIO())
    assert once.reads == 1
    shuffled = lines[::-1]  # event-time state: the order of reading changes nothing
    assert replay(shuffled, load(), when, io.StringIO()) == streamed
    assert {r["as_of"] for r in streamed} == {"2026-03-29T00:00:00Z"}


def test_without_at_the_latest_valid_ts_is_found_by_a_first_pass() -> None:
    lines = quarter(4)
    garbage = [b"{broken", orjson.dumps({"type": "store_visit", "ts": "2027-01-01T00:00:00Z"})]
    want = max(parse_ts(orjson.loads(line)["ts"]) for line in lines)
    assert latest_ts(garbage + lines) == want  # the invalid line's later ts does not count
    errors = io.StringIO()
    rated = replay(iter(garbage + lines), load(), None, errors)  # an iterator: buffered, then two passes
    assert rated == replay(lines, load(), want, io.StringIO())
    assert errors.getvalue().splitlines()[0].startswith("line 1: invalid_json")
    assert len(errors.getvalue().splitlines()) == 2


def test_memory_follows_the_state_not_the_input() -> None:
    """Three months cost about what their last month costs alone: the first two are pruned as
    they are read (windows of 30 days; catalogue and people ids recur across months)."""
    lines = quarter(10)
    last_month = [line for line in lines if orjson.loads(line)["ts"] >= "2026-03"]
    when = parse_ts("2026-03-29T00:00:00Z")

    def peak(source: list[bytes]) -> int:
        tracemalloc.start()
        replay(Once(source), load(), when, io.StringIO(), projection=False)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    alone, quarter_peak = peak(last_month), peak(lines)
    assert len(lines) > 2.5 * len(last_month)
    assert quarter_peak < 1.5 * alone, (quarter_peak, alone)


def worker_monthly(lines: list[bytes], until: str) -> list[dict]:
    """What the worker's processor freezes for these lines, delivered in order to 4 partitions
    (published at `until`, as an archive would be), with every partition's clock then moved
    to `until`."""
    processor = RatingProcessor(load(), 4)
    published, records = parse_ts(until), []
    incoming = [Incoming(line, (seller := orjson.loads(line)["seller_id"]).encode(), "topic",
                         partition_for(seller, 4), offset, published) for offset, line in enumerate(lines)]
    for n in range(0, len(incoming), 500):  # in batches, as the worker takes them
        for effects in processor.handle_batch(incoming[n:n + 500]).values():
            records += effects.monthly
    for p in range(4):
        records += processor.tick(p, parse_ts(until)).monthly
    return [r for _, r in sorted(records, key=lambda item: (item[0], item[1]["month"]))]


def test_monthly_records_are_the_workers_freezes() -> None:
    lines = quarter(6)
    until = "2026-04-02T00:00:00Z"  # past March's end plus the 24 h grace
    records = monthly(lines, load(), parse_ts(until), io.StringIO())
    assert records == worker_monthly(lines, until)
    assert {r["month"] for r in records} == {"2026-01", "2026-02", "2026-03"}
    assert [(r["seller_id"], r["month"]) for r in records] == sorted((r["seller_id"], r["month"]) for r in records)
    march = next(r for r in records if r["month"] == "2026-03")
    assert march["as_of"] == "2026-03-31T23:59:59.999Z"
    assert (march["valid_from"], march["valid_until"]) == ("2026-04-05T10:00:00Z", "2026-05-05T09:59:59.999Z")


def test_monthly_without_at_stops_at_the_months_whose_freeze_has_come() -> None:
    lines = quarter(4)  # the latest ts is in late March: March is not frozen yet
    assert {r["month"] for r in monthly(lines, load(), None, io.StringIO())} == {"2026-01", "2026-02"}


def test_monthly_for_seller_groups_uses_each_groups_rulebook_and_calendar(tmp_path) -> None:
    groups = tmp_path / "groups.toml"
    groups.write_text('default = "global-2023"\n\n[[group]]\nname = "cn-pilot"\nrulebook = "cn-2020"\n'
                      'sellers = ["seller-00000", "seller-00001"]\n')
    lines = quarter(4)
    records = monthly(lines, load_groups(str(groups)), parse_ts("2026-04-02T00:00:00Z"), io.StringIO())
    books = {(r["seller_id"], r["rulebook"]) for r in records}
    assert ("seller-00000", "cn-2020") in books and ("seller-00003", "global-2023") in books
    cn = [r for r in records if r["rulebook"] == "cn-2020"]
    assert cn and all(r["month"] in {"2026-01", "2026-02", "2026-03"} for r in cn)


def test_garbage_lines_are_reported_in_order_and_change_nothing() -> None:
    lines = quarter(4)
    when = parse_ts("2026-03-29T00:00:00Z")
    mixed: list[bytes] = []
    for n, line in enumerate(lines):
        if n % 10 == 0:
            mixed.append(b'{"type": "store_visit", "seller_id": "x"' if n % 20 else line[: len(line) // 2])
        mixed.append(line)
    errors = io.StringIO()
    assert replay(Once(mixed), load(), when, errors) == replay(lines, load(), when, io.StringIO())
    numbers = [int(line.split(":")[0].split()[1]) for line in errors.getvalue().splitlines()]
    assert len(numbers) == (len(lines) + 9) // 10 and numbers == sorted(numbers)


def test_rated_in_shares_the_ratings_and_errors_are_one_passs(tmp_path, monkeypatch) -> None:
    """A large input is rated a share of the sellers at a time (spilled by seller, each share on
    its own engines): the same ratings, in seller order, and the same errors in line order."""
    import streams.replay as replay_module

    groups = tmp_path / "groups.toml"
    groups.write_text('default = "global-2023"\n\n[[group]]\nname = "cn-pilot"\nrulebook = "cn-2020"\n'
                      'sellers = ["seller-00000", "seller-00003"]\n')
    selection = load_groups(str(groups))
    mixed: list[bytes] = []
    lines = quarter(9)
    for n, line in enumerate(lines):
        if n % 25 == 0:
            mixed.append(line[: len(line) // 2])
        if n % 25 == 12:  # decodes and names its seller, so it is spilled to that seller's share
            mixed.append(orjson.dumps({k: v for k, v in orjson.loads(line).items() if k != "event_id"}))
        mixed.append(line)
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(mixed) + b"\n")
    when = parse_ts("2026-03-29T00:00:00Z")
    one_errors = io.StringIO()
    one_pass = replay(mixed, selection, when, one_errors)

    monkeypatch.setattr(replay_module, "SHARE_BYTES", path.stat().st_size // 5 + 1)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert replay_module.share_count(replay_module.FileLines(str(path))) == 5
    shared_errors = io.StringIO()
    in_shares = replay(replay_module.FileLines(str(path)), selection, when, shared_errors)
    assert in_shares == one_pass and len(one_pass) == 9
    assert [r["seller_id"] for r in in_shares] == sorted(r["seller_id"] for r in in_shares)
    assert {r["rulebook"] for r in in_shares} == {"global-2023", "cn-2020"}
    assert shared_errors.getvalue() == one_errors.getvalue() and one_errors.getvalue().count("\n") == len(mixed) - len(lines)
    assert not list(tmp_path.glob("starcast-replay-*"))  # the spill files are gone


def test_a_share_at_a_time_holds_a_share_of_the_state() -> None:
    lines = quarter(24)
    when = parse_ts("2026-03-29T00:00:00Z")

    def peak(shares: int) -> tuple[int, list[dict]]:
        tracemalloc.start()
        rated = list(ratings(lines, load(), when, io.StringIO(), projection=False, shares=shares))
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top, rated

    (whole, one_pass), (shared, in_shares) = peak(1), peak(8)
    assert in_shares == one_pass
    assert shared < 0.5 * whole, (shared, whole)


def test_monthly_in_shares_freezes_where_the_whole_stream_does(tmp_path) -> None:
    """Each share replays the whole stream's freezes among its own lines: the same records as
    one pass and as the worker, for late events too (a line older than the clock), with groups."""
    groups = tmp_path / "groups.toml"
    groups.write_text('default = "global-2023"\n\n[[group]]\nname = "cn-pilot"\nrulebook = "cn-2020"\n'
                      'sellers = ["seller-00001", "seller-00004"]\n')
    selection = load_groups(str(groups))
    lines = quarter(7)
    late = [line for line in lines if b'"ts":"2026-01-3' in line][:40]  # January's last days, again in March
    march = next(n for n, line in enumerate(lines) if b'"ts":"2026-03-0' in line)
    stream = lines[:march] + late + lines[march:] + [b"{broken"]
    until = parse_ts("2026-04-02T00:00:00Z")
    one_errors, shared_errors = io.StringIO(), io.StringIO()
    one_pass = monthly(stream, selection, until, one_errors, shares=1)
    in_shares = monthly(stream, selection, until, shared_errors, shares=4)
    assert in_shares == one_pass and shared_errors.getvalue() == one_errors.getvalue() != ""
    assert {r["month"] for r in one_pass} == {"2026-01", "2026-02", "2026-03"}
    assert {r["rulebook"] for r in one_pass} == {"global-2023", "cn-2020"}
    plain = monthly(lines, load(), until, io.StringIO(), shares=5)
    assert plain == worker_monthly(lines, "2026-04-02T00:00:00Z")


def test_a_share_silent_for_a_month_still_freezes_that_month_as_the_stream_did() -> None:
    """A share whose sellers are silent through February: the stream froze January when its clock
    passed February's start plus the grace. The share must freeze January then too, at that
    clock, not at its own next line in March (which would prune January's facts first and
    freeze only February)."""
    base = quarter(4)
    quiet = [line.replace(b'"seller-00000"', b'"seller-quiet"') for line in base
             if b'"seller-00000"' in line and b'"ts":"2026-02' not in line]
    stream = sorted(base + quiet, key=lambda line: orjson.loads(line)["ts"])
    sellers = {orjson.loads(line)["seller_id"] for line in base}
    count = next(n for n in range(2, 500)
                 if all(zlib.crc32(s.encode()) % n != zlib.crc32(b"seller-quiet") % n for s in sellers))
    until = parse_ts("2026-04-02T00:00:00Z")
    one_pass = monthly(stream, load(), until, io.StringIO(), shares=1)
    assert monthly(stream, load(), until, io.StringIO(), shares=count) == one_pass
    assert {r["month"] for r in one_pass if r["seller_id"] == "seller-quiet"} == {"2026-01", "2026-02", "2026-03"}


def test_shares_rated_by_several_processes_give_the_output_of_one(tmp_path, monkeypatch) -> None:
    """`--jobs`: a file's first pass, its spill (a range of lines per process) and its shares'
    ratings and freezes in forked processes: the same ratings, records and rejections, in the
    same order, as one process; line numbers count from the start of the file in every range."""
    import streams.replay as replay_module

    lines = quarter(10)
    mixed = [line for n, line in enumerate(lines) for line in ([line[:20], line] if n % 40 == 7 else [line])]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(mixed) + b"\n")
    monkeypatch.setattr(replay_module, "SHARE_BYTES", path.stat().st_size // 6 + 1)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    file = replay_module.FileLines(str(path))
    runs = {}
    for jobs in (1, 2, 3):
        rated_errors, frozen_errors = io.StringIO(), io.StringIO()
        rated = [orjson.dumps(r) for r in ratings(file, load(), None, rated_errors, jobs=jobs)]
        frozen = [orjson.dumps(r) for r in replay_module.monthly_records(file, load(), None, frozen_errors, jobs=jobs)]
        runs[jobs] = (rated, rated_errors.getvalue(), frozen, frozen_errors.getvalue())
    assert runs[2] == runs[1] and runs[3] == runs[1]
    rated, rated_errors, frozen, _ = runs[1]
    assert len(rated) == 10 and len(frozen) > 10
    numbers = [int(line.split(":")[0][5:]) for line in rated_errors.splitlines()]
    assert numbers == [n + 1 for n, line in enumerate(mixed) if len(line) == 20]  # each reported at its line
    assert not list(tmp_path.glob("starcast-replay-*"))  # the spill files are gone
