"""Indicator values to stars: thresholds, the marketing bonus, risk, and what the next star takes.

Pure functions of (Measures, Rulebook): the worker, `starcast replay` and the API all call
`rate()`, so a forecast and a replay of the same events are the same object.
"""

from __future__ import annotations

import math
from typing import Any

from streams.core.measures import Measures
from streams.core.projection import Levels
from streams.core.rulebook import INDICATORS, Rulebook, Threshold
from streams.core.timeutil import format_ts


def marketing_index(m: Measures, rb: Rulebook) -> int:
    """Points over W per the rulebook's marketing table, capped."""
    cfg = rb.marketing
    points = 0
    for usd, award in rb.kwa_usd_points:  # ascending spend thresholds
        if m.kwa_usd_micro >= usd * 1_000_000:
            points = award
    rate = m.response_rate
    if rate is not None and rate >= cfg["response_rate_min"]:
        points += cfg["response_rate_points"]
    if m.premium_ads:
        points += cfg["premium_ads_points"]
    points += min(m.rfq_quotations // cfg["rfq_per_quotations"] * cfg["rfq_points"], cfg["rfq_max_points"])
    if m.showcases_open:
        points += cfg["showcases_points"]
    if m.video_products >= cfg["video_min_products"]:
        points += cfg["video_points"]
    return min(points, cfg["cap"])


def indicator_values(m: Measures, rb: Rulebook) -> dict[str, float | int | None]:
    return {
        "potential_products": m.potential_products,
        "top_super_products": m.top_super_products,
        "response_time": m.response_time_hours,
        "active_buyers": m.active_buyers,
        "conversion_rate": m.conversion_rate,
        "marketing_index": marketing_index(m, rb),
    }


def _earned(name: str, value: Any, m: Measures, table: Threshold) -> int:
    if name == "response_time":
        # Compare in integer milliseconds: a mean of exactly 12 h is 12 h, not 12.000000001.
        if not m.response_count:
            return table.floor_stars
        stars = 0
        for level, hours in enumerate(table.thresholds, start=1):
            if m.response_time_ms <= hours * 3_600_000 * m.response_count:
                stars = level
            else:
                break
        return max(stars, table.floor_stars)
    return table.stars(value, m.super_products)


def apply_bonus(stars: dict[str, int], index: int, rb: Rulebook) -> str | None:
    """Raise eligible indicators by one star in place; returns the first one raised, if any."""
    if index < rb.bonus_min_index:
        return None
    eligible = [n for n in rb.bonus_indicators if stars[n] <= rb.bonus_max_stars_before]
    if not eligible:
        return None
    if rb.bonus_mode == "one":
        # The lowest; min() keeps the first of equals, so ties follow the rulebook's order.
        eligible = [min(eligible, key=lambda n: stars[n])]
    for name in eligible:
        stars[name] += 1
    return eligible[0]


def next_star(name: str, value: Any, stars: int, m: Measures, table: Threshold, rb: Rulebook) -> dict | None:
    """What the indicator needs to reach `stars + 1`, or None at the top."""
    target = stars + 1
    if target > rb.max_stars:
        return None
    needed = table.thresholds[target - 1]
    if name == "response_time":
        if value is None:
            return {"stars": target, "needs": "a manual reply to a buyer's first message", "gap": None}
        gap = round(value - needed, 4)
        return {"stars": target, "needs": f"mean response time {gap:g} h lower (at most {needed:g} h)",
                "gap": gap}
    if name == "conversion_rate":
        visitors = max(m.visitors, 1)
        more = max(math.ceil(needed * visitors - 1e-9) - m.converted_visitors, 1)
        return {"stars": target, "needs": f"conversion rate {needed:.1%} ({more} more converted visitor"
                f"{'s' if more != 1 else ''} at {m.visitors} visitors)", "gap": round(needed - value, 6)}
    gap = max(math.ceil(needed - value), 0)
    unit = {"potential_products": "potential/top/super products", "top_super_products": "top/super products",
            "active_buyers": "active buyers", "marketing_index": "marketing points"}[name]
    needs = f"{gap} more {unit}" if gap else ""
    if name == "top_super_products" and table.min_super and m.super_products < table.min_super[target - 1]:
        extra = table.min_super[target - 1] - m.super_products
        needs = (needs + " and " if needs else "") + f"{extra} super product{'s' if extra != 1 else ''}"
    if name == "marketing_index" and stars == table.floor_stars and gap:
        needs = f"{gap} more marketing points (at least {needed:g})"
    return {"stars": target, "needs": needs or f"reach {needed:g}", "gap": gap}


_BLOCKS: dict[tuple, dict[str, Any]] = {}
_BLOCKS_LIMIT = 100_000


def indicator_block(name: str, value: Any, stars: int, m: Measures, table: Threshold, rb: Rulebook) -> dict:
    """`{value, stars, next_star}`; memoised, since most sellers share a few such blocks."""
    extra = (m.super_products if name == "top_super_products" else
             (m.visitors, m.converted_visitors) if name == "conversion_rate" else None)
    key = (name, id(table), value, stars, extra)
    block = _BLOCKS.get(key)
    if block is None:
        if len(_BLOCKS) >= _BLOCKS_LIMIT:
            _BLOCKS.clear()
        block = _BLOCKS[key] = {"value": value, "stars": stars,
                                "next_star": next_star(name, value, stars, m, table, rb)}
    return block


_RATINGS: dict[tuple, tuple[Rulebook, dict[str, Any]]] = {}
_RATINGS_LIMIT = 20_000


def rate(seller_id: str, m: Measures, rb: Rulebook) -> dict[str, Any]:
    """The rating object of docs/spec.md §3 for one seller at instant m.at.

    Memoised on the measures: half the re-ratings of a stream are of measures seen before
    (many small sellers look alike), and all but `seller_id` and `as_of` follow from them.
    Nested values are shared between ratings: read them, never change them."""
    key = (id(rb), m.key())
    known = _RATINGS.get(key)
    if known is None or known[0] is not rb:  # `is`: an id can be reused once a rulebook is gone
        if len(_RATINGS) >= _RATINGS_LIMIT:
            _RATINGS.clear()
        known = _RATINGS[key] = (rb, _rate(m, rb))
    rating = known[1].copy()
    rating["seller_id"] = seller_id
    rating["as_of"] = format_ts(m.at)
    return rating


def levels(m: Measures, rb: Rulebook) -> Levels:
    """What a projection compares at each instant, without the rest of the rating: the
    stars, the risk, the stars if healthy, and each indicator's value and stars."""
    tables = rb.thresholds_for(m.region, m.category)
    values = indicator_values(m, rb)
    stars = {name: _earned(name, values[name], m, tables[name]) for name in INDICATORS}
    apply_bonus(stars, int(values["marketing_index"] or 0), rb)
    lowest = min(stars.values())
    healthy = m.risk_points < rb.unhealthy_points
    return (lowest if healthy else 0, "healthy" if healthy else "unhealthy", lowest,
            {name: (values[name], stars[name]) for name in INDICATORS})


def _rate(m: Measures, rb: Rulebook) -> dict[str, Any]:
    tables = rb.thresholds_for(m.region, m.category)
    values = indicator_values(m, rb)
    stars = {name: _earned(name, values[name], m, tables[name]) for name in INDICATORS}
    bonus = apply_bonus(stars, int(values["marketing_index"] or 0), rb)  # always an int
    lowest = min(stars.values())
    healthy = m.risk_points < rb.unhealthy_points
    return {
        "seller_id": None,  # set by rate(): kept here for the key order
        "rulebook": rb.name,
        "as_of": None,
        "stars": lowest if healthy else 0,
        "risk": "healthy" if healthy else "unhealthy",
        "risk_points": m.risk_points,
        "stars_if_healthy": lowest,
        "limiting": [name for name in INDICATORS if stars[name] == lowest],
        "bonus_applied_to": bonus,
        "indicators": {
            name: indicator_block(name, values[name], stars[name], m, tables[name], rb) for name in INDICATORS
        },
    }
