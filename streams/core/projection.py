"""The projection: a seller's official rating for the month if no event arrives after `as_of`.

The official rating is evaluated at the month's last instant, and windows keep sliding until
then: facts leave 30-day windows, penalties leave the 365-day window, and an unanswered
conversation starts counting against the response rate 24 h after it began. Every model knows
the instants at which its measures can change with no new event (its rating is piecewise
constant between them), so the projection walks those instants, from `as_of` to the month's
end, and keeps the ones at which the stars, the risk or an indicator's stars change: the
`timeline`. The levels after the last instant are the projection itself (docs/spec.md §3.1).

No Faust, no I/O: the worker, replay and the API share this code.
"""

from __future__ import annotations

from itertools import chain
from typing import Any, Iterable
from zoneinfo import ZoneInfo

from streams.core.timeutil import DAY, format_ts, month_start

Levels = tuple[int, str, int, dict[str, tuple[Any, int]]]
"""(stars, risk, stars_if_healthy, {indicator: (value, stars)}) of a rating at one instant."""


_ENDS: dict[tuple[ZoneInfo, int], tuple[int, str]] = {}  # (tz, month start) -> (end, its RFC 3339)


def month_end(as_of: int, tz: ZoneInfo) -> int:
    """The last millisecond of the calendar month (in `tz`) that contains `as_of`."""
    return _month_end(as_of, tz)[0]


def _month_end(as_of: int, tz: ZoneInfo) -> tuple[int, str]:
    start = month_start(as_of, tz)
    known = _ENDS.get((tz, start))
    if known is None:
        if len(_ENDS) > 10_000:
            _ENDS.clear()
        end = month_start(start + 32 * DAY, tz) - 1
        month_start(as_of, tz)  # leave month_start's one-month cache on as_of's month
        known = _ENDS[(tz, start)] = (end, format_ts(end))
    return known


def levels_of(rating: dict[str, Any]) -> Levels:
    """The levels of a full rating object."""
    return (rating["stars"], rating["risk"], rating["stars_if_healthy"],
            {name: (block["value"], block["stars"]) for name, block in rating["indicators"].items()})


_STILL: dict[tuple[int, int], tuple[Levels, dict[str, Any]]] = {}


def project(current: Levels, steps: Iterable[tuple[int, Levels]], end: int) -> dict[str, Any]:
    """The projection object from the levels at `as_of` and the levels at each later instant
    at which the measures change (in time order, none after `end`, the month's last instant).

    The result may be shared between calls (when nothing changes ahead): read it, never
    change it."""
    timeline: list[dict[str, Any]] = []
    last = current
    ahead = iter(steps)
    first = next(ahead, None)
    if first is None:  # nothing changes ahead: one object per (levels, month), shared
        key = (id(current), end)
        known = _STILL.get(key)
        if known is None or known[0] is not current:
            if len(_STILL) >= 20_000:
                _STILL.clear()
            known = _STILL[key] = (current, _projection(current, timeline, end))
        return known[1]
    for instant, now in chain((first,), ahead):
        before = last[3]
        moved = {name: _block(name, value, stars) for name, (value, stars) in now[3].items()
                 if before[name][1] != stars}
        if moved or now[0] != last[0] or now[1] != last[1]:
            timeline.append({"at": format_ts(instant), "stars": now[0], "risk": now[1], "indicators": moved})
        last = now
    return _projection(last, timeline, end)


_BLOCKS: dict[tuple[str, type, Any, int], dict[str, Any]] = {}


def _block(name: str, value: Any, stars: int) -> dict[str, Any]:
    """`{value, stars}`, shared between projections (most sellers' indicators repeat a few):
    read it, never change it. The value's type is in the key: 1 and 1.0 serialise apart."""
    key = (name, type(value), value, stars)
    block = _BLOCKS.get(key)
    if block is None:
        if len(_BLOCKS) >= 100_000:
            _BLOCKS.clear()
        block = _BLOCKS[key] = {"value": value, "stars": stars}
    return block


def _projection(last: Levels, timeline: list[dict[str, Any]], end: int) -> dict[str, Any]:
    stars, risk, if_healthy, indicators = last
    return {
        "at": format_ts(end),
        "stars": stars,
        "risk": risk,
        "stars_if_healthy": if_healthy,
        "indicators": {name: _block(name, value, level) for name, (value, level) in indicators.items()},
        "timeline": timeline,
    }


def first_drop(rating: dict[str, Any]) -> dict[str, Any] | None:
    """The first timeline entry at which the stars fall below the rating's, or None."""
    projection = rating.get("projection")
    if not projection:
        return None
    for entry in projection["timeline"]:
        if entry["stars"] < rating["stars"]:
            return entry
    return None
