"""A seller's official monthly records, kept for the history endpoint.

The `history` table holds one compact record per seller and month under `<seller>\\0<YYYY-MM>`
in the seller's partition (its changelog restores it after a restart or on another worker).
When a month is frozen its record is written and the month `KEPT` months earlier deleted, so a
seller holds at most `KEPT` months; the endpoint reads the months back from the latest one, a
get each, with no read-modify-write.
"""

from __future__ import annotations

from typing import Any

KEPT = 24
"""Months kept per seller, and the most a request may ask for."""


def key(seller_id: str, month: str) -> bytes:
    return f"{seller_id}\x00{month}".encode()


def record(official: dict[str, Any]) -> dict[str, Any]:
    """What the history keeps of an official monthly record."""
    return {"month": official["month"], "stars": official["stars"], "risk": official["risk"],
            "indicators": {name: {"value": block["value"], "stars": block["stars"]}
                           for name, block in official["indicators"].items()},
            "valid_from": official["valid_from"], "valid_until": official["valid_until"]}


def months_before(month: str, n: int) -> str:
    """The label of the month `n` months before `month` (YYYY-MM)."""
    year, number = int(month[:4]), int(month[5:7])
    index = year * 12 + number - 1 - n
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def recent_months(month: str, n: int) -> list[str]:
    """`month` and the `n - 1` months before it, newest first."""
    return [months_before(month, k) for k in range(n)]
