"""Golden scenarios for the score models (docs/spec.md §1.2), checked by hand against the shipped
rulebooks' breakpoints and weights (streams/rulebooks/merchant-3star.toml, cn-2020.toml).

Evaluation instant: 2026-03-31T00:00:00Z unless said. The "model seller" of `strong()` scores,
by hand:
- information_display = .4*80 (products 90, 70) + .3*100 (40 of 100 visitors wrote) + .2*100
  (no penalty) + .1*80 (two certificates) = 90
- communication_service = .4*80 (50 inquiries) + .3*100 (8% click-through) + .3*100 (1 h) = 92
- transaction_conversion = .5*80 ($20,000) + .5*80 (10 buyers) = 80
- performance_guarantee = .2*80 (8 of 10 shipped tracked) + .3*100 (all on time)
  + .25*86.67 (mean evaluation 4.667) + .25*100 (no arbitration) = 92.67
so three stars (transaction_conversion exactly at the 80-point threshold).
"""

from __future__ import annotations

import subprocess
import sys
from importlib import resources

import orjson
import pytest

from streams.core.rulebook import RulebookError, load
from streams.core.scoring import SubItem
from streams.core.timeutil import DAY, parse_ts
from tests.conftest import Events as E
from tests.conftest import at, rate_events

WHEN = "2026-03-31T00:00:00Z"


def strong(seller="s1", order_usd=20000.0, orders=10, track="customized", paid_day=20, prefix="o"):
    events = [E.quality(at(days=1), "p1", 90, seller=seller), E.quality(at(days=1), "p2", 70, seller=seller),
              E.certificate(at(days=1), "iso9001", seller=seller), E.certificate(at(days=1), "ce", seller=seller),
              E.search(at(days=25), "2026-03-26", 1000, 80, seller=seller)]
    for i in range(100):  # 100 visitors on March 28, the first 40 also open an inquiry, answered in 1 h
        events.append(E.visit(at(days=27, hours=1), f"v{i}", seller=seller))
    for i in range(50):
        events.append(E.message(at(days=27, hours=2), buyer=f"v{i}" if i < 40 else f"b{i}", seller=seller))
        events.append(E.reply(at(days=27, hours=3), f"c-{f'v{i}' if i < 40 else f'b{i}'}", seller=seller))
    events += orders_of(seller, order_usd, orders, track, paid_day, prefix)
    return events


def orders_of(seller, usd, n, track, paid_day, prefix="o", tracked=8):
    """n paid orders of one buyer each, shipped on time, evaluated (5, 5, 4); `tracked` of them
    with one-touch export."""
    events = []
    for i in range(n):
        oid = f"{prefix}{i}"
        events += [E.order(at(days=paid_day), f"{prefix}-buyer{i}", oid, "paid", seller=seller, amount=usd / n,
                           track=track),
                   E.fulfil(at(days=paid_day + 2), oid, at(days=paid_day + 3), track=track, seller=seller),
                   E.evaluation(at(days=paid_day + 5), oid, f"{prefix}-buyer{i}", (5, 5, 4), track=track,
                                seller=seller)]
        if i < tracked:
            events.append(E.export(at(days=paid_day + 2), oid, track=track, seller=seller))
    return events


def caps(rating):
    return {name: (c["value"], c["stars"]) for name, c in rating["indicators"].items()}


def test_merchant_three_stars_by_hand():
    r = rate_events(strong(), WHEN, "merchant-3star")["s1"]
    assert caps(r) == {"information_display": (90.0, 3), "communication_service": (92.0, 3),
                       "transaction_conversion": (80.0, 3), "performance_guarantee": (92.67, 3)}
    assert r["stars"] == 3 and len(r["limiting"]) == 4  # all at the top
    assert r["indicators"]["performance_guarantee"]["sub_items"]["buyer_evaluation"] == {"value": 4.666667,
                                                                                         "score": 86.67}
    assert r["indicators"]["transaction_conversion"]["next_star"] is None  # three is the top


@pytest.mark.parametrize("usd, value, stars", [(1000.0, 70.0, 2), (600.0, 58.0, 0)])
def test_merchant_transaction_thresholds(usd, value, stars):
    # $1,000 -> 60 and ten buyers -> 80: 70, two stars exactly. $600 -> 36 (linear from 0 at $0
    # to 60 at $1,000): (36 + 80) / 2 = 58, no star. The other capabilities stay at three.
    r = rate_events(strong(order_usd=usd), WHEN, "merchant-3star")["s1"]
    assert caps(r)["transaction_conversion"] == (value, stars)
    assert r["stars"] == stars and r["limiting"] == ["transaction_conversion"]


def test_merchant_capability_at_exactly_sixty_is_one_star():
    # ta_amount $1,000 (60) and one buyer (60): transaction 60.
    events = [e for e in strong(orders=0)] + orders_of("s1", 1000.0, 1, "customized", 20)
    r = rate_events(events, WHEN, "merchant-3star")["s1"]
    assert caps(r)["transaction_conversion"] == (60.0, 1)
    assert r["stars"] == 1 and r["limiting"] == ["transaction_conversion"]


def test_merchant_windows_7_30_90_180_365_and_all_time():
    events = strong()
    base = rate_events(events, WHEN, "merchant-3star")["s1"]["indicators"]
    # 8 days later: the March 28 replies leave the 7-day window (response time unknown -> 0).
    later = rate_events(events, "2026-04-05T00:00:00Z", "merchant-3star")["s1"]["indicators"]
    assert base["communication_service"]["sub_items"]["response_time"]["value"] == 1.0
    assert later["communication_service"]["sub_items"]["response_time"]["value"] is None
    # 30 days: the March 26 search day and the March 28 visitors/inquiries leave on April 25/27.
    month = rate_events(events, "2026-04-28T00:00:00Z", "merchant-3star")["s1"]["indicators"]
    assert month["communication_service"]["sub_items"]["click_through_rate"]["value"] is None
    assert month["information_display"]["sub_items"]["store_conversion_rate"]["value"] is None
    assert month["communication_service"]["sub_items"]["business_opportunities"]["value"] == 0
    # 90 days: orders paid March 21 count until June 19, not after.
    assert rate_events(events, "2026-06-18T00:00:00Z", "merchant-3star")["s1"]["indicators"][
        "transaction_conversion"]["sub_items"]["ta_amount"]["value"] == 20000.0
    june = rate_events(events, "2026-06-20T00:00:00Z", "merchant-3star")["s1"]["indicators"]
    assert june["transaction_conversion"]["sub_items"]["ta_amount"]["value"] == 0.0
    # 180 days: shipped March 23 (agreed March 24) -> gone from on-time and export by late September;
    # the all-time evaluation stays.
    autumn = rate_events(events, "2026-09-25T00:00:00Z", "merchant-3star")["s1"]["indicators"]["performance_guarantee"]
    assert autumn["sub_items"]["on_time_delivery_rate"]["value"] is None
    assert autumn["sub_items"]["export_visualization"]["value"] is None
    assert autumn["sub_items"]["buyer_evaluation"]["value"] == pytest.approx(4.666667)
    # 365 days: a 12-point penalty of March 2 counts until March 2, 2027.
    penalised = events + [E.penalty(at(days=1), "pen1", 12)]
    for when_, points in (("2026-12-01T00:00:00Z", 12), ("2027-03-03T00:00:00Z", 0)):
        info = rate_events(penalised, when_, "merchant-3star")["s1"]["indicators"]["information_display"]
        assert info["sub_items"]["risk_points"]["value"] == points


def test_merchant_on_time_export_and_arbitration():
    events = strong()
    events.append(E.fulfil(at(days=24), "late", at(days=22)))  # shipped two days after the agreed date
    events.append(E.fulfil(at(days=24), "gone", at(days=22), status="cancelled"))  # never counts
    events.append(E.export(at(days=24), "o0", kind="offline_proof"))  # o0 already one-touch: counts once
    events.append(E.dispute(at(days=26), "o1"))  # escalated to arbitration
    r = rate_events(events, WHEN, "merchant-3star")["s1"]["indicators"]["performance_guarantee"]["sub_items"]
    assert r["on_time_delivery_rate"]["value"] == pytest.approx(10 / 11)
    assert r["export_visualization"]["value"] == pytest.approx(8 / 11)
    assert r["satisfied_order_rate"]["value"] == pytest.approx(9 / 10)


def test_cn2020_five_thresholds_and_two_tracks():
    # Customized: the strong seller; ready-to-ship: ten $100 orders only.
    events = strong() + orders_of("s1", 1000.0, 10, "ready_to_ship", 20, prefix="r")
    r = rate_events(events, WHEN, "cn-2020")["s1"]
    custom, rts = r["tracks"]["customized"], r["tracks"]["ready_to_ship"]
    # seller_product_quality = .5*80 + .2*80 + .3*100 = 86 (4 stars: 85 <= 86 < 90)
    assert custom["indicators"]["seller_product_quality"]["value"] == 86.0
    assert custom["indicators"]["seller_product_quality"]["stars"] == 4
    # marketing = .4*80 + .3*100 + .3*100 = 92 (5 stars)
    assert custom["indicators"]["marketing"]["stars"] == 5
    # transaction: customized $20,000 / 10 buyers = 80 (3 stars); ready-to-ship $1,000 / 10 buyers = 70 (2)
    assert custom["indicators"]["transaction"]["value"] == 80.0 and custom["stars"] == 3
    assert rts["indicators"]["transaction"]["value"] == 70.0 and rts["stars"] == 2
    assert r["track"] == "customized" and r["stars"] == 3 and r["limiting"] == ["transaction"]
    # Strengthen ready-to-ship past customized: the display switches.
    more = events + orders_of("s1", 100000.0, 30, "ready_to_ship", 21, prefix="x")
    r2 = rate_events(more, WHEN, "cn-2020")["s1"]
    assert r2["tracks"]["ready_to_ship"]["stars"] > r2["tracks"]["customized"]["stars"]
    assert r2["track"] == "ready_to_ship" and r2["stars"] == r2["tracks"]["ready_to_ship"]["stars"]


def test_cn2020_official_rating_schedule_in_beijing_time():
    from streams.service.processor import RatingProcessor, partition_for

    processor = RatingProcessor(load("cn-2020"), 4)
    p = partition_for("s1", 4)
    for i, e in enumerate(strong()):
        processor.handle(orjson.dumps(e), b"s1", "t", p, i, parse_ts(e["ts"]))
    # March ends at 2026-03-31T16:00Z (midnight Beijing); the freeze comes after 24 h grace.
    eff = processor.tick(p, parse_ts("2026-04-01T16:00:01Z"))
    ((seller, record),) = eff.monthly
    assert seller == "s1" and record["month"] == "2026-03"
    assert record["valid_from"] == "2026-04-05T02:00:00Z"  # the 5th, 10:00 Beijing
    assert record["valid_until"] == "2026-05-04T15:59:59.999Z"  # the 4th of May, 23:59:59 Beijing
    assert record["as_of"] == "2026-03-31T15:59:59.999Z"  # the last instant of March
    assert record["stars"] == 3


def test_replay_command_rates_with_each_score_rulebook(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in strong()) + b"\n")
    for name, stars in (("merchant-3star", 3), ("cn-2020", 3)):
        out = subprocess.run([sys.executable, "-m", "streams.cli", "replay", str(path), "--at", WHEN,
                              "--rulebook", name], capture_output=True, check=True).stdout
        (rating,) = [orjson.loads(line) for line in out.splitlines()]
        assert rating["rulebook"] == name and rating["stars"] == stars


def test_duplicates_and_order_change_nothing():
    import random

    events = strong() + [E.penalty(at(days=3), "pen", 6), E.dispute(at(days=26), "o2")]
    shuffled = events + events[:40]
    random.Random(4).shuffle(shuffled)
    for name in ("merchant-3star", "cn-2020"):
        assert rate_events(shuffled, WHEN, name) == rate_events(events, WHEN, name)


def test_breakpoints_interpolate_and_clamp():
    up = SubItem("x", None, ((0, 0), (10, 60), (20, 100)))
    assert [up.score(v) for v in (-5, 0, 5, 10, 15, 20, 99)] == [0, 0, 30, 60, 80, 100, 100]
    down = SubItem("y", 7 * DAY, ((1, 100), (6, 80), (72, 0)), missing=42)
    assert [down.score(v) for v in (0, 1, 3.5, 6, 72, 100, None)] == [100, 100, 90, 80, 0, 0, 42]


def test_a_score_rulebook_with_bad_weights_is_refused(tmp_path):
    text = (resources.files("streams.rulebooks") / "merchant-3star.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("ta_amount = 0.5\nta_buyers = 0.5", "ta_amount = 0.5\nta_buyers = 0.6"))
    with pytest.raises(RulebookError, match="weights must add up to 1"):
        load(str(bad))
