"""Hypothesis properties of the score models against the brute-force reference
(tests/reference_score.py): any order, duplicates and batching give the reference's values;
the streaming processor's last forecast equals the replay; state survives its own writes."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.core.engine import Engine
from streams.core.keys import seller_of_key, split_state_key
from streams.core.rulebook import load
from streams.core.scoring import ScoreModel, measure
from streams.core.timeutil import DAY, HOUR, format_ts, parse_ts
from streams.service.processor import Incoming, RatingProcessor, Tick, partition_for
from tests.support.reference_score import reference_values

T0 = parse_ts("2026-01-01T00:00:00Z")
SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BOOKS = ("merchant-3star", "cn-2020")
TRACKS = ("customized", "ready_to_ship")


@st.composite
def score_events(draw) -> list[dict]:
    """A few hundred days of mixed events for two sellers, small id spaces so they collide."""
    n = draw(st.integers(1, 60))
    out = []
    for i in range(n):
        ts = T0 + draw(st.integers(0, 400)) * DAY + draw(st.integers(0, 23)) * HOUR
        seller = draw(st.sampled_from(("s1", "s2")))
        e = {"event_id": f"e{i}", "seller_id": seller, "ts": format_ts(ts)}
        kind = draw(st.sampled_from(("ta_order", "order_fulfilment", "buyer_evaluation", "dispute", "export_signal",
                                     "product_quality", "certificate", "search_stats", "penalty", "buyer_message",
                                     "seller_reply", "store_visit")))
        order, track = f"o{draw(st.integers(0, 4))}", draw(st.sampled_from(TRACKS))
        person = f"p{draw(st.integers(0, 4))}"
        if kind == "ta_order":
            e.update(order_id=order, buyer_id=person, status=draw(st.sampled_from(
                ("placed", "paid", "shipped", "completed", "cancelled"))), amount=draw(st.integers(0, 30000)),
                currency=draw(st.sampled_from(("USD", "CNY"))), track=track)
        elif kind == "order_fulfilment":
            e.update(order_id=order, track=track, status=draw(st.sampled_from(("shipped", "cancelled"))),
                     agreed_date=format_ts(ts + draw(st.integers(-5, 5)) * DAY))
        elif kind == "buyer_evaluation":
            e.update(order_id=order, buyer_id=person, track=track, product_quality=draw(st.integers(1, 5)),
                     seller_service=draw(st.integers(1, 5)), delivery=draw(st.integers(1, 5)))
        elif kind == "dispute":
            e.update(order_id=order, track=track, arbitration=draw(st.booleans()))
        elif kind == "export_signal":
            e.update(order_id=order, track=track,
                     kind=draw(st.sampled_from(("one_touch_export", "official_logistics", "offline_proof"))))
        elif kind == "product_quality":
            e.update(product_id=f"g{draw(st.integers(0, 3))}", score=draw(st.integers(0, 100)), removed=draw(st.booleans()))
        elif kind == "certificate":
            e.update(certificate_id=f"c{draw(st.integers(0, 2))}", valid=draw(st.booleans()))
        elif kind == "search_stats":
            e.update(date=format_ts(ts)[:10], exposures=draw(st.integers(0, 1000)), clicks=draw(st.integers(0, 50)))
        elif kind == "penalty":
            e.update(penalty_id=f"x{draw(st.integers(0, 2))}", points=draw(st.integers(0, 12)), serious=True,
                     revoked=draw(st.booleans()))
        elif kind == "buyer_message":
            e.update(buyer_id=person, conversation_id=f"c{draw(st.integers(0, 4))}",
                     channel=draw(st.sampled_from(("inquiry", "im", "rfq_reply"))))
        elif kind == "seller_reply":
            e.update(conversation_id=f"c{draw(st.integers(0, 4))}", manual=draw(st.booleans()))
        else:
            e.update(visitor_id=person, abnormal=draw(st.booleans()))
        e["type"] = kind
        out.append(e)
    return out


def engine_of(book, events) -> Engine:
    engine = Engine(book)
    for e in events:
        engine.ingest(orjson.dumps(e))
    return engine


def close(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        (a[k] is None) == (b[k] is None) and (a[k] is None or a[k] == pytest.approx(b[k], rel=1e-9)) for k in a)


@SETTINGS
@given(score_events(), st.integers(0, 420), st.sampled_from(BOOKS))
def test_engine_values_equal_the_reference(events, day, name):
    book, at = load(name), T0 + day * DAY
    engine = engine_of(book, events)
    for seller in ("s1", "s2"):
        mine = [e for e in events if e["seller_id"] == seller]
        for track in (book.tracks or (None,)):
            got = measure(engine.state(seller), at, track) if mine else None
            if got is not None:
                assert close(got, reference_values(mine, at, book, track)), (seller, track)


@SETTINGS
@given(score_events(), st.randoms(use_true_random=False), st.sampled_from(BOOKS))
def test_duplicates_and_order_change_nothing(events, rnd, name):
    book = load(name)
    at = max(parse_ts(e["ts"]) for e in events)
    shuffled = events + rnd.sample(events, k=len(events) // 2)
    rnd.shuffle(shuffled)
    once, again = engine_of(book, events), engine_of(book, shuffled)
    assert once.ratings(at) == again.ratings(at)


@SETTINGS
@given(score_events(), st.lists(st.integers(1, 25), min_size=1, max_size=8), st.sampled_from(BOOKS))
def test_streamed_in_batches_equals_replay_and_state_survives_its_writes(events, cuts, name):
    """The worker's processor, fed in batches with a final tick, publishes last what a replay
    at the final clock says; the state rebuilt from its writes rates the same."""
    book, parts = load(name), 2
    processor = RatingProcessor(book, parts)
    ordered = sorted(events, key=lambda e: e["ts"])
    final = max(parse_ts(e["ts"]) for e in events) + DAY
    published, writes = {}, {}
    items = [Incoming(orjson.dumps(e), e["seller_id"].encode(), "t", partition_for(e["seller_id"], parts), i,
                      parse_ts(e["ts"])) for i, e in enumerate(ordered)]
    items += [Tick(p, final) for p in range(parts)]
    start = 0
    for size in cuts * (len(items) // max(sum(cuts), 1) + 1):
        if start >= len(items):
            break
        for effects in processor.handle_batch(items[start:start + size]).values():
            published.update(effects.forecasts)
            for key, value in effects.state_writes:
                writes[key] = value
        start += size
    replayed = {r["seller_id"]: r for r in engine_of(book, events).ratings(final, projection=True)}
    for seller, rating in replayed.items():
        assert {**published[seller], "as_of": None} == {**rating, "as_of": None}
        items_ = [split_state_key(k)[1:] + (v,) for k, v in writes.items()
                  if seller_of_key(k) == seller.encode() and v is not None]
        model = ScoreModel(book)
        rebuilt = model.state_from_entities(seller, items_)
        again = {**model.rate(seller, rebuilt, final), "projection": model.projection(seller, rebuilt, final)}
        assert {**again, "as_of": None} == {**rating, "as_of": None}
