"""Score models (docs/spec.md §1.2): `merchant-3star` (the Merchant Star Rating guide) and
`cn-2020` (the 2020 Seller Star Rating Rules).

Sub-item values are measured from the seller's facts over their own windows; each becomes a
0-100 score through the rulebook's breakpoints (piecewise linear; the real coefficients are not
public, so the shipped ones are documented defaults an operator can tune); a capability score
is the weighted mean of its sub-item scores; stars come from score thresholds and the lowest
capability wins. With tracks (`cn-2020`), order-based sub-items count only the track's orders,
each track is rated, and the higher one is displayed.

Facts are kept per entity with last-writer-wins versions ordered by (ts, event_id) and
earliest-instant fields combined with min(), so duplicates and reordering change nothing. The
rating is computed from the facts directly (no incremental cache): score sellers have few
facts, and this code is also simple enough to check by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Iterable, Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from streams.core.contract import Event
from streams.core.keys import SUMMARY
from streams.core.lww import lww_add, lww_at
from streams.core.model import PRUNE_EVERY_MS
from streams.core.money import usd_micro
from streams.core.projection import Levels, levels_of, month_end, project
from streams.core.timeutil import DAY, HOUR, format_ts, parse_ts
from streams.core.tomlcheck import RulebookError, require

TRACKS = ("customized", "ready_to_ship")
PAID = ("paid", "shipped", "delivered", "completed")  # "matched and received"

# The sub-items the engine can measure: name -> (what it is, does it depend on the order track).
SUB_ITEMS: dict[str, tuple[str, bool]] = {
    "product_info_quality": ("mean information-quality score of the listed products", False),
    "store_conversion_rate": ("visitors who sent a message / visitors, in the window", False),
    "risk_points": ("penalty points (not revoked) in the window", False),
    "certificates": ("valid certificates", False),
    "business_opportunities": ("conversations opened by an inquiry or RFQ in the window", False),
    "click_through_rate": ("search clicks / exposures in the window", False),
    "response_time": ("mean hours to the first manual reply, rounded up (messages in the window)", False),
    "ta_amount": ("USD of Trade Assurance orders paid in the window, not cancelled", True),
    "ta_buyers": ("buyers of those orders", True),
    "export_visualization": ("trackable shipped orders (weighted) / shipped orders in the window", True),
    "on_time_delivery_rate": ("shipped on time / orders due in the window, not cancelled", True),
    "buyer_evaluation": ("mean of every evaluation's three dimensions, all time (1-5)", True),
    "satisfied_order_rate": ("paid orders not escalated to arbitration / paid orders in the window", True),
}


@dataclass(frozen=True)
class SubItem:
    name: str
    window_ms: int | None  # None: all time / current state
    breakpoints: tuple[tuple[float, float], ...]  # (value, score), values ascending or descending
    missing: float = 0.0  # the score when there is nothing to measure (no visitors, no orders)

    def score(self, value: float | None) -> float:
        """0-100 by linear interpolation between breakpoints, clamped at the ends."""
        points = self.breakpoints
        if value is None:
            return self.missing
        ascending = points[0][0] <= points[-1][0]
        ordered = points if ascending else tuple(reversed(points))
        if value <= ordered[0][0]:
            return ordered[0][1]
        for (x0, y0), (x1, y1) in zip(ordered, ordered[1:]):
            if value <= x1:
                return y0 + (y1 - y0) * (value - x0) / (x1 - x0) if x1 != x0 else y1
        return ordered[-1][1]


@dataclass(frozen=True)
class ScoreBook:
    """A score-model rulebook (model = "score"); the processor reads the schedule fields."""

    name: str
    description: str
    time_zone: ZoneInfo
    max_stars: int
    thresholds: tuple[float, ...]  # capability score for 1..max_stars stars
    capabilities: dict[str, dict[str, float]]  # capability -> {sub-item: weight}
    sub_items: dict[str, SubItem]
    tracks: tuple[str, ...]  # () or TRACKS: rate per track, display the higher
    export_weights: dict[str, float]  # one_touch_export / official_logistics / offline_proof
    usd_per_unit: dict[str, Decimal]
    grace_ms: int
    publish_day: int
    publish_minute: int
    valid_through_day: int | None  # validity ends at the end of this day of the next month
    model: str = "score"

    @property
    def retention_ms(self) -> int:
        """Windowed facts older than clock minus this can never count again (the longest
        window, the freeze grace, and two months for a freeze held back by a lagging topic)."""
        longest = max(s.window_ms or 0 for s in self.sub_items.values())
        return longest + self.grace_ms + 62 * DAY


def parse_score(data: dict, source: str) -> ScoreBook:
    try:
        zone = ZoneInfo(require(data, "time_zone", str, ""))
    except (ZoneInfoNotFoundError, ValueError):
        raise RulebookError(f"time_zone: unknown time zone {data['time_zone']!r}") from None
    max_stars = require(data, "max_stars", int, "")
    thresholds = tuple(require(data, "thresholds", list, ""))
    if len(thresholds) != max_stars or any(a >= b for a, b in zip(thresholds, thresholds[1:])):
        raise RulebookError(f"thresholds: {max_stars} ascending scores expected, got {list(thresholds)}")
    sub_items = {}
    for name, table in require(data, "sub_items", dict, "").items():
        if name not in SUB_ITEMS:
            raise RulebookError(f"sub_items.{name}: unknown sub-item (known: {', '.join(SUB_ITEMS)})")
        days = table.get("window_days")
        if days is not None and (not isinstance(days, int) or days <= 0):
            raise RulebookError(f"sub_items.{name}.window_days: a positive number of days, or absent for all time")
        points = require(table, "breakpoints", list, f"sub_items.{name}.")
        if len(points) < 2 or not all(isinstance(p, list) and len(p) == 2 and 0 <= p[1] <= 100 for p in points):
            raise RulebookError(f"sub_items.{name}.breakpoints: two or more [value, score 0-100] pairs")
        values = [p[0] for p in points]
        if values != sorted(values) and values != sorted(values, reverse=True):
            raise RulebookError(f"sub_items.{name}.breakpoints: values must be monotone")
        missing = table.get("missing_score", 0)
        if not isinstance(missing, (int, float)) or not 0 <= missing <= 100:
            raise RulebookError(f"sub_items.{name}.missing_score: a score 0-100")
        sub_items[name] = SubItem(name, None if days is None else days * DAY,
                                  tuple((float(v), float(s)) for v, s in points), float(missing))
    capabilities = {}
    for cap, weights in require(data, "capabilities", dict, "").items():
        for sub, weight in weights.items():
            if sub not in sub_items:
                raise RulebookError(f"capabilities.{cap}.{sub}: no [sub_items.{sub}]")
            if not isinstance(weight, (int, float)) or weight <= 0:
                raise RulebookError(f"capabilities.{cap}.{sub}: weight must be positive")
        if abs(sum(weights.values()) - 1) > 1e-9:
            raise RulebookError(f"capabilities.{cap}: weights must add up to 1, got {sum(weights.values())}")
        capabilities[cap] = {sub: float(w) for sub, w in weights.items()}
    tracks = tuple(data.get("tracks", ()))
    if tracks and tracks != TRACKS:
        raise RulebookError(f"tracks: either absent or {list(TRACKS)}")
    schedule = require(data, "schedule", dict, "")
    hours, minutes = (int(x) for x in require(schedule, "publish_time", str, "schedule.").split(":"))
    export = data.get("export_weights", {"one_touch_export": 1.0, "official_logistics": 1.0, "offline_proof": 0.5})
    return ScoreBook(
        name=require(data, "name", str, ""), description=data.get("description", ""), time_zone=zone,
        max_stars=max_stars, thresholds=thresholds, capabilities=capabilities, sub_items=sub_items, tracks=tracks,
        export_weights={k: float(v) for k, v in export.items()},
        usd_per_unit={k: Decimal(str(v)) for k, v in require(data, "currencies", dict, "").items()},
        grace_ms=require(schedule, "grace_hours", int, "schedule.") * HOUR,
        publish_day=require(schedule, "publish_day", int, "schedule."), publish_minute=hours * 60 + minutes,
        valid_through_day=schedule.get("valid_through_day"),
    )


# ---- facts -----------------------------------------------------------------------------------
# Entity kinds in the state table (besides the summary), one value per (kind, key).
ORDER, FULFIL, EVAL, DISPUTE, EXPORT, QUALITY, CERT, SEARCH, PENALTY, CONV, VISITOR = (
    "o", "f", "e", "d", "t", "q", "r", "h", "x", "c", "v")
KINDS = (ORDER, FULFIL, EVAL, DISPUTE, EXPORT, QUALITY, CERT, SEARCH, PENALTY, CONV, VISITOR)


class ScoreState:
    """One seller's facts for a score model (a model.SellerFacts)."""

    def __init__(self, book: ScoreBook, seller_id: str, keep_for_freeze: bool = False):
        self.rulebook = book
        self.seller_id = seller_id
        self.keep_for_freeze = keep_for_freeze
        self.clock: int | None = None
        self.watermark: int | None = None
        self.first_seen: int | None = None
        self.frozen_until: int | None = None
        self.official: dict | None = None
        self.facts: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
        self.dirty: set[tuple[str, str]] = set()

    # ---- updates ---------------------------------------------------------------------------
    def apply(self, event: Event) -> bool:
        """Apply one validated event; False when it changes nothing (a duplicate, or too old)."""
        ts, body, kind = event.ts, event.body, event.type
        if self.watermark is not None and ts <= self.watermark - self.rulebook.retention_ms:
            return False
        eid = event.event_id
        facts = self.facts
        key: str
        if kind == "ta_order":
            key = body["order_id"]
            usd = usd_micro(body["amount"], body["currency"], self.rulebook.usd_per_unit, self.rulebook.name)
            changed = lww_add(facts[ORDER].setdefault(key, []),
                           [ts, eid, body["status"], usd, body.get("track", "customized"), body["buyer_id"]])
        elif kind == "order_fulfilment":
            key = body["order_id"]
            agreed = parse_ts(body["agreed_date"])
            changed = lww_add(facts[FULFIL].setdefault(key, []),
                           [ts, eid, body["status"], agreed, body.get("track", "customized")])
        elif kind == "buyer_evaluation":
            key = body["order_id"]
            mean = (body["product_quality"] + body["seller_service"] + body["delivery"]) / 3
            changed = lww_add(facts[EVAL].setdefault(key, []), [ts, eid, mean, body.get("track", "customized")])
        elif kind == "dispute":
            key = body["order_id"]
            changed = lww_add(facts[DISPUTE].setdefault(key, []),
                           [ts, eid, body["arbitration"], body.get("track", "customized")])
        elif kind == "export_signal":
            key = f"{body['order_id']}|{body['kind']}"
            old = facts[EXPORT].get(key)
            first = ts if old is None else min(old[0], ts)
            new = [first, body["order_id"], body["kind"], body.get("track", "customized")]
            changed = old != new
            facts[EXPORT][key] = new
        elif kind == "product_quality":
            key = body["product_id"]
            changed = lww_add(facts[QUALITY].setdefault(key, []), [ts, eid, body["score"], body.get("removed", False)])
        elif kind == "certificate":
            key = body["certificate_id"]
            changed = lww_add(facts[CERT].setdefault(key, []), [ts, eid, body["valid"]])
        elif kind == "search_stats":
            key = body["date"]
            changed = lww_add(facts[SEARCH].setdefault(key, []), [ts, eid, body["exposures"], body["clicks"]])
        elif kind == "penalty":
            key = body["penalty_id"]
            changed = lww_add(facts[PENALTY].setdefault(key, []),
                           [ts, eid, int(body["points"]), body.get("revoked", False)])
        elif kind == "buyer_message":
            key = body["conversation_id"]
            conv = facts[CONV].setdefault(key, [None, None, None, []])  # first ts, buyer, channel, replies
            old = list(conv[:3])
            if conv[0] is None or (ts, body["buyer_id"]) < (conv[0], conv[1]):
                conv[0], conv[1], conv[2] = ts, body["buyer_id"], body["channel"]
            changed = conv[:3] != old
        elif kind == "seller_reply":
            if not body.get("manual", True):
                return False
            key = body["conversation_id"]
            conv = facts[CONV].setdefault(key, [None, None, None, []])
            changed = ts not in conv[3]
            if changed:
                conv[3] = sorted([*conv[3], ts])
        elif kind == "store_visit":
            if body.get("abnormal", False):
                return False
            key = body["visitor_id"]
            visits = facts[VISITOR].setdefault(key, [])
            changed = ts not in visits
            if changed:
                visits.append(ts)
                visits.sort()
        else:
            return False  # a type this model does not rate (product tiers, marketing, profiles, spam)
        if changed:
            self.dirty.add((_KIND_OF[kind], key))
        if self.clock is None or ts > self.clock:
            self.clock = ts
        if self.first_seen is None or ts < self.first_seen:
            self.first_seen = ts
            self.dirty.add((SUMMARY, ""))
        return changed

    def advance(self, clock: int) -> None:
        """Move the watermark (never back) and drop windowed facts that can never count again."""
        if self.watermark is not None and clock <= self.watermark:
            return
        previous, self.watermark = self.watermark, clock
        if previous is not None and clock - previous < PRUNE_EVERY_MS:
            return  # old facts are harmless until then
        cut = clock - self.rulebook.retention_ms
        if self.keep_for_freeze and self.frozen_until is not None:
            cut = min(cut, self.frozen_until - self.rulebook.retention_ms)
        for kind, last in ((VISITOR, lambda v: v[-1] if v else None), (CONV, lambda c: max([c[0] or 0, *c[3]])),
                           (SEARCH, lambda v: v[-1][0]), (PENALTY, lambda v: v[-1][0]),
                           (DISPUTE, lambda v: v[-1][0]), (FULFIL, lambda v: v[-1][0]), (EXPORT, lambda e: e[0]),
                           (ORDER, lambda v: v[-1][0])):
            table = self.facts[kind]
            for key in [k for k, value in table.items() if (last(value) or 0) <= cut]:
                del table[key]
                self.dirty.add((kind, key))

    def mark_frozen(self, month_end: int, record: dict) -> None:
        self.frozen_until = month_end
        self.official = record
        self.dirty.add((SUMMARY, ""))

    # ---- reading ---------------------------------------------------------------------------
    def next_change(self, at: int | None = None) -> int | None:
        """The first instant after `at` (default: the clock) when a fact leaves a window."""
        at = self.clock if at is None else at
        if at is None:
            return None
        soonest = None
        for instant, window in self._windowed():
            end = instant + window
            if end > at and (soonest is None or end < soonest):
                soonest = end
        return soonest

    def _windowed(self) -> Iterator[tuple[int, int]]:
        """(instant, window) for every fact instant that some windowed sub-item counts."""
        windows = {name: sub.window_ms for name, sub in self.rulebook.sub_items.items() if sub.window_ms}
        for kind, names, instants in (
            (VISITOR, ("store_conversion_rate",), lambda key, v: v),
            (CONV, ("store_conversion_rate", "business_opportunities", "response_time"),
             lambda key, c: [c[0]] if c[0] is not None else []),
            (SEARCH, ("click_through_rate",), lambda key, v: [_date_start(key, self.rulebook)]),
            (PENALTY, ("risk_points",), lambda key, v: [v[0][0]]),
            (ORDER, ("ta_amount", "ta_buyers", "satisfied_order_rate"),
             lambda key, v: [min((x[0] for x in v if x[2] in PAID), default=v[0][0])]),
            (FULFIL, ("on_time_delivery_rate", "export_visualization"), lambda key, v: [v[-1][3], v[-1][0]]),
        ):
            spans = [windows[n] for n in names if n in windows]
            if spans:
                for key, value in self.facts[kind].items():
                    for instant in instants(key, value):
                        for span in spans:
                            yield instant, span

    # ---- serialisation ---------------------------------------------------------------------
    def summary_dump(self) -> list[Any]:
        return [self.watermark, self.clock, self.first_seen, self.frozen_until, self.official]

    def take_dirty(self) -> Iterator[tuple[tuple[str, str], bytes | None]]:
        dirty, self.dirty = self.dirty, set()
        for kind, key in sorted(dirty):
            if kind == SUMMARY:
                yield (kind, key), orjson.dumps(self.summary_dump())
            else:
                value = self.facts[kind].get(key)
                yield (kind, key), None if value is None else orjson.dumps(value)

    def entities(self) -> Iterator[tuple[tuple[str, str], bytes]]:
        yield (SUMMARY, ""), orjson.dumps(self.summary_dump())
        for kind in KINDS:
            for key in sorted(self.facts[kind]):
                yield (kind, key), orjson.dumps(self.facts[kind][key])

    def to_bytes(self) -> bytes:
        return orjson.dumps([self.seller_id, [[k, key, orjson.Fragment(b)] for (k, key), b in self.entities()]])

    def size_hint(self) -> int:
        """Estimated bytes in memory (sellers.py's budget); see docs/performance.md."""
        return 4_000 + 2_100 * sum(len(facts) for facts in self.facts.values())

    def fact_instants(self) -> Iterator[int]:
        if self.clock is not None:
            yield self.clock

    @property
    def people(self) -> dict[str, Any]:
        return self.facts[VISITOR]

    @classmethod
    def from_entities(cls, book: ScoreBook, seller_id: str, items: Iterable[tuple[str, str, bytes]],
                      keep_for_freeze: bool = False) -> "ScoreState":
        state = cls(book, seller_id, keep_for_freeze)
        for kind, key, data in items:
            value = orjson.loads(data)
            if kind == SUMMARY:
                state.watermark, state.clock, state.first_seen, state.frozen_until, state.official = value
            else:
                state.facts[kind][key] = value
        return state

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ScoreState) and self.to_bytes() == other.to_bytes()


_KIND_OF = {"ta_order": ORDER, "order_fulfilment": FULFIL, "buyer_evaluation": EVAL, "dispute": DISPUTE,
            "export_signal": EXPORT, "product_quality": QUALITY, "certificate": CERT, "search_stats": SEARCH,
            "penalty": PENALTY, "buyer_message": CONV, "seller_reply": CONV, "store_visit": VISITOR}


def _date_start(date: str, book: ScoreBook) -> int:
    """Start of a YYYY-MM-DD day in the rulebook's time zone (search stats count per day)."""
    return int(datetime.fromisoformat(date).replace(tzinfo=book.time_zone).timestamp() * 1000)


# ---- measuring and rating ----------------------------------------------------------------------
def _inside(instant: int | None, at: int, window: int | None) -> bool:
    return instant is not None and instant <= at and (window is None or instant > at - window)


def measure(state: ScoreState, at: int, track: str | None) -> dict[str, float | None]:
    """Every sub-item's value at `at` (order-based ones for `track` only, when given)."""
    book, facts = state.rulebook, state.facts
    win = {name: sub.window_ms for name, sub in book.sub_items.items()}
    values: dict[str, float | None] = {}

    def on_track(t: str) -> bool:
        return track is None or t == track

    if "product_info_quality" in win:
        scores = [v[2] for v in (lww_at(versions, at) for versions in facts[QUALITY].values()) if v and not v[3]]
        values["product_info_quality"] = sum(scores) / len(scores) if scores else None
    if "certificates" in win:
        values["certificates"] = sum(1 for versions in facts[CERT].values() if (v := lww_at(versions, at)) and v[2])
    if "risk_points" in win:
        points = 0
        for versions in facts[PENALTY].values():
            current = lww_at(versions, at)
            if current and not current[3] and _inside(versions[0][0], at, win["risk_points"]):
                points += current[2]
        values["risk_points"] = points
    convs = facts[CONV]
    if "store_conversion_rate" in win:
        w = win["store_conversion_rate"]
        visitors = {vid for vid, visits in facts[VISITOR].items() if any(_inside(t, at, w) for t in visits)}
        buyers = {c[1] for c in convs.values() if _inside(c[0], at, w) and c[2] in ("inquiry", "im")}
        values["store_conversion_rate"] = len(visitors & buyers) / len(visitors) if visitors else None
    if "business_opportunities" in win:
        w = win["business_opportunities"]
        values["business_opportunities"] = sum(1 for c in convs.values()
                                               if _inside(c[0], at, w) and c[2] in ("inquiry", "rfq_reply"))
    if "response_time" in win:
        w = win["response_time"]
        hours = []
        for first, _, _, replies in convs.values():
            if _inside(first, at, w):
                answered = [r for r in replies if first <= r <= at]
                if answered:
                    hours.append(-(-(answered[0] - first) // HOUR))  # rounded up
        values["response_time"] = sum(hours) / len(hours) if hours else None
    if "click_through_rate" in win:
        w = win["click_through_rate"]
        shown = clicked = 0
        for date, versions in facts[SEARCH].items():
            current = lww_at(versions, at)
            if current and _inside(_date_start(date, book), at, w):
                shown, clicked = shown + current[2], clicked + current[3]
        values["click_through_rate"] = clicked / shown if shown else None
    paid = {}  # order -> (buyer, usd, track) paid in the window and not cancelled at `at`
    w_paid = win.get("ta_amount", win.get("ta_buyers", win.get("satisfied_order_rate")))
    if any(n in win for n in ("ta_amount", "ta_buyers", "satisfied_order_rate")):
        for oid, versions in facts[ORDER].items():
            seen = [v for v in versions if v[0] <= at]
            if not seen:
                continue
            current = seen[-1]
            paid_at = min((v[0] for v in seen if v[2] in PAID), default=None)
            if current[2] != "cancelled" and on_track(current[4]) and _inside(paid_at, at, w_paid):
                paid[oid] = (min(v[5] for v in seen), current[3])  # deterministic if sources disagree
    if "ta_amount" in win:
        values["ta_amount"] = sum(usd for _, usd in paid.values()) / 1_000_000
    if "ta_buyers" in win:
        values["ta_buyers"] = len({buyer for buyer, _ in paid.values()})
    if "satisfied_order_rate" in win:
        escalated = sum(1 for oid in paid if (v := lww_at(facts[DISPUTE].get(oid, []), at)) and v[2])
        values["satisfied_order_rate"] = (len(paid) - escalated) / len(paid) if paid else None
    fulfilled = {oid: v for oid, versions in facts[FULFIL].items() if (v := lww_at(versions, at)) and on_track(v[4])}
    if "on_time_delivery_rate" in win:
        w = win["on_time_delivery_rate"]
        # Due in the window (agreed date passed), or shipped early inside it; cancelled never.
        due = [v for v in fulfilled.values()
               if v[2] == "shipped" and (_inside(v[3], at, w) or _inside(v[0], at, w) and v[0] <= v[3])]
        on_time = sum(1 for v in due if v[0] <= v[3])
        values["on_time_delivery_rate"] = on_time / len(due) if due else None
    if "export_visualization" in win:
        w = win["export_visualization"]
        shipped = {oid for oid, v in fulfilled.items() if v[2] == "shipped" and _inside(v[0], at, w)}
        weights = book.export_weights
        best: dict[str, float] = {}
        for first, oid, kind, _ in facts[EXPORT].values():
            if oid in shipped and first <= at:
                best[oid] = max(best.get(oid, 0.0), weights.get(kind, 0.0))  # one order counts once
        values["export_visualization"] = min(sum(best.values()) / len(shipped), 1.0) if shipped else None
    if "buyer_evaluation" in win:
        means = [v[2] for versions in facts[EVAL].values() if (v := lww_at(versions, at)) and on_track(v[3])]
        values["buyer_evaluation"] = sum(means) / len(means) if means else None
    return values


def _stars(score: float, book: ScoreBook) -> int:
    return sum(1 for threshold in book.thresholds if score >= threshold)


def _rate_track(state: ScoreState, at: int, track: str | None) -> dict[str, Any]:
    book = state.rulebook
    values = measure(state, at, track)
    capabilities: dict[str, dict[str, Any]] = {}
    levels: dict[str, int] = {}
    for cap, weights in book.capabilities.items():
        scores = {name: round(book.sub_items[name].score(values[name]), 2) for name in weights}
        subs = {name: {"value": _round(values[name]), "score": scores[name]} for name in weights}
        score = round(sum(scores[name] * weight for name, weight in weights.items()), 2)
        stars = _stars(score, book)
        nxt = None if stars >= book.max_stars else {"stars": stars + 1, "score": book.thresholds[stars],
                                                    "gap": round(book.thresholds[stars] - score, 2)}
        capabilities[cap] = {"value": score, "stars": stars, "next_star": nxt, "sub_items": subs}
        levels[cap] = stars
    lowest = min(levels.values())
    return {"stars": lowest, "limiting": [cap for cap, level in levels.items() if level == lowest],
            "indicators": capabilities}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def rate(seller_id: str, state: ScoreState, at: int) -> dict[str, Any]:
    """The rating object (docs/spec.md §3) for a score model: `indicators` are the capabilities, each
    with its score as `value`; with tracks, both are in `tracks` and the higher is displayed."""
    book = state.rulebook
    if book.tracks:
        tracks = {t: _rate_track(state, at, t) for t in book.tracks}
        shown = max(book.tracks, key=lambda t: (tracks[t]["stars"], -book.tracks.index(t)))
        best = tracks[shown]
    else:
        tracks, shown, best = None, None, _rate_track(state, at, None)
    rating = {"seller_id": seller_id, "rulebook": book.name, "as_of": format_ts(at), "stars": best["stars"],
              "risk": "healthy", "risk_points": 0, "stars_if_healthy": best["stars"], "limiting": best["limiting"],
              "bonus_applied_to": None, "indicators": best["indicators"]}
    if tracks is not None:
        rating["track"] = shown
        rating["tracks"] = {t: {"stars": r["stars"], "limiting": r["limiting"], "indicators": r["indicators"]}
                            for t, r in tracks.items()}
    return rating




class ScoreModel:
    """The capability-score model (a model.RatingModel): rated from the facts directly."""

    def __init__(self, book: ScoreBook) -> None:
        self.book = book

    def new_state(self, seller_id: str, keep_for_freeze: bool = False) -> ScoreState:
        return ScoreState(self.book, seller_id, keep_for_freeze)

    def state_from_entities(self, seller_id: str, items: Iterable[tuple[str, str, bytes]],
                            keep_for_freeze: bool = False) -> ScoreState:
        return ScoreState.from_entities(self.book, seller_id, items, keep_for_freeze)

    def rate(self, seller_id: str, state: ScoreState, at: int) -> dict[str, Any]:
        return rate(seller_id, state, at)

    def release(self, state: ScoreState) -> None:
        """Nothing to drop: a score seller is rated from its facts directly."""

    def projection(self, seller_id: str, state: ScoreState, as_of: int, once: bool = False) -> dict[str, Any]:
        """Walks the instants at which a fact leaves a sub-item's window (docs/spec.md §3.1)."""
        end = month_end(as_of, self.book.time_zone)

        def steps() -> Iterator[tuple[int, Levels]]:
            instant: int | None = as_of
            while True:
                instant = state.next_change(instant)
                if instant is None or instant > end:
                    return
                yield instant, levels_of(rate(seller_id, state, instant))

        return project(levels_of(rate(seller_id, state, as_of)), steps(), end)

    def stars(self, seller_id: str, state: ScoreState, at: int) -> tuple[int, str]:
        rating = rate(seller_id, state, at)
        return rating["stars"], rating["risk"]

    def projected_stars(self, seller_id: str, state: ScoreState, as_of: int) -> tuple[int, str] | None:
        """The rating at the month's end: what the walk ends with, for one rating."""
        rating = rate(seller_id, state, month_end(as_of, self.book.time_zone))
        return rating["stars"], rating["risk"]

    def actions(self, seller_id: str, state: ScoreState, rating: dict[str, Any], as_of: int) -> dict[str, Any]:
        """Score models: the state does not tell which action keeps a capability's score."""
        return {"unanswered_conversations": [], "to_keep": [], "spend_leaving": []}
