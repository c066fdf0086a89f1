"""A brute-force reference rater: docs/spec.md §1.1 read literally, recomputed from raw events.

Deliberately naive and independent of `streams.core.state`/`measures`/`rating`: it keeps no
state, scans every event for every question, and shares only the rulebook data (thresholds,
windows) with the engine. The property tests hold the engine to it.
"""

from __future__ import annotations

from decimal import Decimal

from streams.core.rulebook import INDICATORS, Rulebook
from streams.core.timeutil import HOUR, parse_ts


def reference_rating(events: list[dict], at: int, rb: Rulebook) -> dict:
    seen: set[str] = set()
    evs = []
    for e in events:  # the same event_id twice is one event
        if e["event_id"] in seen:
            continue
        seen.add(e["event_id"])
        ts = parse_ts(e["ts"])
        if ts <= at:
            evs.append((ts, e))
    start = at - rb.window_ms

    def in_w(ts: int) -> bool:
        return start < ts <= at

    def of(kind: str):
        return [(ts, e) for ts, e in evs if e["type"] == kind]

    def latest(items):
        return max(items, key=lambda item: (item[0], item[1]["event_id"]), default=None)

    # Conversations.
    first: dict[str, int] = {}
    buyer_of: dict[str, str] = {}
    for ts, e in sorted(of("buyer_message"), key=lambda it: (it[0], it[1]["buyer_id"])):
        cid = e["conversation_id"]
        if cid not in first:
            first[cid], buyer_of[cid] = ts, e["buyer_id"]

    def excluded(cid: str) -> bool:
        relevant = [(ts, e) for ts, e in of("spam_action") if e["conversation_id"] == cid and ts >= first[cid]
                    and (e["action"] == "restored" or ts <= first[cid] + rb.spam_exclusion_ms)]
        last = latest(relevant)
        return last is not None and last[1]["action"] == "moved_to_spam"

    delays, rate_total, rate_answered = [], 0, 0
    for cid, f in first.items():
        if not in_w(f) or excluded(cid):
            continue
        replies = [ts for ts, e in of("seller_reply")
                   if e["conversation_id"] == cid and e.get("manual", True) and ts >= f]
        reply = min(replies, default=None)
        if reply is not None:
            delays.append(reply - f)
        if reply is not None or f <= at - rb.answer_within_ms:
            rate_total += 1
            rate_answered += reply is not None and reply - f <= rb.answer_within_ms

    # Orders: placed at their earliest `placed` event; status is the latest event's.
    placed: dict[str, int] = {}
    order_buyer: dict[str, str] = {}
    for ts, e in of("ta_order"):
        oid = e["order_id"]
        order_buyer[oid] = min(order_buyer.get(oid, e["buyer_id"]), e["buyer_id"])
        if e["status"] == "placed":
            placed[oid] = min(placed.get(oid, ts), ts)

    def order_status(oid: str) -> str:
        return latest([(ts, e) for ts, e in of("ta_order") if e["order_id"] == oid])[1]["status"]

    active = set()
    contacts: dict[str, list[int]] = {}
    for ts, e in of("buyer_message"):
        cid = e["conversation_id"]
        if in_w(ts):
            contacts.setdefault(buyer_of[cid], []).append(ts)
            if not excluded(cid):
                active.add(buyer_of[cid])
    for oid, ts in placed.items():
        if in_w(ts):
            contacts.setdefault(order_buyer[oid], []).append(ts)
            if order_status(oid) != "cancelled":
                active.add(order_buyer[oid])

    visits: dict[str, list[int]] = {}
    for ts, e in of("store_visit"):
        if in_w(ts) and not e.get("abnormal", False):
            visits.setdefault(e["visitor_id"], []).append(ts)
    converted = sum(1 for v, times in visits.items() if any(c >= min(times) for c in contacts.get(v, [])))

    # Products, marketing, profile, risk.
    products: dict[str, list] = {}
    for ts, e in of("product_update"):
        products.setdefault(e["product_id"], []).append((ts, e))
    live = [latest(items)[1] for items in products.values()]
    live = [p for p in live if not p.get("removed", False)]
    potential = sum(p["tier"] in ("potential", "top", "super") for p in live)
    top_super = sum(p["tier"] in ("top", "super") for p in live)
    supers = sum(p["tier"] == "super" for p in live)
    videos = sum(bool(p["has_video"]) for p in live)

    marketing = of("marketing")
    spend = sum((Decimal(repr(e["amount"])) * rb.usd_per_unit[e["currency"]] for ts, e in marketing
                 if e["kind"] == "kwa_spend" and in_w(ts)), Decimal(0))
    rfqs = sum(1 for ts, e in marketing if e["kind"] == "rfq_quotation" and in_w(ts))
    ads = latest([(ts, e) for ts, e in marketing if e["kind"] == "premium_ads"])
    shows = latest([(ts, e) for ts, e in marketing if e["kind"] == "showcases"])
    cfg = rb.marketing
    index = 0
    for usd, points in rb.kwa_usd_points:
        if spend >= usd:
            index = points
    response_rate = rate_answered / rate_total if rate_total else None
    if response_rate is not None and response_rate >= cfg["response_rate_min"]:
        index += cfg["response_rate_points"]
    index += cfg["premium_ads_points"] if ads and ads[1]["active"] else 0
    index += min(rfqs // cfg["rfq_per_quotations"] * cfg["rfq_points"], cfg["rfq_max_points"])
    index += cfg["showcases_points"] if shows and shows[1]["all_open"] else 0
    index += cfg["video_points"] if videos >= cfg["video_min_products"] else 0
    index = min(index, cfg["cap"])

    penalties: dict[str, list] = {}
    for ts, e in of("penalty"):
        penalties.setdefault(e["penalty_id"], []).append((ts, e))
    risk = 0
    for items in penalties.values():
        issued = min(ts for ts, _ in items)
        current = latest(items)[1]
        if at - rb.risk_window_ms < issued and current["serious"] and not current.get("revoked", False):
            risk += int(current["points"])

    profile = latest(of("seller_profile"))
    region, category = (profile[1]["region"], profile[1]["category"]) if profile else (None, None)

    # Stars.
    values = {
        "potential_products": potential,
        "top_super_products": top_super,
        "response_time": sum(delays) / len(delays) / HOUR if delays else None,
        "active_buyers": len(active),
        "conversion_rate": converted / len(visits) if visits else 0.0,
        "marketing_index": index,
    }
    thresholds = {name: list(t.thresholds) for name, t in rb.indicators.items()}
    best = {}
    for o in rb.overrides:  # most specific wins: region+category > category > region
        if (o.region in (None, region)) and (o.category in (None, category)):
            rank = (2 if o.category else 0) + (1 if o.region else 0)
            for name, vals in o.thresholds.items():
                if rank >= best.get(name, -1):
                    best[name], thresholds[name] = rank, list(vals)
    stars = {}
    for name in INDICATORS:
        value, spec = values[name], rb.indicators[name]
        earned = 0
        for level in range(1, rb.max_stars + 1):
            t = thresholds[name][level - 1]
            if value is None:
                ok = False
            elif spec.direction == "at_least":
                ok = value >= t
            else:
                ok = sum(delays) <= t * HOUR * len(delays)  # mean <= t, exactly
            if ok and spec.min_super and supers < spec.min_super[level - 1]:
                ok = False
            if not ok:
                break
            earned = level
        stars[name] = max(earned, spec.floor_stars)
    bonus = None
    if index >= rb.bonus_min_index:
        eligible = [n for n in rb.bonus_indicators if stars[n] <= rb.bonus_max_stars_before]
        if eligible:
            lowest = min(stars[n] for n in eligible)
            chosen = eligible if rb.bonus_mode == "each" else [next(n for n in eligible if stars[n] == lowest)]
            for n in chosen:
                stars[n] += 1
            bonus = chosen[0]
    low = min(stars.values())
    healthy = risk < rb.unhealthy_points
    return {
        "stars": low if healthy else 0,
        "risk": "healthy" if healthy else "unhealthy",
        "stars_if_healthy": low,
        "limiting": [n for n in INDICATORS if stars[n] == low],
        "bonus_applied_to": bonus,
        "values": values,
        "indicator_stars": stars,
    }


def comparable(rating: dict) -> dict:
    """The engine's rating in the reference's shape."""
    return {
        "stars": rating["stars"],
        "risk": rating["risk"],
        "stars_if_healthy": rating["stars_if_healthy"],
        "limiting": rating["limiting"],
        "bonus_applied_to": rating["bonus_applied_to"],
        "values": {n: i["value"] for n, i in rating["indicators"].items()},
        "indicator_stars": {n: i["stars"] for n, i in rating["indicators"].items()},
    }
