"""The state table's key layout: one key per seller entity, `seller␟kind␟key`.

Both rating models write their entities under this layout; the worker, the soak and the bench
read it back through these functions only.
"""

from __future__ import annotations

KEY_SEPARATOR = "\x1f"
SEP = KEY_SEPARATOR.encode()
SUMMARY = "s"
"""The kind of a seller's one summary entity (watermarks, freeze mark and record), key ""."""


def state_key(seller_id: str, kind: str, key: str) -> bytes:
    return f"{seller_id}{KEY_SEPARATOR}{kind}{KEY_SEPARATOR}{key}".encode()


def split_state_key(raw: bytes) -> tuple[str, str, str]:
    """(seller, kind, key) of a state-table key."""
    seller, kind, key = raw.decode().split(KEY_SEPARATOR, 2)
    return seller, kind, key


def seller_of_key(raw: bytes) -> bytes:
    """The seller id part of a state-table key, still encoded."""
    return bytes(raw).split(SEP, 1)[0]
