"""Indicator values to stars: thresholds, the marketing bonus, risk, and what the next star takes.

Pure functions of (Measures, Rulebook): the worker, `starcast replay` and the API all call
`rate()`, so a forecast and a replay of the same events are the same object.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from operator import attrgetter
from typing import Any, Callable, Iterable, Iterator

from streams.core.measures import (ACTIVE, ANSWERED, CONVERTED, FIELDS, KWA, POTENTIAL, RATE_TOTAL, RFQ, RISK,
                                   RT_COUNT, RT_SUM, SUPER, TOP_SUPER, VIDEO, VISITORS, WIDTH, Measures, Ratio,
                                   Span)
from streams.core.projection import Levels, levels_of
from streams.core.rulebook import INDICATORS, Rulebook, Threshold
from streams.core.timeutil import format_ts


def marketing_index(m: Measures, rb: Rulebook) -> int:
    """Points over W per the rulebook's marketing table, capped."""
    return _marketing_points(m.kwa_usd_micro, m.rate_answered, m.rate_total, m.premium_ads, m.rfq_quotations,
                             m.showcases_open, m.video_products, rb)


def _marketing_points(spend: int, answered: int, total: int, premium_ads: bool, rfq: int, showcases_open: bool,
                      video: int, rb: Rulebook) -> int:
    cfg = rb.marketing
    points = 0
    for micro, award in rb.kwa_micro_points:  # the last threshold reached counts
        if spend >= micro:
            points = award
    rate = answered / total if total else None  # Measures.response_rate
    if rate is not None and rate >= cfg["response_rate_min"]:
        points += cfg["response_rate_points"]
    if premium_ads:
        points += cfg["premium_ads_points"]
    points += min(rfq // cfg["rfq_per_quotations"] * cfg["rfq_points"], cfg["rfq_max_points"])
    if showcases_open:
        points += cfg["showcases_points"]
    if video >= cfg["video_min_products"]:
        points += cfg["video_points"]
    return min(points, cfg["cap"])


_VALUES: dict[str, Callable[[Measures, Rulebook], Any]] = {
    "potential_products": lambda m, rb: m.potential_products,
    "top_super_products": lambda m, rb: m.top_super_products,
    "response_time": lambda m, rb: m.response_time_hours,
    "active_buyers": lambda m, rb: m.active_buyers,
    "conversion_rate": lambda m, rb: m.conversion_rate,
    "marketing_index": marketing_index,
}
"""Each indicator's value from the measures."""

_STARS_FROM_VALUE = ("potential_products", "top_super_products", "active_buyers", "conversion_rate",
                     "marketing_index")
_FEEDS: dict[int, tuple[str, ...]] = {
    POTENTIAL: ("potential_products",),
    TOP_SUPER: ("top_super_products",),
    SUPER: _STARS_FROM_VALUE,  # a table may ask for super products per star (Threshold.min_super)
    VIDEO: ("marketing_index",),
    RT_SUM: ("response_time",),
    RT_COUNT: ("response_time",),
    ANSWERED: ("marketing_index",),
    RATE_TOTAL: ("marketing_index",),
    ACTIVE: ("active_buyers",),
    VISITORS: ("conversion_rate",),
    CONVERTED: ("conversion_rate",),
    KWA: ("marketing_index",),
    RFQ: ("marketing_index",),
    RISK: (),  # the risk, not an indicator
}
"""The indicators whose value or stars each position of the measures' totals can move."""


def indicator_values(m: Measures, rb: Rulebook) -> dict[str, float | int | None]:
    return {name: value(m, rb) for name, value in _VALUES.items()}


def _earned(name: str, value: Any, m: Measures, table: Threshold) -> int:
    if name == "response_time":
        if not m.response_count:
            return table.floor_stars
        met = _limits_met(m.response_time_ms, m.response_count, table.limits_ms)
        return max(met, table.floor_stars)
    return table.stars(value, m.super_products)


def _limits_met(total_ms: int, count: int, limits: Iterable[float]) -> int:
    """How many of the response time's levels (milliseconds per conversation, the most lenient
    first) the mean `total_ms / count` meets, counted from the first. Compared in integer
    milliseconds, `total_ms <= limit * count`: a mean of exactly 12 h is 12 h, not 12.000000001."""
    met = 0
    for limit in limits:
        if total_ms > limit * count:
            break
        met += 1
    return met


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
        # The projection that follows a rating starts from the same levels: keep them too.
        if len(_LEVELS) >= _RATINGS_LIMIT:
            _LEVELS.clear()
        _LEVELS[key] = (rb, levels_of(known[1]))
    rating = known[1].copy()
    rating["seller_id"] = seller_id
    rating["as_of"] = format_ts(m.at)
    return rating


_LEVELS: dict[tuple, tuple[Rulebook, Levels]] = {}


def levels(m: Measures, rb: Rulebook) -> Levels:
    """What a projection compares at each instant, without the rest of the rating: the
    stars, the risk, the stars if healthy, and each indicator's value and stars. Memoised on
    the measures, as `rate` is; the result is shared: read it, never change it."""
    key = (id(rb), m.key())
    known = _LEVELS.get(key)
    if known is None or known[0] is not rb:
        if len(_LEVELS) >= _RATINGS_LIMIT:
            _LEVELS.clear()
        known = _LEVELS[key] = (rb, _levels(m, rb))
    return known[1]


def _levels(m: Measures, rb: Rulebook) -> Levels:
    tables = rb.thresholds_for(m.region, m.category)
    values = indicator_values(m, rb)
    stars = {name: _earned(name, values[name], m, tables[name]) for name in INDICATORS}
    apply_bonus(stars, int(values["marketing_index"] or 0), rb)
    lowest = min(stars.values())
    healthy = m.risk_points < rb.unhealthy_points
    return (lowest if healthy else 0, "healthy" if healthy else "unhealthy", lowest,
            {name: (values[name], stars[name]) for name in INDICATORS})


def stars_and_risk(m: Measures, rb: Rulebook) -> tuple[int, str]:
    """`levels(m, rb)`'s stars and risk alone, from the indicators' probes (what a walk compares):
    no value, block or memo entry built, for measures seen once (the month's end ahead)."""
    totals = _totals(m)
    stars: dict[str, int] = {}
    bonus = False
    for name, probe in _probes(rb, m.region, m.category).items():
        if name == "marketing_index":
            stars[name], bonus = probe(totals)
        else:
            stars[name] = probe(totals)
    if bonus:
        apply_bonus(stars, rb.bonus_min_index, rb)  # the index reaches the bonus: all it reads of it
    lowest = min(stars.values())
    healthy = m.risk_points < rb.unhealthy_points
    return (lowest if healthy else 0), ("healthy" if healthy else "unhealthy")


def level_changes(m: Measures, rb: Rulebook, changes: Iterable[tuple[int, dict[int, int]] | Span]
                  ) -> Iterator[tuple[int, Levels]]:
    """The levels after successive changes of the totals (each `(instant, {position: change})`,
    or a `Span` of them; the registers fixed): yielded at every instant at which an
    indicator's stars, whether the marketing index reaches the bonus, or the risk may have moved,
    and at the last instant, so the last levels yielded are those after every change. `m` is
    the measures before the first change; it is updated in place.

    Only the indicators a change feeds are looked at, each against its own stars before the
    change, so a long walk costs a threshold lookup per change, not a rating; and a span in
    which no indicator can move (`_movable`) is passed whole, and inside a span only what its
    bounds could not hold is looked at."""
    probes = _probes(rb, m.region, m.category)
    ratios = _ratios(rb, m.region, m.category)
    totals = _totals(m)  # the running totals (and the registers), walked; `m` follows at each yield
    last = levels(m, rb)  # the levels last yielded (at first, those before any change)
    before: dict[str, Any] = {}  # indicator -> its probe (stars; the index: and its bonus) before the change
    unhealthy = rb.unhealthy_points
    healthy = m.risk_points < unhealthy
    instant = None
    moved = False
    # (changes, what may move in them): inside a span only what its bounds could not hold
    # still may; None: anything
    pending: list[tuple[Iterator[tuple[int, dict[int, int]] | Span], frozenset[str] | None]] = [
        (iter(changes), None)]
    while pending:
        ahead, watch = pending[-1]
        risky = watch is None or RISK_MAY_MOVE in watch
        for item in ahead:
            if isinstance(item, Span):
                positive, negative = item.bound
                affected = _affected(tuple({**positive, **negative}), watch)
                for name in affected:
                    if name not in before:
                        before[name] = probes[name](totals)
                movable = _movable(totals, rb, probes, before, affected, positive, negative, healthy, risky,
                                   item, ratios)
                if movable:
                    pending.append((item.inside(), movable))
                    break  # walk the span's inside, then come back to `ahead`
                for position, amount in item.net.items():
                    totals[position] += amount
                instant, moved = item.last, False
                continue
            instant, change = item
            affected = _affected(tuple(change), watch)
            for name in affected:
                if name not in before:
                    before[name] = probes[name](totals)
            for position, amount in change.items():
                totals[position] += amount
            moved = risky and (totals[RISK] < unhealthy) != healthy
            for name in affected:
                now = probes[name](totals)
                if now != before[name]:
                    before[name] = now
                    moved = True
            if moved:
                _follow(m, totals)
                m.at = instant
                healthy = m.risk_points < unhealthy
                last = levels(m, rb)
                yield instant, last
        else:
            pending.pop()
    _follow(m, totals)
    if instant is not None and not moved:
        # No star, bonus or risk moved since `last`: only the values did.
        m.at = instant
        values = indicator_values(m, rb)
        kept = last[3]
        yield instant, (last[0], last[1], last[2], {name: (values[name], kept[name][1]) for name in INDICATORS})


RISK_MAY_MOVE = "risk"
"""In a set of what may move inside a span, beside indicator names."""


_PREMIUM_ADS, _SHOWCASES_OPEN = WIDTH, WIDTH + 1
"""Positions of the registers in a walk's list of totals, after the totals' own."""

_TOTALS = attrgetter(*FIELDS, "premium_ads", "showcases_open")


def _totals(m: Measures) -> list[Any]:
    """The walk's running totals: `m`'s totals by position (FIELDS), then its two registers
    the marketing index reads."""
    return list(_TOTALS(m))


def _follow(m: Measures, totals: list[Any]) -> None:
    """Bring `m`'s totals to the walk's."""
    for position, name in enumerate(FIELDS):
        setattr(m, name, totals[position])


_MORE_IS_WORSE = frozenset((RT_SUM, RATE_TOTAL, VISITORS))
_DENOMINATORS = frozenset((RT_COUNT, RATE_TOTAL, VISITORS))


def _movable(totals: list[Any], rb: Rulebook, probes: dict[str, Callable[[list[Any]], Any]],
             before: dict[str, Any], affected: tuple[str, ...], positive: dict[int, int], negative: dict[int, int],
             healthy: bool, risk: bool, span: Span | None = None, ratios: dict[str, Ratio] | None = None
             ) -> frozenset[str]:
    """What may differ from `before` somewhere in a span whose running totals stay between
    `totals` (a walk's list, `_totals`) plus `negative` and `totals` plus `positive`, position by
    position: of the `affected` indicators (their stars; the marketing index, also whether it
    reaches the bonus) and, if `risk`, the risk (RISK_MAY_MOVE). Empty: nothing can; otherwise
    only those can, the others are constant over the span.

    Each indicator is monotone in every position it reads (more of a count, a numerator or a
    product tier earns at least as much; more of a denominator or of response time, at most as
    much), so its extremes over the span are at two corners: `low` (the worse end of every
    position) and `high`. Where that does not hold, everything affected may move: a denominator
    that may reach 0 (the value is then undefined or 0, not an extreme), super products moving
    (a table may weigh them against the value), or spend points that are not ascending.

    A ratio indicator (conversion rate, response time) is judged first, and more closely, from
    the span's Extremes (`_ratio_stays`): the corners bound a ratio loosely when its numerator
    and denominator move together, as they do when buyers and visitors leave the window."""
    if span is not None and ratios and SUPER not in positive and SUPER not in negative:
        affected = tuple(name for name in affected
                         if name not in ratios or not _ratio_stays(ratios[name], totals, span))
    anything = frozenset((*affected, RISK_MAY_MOVE) if risk else affected)
    low, high = totals[:], totals[:]
    may: set[str] = set()
    for position in {**positive, **negative}:
        value = totals[position]
        least, most = value + negative.get(position, 0), value + positive.get(position, 0)
        if least == most:
            continue
        if position in _DENOMINATORS and least <= 0:
            return anything
        if position == SUPER or position == KWA and not rb.kwa_monotone:
            return anything
        if position == RISK:
            if risk and ((least < rb.unhealthy_points) != healthy or (most < rb.unhealthy_points) != healthy):
                may.add(RISK_MAY_MOVE)
            continue
        worse, better = (most, least) if position in _MORE_IS_WORSE else (least, most)
        low[position] = worse
        high[position] = better
    for name in affected:
        level = before[name]
        if probes[name](low) != level or probes[name](high) != level:
            may.add(name)
    return frozenset(may)


def _ratios(rb: Rulebook, region: str | None, category: str | None) -> dict[str, Ratio]:
    """The ratio indicators of one threshold table, each as a Ratio whose coefficients are its
    levels (memoised: a few tables recur). Left out, and so judged by the corners only: a table
    whose levels are not in the order the bisect and the response-time loop rely on."""
    return _per_table(_RATIOS, rb, region, category, _ratios_of)


def _ratios_of(rb: Rulebook, tables: dict[str, Threshold]) -> dict[str, Ratio]:
    ratios = {}
    conversion = tables["conversion_rate"]
    if conversion.direction == "at_least" and list(conversion.keys) == sorted(conversion.keys):
        ratios["conversion_rate"] = Ratio(CONVERTED, VISITORS, tuple(float(t) for t in conversion.thresholds),
                                          rising=True)
    hours = tables["response_time"].thresholds
    if list(hours) == sorted(hours, reverse=True):
        ratios["response_time"] = Ratio(RT_SUM, RT_COUNT, tables["response_time"].limits_ms, rising=False)
    return ratios


def _ratio_stays(ratio: Ratio, totals: list[Any], span: Span) -> bool:
    """Whether the indicator's stars certainly stay as they are at `totals` over the whole span:
    the denominator stays positive, and numerator - c * denominator stays clear of zero, on the
    side it is on now, for the level reached and the next one. Clear means by a margin far above
    floating-point error, so True is never wrong; near a level it says False, and the walk
    looks closer."""
    num, den = totals[ratio.numerator], totals[ratio.denominator]
    extremes = span.outlook.ratio_extremes(span.level, span.start, span.stop, ratio)
    if den <= 0 or den + extremes.least_denominator < 1:
        return False
    levels = ratio.coefficients
    # The stars: how many levels num / den reaches (rising), or meets from the first (_earned).
    reached = bisect_right(levels, num / den) if ratio.rising else _limits_met(num, den, levels)
    # A rising ratio's levels reached have num - c * den >= 0, the others < 0; the response
    # time's levels reached have num - c * den <= 0, the others > 0.
    positive_when_reached = ratio.rising
    for index in (reached - 1, reached):
        if not 0 <= index < len(levels):
            continue
        c = levels[index]
        now = num - c * den
        margin = 1e-9 * (abs(num) + c * abs(den) + (1 + c) * extremes.scale + 1)
        if (index < reached) == positive_when_reached:  # must stay above zero
            if now + extremes.lows[index] <= margin:
                return False
        elif now + extremes.highs[index] >= -margin:  # must stay below zero
            return False
    return True


_AFFECTED: dict[tuple[tuple[int, ...], frozenset[str] | None], tuple[str, ...]] = {}


def _affected(positions: tuple[int, ...], watch: frozenset[str] | None) -> tuple[str, ...]:
    """The indicators changes at these positions can move, of those in `watch` (None: of all)
    (memoised: a few tuples recur)."""
    key = (positions, watch)
    names = _AFFECTED.get(key)
    if names is None:
        if len(_AFFECTED) >= 10_000:
            _AFFECTED.clear()
        names = tuple(dict.fromkeys(n for p in positions for n in _FEEDS[p]))
        names = _AFFECTED[key] = names if watch is None else tuple(n for n in names if n in watch)
    return names


_PROBES: dict[tuple[int, str | None, str | None], tuple[Rulebook, Any]] = {}
_RATIOS: dict[tuple[int, str | None, str | None], tuple[Rulebook, Any]] = {}


def _probes(rb: Rulebook, region: str | None, category: str | None) -> dict[str, Callable[[list[Any]], Any]]:
    """Every indicator's probe for one threshold table (memoised: a few tables recur), on a
    walk's list of totals (`_totals`)."""
    return _per_table(_PROBES, rb, region, category,
                      lambda rb, tables: {name: _probe(name, rb, tables[name]) for name in INDICATORS})


def _per_table(memo: dict[tuple[int, str | None, str | None], tuple[Rulebook, Any]], rb: Rulebook,
               region: str | None, category: str | None, build: Callable[[Rulebook, dict[str, Threshold]], Any]) -> Any:
    """`build(rb, tables)` for the threshold table of (region, category), kept in `memo`."""
    key = (id(rb), region, category)
    known = memo.get(key)
    if known is None or known[0] is not rb:  # `is`: an id can be reused once a rulebook is gone
        if len(memo) >= 10_000:
            memo.clear()
        known = memo[key] = (rb, build(rb, rb.thresholds_for(region, category)))
    return known[1]


def _probe(name: str, rb: Rulebook, table: Threshold) -> Callable[[list[Any]], Any]:
    """What decides an indicator's part in the levels, from a walk's totals: its stars, as
    `_earned` gives them; for the marketing index, also whether it reaches the bonus (its value
    moves with every spend or reply, the levels only when one of these does)."""
    stars = table.stars
    if name == "marketing_index":
        least = rb.bonus_min_index

        def marketing(t: list[Any]) -> tuple[int, bool]:
            index = _marketing_points(t[KWA], t[ANSWERED], t[RATE_TOTAL], t[_PREMIUM_ADS], t[RFQ],
                                      t[_SHOWCASES_OPEN], t[VIDEO], rb)
            return stars(index, t[SUPER]), index >= least
        return marketing
    if name == "conversion_rate":  # Measures.conversion_rate
        return lambda t: stars(t[CONVERTED] / t[VISITORS] if t[VISITORS] else 0.0, t[SUPER])
    if name == "response_time":  # _earned's integer comparison, level by level
        floor, limits = table.floor_stars, table.limits_ms

        def response(t: list[Any]) -> int:
            count = t[RT_COUNT]
            return max(_limits_met(t[RT_SUM], count, limits), floor) if count else floor
        return response
    position = {"potential_products": POTENTIAL, "top_super_products": TOP_SUPER, "active_buyers": ACTIVE}[name]
    return lambda t: stars(t[position], t[SUPER])


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
