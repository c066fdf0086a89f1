"""Last-writer-wins registers: histories of `[ts, event_id, ...]` versions kept sorted by
(ts, event_id), deduplicated by that pair, so any delivery order gives the same history."""

from __future__ import annotations

from bisect import insort
from typing import Any


def lww_add(versions: list[list[Any]], version: list[Any]) -> bool:
    """Add `[ts, event_id, ...]` to a history kept sorted by (ts, event_id); dedupe by id."""
    key = (version[0], version[1])
    for v in versions:
        if (v[0], v[1]) == key:
            return False
    insort(versions, version, key=lambda v: (v[0], v[1]))
    return True


def lww_at(versions: list[list[Any]], at: int) -> list[Any] | None:
    """The current version at instant `at`: the last by (ts, event_id) with ts <= at."""
    for v in reversed(versions):
        if v[0] <= at:
            return v
    return None


def lww_prune(versions: list[list[Any]], low: int) -> None:
    """Keep versions after `low` plus the newest at or before it (the current one at `low`)."""
    older = [i for i, v in enumerate(versions) if v[0] <= low]
    if len(older) > 1:
        del versions[: older[-1]]
