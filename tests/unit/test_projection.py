"""The projection (docs/spec.md §3.1): golden cases checked by hand for each kind of change
instant, and a property against the brute-force reference rater at every candidate instant.

Times: T0 is 2026-03-01 UTC (global-2023's time zone is UTC); `at(days=...)` is T0 + offset.
Projections as of 2026-04-01 end on 2026-04-30T23:59:59.999Z.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from importlib import resources
from unittest.mock import patch

from streams.core import measures
from streams.core.engine import Engine
from streams.core.measures import Measures
from streams.core.rating import _movable, _probes, _ratios, _totals
from streams.core.projection import month_end
from streams.core.rulebook import load
from streams.core.timeutil import DAY, HOUR, format_ts, parse_ts
from tests.conftest import Events as E
from tests.conftest import at, rate_events
from tests.support.reference import reference_rating
from streams.core.contract import validate
from tests.unit.test_properties import RB, SELLERS, SETTINGS, stream, streams_of_events

APRIL_1 = "2026-04-01T00:00:00Z"


def projection(events: list[dict], when: str = APRIL_1, seller: str = "s1") -> dict:
    return rate_events(events, when)[seller]["projection"]


def moved(entry: dict) -> dict:
    return {name: (block["value"], block["stars"]) for name, block in entry["indicators"].items()}


def test_projection_at_is_the_last_millisecond_of_the_month_in_the_rulebooks_time_zone():
    assert format_ts(month_end(parse_ts("2026-04-01T00:00:00Z"), load("global-2023").time_zone)) == \
        "2026-04-30T23:59:59.999Z"
    # cn-2020 rates in Beijing time: 2026-04-30T16:00Z is already May there
    assert format_ts(month_end(parse_ts("2026-04-30T16:00:00Z"), load("cn-2020").time_zone)) == \
        "2026-05-31T15:59:59.999Z"
    assert projection([E.message(at(days=20), "b1")])["at"] == "2026-04-30T23:59:59.999Z"


def test_a_buyer_leaving_the_window_drops_active_buyers_at_its_message_plus_30_days():
    events = [E.message(at(days=4 + i, hours=10), f"b{i}") for i in range(4)]  # March 5, 6, 7, 8 at 10:00
    p = projection(events)
    assert p["timeline"][0]["at"] == "2026-04-04T10:00:00Z"
    assert moved(p["timeline"][0]) == {"active_buyers": (3, 0)}  # 4 buyers (1 star) -> 3 (0 stars)
    assert len(p["timeline"]) == 1  # 3 -> 2 -> 1 -> 0 change no stars
    assert p["indicators"]["active_buyers"] == {"value": 0, "stars": 0}


def test_a_visitor_leaving_the_window_changes_the_conversion_rate_then():
    events = [E.visit(at(days=9), "v0"), E.message(at(days=9, hours=1), "v0")]  # converted, March 10
    events += [E.visit(at(days=19), f"v{i}") for i in range(1, 10)]  # 9 more visitors, March 20
    p = projection(events)
    assert [(e["at"], moved(e)) for e in p["timeline"]] == [("2026-04-09T00:00:00Z", {"conversion_rate": (0.0, 0)})]


def test_an_unanswered_conversation_counts_against_the_response_rate_24_hours_after_it_began():
    april = parse_ts(APRIL_1)
    events = [E.marketing(format_ts(april + 2 * DAY), "kwa_spend", amount=300, currency="USD")]
    for i in range(4):  # answered within an hour on April 2
        events += [E.message(format_ts(april + DAY + i * HOUR), f"b{i}"),
                   E.reply(format_ts(april + DAY + i * HOUR + 1800_000), f"c-b{i}")]
    events.append(E.message("2026-04-09T12:00:00Z", "b9"))  # not answered
    p = projection(events, "2026-04-10T00:00:00Z")
    # 70 points of spend + 30 for a response rate of 100 % -> 4 of 5 = 80 %: 70 points, 3 stars
    assert [(e["at"], moved(e)) for e in p["timeline"]] == [("2026-04-10T12:00:00Z", {"marketing_index": (70, 3)})]


def test_kwa_spend_leaving_the_window_takes_its_points_with_it():
    events = [E.marketing(at(days=14, hours=6), "kwa_spend", amount=300, currency="USD")]  # March 15, 06:00
    p = projection(events)
    # 70 points raise potential_products from 0 to 1 star (the bonus); it goes with them
    assert [(e["at"], moved(e)) for e in p["timeline"]] == \
        [("2026-04-14T06:00:00Z", {"potential_products": (0, 0), "marketing_index": (0, 2)})]


def test_the_bonus_lost_while_the_index_keeps_its_stars_is_a_change_instant(tmp_path):
    """A rulebook whose bonus needs 80 points inside the index's 3-star band (70-94): 500 USD
    (90 points) lifts potential_products to 1 star; when the first 200 USD leave (April 4) the
    index stays at 3 stars with 70 points, but the bonus goes, and the seller's stars with it."""
    text = (resources.files("streams.rulebooks") / "global-2023.toml").read_text()
    variant = text.replace("min_marketing_index = 70", "min_marketing_index = 80").replace(
        "thresholds = [0, 0, 70, 80, 90]", "thresholds = [0, 0, 70, 95, 99]")
    assert "min_marketing_index = 80" in variant and "[0, 0, 70, 95, 99]" in variant
    book = tmp_path / "bonus-80.toml"
    book.write_text(variant.replace('name = "global-2023"', 'name = "bonus-80"'))
    events = [E.marketing(at(days=4), "kwa_spend", amount=200, currency="USD"),
              E.marketing(at(days=19), "kwa_spend", amount=300, currency="USD")]
    rating = rate_events(events, APRIL_1, rulebook=str(book))["s1"]
    assert rating["indicators"]["potential_products"]["stars"] == 1  # the bonus, now
    p = rating["projection"]
    assert [(e["at"], e["stars"], moved(e)) for e in p["timeline"]][0] == \
        ("2026-04-04T00:00:00Z", 0, {"potential_products": (0, 0)})


def test_a_penalty_expiring_after_365_days_makes_the_seller_healthy_again():
    events = [E.penalty("2025-04-05T08:00:00Z", "x1", 40), E.message(at(days=20), "b1")]
    current = rate_events(events, APRIL_1)["s1"]
    assert current["risk"] == "unhealthy"
    p = current["projection"]
    assert [(e["at"], e["risk"], e["indicators"]) for e in p["timeline"]] == \
        [("2026-04-05T08:00:00Z", "healthy", {})]
    assert p["risk"] == "healthy"


def test_stars_going_down_and_back_up():
    # Replies after 1 h (March 5), 23 h (March 10) and 5 h (March 15): a mean of 9.7 h (5 stars);
    # without the first, 14 h (4 stars); without the second too, 5 h (5 stars again); then none.
    events = []
    for day, (conv, delay) in zip((4, 9, 14), (("a", 1), ("b", 23), ("c", 5))):
        events += [E.message(at(days=day), conv, conv=conv), E.reply(at(days=day, hours=delay), conv)]
    p = projection(events)
    response = [(e["at"], moved(e).get("response_time")) for e in p["timeline"] if "response_time" in moved(e)]
    assert response == [("2026-04-04T00:00:00Z", (14.0, 4)), ("2026-04-09T00:00:00Z", (5.0, 5)),
                        ("2026-04-14T00:00:00Z", (None, 0))]


def test_nothing_leaves_before_the_month_ends_and_the_timeline_is_empty():
    events = [E.message(f"2026-04-0{d}T09:00:00Z", f"b{d}") for d in range(1, 6)]
    events += [E.reply(f"2026-04-0{d}T10:00:00Z", f"c-b{d}") for d in range(1, 6)]
    rating = rate_events(events, "2026-04-10T00:00:00Z")["s1"]
    p = rating["projection"]
    assert p["timeline"] == []
    assert (p["stars"], p["risk"], p["stars_if_healthy"]) == (rating["stars"], rating["risk"], rating["stars_if_healthy"])
    assert p["indicators"] == {n: {"value": b["value"], "stars": b["stars"]} for n, b in rating["indicators"].items()}


def test_score_models_project_over_their_own_windows_and_time_zone():
    from tests.unit.test_score_rulebooks import strong

    rating = rate_events(strong(), APRIL_1, "merchant-3star")["s1"]
    p = rating["projection"]
    assert p["at"] == "2026-04-30T15:59:59.999Z"  # the month's end in Beijing time
    # March 28 02:00 inquiries leave the 7-day window; the search stats of March 26 (Beijing)
    # leave 30 days after that day began (March 25 16:00Z); March 28 01:00 visitors leave.
    assert [(e["at"], e["stars"]) for e in p["timeline"]] == \
        [("2026-04-04T02:00:00Z", 1), ("2026-04-24T16:00:00Z", 0), ("2026-04-27T01:00:00Z", 0)]
    for entry in p["timeline"]:  # each is where replay's own rating changes
        before = rate_events(strong(), format_ts(parse_ts(entry["at"]) - 1), "merchant-3star")["s1"]
        after = rate_events(strong(), entry["at"], "merchant-3star")["s1"]
        for name, block in entry["indicators"].items():
            assert after["indicators"][name]["stars"] == block["stars"] != before["indicators"][name]["stars"]
    assert p["stars"] == 0


def candidates(events: list[dict]) -> set[int]:
    """Every instant at which a rating can change with no new event: a fact leaving a 30-day
    or 365-day window, and a conversation's 24-hour mark."""
    out = set()
    for e in events:
        ts = parse_ts(e["ts"])
        out.update((ts + 30 * DAY, ts + 365 * DAY, ts + 24 * HOUR))
    return out


def levels(reference: dict) -> tuple:
    return reference["stars"], reference["risk"], reference["indicator_stars"]


@SETTINGS
@given(streams_of_events(), st.integers(0, 40))
def test_the_timeline_is_exactly_where_the_reference_changes_and_ends_at_the_month_end(events, idle_days):
    matches_the_reference(events, idle_days)


@SETTINGS
@given(streams_of_events(), st.integers(0, 40))
def test_passing_whole_days_and_hours_in_which_no_star_can_move_changes_nothing(events, idle_days):
    # A long outlook is walked a day or an hour at a time where bounds prove no star moves;
    # here every outlook is walked that way, however short.
    with patch.object(measures, "SPAN_FROM", 0), patch.object(measures, "SPAN_LEAST", 1):
        matches_the_reference(events, idle_days)


def matches_the_reference(events: list[dict], idle_days: int) -> None:
    engine = Engine(RB)
    clock = stream(engine, events) + idle_days * DAY  # as of later than the last event, too
    end = month_end(clock, RB.time_zone)
    for seller in SELLERS:
        mine = [e for e in events if e["seller_id"] == seller]
        engine.rating(seller, clock)
        once = engine.projection(seller, clock, once=True)  # an outlook of summed changes, not kept
        got = engine.projection(seller, clock)
        assert once == got
        previous = reference_rating(mine, clock, RB)
        want = []
        for instant in sorted(c for c in candidates(mine) if clock < c <= end):
            now = reference_rating(mine, instant, RB)
            if levels(now) != levels(previous):
                changed = {n: {"value": now["values"][n], "stars": s} for n, s in now["indicator_stars"].items()
                           if previous["indicator_stars"][n] != s}
                want.append({"at": format_ts(instant), "stars": now["stars"], "risk": now["risk"],
                             "indicators": changed})
            previous = now
        assert got["timeline"] == want
        final = reference_rating(mine, end, RB)
        assert (got["stars"], got["risk"], got["stars_if_healthy"]) == \
            (final["stars"], final["risk"], final["stars_if_healthy"])
        assert got["indicators"] == {n: {"value": final["values"][n], "stars": s}
                                     for n, s in final["indicator_stars"].items()}


@SETTINGS
@given(streams_of_events(), st.integers(0, 40))
def test_a_projection_kept_up_to_date_event_by_event_equals_one_computed_afresh(events, idle_days):
    # The worker projects after every batch: the seller's outlook is built once and then
    # replaced contribution by contribution as events arrive (and month by month). Every
    # projection along the way must be the one a fresh engine computes from the same events.
    kept_up_to_date(events, idle_days)


@SETTINGS
@given(streams_of_events(), st.integers(0, 40))
def test_spans_judged_from_what_a_walk_kept_of_them_before_stay_exact_as_events_arrive(events, idle_days):
    # Every outlook walked a day or an hour at a time: what a walk keeps of a span (a ratio's
    # extremes over it) must be dropped when an event changes a contribution inside it.
    with patch.object(measures, "SPAN_FROM", 0), patch.object(measures, "SPAN_LEAST", 1):
        kept_up_to_date(events, idle_days)


def kept_up_to_date(events: list[dict], idle_days: int) -> None:
    live = Engine(RB)
    clock = None
    seen: list[dict] = []
    for e in [*events, None]:
        if e is None:  # then time passes with no event
            clock = None if clock is None else clock + idle_days * DAY
        else:
            seen.append(e)
            event = validate(e)
            clock = event.ts if clock is None or event.ts > clock else clock
            live.advance(clock)
            live.apply(event)
        if clock is None:
            continue
        live.advance(clock)
        fresh = Engine(RB)
        stream(fresh, seen)
        fresh.advance(clock)
        for seller in SELLERS:
            now = live.rating(seller, clock)
            assert live.stars(seller, clock) == (now["stars"], now["risk"])
            fresh.rating(seller, clock)
            # What a worker asks before projecting again: the projection's stars and risk,
            # from the outlook the last projection left (None: no such outlook this month).
            quick = live.projected_stars(seller, clock)
            got = live.projection(seller, clock)
            assert got == fresh.projection(seller, clock)
            assert quick is None or quick == (got["stars"], got["risk"])
            outlook = live.states[seller].aggregator.outlook
            summed = [0] * len(outlook.net)
            for change in outlook.changes.values():
                for position, value in change.items():
                    summed[position] += value
            assert outlook.net == summed  # every change kept, summed


def test_a_span_whose_visitors_may_all_leave_is_walked_instant_by_instant():
    # 29 visitors and one converted visitor (1 in 30, below the first star), all leaving within
    # a minute of April 3: as the 29 leave, the rate climbs to 1 in 1 (the top), then the last
    # one leaves and it is 0 again. The span's bounds alone (1 converted of 0 visitors at best,
    # 0 of 30 at worst: 0 stars both) would hide the climb; a denominator that may reach 0
    # makes the span walked change by change.
    events = [E.visit(at(days=3, seconds=i), f"v{i}") for i in range(1, 30)]
    events += [E.visit(at(days=3, seconds=30), "b1"), E.message(at(days=3, seconds=31), "b1")]
    with patch.object(measures, "SPAN_FROM", 0), patch.object(measures, "SPAN_LEAST", 1):
        walked = projection(events)
    assert walked == projection(events)  # the same as change by change
    rates = [moved(e)["conversion_rate"] for e in walked["timeline"] if "conversion_rate" in e["indicators"]]
    assert rates[0] == (1 / 28, 1) and rates[-2] == (0.1, 5) and rates[-1] == (0.0, 0)


def _leaving_hour() -> tuple[Measures, measures.Outlook]:
    """300 visitors, 28 of them converted (9.3 %: 4 stars), and 190 of them, 19 converted,
    leaving one by one within an hour, every tenth a converted one: the rate stays between
    9.3 % and 9.7 % all along."""
    horizon = parse_ts("2026-04-30T23:59:59.999Z")
    start = parse_ts("2026-04-03T10:00:00Z")
    outlook = measures.Outlook(horizon)
    for k in range(190):
        leaving = {measures.VISITORS: -1, measures.CONVERTED: -1} if k % 10 == 9 else {measures.VISITORS: -1}
        outlook.replace(("person", f"p{k}"), [(start + 1000 + k * 15_000, leaving)])
    m = Measures(parse_ts(APRIL_1), None, None, 0, 0, 0, 0, 0, 0, 0, 0, 0, 300, 28, 0, 0, False, False, 0)
    return m, outlook


def _the_day(outlook: measures.Outlook) -> measures.Span:
    with patch.object(measures, "SPAN_FROM", 0), patch.object(measures, "SPAN_LEAST", 1):
        spans = [item for item in outlook.spans(parse_ts("2026-04-03T00:00:00Z"))
                 if isinstance(item, measures.Span)]
    assert len(spans) == 1  # the day of April 3
    return spans[0]


def test_a_rate_whose_visitors_and_converted_visitors_leave_together_is_passed_whole():
    m, outlook = _leaving_hour()
    span = _the_day(outlook)
    positive, negative = span.bound
    totals, probes = _totals(m), _probes(RB, None, None)
    before = {"conversion_rate": probes["conversion_rate"](totals)}
    assert before == {"conversion_rate": 4}
    # The corners alone (9 of 300 at worst, 28 of 110 at best) say the stars may move ...
    assert _movable(totals, RB, probes, before, ("conversion_rate",), positive, negative, True, False) == \
        {"conversion_rate"}
    # ... the rate's own extremes over the hour say they cannot.
    assert _movable(totals, RB, probes, before, ("conversion_rate",), positive, negative, True, False, span,
                    _ratios(RB, None, None)) == set()


def test_a_change_inside_a_span_drops_what_was_kept_of_it():
    m, outlook = _leaving_hour()
    totals, probes, ratios = _totals(m), _probes(RB, None, None), _ratios(RB, None, None)
    before = {"conversion_rate": probes["conversion_rate"](totals)}
    span = _the_day(outlook)
    assert _movable(totals, RB, probes, before, ("conversion_rate",), *span.bound, True, False, span, ratios) == set()
    # 100 more visitors, none converted, leave at 10:30: by then 16 converted of 180 visitors
    # are left, and the rate jumps to 16 of 80 (20 %: 5 stars).
    outlook.replace(("person", "crowd"), [(parse_ts("2026-04-03T10:30:00Z"), {measures.VISITORS: -100})])
    span = _the_day(outlook)
    assert _movable(totals, RB, probes, before, ("conversion_rate",), *span.bound, True, False, span, ratios) == \
        {"conversion_rate"}


def test_a_projection_made_once_keeps_no_outlook_that_later_events_would_leave_stale():
    # A one-off projection (replay, what-if) builds an outlook of summed changes only and does
    # not attach it: the next projection, after more events, builds its own.
    buyers = [E.message(at(days=n % 20), f"b{n}", conv=f"c{n}") for n in range(12)]
    engine, clock = Engine(RB), parse_ts(APRIL_1)
    stream(engine, buyers)
    engine.advance(clock)
    engine.rating("s1", clock)
    first = engine.projection("s1", clock, once=True)
    assert first["timeline"] and engine.states["s1"].aggregator.outlook is None
    more = [E.message(at(days=30), f"late{n}", conv=f"late{n}") for n in range(6)]
    stream(engine, more)
    engine.rating("s1", clock)
    fresh = Engine(RB)
    stream(fresh, buyers + more)
    fresh.advance(clock)
    fresh.rating("s1", clock)
    assert engine.projection("s1", clock) == fresh.projection("s1", clock) != first
