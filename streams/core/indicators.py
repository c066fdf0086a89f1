"""The six-indicator model (a model.RatingModel): facts in `state.py`, measured incrementally
in `measures.py`, rated in `rating.py`."""

from __future__ import annotations

from typing import Any, Iterable, Iterator

from streams.core.actions import actions
from streams.core.measures import Aggregator, assemble
from streams.core.lww import lww_at
from streams.core.projection import Levels, levels_of, month_end, project
from streams.core.rating import levels, rate
from streams.core.rulebook import Rulebook
from streams.core.state import SellerState


class IndicatorModel:
    def __init__(self, book: Rulebook) -> None:
        self.book = book
        self._levels: dict[tuple, Levels] = {}  # (totals, registers) -> levels; see _steps

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

    def projection(self, seller_id: str, state: SellerState, as_of: int) -> dict[str, Any]:
        """Walks a fork of the seller's aggregator from `as_of` (docs/spec.md §3.1)."""
        end = month_end(as_of, self.book.time_zone)
        current = self.rate(seller_id, state, as_of)
        aggregator = state.aggregator
        assert aggregator is not None  # attached by rate()
        if aggregator.at != as_of:  # rated at a later instant before: walk from as_of afresh
            aggregator = Aggregator(state)
            aggregator.measures(as_of)
        return project(levels_of(current), self._steps(state, aggregator, as_of, end), end)

    def _steps(self, state: SellerState, aggregator: Aggregator, as_of: int, end: int) -> Iterator[tuple[int, Levels]]:
        """The levels at each instant the walk yields, memoised on the totals and the
        seller's registers: sellers and instants alike share them."""
        book, memo = self.book, self._levels
        settled = all(not versions or versions[-1][0] <= as_of
                      for versions in (state.profile, state.premium_ads, state.showcases))
        context = _registers(state, as_of)
        for instant, totals in aggregator.walk(end):
            if not settled:
                context = _registers(state, instant)
            key = (totals, context)
            known = memo.get(key)
            if known is None:
                if len(memo) >= 20_000:
                    memo.clear()
                known = memo[key] = levels(assemble(state, totals, instant), book)
            yield instant, known

    def actions(self, seller_id: str, state: SellerState, rating: dict[str, Any], as_of: int) -> dict[str, Any]:
        """What would keep the seller's stars (actions.py)."""
        return actions(state, rating, as_of)


def _registers(state: SellerState, at: int) -> tuple:
    """What the measures take from the seller's registers at `at` (profile, ads, showcases)."""
    profile = lww_at(state.profile, at)
    ads = lww_at(state.premium_ads, at)
    showcases = lww_at(state.showcases, at)
    return (profile[2] if profile else None, profile[3] if profile else None, bool(ads and ads[2]),
            bool(showcases and showcases[2]))
