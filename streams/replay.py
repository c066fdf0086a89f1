"""`starcast replay FILE [--at RFC3339] [--monthly] [--rulebook NAME] [--groups FILE]`
(docs/spec.md §4).

Reads JSON lines of any event types, prints one rating per seller sorted by seller_id, or with
`--monthly` every official monthly record the input gives. Lines that fail the contract go to
stderr with their line number and reason; the replay goes on. The evaluation instant is the
clock: an event more than a day after it is `future_ts`, and events after it (within that day)
are kept but are not yet visible to the rating. With seller groups (streams/core/groups.py)
each seller is rated by its group's rulebook.

Memory is bounded by the rating state, not by the input: events are applied as they are read,
with the engines' clock at the evaluation instant from the start, so what is older than every
rule is ignored on arrival and the rest pruned as in the worker (streams/core/state.py). Without
`--at` the instant is the latest valid `ts`, found by a first pass: a file is read twice, and
stdin is buffered (its raw lines) for the second pass.

Ratings and monthly records of a large input are computed a share of the sellers at a time
(`share_count`): the lines are spilled to temporary files by a hash of the seller id (one
file per ~8 MiB of input), each file is rated on its own engines, which are then dropped, and
the sorted outputs are merged. A seller's rating depends only on its own events and the
instant (for a monthly record, also on where the stream's clock froze the month:
`monthly_records`), so this gives what one pass over everything gives, with memory for one
share of the state.

A line is spilled by the seller id it claims, decoded but not validated: it is validated once,
when its share is rated. Each share's rejections go to a file beside it, and all of them are
reported in line order once every share is rated, before the first rating is written. (Monthly
records validate while spilling, as each valid event moves the freeze clock.)
"""

from __future__ import annotations

import heapq
import os
import sys
import tempfile
import zlib
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator, Sequence

import orjson

from streams.core.contract import (FUTURE_TOLERANCE_MS, FUTURE_TS, MAX_MESSAGE_BYTES, Event, Rejected, decode,
                                   validate)
from streams.core.engine import Engine
from streams.core.groups import RulebookSelection
from streams.core.official import freezable_month_end, next_month_end, labels, official_record, owed
from streams.core.rulebook import AnyBook
from streams.core.timeutil import parse_ts


SHARE_BYTES = 8 << 20  # input rated at a time: memory holds the state of about this much input
MAX_SHARES = 256  # spill files open at once
STDIN_SHARES = 64  # a stream's size is not known ahead


class FileLines:
    """A file's lines, readable once per pass."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __iter__(self) -> Iterator[bytes]:
        with open(self.path, "rb") as fh:
            yield from fh


def latest_ts(lines: Iterable[bytes]) -> int | None:
    """The latest `ts` among the valid events (the default evaluation instant). A line is
    validated only when its claimed ts would raise the latest so far."""
    latest: int | None = None
    for line in lines:
        try:
            obj = decode(line.rstrip(b"\r\n")) if line.strip() else None
            ts = parse_ts(obj["ts"]) if isinstance(obj, dict) and isinstance(obj.get("ts"), str) else None
            if ts is not None and (latest is None or ts > latest):
                latest = validate(obj).ts  # type: ignore[arg-type]
        except (Rejected, ValueError, OverflowError, TypeError):
            continue
    return latest


def _report(errors: IO[str], number: int, exc: Rejected) -> None:
    """One line per rejection: `line N: reason: message`."""
    message = exc.message.replace("\n", "\\n")
    errors.write(f"line {number}: {exc.reason}: {message}\n")


def _line_number(report: str) -> int:
    return int(report[5:report.index(":")])


def _events(lines: Iterable[bytes], errors: IO[str], horizon: int | None, numbered: bool = False
            ) -> Iterator[tuple[int, Event, bytes]]:
    """Valid events with their line numbers and lines; rejected lines reported to `errors` as
    read. `numbered`: each line starts with its number in the original input and a tab."""
    for number, line in enumerate(lines, start=1):
        if numbered:
            head, line = line.split(b"\t", 1)
            number = int(head)
        if not line.strip():
            continue
        try:
            event = validate(decode(line.rstrip(b"\r\n")))
            if horizon is not None and event.ts > horizon:
                raise Rejected(FUTURE_TS, f"ts: {event.body['ts']} is more than a day after --at")
            yield number, event, line
        except Rejected as exc:
            _report(errors, number, exc)


def _instant(lines: Iterable[bytes], at: int | None, errors: IO[str], jobs: int = 1
             ) -> tuple[Iterable[bytes], int | None]:
    """The lines to read and the evaluation instant: `at`, or the latest valid ts found by a
    first pass (an iterator is buffered for it; a file is read by `jobs` processes, a range of
    its lines each). None: no valid event, the lines are reported."""
    if at is not None:
        return lines, at
    lines = _rereadable(lines)
    if jobs > 1 and isinstance(lines, FileLines):
        found = [ts for ts in _in_processes(_latest_in_range, [(lines.path, *r) for r in _ranges(lines.path, jobs)],
                                            jobs) if ts is not None]
        at = max(found) if found else None
    else:
        at = latest_ts(lines)
    if at is None:
        for _ in _events(lines, errors, None):
            pass
    return lines, at


def _apply(lines: Iterable[bytes], errors: IO[str], at: int, engine_of: Callable[[Event], Engine],
           numbered: bool = False) -> None:
    """Every valid event up to `at` to the engine `engine_of` gives it, in line order; an event
    more than a day after `at` is rejected, one within that day is not yet visible."""
    for number, event, _ in _events(lines, errors, at + FUTURE_TOLERANCE_MS, numbered):
        if event.ts > at:
            continue  # not yet at `at`: it changes no rating then, and the projection assumes none
        try:
            engine_of(event).apply(event)
        except Rejected as exc:
            _report(errors, number, exc)


def _rereadable(lines: Iterable[bytes]) -> Iterable[bytes]:
    return lines if isinstance(lines, (FileLines, Sequence)) else list(lines)


def replay(lines: Iterable[bytes], rulebook: AnyBook | RulebookSelection, at: int | None = None,
           errors: IO[str] | None = None, projection: bool = True) -> list[dict]:
    """Ratings at `at` for every seller in `lines`, sorted by seller, each with its projection
    as of `at` unless `projection` is False; rejected lines are reported to `errors`.
    `rulebook`: one for every seller, or a selection by seller group. With `at`, `lines` is
    read once; without, twice (an iterator is buffered first)."""
    return list(ratings(lines, rulebook, at, errors, projection))


def ratings(lines: Iterable[bytes], rulebook: AnyBook | RulebookSelection, at: int | None = None,
            errors: IO[str] | None = None, projection: bool = True, shares: int | None = None,
            jobs: int = 1) -> Iterator[dict]:
    """`replay`, one rating at a time: each seller's rating caches are dropped once it is
    rated, so the output never holds more than one rating. `shares`: how many shares of the
    sellers to rate (default: by the input's size, see the module); `jobs`: how many processes
    rate them, each a share at a time (the output is the same for any number)."""
    selection = rulebook if isinstance(rulebook, RulebookSelection) else RulebookSelection(rulebook)
    errors = errors if errors is not None else sys.stderr
    lines, instant = _instant(lines, at, errors, jobs)
    if instant is None:
        return
    count = share_count(lines) if shares is None else shares
    if count <= 1:
        yield from _rate(lines, selection, instant, errors, projection)
        return
    with tempfile.TemporaryDirectory(prefix="starcast-replay-") as directory, ExitStack() as files:
        if jobs > 1 and isinstance(lines, FileLines):
            spilled = _spill_in_parallel(lines.path, count, Path(directory), jobs)
        else:
            spilled = _spill(lines, errors, instant, count, Path(directory))
        yield from _merged(spilled, lambda rows, rejected: _rate(rows, selection, instant, rejected, projection,
                                                                 numbered=True),
                           lambda r: r["seller_id"], files, errors, jobs)


def _merged(spilled: list[Path], produce: Callable[[Iterable[bytes], IO[str]], Iterable[dict]],
            key: Callable[[dict], Any], files: ExitStack, errors: IO[str], jobs: int = 1) -> Iterator[dict]:
    """Each spilled share through `produce` (its output sorted by `key`, its rejections written
    to the file it is given), one share at a time in each of `jobs` processes (what `produce`
    holds goes before the next), into a file; then the shares' rejections reported to `errors`
    in line order, and the outputs merged by `key`."""
    global _PRODUCE
    _PRODUCE = produce  # a forked job process finds it here
    try:
        if jobs > 1 and len(spilled) > 1:
            _in_processes(_produce_share, spilled, jobs)
        else:
            for share in spilled:
                _produce_share(share)
    finally:
        _PRODUCE = None
    outputs, rejections = [], []
    for share in spilled:
        outputs.append(files.enter_context(share.with_suffix(".out").open("rb")))
        rejections.append(files.enter_context(share.with_suffix(".err").open()))
    errors.writelines(heapq.merge(*rejections, key=_line_number))
    return heapq.merge(*(map(orjson.loads, out) for out in outputs), key=key)


_PRODUCE: Callable[[Iterable[bytes], IO[str]], Iterable[dict]] | None = None


def _produce_share(share: Path) -> None:
    """One spilled share (its pieces, in order) through `_PRODUCE` into `<share>.out`, its
    rejections into `<share>.err`; the pieces are removed."""
    assert _PRODUCE is not None
    pieces = sorted(share.parent.glob(share.name + ".*[0-9]")) if not share.exists() else [share]
    with share.with_suffix(".out").open("wb") as out, share.with_suffix(".err").open("w") as report:
        for item in _PRODUCE(_lines_of(pieces), report):
            out.write(orjson.dumps(item) + b"\n")
    for piece in pieces:
        piece.unlink()


def _lines_of(paths: list[Path]) -> Iterator[bytes]:
    """The lines of several files, one after the other."""
    for path in paths:
        with path.open("rb") as fh:
            yield from fh


def _in_processes(function: Callable[[Any], Any], items: Sequence[Any], jobs: int) -> list[Any]:
    """`function` over `items` in up to `jobs` forked processes, results in order. Forked, so a
    job sees the module's state as it was when the pool started (`_PRODUCE`)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=min(jobs, len(items)), mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(function, items))


def _ranges(path: str, jobs: int) -> list[tuple[int, int, int]]:
    """The file cut into up to `jobs` byte ranges at line ends: (start, end, number of the first
    line). Line numbers are counted by the bytes' newlines, so every range knows its own."""
    size = os.path.getsize(path)
    cuts = [0]
    with open(path, "rb") as fh:
        for i in range(1, jobs):
            fh.seek(max(size * i // jobs, cuts[-1]))
            fh.readline()
            cuts.append(min(fh.tell(), size))
    cuts.append(size)
    bounds = sorted(set(zip(cuts, cuts[1:])))
    ranges, number = [], 1
    with open(path, "rb") as fh:
        for start, end in bounds:
            if end <= start:
                continue
            ranges.append((start, end, number))
            fh.seek(start)
            left, newlines = end - start, 0
            while left:
                chunk = fh.read(min(left, 16 << 20))
                newlines += chunk.count(b"\n")
                left -= len(chunk)
            number += newlines
    return ranges


def _range_lines(path: str, start: int, end: int) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        fh.seek(start)
        position = start
        for line in fh:
            if position >= end:
                return
            position += len(line)
            yield line


def _latest_in_range(job: tuple[str, int, int, int]) -> int | None:
    path, start, end, _ = job
    return latest_ts(_range_lines(path, start, end))


def _spill_range(job: tuple[str, int, int, int, int, Path, int]) -> set[int]:
    """One range's lines into the shares' pieces `<share>.<piece>`; returns the shares it wrote."""
    path, start, end, first, count, directory, piece = job
    pieces = [directory / f"{i:03d}.{piece:03d}" for i in range(count)]
    return _spill_lines(_range_lines(path, start, end), count, pieces, first)


def _spill_in_parallel(path: str, count: int, directory: Path, jobs: int) -> list[Path]:
    """`_spill` without `stamp`, the file read by `jobs` processes, a range of lines each: share
    i is the pieces `i.0`, `i.1`, ... in line order. Returns the shares that got lines (as the
    paths `_produce_share` reads their pieces by)."""
    ranges = _ranges(path, jobs)
    used = set().union(*_in_processes(_spill_range, [(path, start, end, first, count, directory, piece)
                                                      for piece, (start, end, first) in enumerate(ranges)], jobs))
    return [directory / f"{i:03d}" for i in sorted(used)]


def _spill_lines(lines: Iterable[bytes], count: int, paths: list[Path], first: int = 1) -> set[int]:
    """Every non-blank line, numbered from `first`, into the file of the seller it claims (a
    stable hash of its id); files that get no line are removed. Returns those that got lines."""
    used: set[int] = set()
    with ExitStack() as stack:
        files = [stack.enter_context(path.open("wb")) for path in paths]
        for number, line in enumerate(lines, start=first):
            line = line.rstrip(b"\r\n")
            if line.strip():
                i = zlib.crc32(_claimed_seller(line)) % count
                used.add(i)
                files[i].write(b"%d\t%s\n" % (number, line))
    for i, path in enumerate(paths):
        if i not in used:
            path.unlink()
    return used


def _rate(lines: Iterable[bytes], selection: RulebookSelection, instant: int, errors: IO[str], projection: bool,
          numbered: bool = False) -> Iterator[dict]:
    """Every seller of `lines` rated at `instant`, sorted by seller."""
    engines = {book.name: Engine(book) for book in selection.rulebooks}
    for engine in engines.values():
        engine.advance(instant)  # prune as read: what no window ending at `at` can see is dropped
    _apply(lines, errors, instant, lambda event: engines[selection.rulebook_for(event.seller_id).name], numbered)
    yield from heapq.merge(*(engine.each_rating(instant, projection) for engine in engines.values()),
                           key=lambda r: r["seller_id"])


def share_count(lines: Iterable[bytes]) -> int:
    """How many shares to rate `lines` in: one per SHARE_BYTES of a file, STDIN_SHARES for a
    stream, one for lines already in memory."""
    if isinstance(lines, FileLines):
        return min(MAX_SHARES, -(-os.path.getsize(lines.path) // SHARE_BYTES))
    return 1 if isinstance(lines, Sequence) else STDIN_SHARES


def _claimed_seller(line: bytes) -> bytes:
    """The seller id a line claims, encoded: all a share needs to be chosen. b"" when it claims
    none; such a line is rejected when its share is rated."""
    if len(line) > MAX_MESSAGE_BYTES:
        return b""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return b""
    seller = obj.get("seller_id") if isinstance(obj, dict) else None
    return seller.encode() if isinstance(seller, str) else b""


def _spill(lines: Iterable[bytes], errors: IO[str], at: int, count: int, directory: Path,
           stamp: Callable[[Event], int] | None = None) -> list[Path]:
    """The lines, each with its line number, into `count` files by a stable hash of the seller
    id. Without `stamp`, every non-blank line as it claims its seller (validated when its share
    is rated). With `stamp`, only the valid lines up to `at`, each with the number `stamp`
    gives its event, invalid lines reported as read. Returns the files that got lines."""
    paths = [directory / f"{i:03d}" for i in range(count)]
    if stamp is None:
        return [paths[i] for i in sorted(_spill_lines(lines, count, paths))]
    used: set[int] = set()
    with ExitStack() as stack:
        files = [stack.enter_context(path.open("wb")) for path in paths]
        for number, event, line in _events(lines, errors, at + FUTURE_TOLERANCE_MS):
            if event.ts <= at:
                i = zlib.crc32(event.seller_id.encode()) % count
                used.add(i)
                files[i].write(b"%d\t%d\t%s\n" % (number, stamp(event), line.rstrip(b"\r\n")))
    for i, path in enumerate(paths):
        if i not in used:
            path.unlink()
    return [paths[i] for i in sorted(used)]


def monthly(lines: Iterable[bytes], rulebook: AnyBook | RulebookSelection, at: int | None = None,
            errors: IO[str] | None = None, shares: int | None = None) -> list[dict]:
    """Every official monthly record the input gives, sorted by seller then month: the months
    whose freeze (month end + the rulebook's grace, in its time zone) falls at or before `at`
    (default: the latest ts), each frozen as the worker freezes it, the lines taken in order as
    the worker would receive them. `shares`: as for `ratings`."""
    return list(monthly_records(lines, rulebook, at, errors, shares))


def monthly_records(lines: Iterable[bytes], rulebook: AnyBook | RulebookSelection, at: int | None = None,
                    errors: IO[str] | None = None, shares: int | None = None, jobs: int = 1) -> Iterator[dict]:
    """`monthly`, one record at a time.

    In shares (see the module): the freezes fall where the whole input puts them. While the
    lines are spilled, each rulebook's freeze schedule follows the whole stream: every line is
    stamped with its rulebook's clock after it, and the clocks at which a freeze fell are kept.
    A share then replays those freezes in order among its own lines, each at the clock it fell
    at, so each of its sellers is frozen at the same point of its own events, and pruned at the
    same clocks, as in one pass. The spill follows the whole stream in one process; `jobs`
    processes freeze the shares."""
    selection = rulebook if isinstance(rulebook, RulebookSelection) else RulebookSelection(rulebook)
    errors = errors if errors is not None else sys.stderr
    lines, instant = _instant(lines, at, errors, jobs)
    if instant is None:
        return
    count = share_count(lines) if shares is None else shares
    if count <= 1:
        freezes = _freeze(lines, selection, instant, errors, {})
        yield from sorted(_records(freezes), key=_record_order)
        return
    schedules = {book.name: _Schedule(book) for book in selection.rulebooks}

    def stamp(event: Event) -> int:
        return schedules[selection.rulebook_for(event.seller_id).name].see(event.ts)

    with tempfile.TemporaryDirectory(prefix="starcast-replay-") as directory, ExitStack() as files:
        spilled = _spill(lines, errors, instant, count, Path(directory), stamp)
        triggers = {name: schedule.triggers for name, schedule in schedules.items()}
        yield from _merged(spilled, lambda rows, rejected: sorted(
            _records(_freeze(rows, selection, instant, rejected, triggers)), key=_record_order),
            _record_order, files, errors, jobs)


def _record_order(record: dict) -> tuple[str, str]:
    return record["seller_id"], record["month"]


def _records(freezes: dict[str, "_Freezes"]) -> Iterator[dict]:
    for freeze in freezes.values():
        for _, _, raw in freeze.records:
            yield orjson.loads(raw)


def _freeze(lines: Iterable[bytes], selection: RulebookSelection, instant: int, errors: IO[str],
            triggers: dict[str, list[int]]) -> dict[str, "_Freezes"]:
    """Every seller of `lines` through every freeze up to `instant`. Without `triggers`, the
    lines are the whole input and each event's ts moves its rulebook's clock; with them, each
    line is `number<TAB>clock<TAB>event` (`_spill`) and the freezes fall at `triggers`."""
    freezes = {book.name: _Freezes(Engine(book, keep_for_freeze=True)) for book in selection.rulebooks}
    pending = {name: iter(clocks) for name, clocks in triggers.items()}
    due = {name: next(it, None) for name, it in pending.items()}

    def catch_up(name: str, clock: int) -> None:
        """The freezes the whole stream made before this clock, in order."""
        while due[name] is not None and due[name] <= clock:  # type: ignore[operator]
            freezes[name].clock(due[name])  # type: ignore[arg-type]
            due[name] = next(pending[name], None)

    if triggers:
        for raw in lines:
            head, clock_raw, line = raw.split(b"\t", 2)
            number, clock = int(head), int(clock_raw)
            try:
                event = validate(decode(line.rstrip(b"\r\n")))
                name = selection.rulebook_for(event.seller_id).name
                catch_up(name, clock)
                freezes[name].clock(clock)
                freezes[name].engine.apply(event)
            except Rejected as exc:
                _report(errors, number, exc)
        for name in freezes:
            catch_up(name, instant)
    else:
        def engine_of(event: Event) -> Engine:
            freeze = freezes[selection.rulebook_for(event.seller_id).name]
            freeze.clock(event.ts)  # a freeze now due rates the month's end, which this later event cannot change
            return freeze.engine

        _apply(lines, errors, instant, engine_of)
    for freeze in freezes.values():
        freeze.clock(instant)
    return freezes


class _Schedule:
    """The worker's freeze rule (RatingProcessor._maybe_freeze) for one rulebook's clock: when
    the clock has passed a month end plus the grace period, the latest such month not frozen yet
    is due. Records the clocks at which a freeze fell (`triggers`)."""

    def __init__(self, book: AnyBook) -> None:
        self.book = book
        self.latest: int | None = None  # the clock: the latest ts seen
        self.frozen_through: int | None = None  # end of the latest month frozen
        self.check_at: int | None = None  # the clock at which the next freeze falls due
        self.triggers: list[int] = []

    def due(self, ts: int) -> int | None:
        """The end of the month to freeze now that an event at `ts` came, if any."""
        if self.check_at is not None and ts < self.check_at:
            return None
        month_end = freezable_month_end(ts, self.book)
        self.check_at = next_month_end(month_end, self.book) + self.book.grace_ms
        if self.frozen_through is not None and month_end <= self.frozen_through:
            return None
        self.frozen_through = month_end
        self.triggers.append(ts)
        return month_end

    def see(self, ts: int) -> int:
        """An event at `ts`: the freeze it makes due, if any, noted; returns the clock after it."""
        self.due(ts)
        self.latest = ts if self.latest is None or ts > self.latest else self.latest
        return self.latest


class _Freezes:
    """One rulebook's engine with the worker's freeze rule (`_Schedule`): each freeze rates
    every seller with an event before the month's end."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.book = engine.rulebook
        self.schedule = _Schedule(engine.rulebook)
        self.records: list[tuple[str, str, bytes]] = []  # (seller, month, record): compact

    def clock(self, ts: int) -> None:
        self.engine.advance(ts)
        month_end = self.schedule.due(ts)
        if month_end is not None:
            self._freeze(month_end)

    def _freeze(self, month_end: int) -> None:
        engine, months = self.engine, labels(self.book, month_end)
        for seller in sorted(engine.states):
            state = engine.states[seller]
            if owed(state, month_end):
                record = official_record(engine, seller, month_end, months)
                state.mark_frozen(month_end, record)
                self.records.append((seller, record["month"], orjson.dumps(record)))


def run(path: str, rulebook: AnyBook | RulebookSelection, at: str | None, out: IO[bytes],
        monthly: bool = False, jobs: int = 1) -> int:
    instant = parse_ts(at) if at else None
    lines: Iterable[bytes] = sys.stdin.buffer if path == "-" else FileLines(path)
    for rating in (monthly_records if monthly else ratings)(lines, rulebook, instant, jobs=jobs):
        out.write(orjson.dumps(rating) + b"\n")
    out.flush()
    return 0
