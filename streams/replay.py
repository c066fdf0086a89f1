"""`starcast replay FILE [--at RFC3339] [--rulebook NAME] [--groups FILE]` (docs/spec.md §4).

Reads JSON lines of any event types, prints one rating per seller sorted by seller_id. Lines
that fail the contract go to stderr with their line number and reason; the replay goes on.
The evaluation instant is the clock: an event more than a day after it is `future_ts`, and
events after it (within that day) are kept but are not yet visible to the rating. With seller
groups (streams/core/groups.py) each seller is rated by its group's rulebook.
"""

from __future__ import annotations

import sys
from typing import IO, Iterable

import orjson

from streams.core.contract import FUTURE_TOLERANCE_MS, FUTURE_TS, Rejected, decode, validate
from streams.core.engine import Engine
from streams.core.groups import RulebookSelection
from streams.core.rulebook import AnyBook
from streams.core.timeutil import parse_ts


def replay(lines: Iterable[bytes], rulebook: AnyBook | RulebookSelection, at: int | None = None,
           errors: IO[str] | None = None, projection: bool = True) -> list[dict]:
    """Ratings at `at` for every seller in `lines`, sorted by seller, each with its projection
    as of `at` unless `projection` is False; rejected lines are reported to `errors`.
    `rulebook`: one for every seller, or a selection by seller group."""
    selection = rulebook if isinstance(rulebook, RulebookSelection) else RulebookSelection(rulebook)
    rejected: list[tuple[int, Rejected]] = []
    events = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            events.append((number, validate(decode(line.rstrip(b"\r\n")))))
        except Rejected as exc:
            rejected.append((number, exc))
    if at is None and events:  # default instant: the latest valid ts in the file
        at = max(event.ts for _, event in events)
    engines = {book.name: Engine(book) for book in selection.rulebooks}
    horizon = None if at is None else at + FUTURE_TOLERANCE_MS  # None only without events
    for number, event in events:
        try:
            if horizon is not None and event.ts > horizon:
                raise Rejected(FUTURE_TS, f"ts: {event.body['ts']} is more than a day after --at")
            if at is not None and event.ts > at:
                continue  # not yet at `at`: it changes no rating then, and the projection assumes none
            engines[selection.rulebook_for(event.seller_id).name].apply(event)
        except Rejected as exc:
            rejected.append((number, exc))
    errors = errors if errors is not None else sys.stderr
    for number, error in sorted(rejected, key=lambda item: item[0]):
        errors.write(f"line {number}: {error.reason}: {error.message}\n")
    if at is None:
        return []
    return sorted((r for engine in engines.values() for r in engine.ratings(at, projection=projection)),
                  key=lambda r: r["seller_id"])


def run(path: str, rulebook: AnyBook | RulebookSelection, at: str | None, out: IO[bytes]) -> int:
    instant = parse_ts(at) if at else None
    with (sys.stdin.buffer if path == "-" else open(path, "rb")) as fh:
        ratings = replay(fh, rulebook, instant)
    for rating in ratings:
        out.write(orjson.dumps(rating) + b"\n")
    out.flush()
    return 0
