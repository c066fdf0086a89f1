"""What a seller can do now to keep a star: read from the six-indicator model's state.

- the conversations in the window not answered yet whose 24-hour mark is still ahead, each
  with the instant by which a manual reply keeps it within 24 h (the response rate);
- for each indicator that drops at the projection's first drop, the value it needs then to
  keep its stars (active buyers: how many more; conversion rate: the rate);
- the keyword-advertising spend that leaves the window before the month ends, and when.

Conversation ids are the seller's own data; buyer and visitor ids are never listed here.
"""

from __future__ import annotations

import math
from typing import Any

from streams.core.lww import lww_at
from streams.core.projection import first_drop, month_end
from streams.core.state import SellerState
from streams.core.timeutil import format_ts


def unanswered(state: SellerState, as_of: int) -> list[dict[str, Any]]:
    """Conversations in W with no manual reply yet and their 24 h mark still ahead, soonest
    reply-by first."""
    rb = state.rulebook
    start = as_of - rb.window_ms
    out = []
    for cid, conv in state.conversations.items():
        first = conv.first
        if first is None or first <= start or first > as_of:
            continue
        reply = conv.first_reply()
        if reply is not None and reply <= as_of:
            continue
        reply_by = first + rb.answer_within_ms
        if reply_by <= as_of or conv.excluded(as_of, rb.spam_exclusion_ms):
            continue
        out.append((reply_by, cid, first))
    out.sort()
    return [{"conversation_id": cid, "first_message_at": format_ts(first), "reply_by": format_ts(reply_by)}
            for reply_by, cid, first in out]


def to_keep(state: SellerState, rating: dict[str, Any], as_of: int) -> list[dict[str, Any]]:
    """Per indicator that falls at the first drop: what it needs then to keep today's stars."""
    drop = first_drop(rating)
    if drop is None:
        return []
    rb = state.rulebook
    profile = lww_at(state.profile, as_of)
    tables = rb.thresholds_for(profile[2] if profile else None, profile[3] if profile else None)
    out = []
    for name, block in drop["indicators"].items():
        keep = rating["indicators"][name]["stars"]
        if block["stars"] >= keep or name not in tables or keep < 1 or keep > len(tables[name].thresholds):
            continue
        bound = tables[name].thresholds[keep - 1]
        need: dict[str, Any] = {"indicator": name, "stars": keep, "at": drop["at"], "value_then": block["value"],
                                "threshold": bound}
        if name in ("active_buyers", "potential_products", "top_super_products") and block["value"] is not None:
            need["more"] = max(math.ceil(bound - block["value"]), 1)
        out.append(need)
    return out


def spend_leaving(state: SellerState, as_of: int) -> list[dict[str, Any]]:
    """KWA spend in the window that leaves it before the month ends, in the order it leaves."""
    rb = state.rulebook
    start, end = as_of - rb.window_ms, month_end(as_of, rb.time_zone)
    leaving = sorted((ts + rb.window_ms, micro) for ts, micro in state.kwa.values()
                     if start < ts <= as_of and ts + rb.window_ms <= end)
    return [{"usd": micro / 1_000_000, "leaves_at": format_ts(when)} for when, micro in leaving]


def actions(state: SellerState, rating: dict[str, Any], as_of: int) -> dict[str, Any]:
    """Everything above, for a warning or the API."""
    return {"unanswered_conversations": unanswered(state, as_of), "to_keep": to_keep(state, rating, as_of),
            "spend_leaving": spend_leaving(state, as_of)}
