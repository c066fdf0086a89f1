"""The benchmarks' fixed workload: synthetic events for N sellers over some days, with
Zipf-skewed traffic (a few sellers take most events).

`starcast bench`, the soak and the streaming tests keep this input so that their figures stay
comparable from one release to the next; `starcast simulate` and `make run` use the believable
marketplace of streams/local/simulate.py instead (flatter traffic, a spread of stars).

Each seller has a Zipf-skewed share of traffic and a *quality* that drives everything a rating
looks at: catalogue size and tiers, how many visitors write or order, how fast the seller
answers by hand, marketing spend. Some sellers improve over the period, some decay, some push
buyers to spam, a few collect serious penalties. Store visits are the most frequent event.
"""

from __future__ import annotations

import heapq
import random
from bisect import bisect_left
from dataclasses import dataclass
from typing import Iterator

from streams.core.timeutil import DAY, HOUR, format_ts, parse_ts

@dataclass
class SellerProfile:
    seller_id: str
    weight: float  # share of marketplace traffic
    quality: float  # 0..1 at the start of the period
    trajectory: str

    def quality_on(self, progress: float) -> float:
        drift = {"improving": 0.5, "decaying": -0.5}.get(self.trajectory, 0.0)
        return min(1.0, max(0.0, self.quality + drift * progress))


def sellers(count: int, rng: random.Random, skew: float = 1.1) -> list[SellerProfile]:
    weights = [1.0 / (rank**skew) for rank in range(1, count + 1)]
    total = sum(weights)
    result = []
    for i, w in enumerate(weights):
        roll = rng.random()
        trajectory = ("penalised" if roll < 0.03 else "spammer" if roll < 0.08 else
                      "decaying" if roll < 0.25 else "improving" if roll < 0.45 else "steady")
        result.append(SellerProfile(f"seller-{i:05d}", w / total, rng.random(), trajectory))
    return result


def events(count: int, n_sellers: int, seed: int = 7, start: str = "2026-03-01T00:00:00Z",
           days: int = 30) -> Iterator[dict]:
    """About `count` events in event-time order (as sources would publish them), deterministic
    for a seed; follow-ups such as replies come out when they happen, possibly after the last day."""
    rng = random.Random(seed)
    profiles = sellers(n_sellers, rng)
    t0 = parse_ts(start)
    serial = 0

    def ev(event_type: str, seller: SellerProfile, ts: int, **fields) -> dict:
        nonlocal serial
        serial += 1
        return {"event_id": f"ev-{seed}-{serial}", "type": event_type, "seller_id": seller.seller_id,
                "ts": format_ts(ts), **fields}

    # Catalogues first (about a fifth of the events): bigger and better for better sellers.
    catalogue_budget = count // 5
    setup: list[dict] = []
    for s in profiles:
        size = min(int(20 + 300 * s.quality), max(3, int(catalogue_budget * s.weight * 3)))
        tiers = _tier_weights(s.quality)
        for p in range(size):
            setup.append(ev("product_update", s, t0 + rng.randrange(DAY), product_id=f"{s.seller_id}-p{p}",
                            tier=rng.choices(("none", "potential", "top", "super"), tiers)[0],
                            has_video=rng.random() < 0.1 + 0.3 * s.quality))
        if rng.random() < 0.5:
            setup.append(ev("seller_profile", s, t0, region=rng.choice(("US", "MY", "VN", "DE", "CN")),
                            category=rng.choice(("apparel", "machinery", "home", "electronics"))))
    setup.sort(key=lambda e: e["ts"])
    setup = setup[:catalogue_budget]
    yield from setup

    cumulative, acc = [], 0.0
    for s in profiles:
        acc += s.weight
        cumulative.append(acc)
    per_day = (count - len(setup)) / days
    produced = 0
    later: list[tuple[str, int, dict]] = []  # replies and follow-ups published when they happen
    for day in range(days):
        todays: list[dict] = []
        budget = int(per_day * (day + 1)) - produced
        progress = day / max(days - 1, 1)
        while len(todays) < budget:
            s = profiles[min(bisect_left(cumulative, rng.random() * cumulative[-1]), len(profiles) - 1)]
            q = s.quality_on(progress)
            ts = t0 + day * DAY + rng.randrange(DAY)
            visitor = f"{s.seller_id}-v{rng.randrange(max(20, int(s.weight * 400_000)))}"
            roll = rng.random()
            if roll < 0.80:  # a store visit, sometimes followed by a message or an order
                todays.append(ev("store_visit", s, ts, visitor_id=visitor, abnormal=rng.random() < 0.04))
                if rng.random() < 0.02 + 0.14 * q:
                    todays.extend(_conversation(ev, s, q, visitor, ts + rng.randrange(HOUR), rng))
                if rng.random() < 0.01 + 0.04 * q:
                    todays.extend(_order(ev, s, visitor, ts + rng.randrange(2 * HOUR), rng))
            elif roll < 0.88:  # a buyer who writes without visiting first (RFQ replies, IM)
                todays.extend(_conversation(ev, s, q, visitor, ts, rng))
            elif roll < 0.96:
                todays.append(_marketing(ev, s, q, ts, rng))
            elif s.trajectory == "penalised" and rng.random() < 0.2:
                todays.append(ev("penalty", s, ts, penalty_id=f"{s.seller_id}-x{rng.randrange(10**6)}",
                                 points=rng.choice((6, 12, 24)), serious=True))
            else:  # a catalogue change, better or worse with the seller's trajectory
                product = f"{s.seller_id}-p{rng.randrange(int(20 + 300 * q))}"
                todays.append(ev("product_update", s, ts, product_id=product,
                                 tier=rng.choices(("none", "potential", "top", "super"), _tier_weights(q))[0],
                                 has_video=rng.random() < 0.1 + 0.3 * q, removed=rng.random() < 0.02))
        produced += len(todays)
        for e in todays:
            heapq.heappush(later, (e["ts"], id(e), e))
        day_end = format_ts(t0 + (day + 1) * DAY)
        while later and later[0][0] < day_end:
            yield heapq.heappop(later)[2]
    while later:
        yield heapq.heappop(later)[2]


def _tier_weights(q: float) -> tuple[float, ...]:
    return (1.5 - q, 1.0 + q, 0.1 + 0.3 * q, 0.01 + 0.05 * q)


def _conversation(ev, s: SellerProfile, q: float, buyer: str, ts: int, rng: random.Random) -> list[dict]:
    conv = f"{buyer}-c{rng.randrange(10**9)}"
    out = [ev("buyer_message", s, ts, buyer_id=buyer, conversation_id=conv,
              channel=rng.choice(("inquiry", "im", "rfq_reply")))]
    if rng.random() < 0.3:
        out.append(ev("seller_reply", s, ts + 30_000, conversation_id=conv, manual=False))
    if rng.random() < 0.6 + 0.38 * q:
        mean_hours = 30 - 26 * q
        out.append(ev("seller_reply", s, ts + int(rng.expovariate(1 / mean_hours) * HOUR), conversation_id=conv))
    if s.trajectory == "spammer" and rng.random() < 0.5:
        out.append(ev("spam_action", s, ts + rng.randrange(36 * HOUR), conversation_id=conv, action="moved_to_spam"))
    return out


def _order(ev, s: SellerProfile, buyer: str, ts: int, rng: random.Random) -> list[dict]:
    order = f"{buyer}-o{rng.randrange(10**9)}"
    amount = round(rng.uniform(50, 5000), 2)
    fields = dict(buyer_id=buyer, order_id=order, amount=amount, currency="USD")
    out = [ev("ta_order", s, ts, status="placed", **fields)]
    follow = "cancelled" if rng.random() < 0.1 else "paid"
    out.append(ev("ta_order", s, ts + rng.randrange(1, 48) * HOUR, status=follow, **fields))
    return out


def _marketing(ev, s: SellerProfile, q: float, ts: int, rng: random.Random) -> dict:
    kind = rng.choices(("kwa_spend", "rfq_quotation", "premium_ads", "showcases"), (4, 3, 1, 1))[0]
    if kind == "kwa_spend":
        currency = rng.choice(("USD", "USD", "MYR", "EUR"))
        usd = rng.uniform(5, 10 + 120 * q)
        return ev("marketing", s, ts, kind=kind, currency=currency,
                  amount=round(usd / {"USD": 1, "MYR": 0.25, "EUR": 1.08}[currency], 2))
    if kind == "premium_ads":
        return ev("marketing", s, ts, kind=kind, active=rng.random() < q)
    if kind == "showcases":
        return ev("marketing", s, ts, kind=kind, all_open=rng.random() < q)
    return ev("marketing", s, ts, kind=kind)
