"""The six-indicator model (a model.RatingModel): facts in `state.py`, measured incrementally
in `measures.py`, rated in `rating.py`."""

from __future__ import annotations

from typing import Any, Iterable, Iterator

from streams.core.actions import actions
from streams.core.measures import Aggregator, assemble
from streams.core.projection import Levels, month_end, project
from streams.core.rating import level_changes, levels, rate, stars_and_risk
from streams.core.rulebook import Rulebook
from streams.core.state import SellerState


class IndicatorModel:
    def __init__(self, book: Rulebook) -> None:
        self.book = book

    def new_state(self, seller_id: str, keep_for_freeze: bool = False) -> SellerState:
        return SellerState(self.book, seller_id, keep_for_freeze)

    def state_from_entities(self, seller_id: str, items: Iterable[tuple[str, str, bytes]],
                            keep_for_freeze: bool = False) -> SellerState:
        return SellerState.from_entities(self.book, seller_id, items, keep_for_freeze)

    def rate(self, seller_id: str, state: SellerState, at: int) -> dict[str, Any]:
        """Incremental for a forward clock (the aggregator keeps window contributions and the
        instants they change), exact for any `at`."""
        if state.aggregator is None:
            state.aggregator = Aggregator(state)
        return rate(seller_id, state.aggregator.measures(at), self.book)

    def stars(self, seller_id: str, state: SellerState, at: int) -> tuple[int, str]:
        """From the indicators' probes on the same incremental measures `rate` reads."""
        if state.aggregator is None:
            state.aggregator = Aggregator(state)
        return stars_and_risk(state.aggregator.measures(at), self.book)

    def release(self, state: SellerState) -> None:
        """Drop the aggregator: its window contributions and the projection's outlook."""
        state.aggregator = None

    def projection(self, seller_id: str, state: SellerState, as_of: int, once: bool = False) -> dict[str, Any]:
        """The seller's outlook to the month's end, rated where the stars may change
        (docs/spec.md §3.1). The outlook is kept by the seller's aggregator between calls, so a
        projection after a few events costs the changes ahead, not a walk of every buyer.
        Spans of the outlook that no star can move in are passed whole; their bounds pay for
        themselves over many projections, not over one. `once` walks every change instead, of
        an outlook that holds only the summed changes and is not kept (`outlook_once`)."""
        end = month_end(as_of, self.book.time_zone)
        aggregator = state.aggregator
        if aggregator is None:
            aggregator = state.aggregator = Aggregator(state)
        if aggregator.at is None or as_of > aggregator.at or (as_of == aggregator.at and state.changed):
            aggregator.measures(as_of)
        elif as_of < aggregator.at:  # rated at a later instant before: an outlook from as_of afresh
            pending = set(state.changed)  # the live aggregator's to consume
            aggregator = Aggregator(state)
            aggregator.measures(as_of)
            state.changed |= pending
        outlook = aggregator.outlook_once(end) if once else aggregator.attach_outlook(end)
        measures = assemble(state, aggregator.totals, as_of)
        current = levels(measures, self.book)
        if _registers_settled(state, as_of):
            steps = level_changes(measures, self.book, outlook.after(as_of) if once else outlook.spans(as_of))
        else:  # registers change ahead (only when rating the past): every instant, rated in full
            steps = self._every_instant(state, aggregator.totals, outlook.after(as_of), as_of, end)
        return project(current, steps, end)

    def projected_stars(self, seller_id: str, state: SellerState, as_of: int) -> tuple[int, str] | None:
        """The projection's stars and risk without its timeline: the levels of the totals at the
        month's end, which are the aggregator's plus its outlook's `net`. None when that needs
        more than the outlook a recent `projection` of the same month left attached (then only
        `projection` can tell)."""
        aggregator = state.aggregator
        if aggregator is None or aggregator.at is None or as_of < aggregator.at:
            return None
        if as_of > aggregator.at or state.changed:
            aggregator.measures(as_of)
        outlook = aggregator.outlook
        if outlook is None or outlook.horizon != month_end(as_of, self.book.time_zone):
            return None
        if not _registers_settled(state, as_of):
            return None
        totals = [total + change for total, change in zip(aggregator.totals, outlook.net)]
        return stars_and_risk(assemble(state, totals, outlook.horizon), self.book)

    def _every_instant(self, state: SellerState, totals: list[int], changes: Iterator[tuple[int, dict[int, int]]],
                       as_of: int, end: int) -> Iterator[tuple[int, Levels]]:
        running = list(totals)
        ahead = dict(changes)
        for versions in (state.profile, state.premium_ads, state.showcases):
            for version in versions:
                if as_of < version[0] <= end:
                    ahead.setdefault(version[0], {})
        for instant in sorted(ahead):
            for position, amount in ahead[instant].items():
                running[position] += amount
            yield instant, levels(assemble(state, running, instant), self.book)

    def actions(self, seller_id: str, state: SellerState, rating: dict[str, Any], as_of: int) -> dict[str, Any]:
        """What would keep the seller's stars (actions.py)."""
        return actions(state, rating, as_of)


def _registers_settled(state: SellerState, as_of: int) -> bool:
    """Whether no register (profile, premium ads, showcases) changes after `as_of`: else (only
    when rating the past) a projection rates every instant in full."""
    return all(not versions or versions[-1][0] <= as_of
               for versions in (state.profile, state.premium_ads, state.showcases))
