"""Property tests: the incremental core equals the brute-force reference on random streams,
whatever the delivery order, duplication, pruning or serialisation."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.core.contract import validate
from streams.core.engine import Engine
from streams.core.rulebook import load
from streams.core.state import SellerState
from streams.core.timeutil import DAY, HOUR, format_ts, parse_ts
from tests.support.reference import comparable, reference_rating

RB = load("global-2023")
T0 = parse_ts("2026-03-01T00:00:00Z")
SPAN_HOURS = 80 * 24  # longer than the 30-day window, so facts expire and are pruned
SELLERS = ("s1", "s2")
PEOPLE = tuple(f"b{i}" for i in range(5))
CONVS = tuple(f"c{i}" for i in range(5))
ORDERS = tuple(f"o{i}" for i in range(4))  # an order always belongs to one buyer
PRODUCTS = tuple(f"p{i}" for i in range(4))

instants = st.one_of(
    st.integers(0, SPAN_HOURS).map(lambda h: T0 + h * HOUR),  # hour grid: many ties
    st.integers(0, SPAN_HOURS * 60).map(lambda m: T0 + m * 60_000),
)


def _event(draw, ts: int, n: int) -> dict:
    kind = draw(st.sampled_from(("buyer_message", "buyer_message", "seller_reply", "spam_action", "ta_order",
                                 "store_visit", "store_visit", "product_update", "penalty", "marketing",
                                 "seller_profile")))
    base = {"event_id": f"e{n}", "type": kind, "seller_id": draw(st.sampled_from(SELLERS)), "ts": format_ts(ts)}
    pick = lambda xs: draw(st.sampled_from(xs))  # noqa: E731
    if kind == "buyer_message":
        base.update(buyer_id=pick(PEOPLE), conversation_id=pick(CONVS), channel=pick(("inquiry", "im", "rfq_reply")))
    elif kind == "seller_reply":
        base.update(conversation_id=pick(CONVS), manual=draw(st.booleans()))
    elif kind == "spam_action":
        base.update(conversation_id=pick(CONVS), action=pick(("moved_to_spam", "restored")))
    elif kind == "ta_order":
        order = pick(ORDERS)
        base.update(buyer_id=PEOPLE[ORDERS.index(order)], order_id=order, amount=10.0, currency="USD",
                    status=pick(("placed", "placed", "paid", "shipped", "cancelled")))
    elif kind == "store_visit":
        base.update(visitor_id=pick(PEOPLE), abnormal=draw(st.booleans()) and draw(st.booleans()))
    elif kind == "product_update":
        base.update(product_id=pick(PRODUCTS), tier=pick(("none", "potential", "top", "super")),
                    has_video=draw(st.booleans()), removed=draw(st.booleans()) and draw(st.booleans()))
    elif kind == "penalty":
        base.update(penalty_id=pick(("x0", "x1", "x2")), points=pick((6, 12, 24, 36)), serious=draw(st.booleans()),
                    revoked=draw(st.booleans()) and draw(st.booleans()))
    elif kind == "marketing":
        what = pick(("kwa_spend", "premium_ads", "rfq_quotation", "showcases"))
        base["kind"] = what
        if what == "kwa_spend":
            base.update(amount=pick((50, 99.99, 100, 150.5, 250)), currency=pick(("USD", "MYR", "EUR")))
        elif what == "premium_ads":
            base["active"] = draw(st.booleans())
        elif what == "showcases":
            base["all_open"] = draw(st.booleans())
    else:
        base.update(region=pick(("MY", "US")), category=pick(("machinery", "apparel")))
    return base


@st.composite
def streams_of_events(draw, max_size: int = 45) -> list[dict]:
    n = draw(st.integers(1, max_size))
    events = [_event(draw, draw(instants), i) for i in range(n)]
    # Bursts of replies right after messages make the response rules bite more often.
    for e in list(events):
        if e["type"] == "buyer_message" and draw(st.booleans()):
            delay = draw(st.sampled_from((1, 12, 24, 25))) * HOUR
            events.append({"event_id": f"r{e['event_id']}", "type": "seller_reply", "seller_id": e["seller_id"],
                           "ts": format_ts(parse_ts(e["ts"]) + delay), "conversation_id": e["conversation_id"],
                           "manual": True})
    return events


def expected(events: list[dict], seller: str, at: int) -> dict:
    return reference_rating([e for e in events if e["seller_id"] == seller], at, RB)


def stream(engine: Engine, events: list[dict]) -> int:
    """Deliver events in order with the stream clock following them; returns the clock."""
    clock = None
    for e in events:
        event = validate(e)
        clock = event.ts if clock is None or event.ts > clock else clock
        engine.advance(clock)
        engine.apply(event)
    return clock


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(streams_of_events())
def test_incremental_equals_reference_at_every_step(events):
    engine = Engine(RB)
    clock = None
    seen = []
    for e in events:
        event = validate(e)
        clock = event.ts if clock is None or event.ts > clock else clock
        engine.advance(clock)
        engine.apply(event)
        seen.append(e)
        seller = e["seller_id"]
        assert comparable(engine.rating(seller, clock)) == expected(seen, seller, clock)


@SETTINGS
@given(streams_of_events(), st.integers(1, 60))
def test_ratings_after_time_passes_without_events(events, idle_days):
    engine = Engine(RB)
    clock = stream(engine, events)
    for seller in SELLERS:
        engine.rating(seller, clock)  # warm the incremental cache, then let time pass
    later = clock + idle_days * DAY
    engine.advance(later)
    for seller in SELLERS:
        assert comparable(engine.rating(seller, later)) == expected(events, seller, later)


@SETTINGS
@given(streams_of_events(), st.randoms(use_true_random=False), st.integers(0, RB.grace_ms // HOUR))
def test_duplicates_and_reordering_change_nothing(events, rnd, back_hours):
    ordered = sorted(events, key=lambda e: parse_ts(e["ts"]))
    shuffled = list(events) + [rnd.choice(events) for _ in range(len(events) // 2)]
    rnd.shuffle(shuffled)
    a, b = Engine(RB), Engine(RB)
    clock_a, clock_b = stream(a, ordered), stream(b, shuffled)
    assert clock_a == clock_b
    # Also a past instant inside the grace period (what the monthly freeze evaluates).
    for at in (clock_a, clock_a - back_hours * HOUR):
        for seller in SELLERS:
            ra, rb = comparable(a.rating(seller, at)), comparable(b.rating(seller, at))
            assert ra == rb == expected(events, seller, at)


@SETTINGS
@given(streams_of_events())
def test_state_survives_serialisation(events):
    engine = Engine(RB)
    clock = stream(engine, events)
    for seller, state in engine.states.items():
        restored = SellerState.from_bytes(RB, state.to_bytes())
        assert restored == state
        # Entity by entity, as a store that only writes what apply() touched would hold it.
        rebuilt = SellerState.from_entities(RB, seller, [])
        for (kind, key), data in state.take_dirty():
            if data is not None:
                rebuilt.load_entity(kind, key, data)
        # Clock and watermark are not rewritten on every event (they are re-derived from the
        # partition clock after a restore); every fact is.
        assert rebuilt.clock <= state.clock
        rebuilt.clock, rebuilt.watermark = state.clock, state.watermark
        assert rebuilt.to_bytes() == state.to_bytes()
        fresh = Engine(RB)
        fresh.states[seller] = restored
        assert fresh.rating(seller, clock) == engine.rating(seller, clock)


def test_state_stays_bounded_under_steady_traffic():
    """A seller with the same traffic every day for a year keeps about a window's worth of facts."""
    engine = Engine(RB)
    rnd = random.Random(1)
    sizes = []
    for day in range(365):
        for i in range(40):
            ts = T0 + day * DAY + i * 30 * 60_000
            buyer = f"b{rnd.randrange(10_000)}"
            for e in (
                {"type": "store_visit", "visitor_id": buyer},
                {"type": "buyer_message", "buyer_id": buyer, "conversation_id": f"c{day}-{i}", "channel": "im"},
                {"type": "seller_reply", "conversation_id": f"c{day}-{i}"},
                {"type": "marketing", "kind": "rfq_quotation"},
            ):
                e.update(event_id=f"{day}-{i}-{e['type']}", seller_id="s1", ts=format_ts(ts))
                event = validate(e)
                engine.advance(event.ts)
                engine.apply(event)
        if day % 30 == 29:
            engine.states["s1"].prune()
            sizes.append(len(engine.states["s1"].to_bytes()))
    state = engine.states["s1"]
    # Visits, messages and quotations are pruned to the window (plus grace and a week of lazy
    # pruning); conversations are remembered for the rulebook's memory (90 days), then forgotten.
    assert len(state.people) <= 40 * 38 and len(state.rfq) <= 40 * 38
    assert len(state.conversations) <= 40 * (90 + 8)
    assert max(sizes[4:]) < min(sizes[4:]) * 1.15, sizes
