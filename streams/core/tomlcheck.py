"""Checks of rulebook files: a missing or mistyped key is an error that names it."""

from __future__ import annotations

from typing import Any

class RulebookError(ValueError):
    """A rulebook file that cannot be used; the message names the key."""


def require(table: dict, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """`table[key]`, which must be present and of `kind` (a bool is not an int here)."""
    if key not in table:
        raise RulebookError(f"{where}{key}: missing")
    value = table[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise RulebookError(f"{where}{key}: expected {getattr(kind, '__name__', kind)}, got {value!r}")
    return value
