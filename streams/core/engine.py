"""The rating engine: many sellers' states behind one call per event.

This is what `starcast replay` runs and what the worker's processor calls; it holds no Faust
or Kafka types, only validated events, states and ratings, and sees a rating model only
through `model.RatingModel`.
"""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING, Any, Iterable, Iterator, MutableMapping

from streams.core.contract import Event, parse_event
from streams.core.indicators import IndicatorModel
from streams.core.model import RatingModel, SellerFacts
from streams.core.rulebook import Rulebook
from streams.core.scoring import ScoreBook, ScoreModel

if TYPE_CHECKING:
    from streams.core.sellers import SellerCache


def model_for(book: Rulebook | ScoreBook) -> RatingModel[Any]:
    """The rating model a rulebook is written for."""
    return ScoreModel(book) if isinstance(book, ScoreBook) else IndicatorModel(book)


def tune_gc() -> None:
    """Seller state is millions of small long-lived objects; CPython's default thresholds would
    re-scan them every few thousand allocations. Collect young objects less often, and in
    collections small enough not to stall a batch: a collection's pause grows with the objects
    it examines (in a worker, about 1 µs each, scattered over a large heap), so 100,000 young
    objects took 40-430 ms, and 10,000 take a few. Middle-aged ones are examined every tenth
    young collection (up to 100,000 objects); full collections stay CPython's own, once the
    long-lived objects grew by a quarter."""
    gc.set_threshold(10_000, 10, 100)


class Engine:
    def __init__(self, rulebook: Rulebook | ScoreBook, keep_for_freeze: bool = False,
                 states: "MutableMapping[str, SellerFacts] | SellerCache[SellerFacts] | None" = None):
        self.rulebook = rulebook
        self.model = model_for(rulebook)
        self.keep_for_freeze = keep_for_freeze  # see SellerState: workers that freeze months
        # Every seller in memory (a dict), or a bounded cache over a store (sellers.py): both
        # give None for a seller they do not know, and the engine then starts a new one.
        self.states: Any = {} if states is None else states
        self.clock: int | None = None  # the stream clock; sellers catch up when next touched

    def state(self, seller_id: str) -> SellerFacts:
        state = self.states.get(seller_id)
        if state is None:
            state = self.states[seller_id] = self.model.new_state(seller_id, self.keep_for_freeze)
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
        return self.model.rate(seller_id, self.state(seller_id), at)

    def projection(self, seller_id: str, as_of: int, once: bool = False) -> dict[str, Any]:
        """The seller's projection as of `as_of` (docs/spec.md §3.1); `once`: see RatingModel."""
        return self.model.projection(seller_id, self.state(seller_id), as_of, once)

    def stars(self, seller_id: str, at: int) -> tuple[int, str]:
        """The seller's stars and risk at `at`, as `rating` gives them, without the rest of it."""
        return self.model.stars(seller_id, self.state(seller_id), at)

    def projected_stars(self, seller_id: str, as_of: int) -> tuple[int, str] | None:
        """The projection's stars and risk as of `as_of`, if the model can tell them for much
        less than the projection (RatingModel.projected_stars); else None."""
        return self.model.projected_stars(seller_id, self.state(seller_id), as_of)

    def actions(self, seller_id: str, rating: dict[str, Any], as_of: int) -> dict[str, Any]:
        return self.model.actions(seller_id, self.state(seller_id), rating, as_of)

    def rating_with_projection(self, seller_id: str, at: int, once: bool = False) -> dict[str, Any]:
        rating = self.rating(seller_id, at)
        rating["projection"] = self.projection(seller_id, at, once)
        return rating

    def each_rating(self, at: int, projection: bool = False) -> Iterator[dict[str, Any]]:
        """Every seller's rating at `at` once, in seller order, releasing what each rating
        cached: for a one-off evaluation (replay), whose memory stays the state's."""
        for seller in sorted(self.states):
            yield self.rating_with_projection(seller, at, once=True) if projection else self.rating(seller, at)
            self.model.release(self.states[seller])

    def ratings(self, at: int, sellers: Iterable[str] | None = None,
                projection: bool = False) -> list[dict[str, Any]]:
        """Ratings at `at`, sorted by seller id (with their projections, if asked)."""
        rate = self.rating_with_projection if projection else self.rating
        return [rate(s, at) for s in sorted(self.states if sellers is None else sellers)]
