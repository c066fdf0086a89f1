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
"""

from __future__ import annotations

import heapq
import sys
from typing import IO, Callable, Iterable, Iterator, Sequence

import orjson

from streams.core.contract import FUTURE_TOLERANCE_MS, FUTURE_TS, Event, Rejected, decode, validate
from streams.core.engine import Engine
from streams.core.groups import RulebookSelection
from streams.core.official import freezable_month_end, next_month_end, labels, official_record, owed
from streams.core.rulebook import AnyBook
from streams.core.timeutil import parse_ts


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
    errors.write(f"line {number}: {exc.reason}: {exc.message}\n")


def _events(lines: Iterable[bytes], errors: IO[str], horizon: int | None
            ) -> Iterator[tuple[int, Event]]:
    """Valid events with their line numbers; rejected lines reported to `errors` as read."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event = validate(decode(line.rstrip(b"\r\n")))
            if horizon is not None and event.ts > horizon:
                raise Rejected(FUTURE_TS, f"ts: {event.body['ts']} is more than a day after --at")
            yield number, event
        except Rejected as exc:
            _report(errors, number, exc)


def _instant(lines: Iterable[bytes], at: int | None, errors: IO[str]) -> tuple[Iterable[bytes], int | None]:
    """The lines to read and the evaluation instant: `at`, or the latest valid ts found by a
    first pass (an iterator is buffered for it). None: no valid event, the lines are reported."""
    if at is not None:
        return lines, at
    lines = _rereadable(lines)
    at = latest_ts(lines)
    if at is None:
        for _ in _events(lines, errors, None):
            pass
    return lines, at


def _apply(lines: Iterable[bytes], errors: IO[str], at: int, engine_of: Callable[[Event], Engine]) -> None:
    """Every valid event up to `at` to the engine `engine_of` gives it, in line order; an event
    more than a day after `at` is rejected, one within that day is not yet visible."""
    for number, event in _events(lines, errors, at + FUTURE_TOLERANCE_MS):
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
            errors: IO[str] | None = None, projection: bool = True) -> Iterator[dict]:
    """`replay`, one rating at a time: each seller's rating caches are dropped once it is
    rated, so the output never holds more than one rating."""
    selection = rulebook if isinstance(rulebook, RulebookSelection) else RulebookSelection(rulebook)
    errors = errors if errors is not None else sys.stderr
    lines, instant = _instant(lines, at, errors)
    if instant is None:
        return
    engines = {book.name: Engine(book) for book in selection.rulebooks}
    for engine in engines.values():
        engine.advance(instant)  # prune as read: what no window ending at `at` can see is dropped
    _apply(lines, errors, instant, lambda event: engines[selection.rulebook_for(event.seller_id).name])
    when: int = instant
    yield from heapq.merge(*(engine.each_rating(when, projection) for engine in engines.values()),
                           key=lambda r: r["seller_id"])


def monthly(lines: Iterable[bytes], rulebook: AnyBook | RulebookSelection, at: int | None = None,
            errors: IO[str] | None = None) -> list[dict]:
    """Every official monthly record the input gives, sorted by seller then month: the months
    whose freeze (month end + the rulebook's grace, in its time zone) falls at or before `at`
    (default: the latest ts), each frozen as the worker freezes it, the lines taken in order as
    the worker would receive them."""
    selection = rulebook if isinstance(rulebook, RulebookSelection) else RulebookSelection(rulebook)
    errors = errors if errors is not None else sys.stderr
    lines, instant = _instant(lines, at, errors)
    if instant is None:
        return []
    freezes = {book.name: _Freezes(Engine(book, keep_for_freeze=True)) for book in selection.rulebooks}

    def engine_of(event: Event) -> Engine:
        freeze = freezes[selection.rulebook_for(event.seller_id).name]
        freeze.clock(event.ts)  # a freeze now due rates the month's end, which this later event cannot change
        return freeze.engine

    _apply(lines, errors, instant, engine_of)
    records = []
    for freeze in freezes.values():
        freeze.clock(instant)
        records.extend(freeze.records)
    records.sort(key=lambda r: (r[0], r[1]))
    return [orjson.loads(r[2]) for r in records]


class _Freezes:
    """One rulebook's engine with the worker's freeze rule (RatingProcessor._maybe_freeze): when
    the clock has passed a month end plus the grace period, the latest such month not frozen
    yet is frozen, for every seller with an event before its end."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.book = engine.rulebook
        self.frozen_through: int | None = None  # end of the latest month frozen
        self.check_at: int | None = None  # the clock at which the next freeze falls due
        self.records: list[tuple[str, str, bytes]] = []  # (seller, month, record): compact

    def clock(self, ts: int) -> None:
        self.engine.advance(ts)
        if self.check_at is not None and ts < self.check_at:
            return
        due = freezable_month_end(ts, self.book)
        if self.frozen_through is None or due > self.frozen_through:
            self._freeze(due)
            self.frozen_through = due
        self.check_at = next_month_end(due, self.book) + self.book.grace_ms

    def _freeze(self, month_end: int) -> None:
        engine, months = self.engine, labels(self.book, month_end)
        for seller in sorted(engine.states):
            state = engine.states[seller]
            if owed(state, month_end):
                record = official_record(engine, seller, month_end, months)
                state.mark_frozen(month_end, record)
                self.records.append((seller, record["month"], orjson.dumps(record)))


def run(path: str, rulebook: AnyBook | RulebookSelection, at: str | None, out: IO[bytes],
        monthly_records: bool = False) -> int:
    instant = parse_ts(at) if at else None
    lines: Iterable[bytes] = sys.stdin.buffer if path == "-" else FileLines(path)
    for rating in (monthly if monthly_records else ratings)(lines, rulebook, instant):
        out.write(orjson.dumps(rating) + b"\n")
    out.flush()
    return 0
