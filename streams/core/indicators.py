"""The six-indicator model (a model.RatingModel): facts in `state.py`, measured incrementally
in `measures.py`, rated in `rating.py`."""

from __future__ import annotations

from typing import Any, Iterable

from streams.core.actions import actions
from streams.core.measures import Aggregator
from streams.core.projection import levels_of, month_end, project
from streams.core.rating import levels, rate
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

    def projection(self, seller_id: str, state: SellerState, as_of: int) -> dict[str, Any]:
        """Walks a fork of the seller's aggregator from `as_of` (docs/spec.md §3.1)."""
        end = month_end(as_of, self.book.time_zone)
        current = self.rate(seller_id, state, as_of)
        aggregator = state.aggregator
        assert aggregator is not None  # attached by rate()
        if aggregator.at != as_of:  # rated at a later instant before: walk from as_of afresh
            aggregator = Aggregator(state)
            aggregator.measures(as_of)
        book = self.book
        return project(levels_of(current), ((t, levels(m, book)) for t, m in aggregator.walk(end)), end)

    def actions(self, seller_id: str, state: SellerState, rating: dict[str, Any], as_of: int) -> dict[str, Any]:
        """What would keep the seller's stars (actions.py)."""
        return actions(state, rating, as_of)
