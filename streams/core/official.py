"""The monthly official record: one seller's rating at its month's last instant, labelled with
the month and the validity its rulebook's publication schedule gives.

The worker's freeze (streams/service/processor.py) and `starcast replay --monthly` both build
records here, so a record replayed from an archive is byte for byte the one the worker sends to
star-ratings-monthly for the same input.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from streams.core.engine import Engine
from streams.core.model import Book
from streams.core.timeutil import format_ts, month_start


def month_label(at: int, rb: Book) -> str:
    """The month (YYYY-MM, in the rulebook's time zone) that contains `at`."""
    local = datetime.fromtimestamp(at / 1000, tz=rb.time_zone)
    return f"{local.year:04d}-{local.month:02d}"


def labels(rb: Book, month_end: int) -> dict[str, str]:
    """What every record of the month ending at `month_end` carries beside the rating: `month`,
    and `valid_from` / `valid_until` per the rulebook's publication schedule (local time)."""
    start = datetime.fromtimestamp(month_end / 1000, tz=rb.time_zone)
    publish = start.replace(day=rb.publish_day) + timedelta(minutes=rb.publish_minute)
    next_month = start.replace(day=28) + timedelta(days=4)
    if rb.valid_through_day:  # valid to the end of that day of the next month (cn-2020: the 4th)
        following = next_month.replace(day=rb.valid_through_day) + timedelta(days=1)
    else:  # valid until the next publication
        following = next_month.replace(day=rb.publish_day) + timedelta(minutes=rb.publish_minute)
    to_ms = lambda d: int(d.timestamp() * 1000)  # noqa: E731
    return {"month": month_label(month_end - 1, rb), "valid_from": format_ts(to_ms(publish)),
            "valid_until": format_ts(to_ms(following) - 1)}


def freezable_month_end(clock: int, rb: Book) -> int:
    """The end instant (= the next month's start) of the latest month whose freeze is due at
    `clock`: the month ended at least the rulebook's grace period before."""
    return month_start(clock - rb.grace_ms, rb.time_zone)


def next_month_end(month_end: int, rb: Book) -> int:
    """The end instant of the month after the one ending at `month_end`."""
    return month_start(month_end + 32 * 86_400_000, rb.time_zone)


def owed(state: Any, month_end: int) -> bool:
    """Whether the seller is owed a record for the month ending at `month_end`: it had an event
    before the month ended."""
    return state.first_seen is not None and state.first_seen < month_end


def official_record(engine: Engine, seller: str, month_end: int, month: dict[str, str]) -> dict[str, Any]:
    """The seller's official record for the month ending at `month_end`: its rating at the
    month's last instant, with the month's `labels`."""
    record = dict(engine.rating(seller, month_end - 1))  # the last instant of the month
    record.update(month)
    return record
