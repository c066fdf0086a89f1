"""Event-time helpers: every instant inside starcast is an int of epoch milliseconds.

Integers make window arithmetic exact (no float drift at a 30-day boundary) and compact in
serialised state.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

SECOND = 1000
HOUR = 3600 * SECOND
DAY = 24 * HOUR
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MILLISECOND = timedelta(milliseconds=1)


_last_parsed: tuple[str | None, int] = (None, 0)


def parse_ts(text: str) -> int:
    """RFC 3339 (already shape-checked by the contract) to epoch ms; raises ValueError."""
    global _last_parsed
    if text is _last_parsed[0]:  # validation checks the format, then reads the value
        return _last_parsed[1]
    try:  # the common shapes parse directly
        value = (datetime.fromisoformat(text) - EPOCH) // MILLISECOND
    except ValueError:
        value = _parse_unusual(text)
    _last_parsed = (text, value)
    return value


def _parse_unusual(text: str) -> int:
    if text[-1] in "zZ":
        text = text[:-1] + "+00:00"
    if text[10] in "tT ":
        text = text[:10] + "T" + text[11:]
    dot = text.find(".", 19)
    if dot != -1:  # datetime keeps microseconds; finer digits are dropped, not rounded
        end = dot + 1
        while end < len(text) and text[end].isdigit():
            end += 1
        text = text[: dot + 1] + text[dot + 1 : end][:6].ljust(6, "0") + text[end:]
    return (datetime.fromisoformat(text) - EPOCH) // MILLISECOND


_DATES: dict[int, str] = {}
_last_formatted: tuple[int | None, str] = (None, "")


def format_ts(ms: int) -> str:
    """Epoch ms to RFC 3339 in UTC, with milliseconds only when there are any."""
    global _last_formatted
    if ms == _last_formatted[0]:  # a batch re-rates its sellers at one partition clock
        return _last_formatted[1]
    text = _format_ts(ms)
    _last_formatted = (ms, text)
    return text


def _format_ts(ms: int) -> str:
    day, rest = divmod(ms, DAY)
    date = _DATES.get(day)
    if date is None:  # one strftime per day seen; ratings format a timestamp per publication
        date = _DATES[day] = (EPOCH + timedelta(days=day)).strftime("%Y-%m-%d")
    seconds, millis = divmod(rest, 1000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    if millis:
        return f"{date}T{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}Z"
    return f"{date}T{hours:02d}:{minutes:02d}:{seconds:02d}Z"


def local_midnight_before(ms: int, tz: ZoneInfo) -> int:
    """Start of the local day (in `tz`) containing instant `ms`."""
    local = datetime.fromtimestamp(ms / 1000, tz=tz)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return int(start.timestamp() * 1000)


def next_local_midnight(ms: int, tz: ZoneInfo) -> int:
    """Start of the local day (in `tz`) after the one containing instant `ms`."""
    local = datetime.fromtimestamp(ms / 1000, tz=tz)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    return int(start.timestamp() * 1000)


_MONTHS: dict[ZoneInfo, tuple[int, int]] = {}  # tz -> [start, end) of the month last asked for


def month_start(ms: int, tz: ZoneInfo) -> int:
    """Start of the local calendar month (in `tz`) containing instant `ms`."""
    known = _MONTHS.get(tz)
    if known is not None and known[0] <= ms < known[1]:  # asked per seller touched: one month at a time
        return known[0]
    start = _month_start(ms, tz)
    _MONTHS[tz] = (start, _month_start(start + 32 * DAY, tz))
    return start


def _month_start(ms: int, tz: ZoneInfo) -> int:
    local = datetime.fromtimestamp(ms / 1000, tz=tz)
    start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return int(start.timestamp() * 1000)
