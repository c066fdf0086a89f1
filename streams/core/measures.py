"""Facts to indicator values at one instant (docs/spec.md §1.1 definitions, rulebook parameters).

A seller's measures are the sum of per-entity *contributions*: each conversation adds to the
response figures, each person (buyer/visitor) to active buyers and conversion, each product,
penalty, KWA spend and RFQ quotation to its own totals. A contribution computed at instant
`at` stays valid until its entity changes or until `next_change`, the first instant at which
one of its facts leaves a window or a 24-hour mark passes.

`measure(state, at)` sums every contribution (any instant; the monthly freeze rates a past
month end this way). `Aggregator` keeps the contributions and their sum for a clock that only
moves forward, and recomputes only entities that changed or reached their `next_change`; the
two share the contribution functions, so they cannot disagree.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right, insort
from operator import attrgetter
from dataclasses import dataclass
from typing import Iterable, Iterator

from streams.core.lww import lww_at
from streams.core.state import K_CONVERSATION, K_KWA, K_PENALTY, K_PERSON, K_PRODUCT, K_RFQ, SellerState

LIVE_TIERS = ("potential", "top", "super")

# Positions in a contribution vector.
POTENTIAL, TOP_SUPER, SUPER, VIDEO, RT_SUM, RT_COUNT, ANSWERED, RATE_TOTAL, ACTIVE, VISITORS, \
    CONVERTED, KWA, RFQ, RISK = range(14)
WIDTH = 14
FIELDS = ("potential_products", "top_super_products", "super_products", "video_products", "response_time_ms",
          "response_count", "rate_answered", "rate_total", "active_buyers", "visitors", "converted_visitors",
          "kwa_usd_micro", "rfq_quotations", "risk_points")
"""The Measures field each position of a contribution vector adds to."""


Contribution = tuple[dict[int, int] | None, int | None]  # (non-zero positions, next change)


@dataclass(slots=True)  # not frozen: frozen dataclasses pay a setattr per field on creation
class Measures:
    """Raw values behind the indicators; every field is what the rating and next_star need."""

    at: int
    region: str | None
    category: str | None
    potential_products: int
    top_super_products: int
    super_products: int
    video_products: int
    response_time_ms: int  # sum of first-reply delays over counted conversations
    response_count: int
    rate_answered: int  # response_rate numerator and denominator
    rate_total: int
    active_buyers: int
    visitors: int
    converted_visitors: int
    kwa_usd_micro: int
    rfq_quotations: int
    premium_ads: bool
    showcases_open: bool
    risk_points: int

    def key(self) -> tuple:
        """Every field but `at`: equal keys give equal ratings (apart from as_of)."""
        return _KEY_FIELDS(self)

    @property
    def response_time_hours(self) -> float | None:
        return None if not self.response_count else self.response_time_ms / self.response_count / 3_600_000

    @property
    def response_rate(self) -> float | None:
        return None if not self.rate_total else self.rate_answered / self.rate_total

    @property
    def conversion_rate(self) -> float:
        return self.converted_visitors / self.visitors if self.visitors else 0.0


_KEY_FIELDS = attrgetter(*[f for f in Measures.__dataclass_fields__ if f != "at"])


def _soonest(*instants: int | None) -> int | None:
    present = [i for i in instants if i is not None]
    return min(present) if present else None


def _after(instants: Iterable[int], at: int) -> int | None:
    """The first instant after `at` in an ascending sequence."""
    for ts in instants:
        if ts > at:
            return ts
    return None


def conversation_part(state: SellerState, cid: str, at: int) -> Contribution:
    """Response time and response rate figures of one conversation."""
    conv = state.conversations.get(cid)
    if conv is None or conv.first is None:
        return None, None
    rb = state.rulebook
    first = conv.first
    if first > at:
        return None, first
    if first <= at - rb.window_ms:
        return None, None  # its first message has left W for good
    pending = _after((v[0] for v in conv.spam), at)
    if conv.excluded(at, rb.spam_exclusion_ms):
        return None, _soonest(first + rb.window_ms, pending)
    reply = conv.first_reply()
    if reply is not None and reply <= at:
        delay = reply - first
        part = {RT_SUM: delay, RT_COUNT: 1, RATE_TOTAL: 1, ANSWERED: int(delay <= rb.answer_within_ms)}
        return part, _soonest(first + rb.window_ms, pending)
    mark = first + rb.answer_within_ms  # unanswered: joins the rate's denominator after 24 h
    waiting: dict[int, int] | None = {RATE_TOTAL: 1} if mark <= at else None
    return waiting, _soonest(first + rb.window_ms, mark if mark > at else None, reply, pending)


def person_part(state: SellerState, pid: str, at: int) -> Contribution:
    """Whether a buyer/visitor is active, a visitor, and a converted visitor in W."""
    rb = state.rulebook
    start = at - rb.window_ms
    pending: list[int | None] = []
    earliest_visit = None
    person = state.people.get(pid)
    if person is not None:
        for ts in person.visits:
            if ts > start:
                if ts <= at:
                    earliest_visit = ts
                else:
                    pending.append(ts)
                break
    contact = active = None  # latest buyer message / order placement in W; latest that counts
    for cid in state.buyer_conversations.get(pid, ()):
        conv = state.conversations[cid]
        latest = None
        for ts in reversed(conv.messages):
            if ts <= at:
                latest = ts if ts > start else None
                break
            pending.append(ts)
        if latest is None:
            continue
        contact = latest if contact is None or latest > contact else contact
        pending.append(_after((v[0] for v in conv.spam), at))
        if not conv.excluded(at, rb.spam_exclusion_ms):
            active = latest if active is None or latest > active else active
    for oid in state.buyer_orders.get(pid, ()):
        order = state.orders[oid]
        placed = order.placed
        if placed is None:
            continue
        if placed > at:
            pending.append(placed)
            continue
        if placed <= start:
            continue
        contact = placed if contact is None or placed > contact else contact
        pending.append(_after((s[0] for s in order.statuses), at))
        status = lww_at(order.statuses, at)
        if status is not None and status[2] != "cancelled":
            active = placed if active is None or placed > active else active
    part: dict[int, int] = {}
    if active is not None:
        part[ACTIVE] = 1
    if earliest_visit is not None:
        part[VISITORS] = 1
        if contact is not None and contact >= earliest_visit:
            part[CONVERTED] = 1
    leaving = [ts + rb.window_ms for ts in (earliest_visit, contact, active) if ts is not None]
    return part or None, _soonest(*leaving, *pending)


def product_part(state: SellerState, pid: str, at: int) -> Contribution:
    versions = state.products.get(pid)
    if not versions:
        return None, None
    pending = _after((v[0] for v in versions), at)
    current = lww_at(versions, at)
    if current is None or current[4]:  # not yet known, or removed
        return None, pending
    tier, has_video = current[2], current[3]
    part = {VIDEO: 1} if has_video else {}
    if tier in LIVE_TIERS:
        part[POTENTIAL] = 1
        if tier != "potential":
            part[TOP_SUPER] = 1
            if tier == "super":
                part[SUPER] = 1
    return part or None, pending


def penalty_part(state: SellerState, pid: str, at: int) -> Contribution:
    versions = state.penalties.get(pid)
    if not versions:
        return None, None
    rb = state.rulebook
    issued = versions[0][0]  # a penalty is issued at its earliest event
    if issued > at:
        return None, issued
    if issued <= at - rb.risk_window_ms:
        return None, None
    pending = _soonest(issued + rb.risk_window_ms, _after((v[0] for v in versions), at))
    current = lww_at(versions, at)
    assert current is not None  # issued <= at: a version exists at `at`
    if current[3] and not current[4]:  # serious and not revoked
        return {RISK: current[2]}, pending
    return None, pending


def _windowed_part(ts: int | None, value: int, position: int, at: int, window: int) -> Contribution:
    if ts is None or ts <= at - window:
        return None, None
    if ts > at:
        return None, ts
    return {position: value}, ts + window


def kwa_part(state: SellerState, eid: str, at: int) -> Contribution:
    record = state.kwa.get(eid)
    return _windowed_part(record[0] if record else None, record[1] if record else 0, KWA, at, state.rulebook.window_ms)


def rfq_part(state: SellerState, eid: str, at: int) -> Contribution:
    return _windowed_part(state.rfq.get(eid), 1, RFQ, at, state.rulebook.window_ms)


PARTS = {K_CONVERSATION: conversation_part, K_PERSON: person_part, K_PRODUCT: product_part,
         K_PENALTY: penalty_part, K_KWA: kwa_part, K_RFQ: rfq_part}


def all_keys(state: SellerState) -> set[tuple[str, str]]:
    people = set(state.people) | set(state.buyer_conversations) | set(state.buyer_orders)
    return ({(K_CONVERSATION, k) for k in state.conversations} | {(K_PERSON, k) for k in people}
            | {(K_PRODUCT, k) for k in state.products} | {(K_PENALTY, k) for k in state.penalties}
            | {(K_KWA, k) for k in state.kwa} | {(K_RFQ, k) for k in state.rfq})


def assemble(state: SellerState, totals: list[int] | tuple[int, ...], at: int) -> Measures:
    profile = lww_at(state.profile, at)
    ads = lww_at(state.premium_ads, at)
    showcases = lww_at(state.showcases, at)
    return Measures(
        at=at,
        region=profile[2] if profile else None,
        category=profile[3] if profile else None,
        potential_products=totals[POTENTIAL],
        top_super_products=totals[TOP_SUPER],
        super_products=totals[SUPER],
        video_products=totals[VIDEO],
        response_time_ms=totals[RT_SUM],
        response_count=totals[RT_COUNT],
        rate_answered=totals[ANSWERED],
        rate_total=totals[RATE_TOTAL],
        active_buyers=totals[ACTIVE],
        visitors=totals[VISITORS],
        converted_visitors=totals[CONVERTED],
        kwa_usd_micro=totals[KWA],
        rfq_quotations=totals[RFQ],
        premium_ads=bool(ads and ads[2]),
        showcases_open=bool(showcases and showcases[2]),
        risk_points=totals[RISK],
    )


def measure(state: SellerState, at: int) -> Measures:
    """Measures at any instant, from every contribution (no cache)."""
    totals = [0] * WIDTH
    for kind, key in all_keys(state):
        part, _ = PARTS[kind](state, key, at)
        if part:
            for position, value in part.items():
                totals[position] += value
    return assemble(state, totals, at)


class Aggregator:
    """Cached contributions of one seller for a forward-moving clock.

    Reads `state.changed` (keys touched by apply) and a heap of scheduled next changes; each
    `measures(at)` recomputes only those, so rating a seller with 10,000 buyers after one event
    costs a handful of contribution calls, not 10,000.
    """

    __slots__ = ("state", "at", "parts", "totals", "heap", "scheduled", "outlook")

    def __init__(self, state: SellerState):
        self.state = state
        self.at: int | None = None
        self.parts: dict[tuple[str, str], dict[int, int]] = {}
        self.totals = [0] * WIDTH
        self.heap: list[tuple[int, tuple[str, str]]] = []
        self.scheduled: dict[tuple[str, str], int] = {}
        self.outlook: Outlook | None = None  # kept up to date by measures() once attached

    def measures(self, at: int) -> Measures:
        state = self.state
        if self.at is not None and at < self.at:
            return measure(state, at)  # the past (a freeze): computed afresh, cache untouched
        if self.at is None:
            keys = all_keys(state)
            state.changed.clear()
        else:
            keys, state.changed = state.changed, set()
        outlook = self.outlook
        if outlook is not None and at > outlook.horizon:
            outlook = self.outlook = None  # a new month: attach() builds the next one
        changed = list(keys) if outlook is not None else ()
        heap = self.heap
        while heap and heap[0][0] <= at:
            instant, key = heapq.heappop(heap)
            if self.scheduled.get(key) == instant:
                del self.scheduled[key]
            keys.add(key)
        recompute = self._recompute
        if outlook is None:
            for key in keys:
                recompute(key, at)
        else:
            following = {key: recompute(key, at) for key in keys}
            # Only a key an event touched has a new future: a key whose scheduled instant
            # merely passed goes on as its outlook already says.
            for key in changed:
                outlook.replace(key, future(state, key, self.parts.get(key), following[key], outlook.horizon))
            outlook.prune(at)
        self.at = at
        return assemble(state, self.totals, at)

    def attach_outlook(self, horizon: int) -> Outlook:
        """The outlook up to `horizon` from the cache's instant (built now, kept up to date by
        every later `measures(at)` until `at` passes the horizon)."""
        outlook = self.outlook
        if outlook is None or outlook.horizon != horizon:
            outlook = self.outlook = self._outlook(horizon, keep=True)
        return outlook

    def outlook_once(self, horizon: int) -> Outlook:
        """The outlook up to `horizon` for one projection: the attached one if it is built,
        else one that keeps only the summed changes (not each key's, which only keeping it
        up to date needs) and is not attached."""
        outlook = self.outlook
        if outlook is not None and outlook.horizon == horizon:
            return outlook
        return self._outlook(horizon, keep=False)

    def _outlook(self, horizon: int, keep: bool) -> Outlook:
        outlook = Outlook(horizon)
        if self.at is not None:
            outlook.pruned = self.at
        state, parts = self.state, self.parts
        outlook.build(((key, future(state, key, parts.get(key), first, horizon))
                       for key, first in self.scheduled.items() if first <= horizon), keep)
        return outlook

    def _recompute(self, key: tuple[str, str], at: int) -> int | None:
        part, next_change = PARTS[key[0]](self.state, key[1], at)
        totals = self.totals
        old = self.parts.pop(key, None)
        if old:
            for position, value in old.items():
                totals[position] -= value
        if part:
            for position, value in part.items():
                totals[position] += value
            self.parts[key] = part
        if next_change is not None:
            current = self.scheduled.get(key)
            if current is None or next_change < current:
                heapq.heappush(self.heap, (next_change, key))
                self.scheduled[key] = next_change
        return next_change


def future(state: SellerState, key: tuple[str, str], part: dict[int, int] | None, first: int | None,
           horizon: int) -> list[tuple[int, dict[int, int]]]:
    """How one contribution changes after now if no event arrives: (instant, change) pairs up
    to `horizon`, from its part now and the first instant at which it may change."""
    changes: list[tuple[int, dict[int, int]]] = []
    compute = PARTS[key[0]]
    instant = first
    while instant is not None and instant <= horizon:
        new, following = compute(state, key[1], instant)
        if new != part and (new or part):
            delta = dict(new) if new else {}
            if part:
                for position, value in part.items():
                    left = delta.get(position, 0) - value
                    if left:
                        delta[position] = left
                    else:
                        delta.pop(position, None)
            if delta:
                changes.append((instant, delta))
        part = new
        if following is not None and following <= instant:
            break  # defensive: a contribution's next change is always later
        instant = following
    return changes


SPANS = (86_400_000, 3_600_000)
"""Widths of the outlook's spans, coarse to fine (a day, an hour): see
Outlook.spans."""

SPAN_FROM = 128
"""An outlook keeps span bounds once it has this many instants ahead (below, stepping through
each instant is as cheap)."""


SPAN_LEAST = 8
"""A span with fewer changes than this is walked change by change."""


class Outlook:
    """A seller's totals from now to a horizon (the month's last instant) if no event arrives:
    the summed change at each instant some contribution changes, kept per contribution too, so
    an event replaces only its own contribution's future (`Aggregator.measures`).

    Invariant: for every instant t in (the aggregator's instant, horizon], the aggregator's
    totals plus the changes at instants up to t are the totals `measure(state, t)` gives with
    the state as it is. So the aggregator's totals plus `net` (every change kept, summed) are the
    totals at the horizon: the month's end without walking to it.

    A long outlook (a seller with many buyers leaving the window this month) also keeps, per
    day and per hour, the sums of the positive and of the negative changes in it: over that
    span every running total stays between its value before the span plus the negative sum
    and plus the positive sum, which lets a walk pass a whole span in which no star can move
    (rating.level_changes)."""

    __slots__ = ("horizon", "by_key", "changes", "instants", "net", "pruned", "bounds", "extremes", "kept_from")

    def __init__(self, horizon: int) -> None:
        self.horizon = horizon
        self.by_key: dict[tuple[str, str], list[tuple[int, dict[int, int]]]] = {}
        self.changes: dict[int, dict[int, int]] = {}  # instant -> summed change
        self.instants: list[int] = []  # the keys of `changes`, ascending
        self.net = [0] * WIDTH  # every change in `changes` summed: the totals at the horizon, less the aggregator's
        self.pruned = -(1 << 62)  # instants at or before this are in the totals already
        # per span width: span index -> (positive sums, negative sums), each {position: sum};
        # span k of width w holds the instants in (k * w, (k + 1) * w]
        self.bounds: tuple[dict[int, tuple[dict[int, int], dict[int, int]]], ...] | None = None
        # per span width: span index -> {Ratio: its Extremes over the span}, computed when a
        # walk first asks, dropped when a change of one of the ratio's positions lands in it
        self.extremes: tuple[dict[int, dict[Ratio, Extremes]], ...] = tuple({} for _ in SPANS)
        # per span width: no span below this index is kept (a prune dropped them; none is added
        # after, as every change kept is later than `pruned`)
        self.kept_from: list[int] = [-(1 << 62)] * len(SPANS)

    def build(self, futures: Iterable[tuple[tuple[str, str], list[tuple[int, dict[int, int]]]]],
              keep: bool = True) -> None:
        """Fill an empty outlook with each key's future at once: `replace` for every key, with
        the instants sorted once at the end. Without `keep`, each key's entries are summed and
        let go: the outlook can be walked but not `replace`d into."""
        by_key, changes = self.by_key, self.changes
        for key, entries in futures:
            if not entries:
                continue
            if keep:
                by_key[key] = entries
            for instant, delta in entries:
                summed = changes.get(instant)
                if summed is None:  # summed into later: a kept entry's own delta is copied
                    changes[instant] = dict(delta) if keep else delta
                    continue
                for position, value in delta.items():
                    total = summed.get(position, 0) + value
                    if total:
                        summed[position] = total
                    else:
                        del summed[position]
        for instant in [i for i, summed in changes.items() if not summed]:
            del changes[instant]
        self.instants = sorted(changes)
        net = self.net
        for summed in changes.values():
            for position, value in summed.items():
                net[position] += value

    def replace(self, key: tuple[str, str], entries: list[tuple[int, dict[int, int]]]) -> None:
        old = self.by_key.pop(key, None)
        if old:
            for instant, delta in old:
                if instant > self.pruned:
                    self._add(instant, delta, -1)
        if entries:
            self.by_key[key] = entries
            for instant, delta in entries:
                self._add(instant, delta, 1)

    def _add(self, instant: int, delta: dict[int, int], sign: int) -> None:
        summed = self.changes.get(instant)
        if summed is None:
            summed = self.changes[instant] = {}
            insort(self.instants, instant)
        net = self.net
        for position, value in delta.items():
            total = summed.get(position, 0) + sign * value
            net[position] += sign * value
            if total:
                summed[position] = total
            else:
                del summed[position]
        if not summed:
            del self.changes[instant]
            del self.instants[bisect_left(self.instants, instant)]
        if self.bounds is not None:
            for width, spans in zip(SPANS, self.bounds):
                _bound(spans, (instant - 1) // width, delta, sign)
        for width, known in zip(SPANS, self.extremes):
            cached = known.get((instant - 1) // width)
            if cached:
                for ratio in [r for r in cached if r.numerator in delta or r.denominator in delta]:
                    del cached[ratio]

    def prune(self, at: int) -> None:
        """Forget the changes at or before `at` (the totals hold them now)."""
        instants = self.instants
        if instants and instants[0] <= at:
            cut = bisect_right(instants, at)
            net = self.net
            for instant in instants[:cut]:
                for position, value in self.changes.pop(instant).items():
                    net[position] -= value
            del instants[:cut]
        self.pruned = max(self.pruned, at)
        for level, width in enumerate(SPANS):
            cut, start = at // width, self.kept_from[level]  # spans (i * w, (i + 1) * w] ended by `at`
            if cut <= start:
                continue
            self.kept_from[level] = cut
            for spans in (self.bounds[level] if self.bounds is not None else {}, self.extremes[level]):
                if cut - start > len(spans):  # a long way since the last prune: look at each kept
                    for index in [i for i in spans if i < cut]:
                        del spans[index]
                else:
                    for index in range(start, cut):
                        spans.pop(index, None)

    def after(self, at: int) -> Iterator[tuple[int, dict[int, int]]]:
        """The summed changes after `at`, in time order."""
        return self.between(at, self.horizon)

    def between(self, low: int, high: int) -> Iterator[tuple[int, dict[int, int]]]:
        """The summed changes in (low, high], in time order."""
        instants, changes = self.instants, self.changes
        for instant in instants[bisect_right(instants, low):bisect_right(instants, high)]:
            yield instant, changes[instant]

    def spans(self, at: int) -> Iterator[tuple[int, dict[int, int]] | Span]:
        """The changes after `at` in time order, as `after` gives them, except that whole days
        or hours after `at` with changes in them may come as a `Span`: its caller either
        passes it (`Span.net`: its summed change) or walks it (`Span.inside()`)."""
        if len(self.instants) - bisect_right(self.instants, at) < SPAN_FROM:
            yield from self.after(at)
            return
        if self.bounds is None:
            self.bounds = tuple({} for _ in SPANS)
            for key_entries in self.by_key.values():
                for instant, delta in key_entries:
                    if instant > self.pruned:
                        for width, spans in zip(SPANS, self.bounds):
                            _bound(spans, (instant - 1) // width, delta, 1)
        yield from self.spans_within(0, at, self.horizon)

    def spans_within(self, level: int, low: int, high: int) -> Iterator[tuple[int, dict[int, int]] | Span]:
        """The changes in (low, high]."""
        if level == len(SPANS):
            yield from self.between(low, high)
            return
        instants = self.instants
        width, bounds = SPANS[level], self.bounds[level]  # type: ignore[index]
        index = low // width  # the span holding low + 1
        while index * width < high:
            start, stop = index * width, min((index + 1) * width, high)
            if start < low or stop < (index + 1) * width:  # partly outside (low, high]
                yield from self.spans_within(level + 1, max(start, low), stop)
            else:
                bound = bounds.get(index)
                if bound is not None:
                    first = bisect_right(instants, start)
                    count = bisect_right(instants, stop, first) - first
                    if count >= SPAN_LEAST:
                        yield Span(self, level, start, stop, bound)
                    elif count:  # a few changes: as cheap to look at one by one
                        yield from self.between(start, stop)
            index += 1


    def ratio_extremes(self, level: int, start: int, stop: int, ratio: Ratio) -> Extremes:
        """`ratio`'s Extremes over the whole span (start, stop] of width SPANS[level]: an hour's
        from its changes, a day's from its hours'."""
        spans = self.extremes[level]
        index = start // SPANS[level]
        known = spans.get(index)
        if known is None:
            known = spans[index] = {}
        extremes = known.get(ratio)
        if extremes is None:
            if level + 1 < len(SPANS):
                width = SPANS[level + 1]
                extremes = _joined([self.ratio_extremes(level + 1, part, part + width, ratio)
                                    for part in range(start, stop, width)], ratio.coefficients)
            else:
                extremes = _extremes_of(self.instants, self.changes, start, stop, ratio)
            known[ratio] = extremes
        return extremes


@dataclass(frozen=True, slots=True)
class Ratio:
    """Stars read from `numerator / denominator` (two positions), against fixed levels: over a
    span, `numerator - c * denominator` for each coefficient c tells on which side of each
    level the ratio stays (Extremes). The conversion rate (converted per visitor: `rising`, its
    stars rise with it) and the response time (milliseconds per counted conversation: its stars
    fall as it rises) are such ratios."""

    numerator: int
    denominator: int
    coefficients: tuple[float, ...]
    rising: bool


@dataclass(frozen=True, slots=True)
class Extremes:
    """Over a run of changes, from before the first to after the last: the net change of the
    numerator and the denominator, the least value the denominator's running change takes, the
    largest magnitude either running change takes (`scale`), and per coefficient c the least and
    the largest value of (numerator change - c * denominator change)."""

    numerator: int
    denominator: int
    least_denominator: int
    scale: int
    lows: tuple[float, ...]
    highs: tuple[float, ...]



def _joined(parts: list[Extremes], coefficients: tuple[float, ...]) -> Extremes:
    """The Extremes of consecutive runs of changes, from theirs: each run's values are offset by
    the net change of the runs before it. A run without a change of either position (`scale`
    0) changes nothing and is skipped."""
    n = d = least = scale = 0
    lows = [0.0] * len(coefficients)
    highs = [0.0] * len(coefficients)
    for part in parts:
        if not part.scale:
            continue
        if d + part.least_denominator < least:
            least = d + part.least_denominator
        if abs(n) + abs(d) + part.scale > scale:
            scale = abs(n) + abs(d) + part.scale
        for k, c in enumerate(coefficients):
            base = n - c * d
            if base + part.lows[k] < lows[k]:
                lows[k] = base + part.lows[k]
            if base + part.highs[k] > highs[k]:
                highs[k] = base + part.highs[k]
        n += part.numerator
        d += part.denominator
    return Extremes(n, d, least, scale, tuple(lows), tuple(highs))


def _extremes_of(instants: list[int], changes: dict[int, dict[int, int]], start: int, stop: int,
                 ratio: Ratio) -> Extremes:
    num, den, coefficients = ratio.numerator, ratio.denominator, ratio.coefficients
    n = d = least = scale = 0
    lows = [0.0] * len(coefficients)
    highs = [0.0] * len(coefficients)
    for instant in instants[bisect_right(instants, start):bisect_right(instants, stop)]:
        change = changes[instant]
        a, b = change.get(num, 0), change.get(den, 0)
        if not (a or b):
            continue
        n += a
        d += b
        if d < least:
            least = d
        if abs(n) + abs(d) > scale:
            scale = abs(n) + abs(d)
        for k, c in enumerate(coefficients):
            value = n - c * d
            if value < lows[k]:
                lows[k] = value
            elif value > highs[k]:
                highs[k] = value
    return Extremes(n, d, least, scale, tuple(lows), tuple(highs))


@dataclass(slots=True)
class Span:
    """The changes of an outlook in (start, stop]: `bound`, the sums of their positive and of
    their negative parts, bounds every running total inside it; `net` is the two added."""

    outlook: Outlook
    level: int
    start: int
    stop: int
    bound: tuple[dict[int, int], dict[int, int]]

    @property
    def net(self) -> dict[int, int]:
        positive, negative = self.bound
        net = dict(positive)
        for position, value in negative.items():
            net[position] = net.get(position, 0) + value
        return net

    @property
    def last(self) -> int:
        """The last instant with a change in the span."""
        instants = self.outlook.instants
        return instants[bisect_right(instants, self.stop) - 1]

    def inside(self) -> Iterator[tuple[int, dict[int, int]] | Span]:
        return self.outlook.spans_within(self.level + 1, self.start, self.stop)


def _bound(spans: dict[int, tuple[dict[int, int], dict[int, int]]], index: int, delta: dict[int, int],
           sign: int) -> None:
    bound = spans.get(index)
    if bound is None:
        bound = spans[index] = ({}, {})
    positive, negative = bound
    for position, value in delta.items():
        side = positive if value > 0 else negative
        side[position] = side.get(position, 0) + sign * value
