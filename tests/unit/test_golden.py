"""Golden scenarios for global-2023 (docs/spec.md §1.1): every threshold from both sides, and each rule."""

from __future__ import annotations

import pytest

from tests.conftest import Events as E
from tests.conftest import at, rate_events

END = at(days=20)  # evaluation instant for most scenarios


def stars_of(events, name, when=END, rulebook="global-2023"):
    rating = rate_events(events + [E.visit(when, "clock-anchor", abnormal=True)], when, rulebook)["s1"]
    return rating["indicators"][name]["stars"], rating


def products(n, tier="potential", start=0, video=False):
    return [E.product(at(days=1), f"p{start + i}", tier=tier, video=video) for i in range(n)]


@pytest.mark.parametrize("count, expected", [(11, 0), (12, 1), (29, 1), (30, 2), (47, 2), (48, 3), (215, 3), (216, 5)])
def test_potential_products_thresholds(count, expected):
    # Potential, top and super all count; tier "none" does not.
    events = products(count - count // 3, "potential") + products(count // 3, "top", start=10_000)
    events += products(5, "none", start=20_000)
    stars, rating = stars_of(events, "potential_products")
    assert rating["indicators"]["potential_products"]["value"] == count
    assert stars == expected


@pytest.mark.parametrize("count, supers, expected", [
    (0, 0, 0), (1, 0, 1), (3, 0, 1), (4, 0, 2), (5, 0, 2), (6, 0, 3), (20, 1, 3), (21, 0, 4), (21, 1, 5), (30, 0, 4),
])
def test_top_super_products_thresholds(count, supers, expected):
    events = products(count - supers, "top") + products(supers, "super", start=1000) + products(50, "potential", 2000)
    stars, rating = stars_of(events, "top_super_products")
    assert rating["indicators"]["top_super_products"]["value"] == count
    assert stars == expected


def conversation(n, delay_hours, start_day=1.0, tag="c"):
    events = []
    for i in range(n):
        conv = f"{tag}{i}"
        events.append(E.message(at(days=start_day, hours=i), buyer=f"{tag}-b{i}", conv=conv))
        if delay_hours is not None:
            events.append(E.reply(at(days=start_day, hours=i + delay_hours), conv))
    return events


@pytest.mark.parametrize("hours, expected", [
    (12, 5), (12.001, 4), (16, 4), (16.001, 3), (20, 3), (20.001, 2), (22, 2), (22.001, 1), (24, 1), (24.001, 0),
])
def test_response_time_thresholds(hours, expected):
    stars, rating = stars_of(conversation(3, hours), "response_time")
    assert rating["indicators"]["response_time"]["value"] == pytest.approx(hours)
    assert stars == expected


def test_response_time_is_a_mean_over_answered_conversations():
    events = conversation(1, 10, tag="a") + conversation(1, 20, tag="b") + conversation(1, None, tag="u")
    stars, rating = stars_of(events, "response_time")
    assert rating["indicators"]["response_time"]["value"] == pytest.approx(15)
    assert stars == 4


def test_no_counted_conversation_rates_zero_with_null_value():
    stars, rating = stars_of(conversation(2, None), "response_time")
    assert rating["indicators"]["response_time"]["value"] is None
    assert stars == 0
    assert rating["indicators"]["response_time"]["next_star"]["stars"] == 1


def test_only_manual_replies_count():
    events = [E.message(at(days=1), conv="c"), E.reply(at(days=1, hours=1), "c", manual=False),
              E.reply(at(days=1, hours=30), "c", manual=True)]
    stars, rating = stars_of(events, "response_time")
    assert rating["indicators"]["response_time"]["value"] == pytest.approx(30)
    assert stars == 0


def test_first_reply_after_first_message_counts_not_later_ones():
    events = [E.message(at(days=1), conv="c"), E.reply(at(days=1, hours=2), "c"), E.reply(at(days=1, hours=30), "c"),
              E.message(at(days=1, hours=5), conv="c")]
    assert stars_of(events, "response_time")[1]["indicators"]["response_time"]["value"] == pytest.approx(2)


@pytest.mark.parametrize("actions, excluded", [
    ([("moved_to_spam", 23)], True),
    ([("moved_to_spam", 24)], True),  # "within 24 h" includes the 24th hour
    ([("moved_to_spam", 25)], False),  # a move after 24 h changes nothing
    ([("moved_to_spam", 2), ("restored", 30)], False),  # restored later: valid again
    ([("moved_to_spam", 1), ("restored", 2), ("moved_to_spam", 3)], True),  # the latest decides
    ([("moved_to_spam", 1), ("restored", 10), ("moved_to_spam", 30)], False),
])
def test_spam_exclusion(actions, excluded):
    events = [E.message(at(days=1), buyer="b", conv="c"), E.reply(at(days=1, hours=5), "c")]
    events += [E.spam(at(days=1, hours=h), "c", action) for action, h in actions]
    rating = stars_of(events, "response_time")[1]
    assert (rating["indicators"]["response_time"]["value"] is None) is excluded
    assert rating["indicators"]["active_buyers"]["value"] == (0 if excluded else 1)


def test_response_rate_24_hour_rules():
    # KWA $300 (70) + response rate >= 90% (30) = 100; below 90% the index stays at 70.
    base = [E.marketing(at(days=1), "kwa_spend", amount=300, currency="USD")]
    answered = conversation(9, 24, start_day=1, tag="a")  # answered at exactly 24 h: within 24 h
    def index(evs, when):
        return stars_of(base + evs, "marketing_index", when)[1]["indicators"]["marketing_index"]["value"]
    # A tenth conversation 23 h old and unanswered is not yet counted: 9/9.
    young = [E.message(at(days=10), buyer="y", conv="young")]
    assert index(answered + young, at(days=10, hours=23)) == 100
    # At 24 h it counts as unanswered: 9/10 = 90% still earns the points ...
    assert index(answered + young, at(days=10, hours=24)) == 100
    # ... and an eleventh unanswered one brings the rate to 9/11 < 90%.
    old = [E.message(at(days=9), buyer="o", conv="old")]
    assert index(answered + young + old, at(days=10, hours=24)) == 70
    # Answered after 24 h counts in the denominator but not the numerator.
    late = [E.message(at(days=9), buyer="l", conv="late"), E.reply(at(days=9, hours=25), "late")]
    assert index(answered + late, at(days=10)) == 100
    assert index(answered + late + [E.message(at(days=9), buyer="m", conv="m"), E.reply(at(days=9, hours=26), "m")],
                 at(days=10)) == 70


@pytest.mark.parametrize("count, expected", [(3, 0), (4, 1), (9, 1), (10, 2), (19, 2), (20, 3), (34, 3), (35, 4), (59, 4), (60, 5)])
def test_active_buyers_thresholds(count, expected):
    # Half by message, half by Trade Assurance order; one buyer doing both counts once.
    half = count // 2
    events = [E.message(at(days=2, hours=i), buyer=f"b{i}") for i in range(half)]
    events += [E.order(at(days=3, hours=i), f"b{i}", f"o{i}") for i in range(half, count)]
    events += [E.order(at(days=4), "b0", "dup-order")]
    stars, rating = stars_of(events, "active_buyers")
    assert rating["indicators"]["active_buyers"]["value"] == count
    assert stars == expected


def test_cancelled_orders_and_channels():
    events = [E.order(at(days=2), "b1", "o1"), E.order(at(days=3), "b1", "o1", status="cancelled"),
              E.order(at(days=2), "b2", "o2"), E.order(at(days=3), "b2", "o2", status="shipped"),
              E.message(at(days=2), buyer="b3", channel="rfq_reply"), E.message(at(days=2), buyer="b4", channel="im")]
    assert stars_of(events, "active_buyers")[1]["indicators"]["active_buyers"]["value"] == 3


def test_window_is_30_days_start_exclusive_end_inclusive():
    when = at(days=31)
    on_start = [E.message(at(days=1), buyer="edge")]  # exactly 30 days before: outside
    just_inside = [E.message(at(days=1, seconds=0.001), buyer="inside")]
    rating = rate_events(on_start + just_inside, when)["s1"]
    assert rating["indicators"]["active_buyers"]["value"] == 1
    assert rate_events(on_start, at(days=31, seconds=-0.001))["s1"]["indicators"]["active_buyers"]["value"] == 1


def test_window_expiry_drops_a_seller():
    buyers = [E.message(at(days=1, hours=i), buyer=f"b{i}") for i in range(4)]
    assert rate_events(buyers, at(days=30))["s1"]["indicators"]["active_buyers"]["stars"] == 1
    # Thirty days after the first message it leaves W: 3 buyers, 0 stars.
    assert rate_events(buyers, at(days=31))["s1"]["indicators"]["active_buyers"]["stars"] == 0


@pytest.mark.parametrize("converted, expected", [(34, 0), (35, 1), (49, 1), (50, 2), (59, 2), (60, 3), (79, 3), (80, 4), (99, 4), (100, 5)])
def test_conversion_rate_thresholds(converted, expected):
    events = [E.visit(at(days=2), f"v{i}") for i in range(1000)]
    events += [E.message(at(days=3), buyer=f"v{i}") for i in range(converted)]
    stars, rating = stars_of(events, "conversion_rate")
    assert rating["indicators"]["conversion_rate"]["value"] == pytest.approx(converted / 1000)
    assert stars == expected


def test_conversion_needs_contact_at_or_after_a_normal_visit():
    events = [
        E.visit(at(days=2), "before"), E.message(at(days=1), buyer="before"),  # contact before visit
        E.visit(at(days=2), "same"), E.order(at(days=2), "same", "o1"),  # at the same instant counts
        E.visit(at(days=2), "after"), E.message(at(days=5), buyer="after"),
        E.visit(at(days=2), "abn", abnormal=True), E.message(at(days=5), buyer="abn"),  # not a visitor
        E.visit(at(days=2), "idle"),
    ]
    value = stars_of(events, "conversion_rate")[1]["indicators"]["conversion_rate"]["value"]
    assert value == pytest.approx(2 / 4)


def test_no_visitors_is_zero():
    rating = stars_of([E.message(at(days=2))], "conversion_rate")[1]
    assert rating["indicators"]["conversion_rate"]["value"] == 0


@pytest.mark.parametrize("usd, points", [(99.99, 0), (100, 30), (199.99, 30), (200, 50), (299.99, 50), (300, 70), (499.99, 70), (500, 90)])
def test_kwa_spend_points(usd, points):
    events = [E.marketing(at(days=2), "kwa_spend", amount=usd / 2, currency="USD"),
              E.marketing(at(days=3), "kwa_spend", amount=usd - usd / 2, currency="USD")]
    rating = stars_of(events, "marketing_index")[1]
    assert rating["indicators"]["marketing_index"]["value"] == points


@pytest.mark.parametrize("myr, points", [(399.99, 0), (400, 30), (800, 50), (1200, 70), (1999.99, 70), (2000, 90)])
def test_currency_conversion_myr_matches_the_seed(myr, points):
    rating = stars_of([E.marketing(at(days=2), "kwa_spend", amount=myr, currency="MYR")], "marketing_index")[1]
    assert rating["indicators"]["marketing_index"]["value"] == points


def test_unknown_currency_is_rejected_without_touching_state():
    import io

    from streams.core.rulebook import load
    from streams.replay import replay
    import orjson

    errors = io.StringIO()
    lines = [orjson.dumps(E.marketing(at(days=2), "kwa_spend", amount=1000, currency="XTS"))]
    ratings = replay(lines, load(), None, errors)
    assert "unknown_currency" in errors.getvalue() and "currency" in errors.getvalue()
    assert ratings[0]["indicators"]["marketing_index"]["value"] == 0


def test_kwa_spend_outside_the_window_does_not_count():
    events = [E.marketing(at(days=0), "kwa_spend", amount=500, currency="USD")]
    assert stars_of(events, "marketing_index", at(days=29))[1]["indicators"]["marketing_index"]["value"] == 90
    assert stars_of(events, "marketing_index", at(days=30))[1]["indicators"]["marketing_index"]["value"] == 0


@pytest.mark.parametrize("extras, points, expected_stars", [
    ([], 50, 2),
    ([("premium_ads", {"active": True})], 60, 2),
    ([("premium_ads", {"active": True}), ("showcases", {"all_open": True})], 70, 3),
    ([("premium_ads", {"active": True}), ("showcases", {"all_open": True})] + [("rfq_quotation", {})] * 7, 80, 4),
    ([("premium_ads", {"active": True}), ("showcases", {"all_open": True})] + [("rfq_quotation", {})] * 14, 90, 5),
    ([("showcases", {"all_open": True})] + [("rfq_quotation", {})] * 21, 80, 4),  # RFQ capped at 20
    ([("rfq_quotation", {})] * 6, 50, 2),
])
def test_marketing_index_points_and_stars(extras, points, expected_stars):
    events = [E.marketing(at(days=2), "kwa_spend", amount=200, currency="USD")]
    events += [E.marketing(at(days=3, hours=i), kind, **fields) for i, (kind, fields) in enumerate(extras)]
    stars, rating = stars_of(events, "marketing_index")
    assert rating["indicators"]["marketing_index"]["value"] == points
    assert stars == expected_stars


def test_marketing_current_state_and_videos():
    events = [E.marketing(at(days=2), "premium_ads", active=True), E.marketing(at(days=5), "premium_ads", active=False),
              E.marketing(at(days=2), "showcases", all_open=False), E.marketing(at(days=5), "showcases", all_open=True)]
    events += products(5, video=True)
    events += [E.product(at(days=6), "p0", video=True, removed=True)]  # removed: 4 live videos left
    assert stars_of(events, "marketing_index")[1]["indicators"]["marketing_index"]["value"] == 10
    events += [E.product(at(days=6), "p9", video=True)]
    assert stars_of(events, "marketing_index")[1]["indicators"]["marketing_index"]["value"] == 20


def test_marketing_index_is_capped_at_100():
    events = [E.marketing(at(days=2), "kwa_spend", amount=500, currency="USD"), E.marketing(at(days=2), "premium_ads", active=True),
              E.marketing(at(days=2), "showcases", all_open=True)] + [E.marketing(at(days=2), "rfq_quotation")] * 14
    assert stars_of(events, "marketing_index")[1]["indicators"]["marketing_index"]["value"] == 100


def bonus_scenario(potential, buyers, converted_of_100):
    events = [E.marketing(at(days=2), "kwa_spend", amount=300, currency="USD")]  # exactly 70
    events += products(potential, "top") + products(20, "super", start=5000)
    events += conversation(1, 1, tag="r")
    events += [E.order(at(days=3, hours=i), f"ab{i}", f"ao{i}") for i in range(buyers)]
    events += [E.visit(at(days=2), f"v{i}") for i in range(100)]
    events += [E.message(at(days=3), buyer=f"v{i}", conv=f"cv{i}") for i in range(converted_of_100)]
    return events


def test_bonus_raises_the_lowest_eligible_indicator_by_one():
    # potential 12 -> 1 star (20 supers + 12 top = 32 -> 2 stars, so use fewer), see values below.
    events = bonus_scenario(potential=0, buyers=60, converted_of_100=0)
    rating = rate_events(events, END)["s1"]
    ind = rating["indicators"]
    # potential 20 (1 star), active 60+1 (5), conversion 1/100 (0): conversion is lowest -> 1.
    assert ind["potential_products"]["stars"] == 1
    assert ind["conversion_rate"]["stars"] == 1
    assert rating["bonus_applied_to"] == "conversion_rate"
    assert rating["stars"] == 1


def test_bonus_tie_order_and_each_mode(tmp_path):
    # potential 20 -> 1 star, conversion 4/100 -> 1 star, active 5 -> 1 star: a three-way tie.
    events = bonus_scenario(potential=0, buyers=0, converted_of_100=4)
    rating = rate_events(events, END)["s1"]
    assert rating["bonus_applied_to"] == "potential_products"
    assert [rating["indicators"][n]["stars"] for n in ("potential_products", "active_buyers", "conversion_rate")] == [2, 1, 1]

    text = open("streams/rulebooks/global-2023.toml").read().replace('mode = "one"', 'mode = "each"')
    path = tmp_path / "each.toml"
    path.write_text(text)
    rating = rate_events(events, END, rulebook=str(path))["s1"]
    assert [rating["indicators"][n]["stars"] for n in ("potential_products", "active_buyers", "conversion_rate")] == [2, 2, 2]


def test_no_bonus_below_70_points_or_above_one_star():
    events = bonus_scenario(potential=0, buyers=0, converted_of_100=4)
    events = [e for e in events if e["type"] != "marketing"]
    events.append(E.marketing(at(days=2), "kwa_spend", amount=299, currency="USD"))
    assert rate_events(events, END)["s1"]["bonus_applied_to"] is None
    # Everything eligible at 2 stars: no bonus even at 70 points.
    events = bonus_scenario(potential=10, buyers=10, converted_of_100=5)
    assert rate_events(events, END)["s1"]["bonus_applied_to"] is None


def test_marketing_caps_everyone_without_70_points_at_two_stars():
    events = products(200, "top") + products(20, "super", 1000)
    events += conversation(60, 1)
    events += [E.visit(at(days=1), f"c-b{i}") for i in range(60)]
    rating = rate_events(events, END)["s1"]
    assert rating["stars"] == 2 and rating["limiting"] == ["marketing_index"]
    events.append(E.marketing(at(days=2), "kwa_spend", amount=500, currency="USD"))
    rating = rate_events(events, END)["s1"]
    assert rating["stars"] == 5 and rating["limiting"] == list(rating["indicators"])


@pytest.mark.parametrize("penalties, risk", [
    ([(12, True, False)] * 2 + [(11, True, False)], "healthy"),  # 35
    ([(12, True, False)] * 3, "unhealthy"),  # 36
    ([(30, True, False), (30, False, False)], "healthy"),  # non-serious points do not count
])
def test_risk_threshold(penalties, risk):
    events = bonus_scenario(potential=0, buyers=60, converted_of_100=0)
    events += [E.penalty(at(days=5), f"x{i}", pts, serious=serious, revoked=rev) for i, (pts, serious, rev) in enumerate(penalties)]
    rating = rate_events(events, END)["s1"]
    assert rating["risk"] == risk
    assert rating["stars_if_healthy"] == 1
    assert rating["stars"] == (0 if risk == "unhealthy" else 1)


def test_risk_revocation_and_expiry():
    events = [E.penalty(at(days=0), "x1", 36)]
    assert rate_events(events, at(days=364))["s1"]["risk"] == "unhealthy"
    assert rate_events(events, at(days=365))["s1"]["risk"] == "healthy"  # issued 365 days ago: expired
    events.append(E.penalty(at(days=10), "x1", 36, revoked=True))
    assert rate_events(events, at(days=11))["s1"]["risk"] == "healthy"
    assert rate_events(events, at(days=9))["s1"]["risk"] == "unhealthy"  # before the revocation


def test_product_state_ignores_an_older_update_arriving_later():
    newer = E.product(at(days=5), "p1", tier="super")
    older = E.product(at(days=2), "p1", tier="none")
    removed = E.product(at(days=6), "p2", removed=True)
    older_live = E.product(at(days=3), "p2", tier="top")
    rating = rate_events([newer, removed, older, older_live], END)["s1"]
    assert rating["indicators"]["potential_products"]["value"] == 1
    assert rating["indicators"]["top_super_products"]["value"] == 1


def test_region_and_category_overrides_most_specific_wins():
    # 9 buyers who never visited + 45 of 1,000 visitors who wrote: 54 active buyers, 4.5% conversion.
    events = [E.message(at(days=2, hours=i), buyer=f"b{i}") for i in range(9)]
    events += [E.visit(at(days=1), f"v{i}") for i in range(1000)]
    events += [E.message(at(days=3), buyer=f"v{i}", conv=f"cv{i}") for i in range(45)]

    def stars(profile):
        extra = [E.profile(at(days=1), *profile)] if profile else []
        ind = rate_events(events + extra, END)["s1"]["indicators"]
        return ind["active_buyers"]["stars"], ind["conversion_rate"]["stars"]

    assert stars(None) == (4, 1)  # default: 54 >= 35; 4.5% >= 3.5%
    assert stars(("US", "apparel")) == (4, 1)  # no override matches
    assert stars(("MY", "apparel")) == (5, 1)  # region: active buyers 54 >= 50
    assert stars(("DE", "machinery")) == (4, 2)  # category: conversion 4.5% >= 4%
    assert stars(("MY", "machinery")) == (5, 3)  # region+category beats category: 4.5% >= 4.5%
