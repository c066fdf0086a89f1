"""The rating engine: many sellers' states behind one call per event.

This is what `starcast replay` runs and what the worker's agents call; it holds no Faust or
Kafka types, only validated events, states and ratings.
"""

from __future__ import annotations

import gc
from typing import Any, Iterable

from streams.core.contract import Event, parse_event
from streams.core.measures import Aggregator
from streams.core.rating import rate
from streams.core.rulebook import Rulebook
from streams.core import scoring
from streams.core.state import SellerState


def state_class(rulebook: Rulebook) -> type[SellerState]:
    """The kind of per-seller state the rulebook's model rates."""
    return scoring.ScoreState if rulebook.model == "score" else SellerState  # type: ignore[return-value]


def new_state(rulebook: Rulebook, seller_id: str, keep_for_freeze: bool = False) -> SellerState:
    """An empty state of the kind the rulebook's model rates."""
    return state_class(rulebook)(rulebook, seller_id, keep_for_freeze)


def state_from_entities(rulebook: Rulebook, seller_id: str, items: Iterable[tuple[str, str, bytes]],
                        keep_for_freeze: bool = False) -> SellerState:
    """A state rebuilt from the entities its `take_dirty()` wrote."""
    return state_class(rulebook).from_entities(rulebook, seller_id, items, keep_for_freeze)


def tune_gc() -> None:
    """Seller state is millions of small long-lived objects; CPython's default thresholds would
    re-scan them every few thousand allocations. Collect young objects far less often."""
    gc.set_threshold(100_000, 50, 100)


class Engine:
    def __init__(self, rulebook: Rulebook, keep_for_freeze: bool = False):
        self.rulebook = rulebook
        self.keep_for_freeze = keep_for_freeze  # see SellerState: workers that freeze months
        self.states: dict[str, SellerState] = {}
        self.clock: int | None = None  # the stream clock; sellers catch up when next touched

    def state(self, seller_id: str) -> SellerState:
        state = self.states.get(seller_id)
        if state is None:
            state = self.states[seller_id] = new_state(self.rulebook, seller_id, self.keep_for_freeze)
        if self.clock is not None:
            state.advance(self.clock)
        return state

    def ingest(self, raw: bytes | str, clock: int | None = None) -> Event:
        """Validate and apply one message; raises Rejected with no state touched."""
        event = parse_event(raw, clock)
        self.apply(event)
        return event

    def apply(self, event: Event) -> bool:
        return self.state(event.seller_id).apply(event)

    def advance(self, clock: int) -> None:
        """Move the stream clock forward (never back); each seller prunes when next touched."""
        if self.clock is None or clock > self.clock:
            self.clock = clock

    def rating(self, seller_id: str, at: int) -> dict[str, Any]:
        """The seller's rating at `at`; incremental for a forward clock, exact for any `at`."""
        state = self.state(seller_id)
        if self.rulebook.model == "score":  # computed from the facts: few per seller
            return scoring.rate(seller_id, state, at)
        if state.aggregator is None:
            state.aggregator = Aggregator(state)
        return rate(seller_id, state.aggregator.measures(at), self.rulebook)

    def ratings(self, at: int, sellers: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Ratings at `at`, sorted by seller id."""
        return [self.rating(s, at) for s in sorted(self.states if sellers is None else sellers)]
