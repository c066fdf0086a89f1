"""A deterministic marketplace: synthetic events for N sellers over some days.

Zipf-skewed seller activity, store visits the most frequent event, conversations with manual
and automatic replies, spam, Trade Assurance orders, product tiers, marketing and the odd
penalty; some sellers improve over the period, some decay, some spam, a few are penalised.
Used by the sample file, `starcast bench`, and (later) `starcast run --simulate`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator

from streams.core.timeutil import DAY, HOUR, format_ts, parse_ts

TRAJECTORIES = ("steady", "improving", "decaying", "spammer", "penalised")


@dataclass
class SellerProfile:
    seller_id: str
    weight: float  # share of marketplace traffic
    trajectory: str
    products: int
    reply_hours: float  # typical manual reply delay


def sellers(count: int, rng: random.Random, skew: float = 1.1) -> list[SellerProfile]:
    weights = [1.0 / (rank ** skew) for rank in range(1, count + 1)]
    total = sum(weights)
    result = []
    for i, w in enumerate(weights):
        roll = rng.random()
        trajectory = ("penalised" if roll < 0.02 else "spammer" if roll < 0.07 else
                      "decaying" if roll < 0.25 else "improving" if roll < 0.45 else "steady")
        result.append(SellerProfile(f"seller-{i:05d}", w / total, trajectory,
                                    products=rng.choice((5, 15, 40, 60, 250)),
                                    reply_hours=rng.choice((2.0, 8.0, 14.0, 19.0, 23.0, 30.0))))
    return result


def events(count: int, n_sellers: int, seed: int = 7, start: str = "2026-03-01T00:00:00Z",
           days: int = 30) -> Iterator[dict]:
    """About `count` events, in event-time order per day, deterministic for a seed."""
    rng = random.Random(seed)
    profiles = sellers(n_sellers, rng)
    t0 = parse_ts(start)
    eid = 0

    def ev(event_type: str, seller: SellerProfile, ts: int, **fields) -> dict:
        nonlocal eid
        eid += 1
        return {"event_id": f"ev-{seed}-{eid}", "type": event_type, "seller_id": seller.seller_id,
                "ts": format_ts(ts), **fields}

    # Catalogue and profile first, then daily traffic; ~20% of events are catalogue/marketing.
    setup: list[dict] = []
    for s in profiles:
        if rng.random() < 0.05 * max(1.0, s.weight * n_sellers):
            setup.append(ev("seller_profile", s, t0, region=rng.choice(("US", "MY", "VN", "DE")),
                            category=rng.choice(("apparel", "machinery", "home"))))
        n_products = min(s.products, max(1, int(count * 0.05 * s.weight)))
        for p in range(n_products):
            setup.append(ev("product_update", s, t0 + rng.randrange(DAY), product_id=f"{s.seller_id}-p{p}",
                            tier=rng.choice(("none", "potential", "potential", "top", "super")),
                            has_video=rng.random() < 0.3))
    rng.shuffle(setup)
    yield from setup[: count // 5]
    remaining = count - min(len(setup), count // 5)
    per_day = remaining / days
    cumulative = []
    acc = 0.0
    for s in profiles:
        acc += s.weight
        cumulative.append(acc)
    produced = 0
    for day in range(days):
        todays: list[dict] = []
        day_start = t0 + day * DAY
        budget = int(per_day * (day + 1)) - produced
        while len(todays) < budget:
            s = profiles[_pick(cumulative, rng.random())]
            progress = day / max(days - 1, 1)
            ts = day_start + rng.randrange(DAY)
            visitor = f"v{rng.randrange(max(50, int(s.weight * 200_000)))}"
            roll = rng.random()
            if roll < 0.55:
                todays.append(ev("store_visit", s, ts, visitor_id=visitor, abnormal=rng.random() < 0.05))
                continue
            if roll < 0.75:
                conv = f"{s.seller_id}-c{rng.randrange(10**9)}"
                todays.append(ev("buyer_message", s, ts, buyer_id=visitor, conversation_id=conv,
                                 channel=rng.choice(("inquiry", "im", "rfq_reply"))))
                speed = {"improving": 1.5 - progress, "decaying": 0.5 + progress}.get(s.trajectory, 1.0)
                delay = int(rng.expovariate(1.0 / max(s.reply_hours * speed, 0.5)) * HOUR)
                if rng.random() < 0.1:
                    todays.append(ev("seller_reply", s, ts + 60_000, conversation_id=conv, manual=False))
                if rng.random() < 0.85:
                    todays.append(ev("seller_reply", s, ts + delay, conversation_id=conv, manual=True))
                if s.trajectory == "spammer" and rng.random() < 0.4:
                    todays.append(ev("spam_action", s, ts + rng.randrange(48 * HOUR), conversation_id=conv,
                                     action="moved_to_spam"))
                continue
            if roll < 0.83:
                order = f"{s.seller_id}-o{rng.randrange(10**9)}"
                todays.append(ev("ta_order", s, ts, buyer_id=visitor, order_id=order, status="placed",
                                 amount=round(rng.uniform(50, 5000), 2), currency="USD"))
                if rng.random() < 0.1:
                    todays.append(ev("ta_order", s, ts + 2 * HOUR, buyer_id=visitor, order_id=order,
                                     status="cancelled", amount=0, currency="USD"))
                continue
            if roll < 0.92:
                kind = rng.choice(("kwa_spend", "kwa_spend", "rfq_quotation", "premium_ads", "showcases"))
                extra = {"kwa_spend": {"amount": round(rng.uniform(5, 80), 2), "currency": rng.choice(("USD", "MYR"))},
                         "premium_ads": {"active": rng.random() < 0.6},
                         "showcases": {"all_open": rng.random() < 0.5}}.get(kind, {})
                todays.append(ev("marketing", s, ts, kind=kind, **extra))
                continue
            if roll < 0.995 or s.trajectory != "penalised":
                tier = rng.choice(("potential", "top", "super") if s.trajectory == "improving" else
                                  ("none", "potential") if s.trajectory == "decaying" else
                                  ("none", "potential", "top"))
                todays.append(ev("product_update", s, ts, product_id=f"{s.seller_id}-p{rng.randrange(s.products)}",
                                 tier=tier, has_video=rng.random() < 0.4, removed=rng.random() < 0.02))
                continue
            todays.append(ev("penalty", s, ts, penalty_id=f"{s.seller_id}-x{rng.randrange(10**6)}",
                             points=rng.choice((6, 12, 24)), serious=True))
        todays.sort(key=lambda e: e["ts"])
        produced += len(todays)
        yield from todays


def _pick(cumulative: list[float], x: float) -> int:
    from bisect import bisect_left

    return min(bisect_left(cumulative, x * cumulative[-1]), len(cumulative) - 1)
