"""The simulated marketplace looks like one: a spread across 0-5★ with most sellers in the middle,
some losing a star before the month ends, open conversations at the end, and only valid events."""

from __future__ import annotations

import io
from collections import Counter

import orjson
import pytest

from streams.core.rulebook import load
from streams.local.simulate import events
from streams.replay import replay

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def month() -> tuple[list[dict], list[dict], str]:
    generated = list(events(None, 120, seed=11))
    errors = io.StringIO()
    ratings = replay((orjson.dumps(e) for e in generated), load("global-2023"), errors=errors)
    return generated, ratings, errors.getvalue()


def test_every_event_meets_the_contract(month) -> None:
    _, ratings, errors = month
    assert errors == ""
    assert len(ratings) == 120


def test_the_spread_of_stars_is_a_marketplaces(month) -> None:
    _, ratings, _ = month
    stars = Counter(r["stars"] for r in ratings)
    share = {s: stars[s] / len(ratings) for s in range(6)}
    assert all(stars[s] > 0 for s in range(6)), stars
    assert share[2] + share[3] >= 0.4, stars  # most in the middle
    assert share[0] <= 0.12 and share[5] <= 0.12, stars  # few at either end
    assert max(share, key=lambda s: share[s]) in (2, 3), stars
    assert 0 < sum(r["risk"] == "unhealthy" for r in ratings) <= 6


def test_some_sellers_would_lose_a_star_before_the_month_ends(month) -> None:
    _, ratings, _ = month
    dropping = [r for r in ratings if r["projection"]["stars"] < r["stars"]]
    assert 3 <= len(dropping) <= len(ratings) // 4
    causes = {name for r in dropping for entry in r["projection"]["timeline"] for name in entry["indicators"]}
    assert len(causes) >= 2  # not one artefact: buyers, conversion, marketing, replies ...


def test_the_month_ends_with_conversations_waiting_for_a_reply(month) -> None:
    generated, _, _ = month
    end = max(e["ts"] for e in generated)
    assert end < "2026-03-31"  # follow-ups after the period are not sent
    opened = {e["conversation_id"] for e in generated if e["type"] == "buyer_message"}
    answered = {e["conversation_id"] for e in generated if e["type"] == "seller_reply" and e.get("manual", True)}
    assert 0.01 < len(opened - answered) / len(opened) < 0.3
    last_day = {e["conversation_id"]: e["seller_id"] for e in generated
                if e["type"] == "buyer_message" and e["ts"] >= "2026-03-30"}
    waiting = {seller for conversation, seller in last_day.items() if conversation not in answered}
    assert len(waiting) >= 10  # replies still due, with a reply-by instant ahead


def test_a_count_scales_every_plan_and_a_seed_repeats_the_month() -> None:
    small = list(events(2_000, 30, seed=5))
    assert 1_700 <= len(small) <= 2_300
    assert small == list(events(2_000, 30, seed=5))
    assert list(events(200, 5, seed=5, days=1))  # a single day, as the benchmarks' warm-ups use
