"""A deterministic marketplace: synthetic events for N sellers over some days.

Each seller is drawn with a *target* star level from a marketplace-like spread (most sellers in
the middle, a few at 5★, few at 0★) and one or two indicators that hold it there; each other
indicator sits at or above it. The seller's plan (catalogue and tiers, visitors and how many of
them write or order, buyers who write directly, reply speed, marketing points) is drawn inside
global-2023's band for its level, with a margin, so that the rating at the period's end is the
target for most sellers. The rest of the spread comes from what a month does to a seller:

- *slipping* sellers had a share of their buyers and spend on the first day. Those leave the
  30-day window before the month ends, so the projection loses a star and a warning is sent;
- follow-ups that would come after the period (replies, order outcomes) are not sent: those
  conversations are open at the end, with a reply-by instant ahead, and some of them cost a
  star at the month's end if nobody answers;
- a few sellers collect serious penalties and turn unhealthy (0★); a few move buyers to spam.

`count` scales every seller's plan by one factor; None keeps the plan's own size, where the
spread above holds (`starcast simulate` and `make run`). A much smaller count per seller shifts
everyone down, as a quieter marketplace would. Store visits are the most frequent event.
Used by `starcast simulate`, `make run`, the benchmarks and the soak.
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass
from typing import Callable, Iterator

from streams.core.timeutil import DAY, HOUR, format_ts, parse_ts

MINUTE = 60_000

# The spread of target stars 0..5 (most in the middle, few at either end).
TARGET_SHARE = (0.05, 0.13, 0.27, 0.30, 0.19, 0.06)
INDICATORS = ("potential_products", "top_super_products", "response_time", "active_buyers",
              "conversion_rate", "marketing_index")

# Per indicator level 0..5, the range a plan is drawn from: inside global-2023's band for that
# level, with a margin for the day that leaves the window before the month ends.
POTENTIAL = ((3, 10), (13, 28), (32, 45), (52, 180), (222, 260), (222, 260))
TOP_SUPER = ((0, 0), (1, 3), (4, 5), (6, 18), (21, 28), (22, 30))
REPLY_HOURS = ((27.0, 34.0), (22.7, 23.3), (20.7, 21.3), (16.8, 19.0), (12.8, 15.2), (4.0, 10.5))
BUYERS = ((1, 3), (5, 8), (12, 17), (23, 31), (39, 52), (66, 85))
CONVERSION = ((0.012, 0.028), (0.039, 0.046), (0.052, 0.057), (0.064, 0.076), (0.084, 0.096),
              (0.108, 0.14))
KWA_USD = {0: (5.0, 80.0), 30: (110.0, 190.0), 50: (215.0, 290.0), 70: (320.0, 480.0), 90: (530.0, 700.0)}
RATES = {"USD": 1.0, "MYR": 0.25, "EUR": 1.08}


@dataclass
class SellerPlan:
    """What one seller does over the period (before scaling)."""

    seller_id: str
    target: int
    slipping: bool = False
    penalised: bool = False
    spammer: bool = False
    region: str | None = None
    category: str | None = None
    potential: int = 0  # live products of tier potential, top or super
    top_super: int = 0
    supers: int = 0
    plain: int = 0  # live products of tier none
    videos: int = 0
    reply_hours: float = 24.0
    manual_share: float = 1.0
    converted: int = 0  # visitors who write or order after a visit
    visitors: int = 0  # distinct normal visitors, converted ones included
    direct: int = 0  # buyers who write without a visit
    kwa_usd: float = 0.0
    premium: bool = False
    showcases: bool = False
    rfq: int = 0

    def size(self) -> float:
        """About how many events the plan makes."""
        writers = self.converted * 0.75 + self.direct
        conversations = writers * 1.15
        orders = self.converted * 0.25 + writers * 0.05
        return (self.potential + self.plain + self.visitors * 1.3 + conversations * (1.3 + self.manual_share)
                + orders * 2 + 6 + self.rfq + (6 if self.penalised else 0))


def plan_sellers(n_sellers: int, rng: random.Random) -> list[SellerPlan]:
    """The sellers' plans, deterministic for the generator's state."""
    return [_plan(f"seller-{i:05d}", rng) for i in range(n_sellers)]


def _plan(seller_id: str, rng: random.Random) -> SellerPlan:
    target = rng.choices(range(6), TARGET_SHARE)[0]
    p = SellerPlan(seller_id, target)
    roll = rng.random()
    p.penalised = roll < 0.03
    p.slipping = 0.03 <= roll < 0.18 and target >= 2
    p.spammer = rng.random() < 0.04
    if rng.random() < 0.6:
        p.region = rng.choice(("US", "VN", "DE", "CN", "TR", "US", "MY"))
        p.category = rng.choice(("apparel", "home", "electronics", "beauty", "apparel", "machinery"))
    # The indicators holding the seller at its target; the marketing index only binds from 3★
    # (below 70 points it rates 2 and never limits below that).
    eligible = [i for i in INDICATORS if i != "marketing_index" or target >= 3]
    binding = set(rng.sample(eligible, 2 if rng.random() < 0.3 else 1))
    level = {i: target if i in binding else min(5, target + rng.choice((1, 1, 2, 3))) for i in INDICATORS}

    p.potential = rng.randint(*POTENTIAL[level["potential_products"]])
    p.top_super = min(p.potential, rng.randint(*TOP_SUPER[level["top_super_products"]]))
    p.supers = rng.randint(1, 3) if level["top_super_products"] == 5 else 0
    p.potential = max(p.potential, p.top_super)
    p.plain = int(p.potential * rng.uniform(0.2, 0.6)) + rng.randint(2, 10)

    rl = level["response_time"]
    p.reply_hours = rng.uniform(*REPLY_HOURS[rl])
    p.manual_share = 1.0 if rl >= 3 else rng.uniform(0.7, 0.85)
    buyers = rng.randint(*BUYERS[level["active_buyers"]])
    p.converted = max(1, round(buyers * rng.uniform(0.55, 0.8)))
    p.direct = max(0, buyers - p.converted)
    p.visitors = max(p.converted, round(p.converted / rng.uniform(*CONVERSION[level["conversion_rate"]])))

    # Marketing: 30 points for a response rate of 90 % (all replies by hand within 24 h), KWA
    # spend in tiers, and 10-point extras; below 2★ the index stays under 70 (no bonus).
    reply_points = 30 if rl >= 3 else 0
    ml = level["marketing_index"]
    if ml >= 3:
        need = {3: 70, 4: 80, 5: 90}[ml] - reply_points
        kwa = max((t for t in KWA_USD if t <= need), default=0)
        if ml == 5 and kwa < need:
            kwa = 90
        extra = max(0, need - kwa) // 10
    else:
        ceiling = 60 if target >= 2 else 40
        kwa = rng.choice([t for t in KWA_USD if t + reply_points <= ceiling])
        extra = rng.randint(0, max(0, (ceiling - kwa - reply_points) // 10)) if target >= 2 else 0
    p.kwa_usd = rng.uniform(*KWA_USD[kwa])
    extras = rng.sample(["premium", "showcases", "video", "rfq"], extra)
    p.premium = "premium" in extras
    p.showcases = "showcases" in extras
    p.videos = rng.randint(5, 9) if "video" in extras else rng.randint(0, 3)
    p.rfq = rng.randint(7, 10) if "rfq" in extras else rng.randint(0, 3)
    return p


def events(count: int | None, n_sellers: int, seed: int = 7, start: str = "2026-03-01T00:00:00Z",
           days: int = 30) -> Iterator[dict]:
    """About `count` events (None: the plans' own size) in event-time order, as sources would
    publish them, deterministic for a seed. Follow-ups after the period are not sent."""
    rng = random.Random(seed)
    plans = plan_sellers(n_sellers, rng)
    t0 = parse_ts(start)
    end = t0 + days * DAY
    scale = 1.0 if count is None else count / max(1.0, sum(p.size() for p in plans))
    serial = 0

    def ev(event_type: str, seller_id: str, ts: int, **fields) -> dict:
        nonlocal serial
        serial += 1
        return {"event_id": f"ev-{seed}-{serial}", "type": event_type, "seller_id": seller_id,
                "ts": format_ts(ts), **fields}

    heap: list[tuple[int, int, dict]] = []  # (ts, push order, event): follow-ups wait for their day
    pushed = itertools.count()
    sellers = [_Seller(p, scale, days, rng) for p in plans]
    for day in range(days):
        day_start = t0 + day * DAY
        for s in sellers:
            for ts, e in s.day(day, day_start, ev, rng):
                heapq.heappush(heap, (ts, next(pushed), e))
        day_end = min(end, day_start + DAY)
        while heap and heap[0][0] < day_end:
            yield heapq.heappop(heap)[2]


def _scaled(n: float, scale: float, rng: random.Random) -> int:
    x = n * scale
    whole = int(x)
    return whole + (rng.random() < x - whole)


def _spread(n: int, days: int, rng: random.Random, first_day_share: float = 0.0) -> list[int]:
    """How many of n things happen on each day: uniformly, or a share forced onto the first."""
    per_day = [0] * days
    first = int(n * first_day_share)
    per_day[0] += first
    for _ in range(n - first):
        per_day[rng.randrange(days)] += 1
    return per_day


class _Seller:
    """A seller's plan, scaled and laid out over the days; `day` makes one day's events."""

    def __init__(self, p: SellerPlan, scale: float, days: int, rng: random.Random) -> None:
        self.p = p
        front = 0.35 if p.slipping else 0.0
        later = days > 1 and not p.slipping  # steady spend and quotes stay clear of the first day
        self.catalogue = [("super", False)] * _scaled(p.supers, scale, rng)
        self.catalogue += [("top", False)] * _scaled(p.top_super - p.supers, scale, rng)
        self.catalogue += [("potential", False)] * _scaled(p.potential - p.top_super, scale, rng)
        self.catalogue += [("none", False)] * _scaled(p.plain, scale, rng)
        rng.shuffle(self.catalogue)
        videos = min(len(self.catalogue), p.videos)
        self.catalogue[:videos] = [(tier, True) for tier, _ in self.catalogue[:videos]]
        converted = _scaled(p.converted, scale, rng)
        self.converted = _spread(converted, days, rng, front)
        self.browsers = _spread(max(0, _scaled(p.visitors, scale, rng) - converted), days, rng)
        self.direct = _spread(_scaled(p.direct, scale, rng), days, rng, front)
        self.repeat = _spread(_scaled(p.visitors * 0.25, scale, rng), days, rng)
        self.abnormal = _spread(_scaled(p.visitors * 0.04, scale, rng), days, rng)
        spend_events = max(1, _scaled(rng.randint(4, 10), min(1.0, scale), rng)) if p.kwa_usd else 0
        self.spend_usd = p.kwa_usd / max(1, spend_events)
        self.spend = _spread(spend_events, days - later, rng, front)
        self.quotes = _spread(_scaled(p.rfq, min(1.0, scale), rng), days - later, rng)
        self.later = int(later)
        self.penalty_days = _spread(rng.randint(2, 3), days, rng) if p.penalised else [0] * days
        self.visitors = 0
        self.buyers = 0
        self.update_chance = 0.05 / max(1, days)

    def day(self, d: int, t: int, ev: Callable[..., dict], rng: random.Random) -> list[tuple[int, dict]]:
        p, sid = self.p, self.p.seller_id
        out: list[tuple[int, dict]] = []

        def at(ts: int, event_type: str, **fields) -> None:
            out.append((ts, ev(event_type, sid, ts, **fields)))

        if d == 0:
            if p.region:
                at(t, "seller_profile", region=p.region, category=p.category)
            for n, (tier, video) in enumerate(self.catalogue):
                at(t + rng.randrange(6 * HOUR), "product_update", product_id=f"{sid}-p{n}", tier=tier,
                   has_video=video)
            if p.premium or rng.random() < 0.2:
                at(t + rng.randrange(DAY), "marketing", kind="premium_ads", active=p.premium)
            if p.showcases or rng.random() < 0.2:
                at(t + rng.randrange(DAY), "marketing", kind="showcases", all_open=p.showcases)
        for _ in range(self.converted[d]):
            visitor = self._visitor()
            ts = t + rng.randrange(DAY)
            at(ts, "store_visit", visitor_id=visitor, abnormal=False)
            if rng.random() < 0.75:
                self._conversation(at, visitor, ts + rng.randrange(MINUTE, 2 * HOUR), rng)
            else:
                self._order(at, visitor, ts + rng.randrange(5 * MINUTE, 3 * HOUR), rng)
        for _ in range(self.browsers[d]):
            at(t + rng.randrange(DAY), "store_visit", visitor_id=self._visitor(), abnormal=False)
        for _ in range(self.repeat[d]):
            if self.visitors:
                at(t + rng.randrange(DAY), "store_visit", visitor_id=f"{sid}-v{rng.randrange(self.visitors)}",
                   abnormal=False)
        for _ in range(self.abnormal[d]):
            at(t + rng.randrange(DAY), "store_visit", visitor_id=f"{sid}-bot{rng.randrange(10**6)}", abnormal=True)
        for _ in range(self.direct[d]):
            self.buyers += 1
            self._conversation(at, f"{sid}-b{self.buyers}", t + rng.randrange(DAY), rng)
        shifted = d - self.later
        if shifted >= 0:
            for _ in range(self.spend[shifted]):
                currency = rng.choice(("USD", "USD", "MYR", "EUR"))
                at(t + rng.randrange(DAY), "marketing", kind="kwa_spend", currency=currency,
                   amount=round(self.spend_usd / RATES[currency], 2))
            for _ in range(self.quotes[shifted]):
                at(t + rng.randrange(DAY), "marketing", kind="rfq_quotation")
        for _ in range(self.penalty_days[d]):
            at(t + rng.randrange(DAY), "penalty", penalty_id=f"{sid}-x{rng.randrange(10**6)}",
               points=rng.choice((12, 24)), serious=True)
        if self.catalogue and rng.random() < self.update_chance * len(self.catalogue):
            n = rng.randrange(len(self.catalogue))  # a catalogue edit that keeps the tier
            tier, video = self.catalogue[n]
            at(t + rng.randrange(DAY), "product_update", product_id=f"{sid}-p{n}", tier=tier, has_video=video)
        return out

    def _visitor(self) -> str:
        self.visitors += 1
        return f"{self.p.seller_id}-v{self.visitors - 1}"

    def _conversation(self, at: Callable[..., None], buyer: str, ts: int, rng: random.Random) -> None:
        p = self.p
        for _ in range(2 if rng.random() < 0.15 else 1):
            conv = f"{buyer}-c{rng.randrange(10**9)}"
            at(ts, "buyer_message", buyer_id=buyer, conversation_id=conv,
               channel=rng.choice(("inquiry", "im", "rfq_reply")))
            if rng.random() < 0.3:
                at(ts + 30_000, "seller_reply", conversation_id=conv, manual=False)
            if rng.random() < p.manual_share:
                at(ts + int(p.reply_hours * rng.uniform(0.9, 1.1) * HOUR), "seller_reply", conversation_id=conv)
            if p.spammer and rng.random() < 0.2:
                at(ts + rng.randrange(HOUR, 20 * HOUR), "spam_action", conversation_id=conv, action="moved_to_spam")
            ts += rng.randrange(HOUR, 3 * DAY)

    def _order(self, at: Callable[..., None], buyer: str, ts: int, rng: random.Random) -> None:
        order = f"{buyer}-o{rng.randrange(10**9)}"
        fields = dict(buyer_id=buyer, order_id=order, amount=round(rng.uniform(50, 5000), 2), currency="USD")
        at(ts, "ta_order", status="placed", **fields)
        at(ts + rng.randrange(1, 30) * HOUR, "ta_order", status="paid", **fields)
        if rng.random() < 0.05:  # a second order, cancelled: never a buyer by itself
            again = dict(fields, order_id=f"{order}-2")
            at(ts + DAY, "ta_order", status="placed", **again)
            at(ts + DAY + HOUR, "ta_order", status="cancelled", **again)
