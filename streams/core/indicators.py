"""The six-indicator model (a model.RatingModel): facts in `state.py`, measured incrementally
in `measures.py`, rated in `rating.py`."""

from __future__ import annotations

from typing import Any, Iterable

from streams.core.measures import Aggregator
from streams.core.rating import rate
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
