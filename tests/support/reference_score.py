"""A brute-force reference for the score models' sub-item values (docs/spec.md §1.2, the Merchant Star Rating guide read
literally), recomputed from the raw events for every question.

Independent of `streams.core.scoring`'s fact store: no entities, no versions kept, no pruning;
it shares only the rulebook (windows, export weights, currency rates) with the engine.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from streams.core.timeutil import HOUR, parse_ts

PAID = ("paid", "shipped", "delivered", "completed")


def reference_values(events: list[dict], at: int, book, track: str | None) -> dict[str, float | None]:
    seen, evs = set(), []
    for e in events:
        if e["event_id"] not in seen:
            seen.add(e["event_id"])
            ts = parse_ts(e["ts"])
            if ts <= at:
                evs.append((ts, e))
    win = {name: sub.window_ms for name, sub in book.sub_items.items()}

    def inside(ts, name):
        return ts <= at and (win[name] is None or ts > at - win[name])

    def of(kind):
        return [(ts, e) for ts, e in evs if e["type"] == kind]

    def latest_by(kind, field):
        out = {}
        for ts, e in of(kind):
            key = e[field]
            if key not in out or (ts, e["event_id"]) > (out[key][0], out[key][1]["event_id"]):
                out[key] = (ts, e)
        return out

    def tracked(e):
        return track is None or e.get("track", "customized") == track

    values: dict[str, float | None] = {}
    scores = [e["score"] for _, e in latest_by("product_quality", "product_id").values() if not e.get("removed")]
    values["product_info_quality"] = sum(scores) / len(scores) if scores else None
    values["certificates"] = sum(1 for _, e in latest_by("certificate", "certificate_id").values() if e["valid"])
    points = 0
    for pid, (_, e) in latest_by("penalty", "penalty_id").items():
        first = min(ts for ts, x in of("penalty") if x["penalty_id"] == pid)
        if not e.get("revoked") and inside(first, "risk_points"):
            points += e["points"]
    values["risk_points"] = points

    convs = {}  # conversation -> (first ts, buyer, channel)
    for ts, e in of("buyer_message"):
        cid = e["conversation_id"]
        if cid not in convs or (ts, e["buyer_id"]) < convs[cid][:2]:
            convs[cid] = (ts, e["buyer_id"], e["channel"])
    replies = [(ts, e["conversation_id"]) for ts, e in of("seller_reply") if e.get("manual", True)]
    visitors = {e["visitor_id"] for ts, e in of("store_visit")
                if not e.get("abnormal") and inside(ts, "store_conversion_rate")}
    writers = {b for ts, b, ch in convs.values() if inside(ts, "store_conversion_rate") and ch in ("inquiry", "im")}
    values["store_conversion_rate"] = len(visitors & writers) / len(visitors) if visitors else None
    values["business_opportunities"] = sum(1 for ts, _, ch in convs.values()
                                           if inside(ts, "business_opportunities") and ch in ("inquiry", "rfq_reply"))
    hours = []
    for cid, (ts, _, _) in convs.items():
        if inside(ts, "response_time"):
            answers = sorted(r for r, c in replies if c == cid and r >= ts)
            if answers:
                hours.append(-(-(answers[0] - ts) // HOUR))
    values["response_time"] = sum(hours) / len(hours) if hours else None

    shown = clicked = 0
    for date, (_, e) in latest_by("search_stats", "date").items():
        day = int(datetime.fromisoformat(date).replace(tzinfo=book.time_zone).timestamp() * 1000)
        if inside(day, "click_through_rate"):
            shown, clicked = shown + e["exposures"], clicked + e["clicks"]
    values["click_through_rate"] = clicked / shown if shown else None

    paid = {}
    for oid, (_, e) in latest_by("ta_order", "order_id").items():
        mine = [(ts, x) for ts, x in of("ta_order") if x["order_id"] == oid]
        paid_at = min((ts for ts, x in mine if x["status"] in PAID), default=None)
        if paid_at is not None and e["status"] != "cancelled" and tracked(e) and inside(paid_at, "ta_amount"):
            usd = Decimal(str(e["amount"])) * book.usd_per_unit[e["currency"]]
            paid[oid] = (min(x["buyer_id"] for _, x in mine), int(usd * 1_000_000))
    values["ta_amount"] = sum(u for _, u in paid.values()) / 1_000_000
    values["ta_buyers"] = len({b for b, _ in paid.values()})
    disputes = latest_by("dispute", "order_id")
    escalated = sum(1 for oid in paid if oid in disputes and disputes[oid][1]["arbitration"])
    values["satisfied_order_rate"] = (len(paid) - escalated) / len(paid) if paid else None

    fulfilled = {oid: (ts, e) for oid, (ts, e) in latest_by("order_fulfilment", "order_id").items() if tracked(e)}
    due = on_time = 0
    for ts, e in fulfilled.values():
        agreed = parse_ts(e["agreed_date"])
        if e["status"] == "shipped" and (inside(agreed, "on_time_delivery_rate")
                                         or inside(ts, "on_time_delivery_rate") and ts <= agreed):
            due += 1
            on_time += ts <= agreed
    values["on_time_delivery_rate"] = on_time / due if due else None
    if "export_visualization" in win:
        shipped = {oid for oid, (ts, e) in fulfilled.items()
                   if e["status"] == "shipped" and inside(ts, "export_visualization")}
        best = {}
        for _, e in of("export_signal"):
            if e["order_id"] in shipped:
                best[e["order_id"]] = max(best.get(e["order_id"], 0.0), book.export_weights.get(e["kind"], 0.0))
        values["export_visualization"] = min(sum(best.values()) / len(shipped), 1.0) if shipped else None
    means = [(e["product_quality"] + e["seller_service"] + e["delivery"]) / 3
             for _, e in latest_by("buyer_evaluation", "order_id").values() if tracked(e)]
    values["buyer_evaluation"] = sum(means) / len(means) if means else None
    return {name: value for name, value in values.items() if name in win}
