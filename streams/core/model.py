"""The interface every rating model implements, and what the worker reads of any rulebook.

Two models exist: the six-indicator model (`indicators.py`: `state.py`, `measures.py`,
`rating.py`) and the capability-score model (`scoring.py`). The engine, the worker and replay
see only these Protocols, so neither model's types leak into the other.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Mapping, Protocol, TypeVar
from zoneinfo import ZoneInfo

from streams.core.contract import Event

PRUNE_EVERY_MS = 7 * 24 * 3600 * 1000
"""How often a seller's state drops facts no window can count again, in every model: memory
housekeeping only (ratings already ignore such facts)."""


class Book(Protocol):
    """What the engine and the worker read of any rulebook: identity, clock and schedule."""

    @property
    def name(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def time_zone(self) -> ZoneInfo: ...
    @property
    def grace_ms(self) -> int: ...
    @property
    def publish_day(self) -> int: ...
    @property
    def publish_minute(self) -> int: ...
    @property
    def valid_through_day(self) -> int | None: ...
    @property
    def retention_ms(self) -> int: ...


class SellerFacts(Protocol):
    """One seller's state in any model. Every update is idempotent and order-free: applying
    an event twice, or events in any order, gives the same state."""

    seller_id: str
    clock: int | None  # the largest ts applied
    first_seen: int | None  # the smallest ts applied (no official rating before it)
    frozen_until: int | None  # end of the latest month frozen for this seller
    official: dict | None  # that month's record, saved in the same write as the mark
    dirty: set[tuple[str, str]]  # entity keys changed since the last take_dirty()

    def apply(self, event: Event) -> bool:
        """Apply a validated event; False when it changes nothing. Raises Rejected (before
        any change) for input the rulebook cannot use."""
        ...

    def advance(self, clock: int) -> None:
        """Move the watermark to the stream clock (never back) and drop what can't matter."""
        ...

    def mark_frozen(self, month_end: int, record: dict) -> None: ...

    def next_change(self) -> int | None:
        """The next instant after the last rating at which a window change alters it."""
        ...

    def take_dirty(self) -> Iterator[tuple[tuple[str, str], bytes | None]]:
        """Yield and clear ((kind, key), bytes, or None for deleted) of every changed entity."""
        ...

    def summary_dump(self) -> list[Any]: ...

    def entities(self) -> Iterator[tuple[tuple[str, str], bytes]]: ...

    def fact_instants(self) -> Iterator[int]:
        """Instants of the facts held (to re-derive the clock after a restore)."""
        ...

    def size_hint(self) -> int:
        """Estimated bytes this state holds in memory, its derived data included."""
        ...

    def to_bytes(self) -> bytes:
        """The whole state as one document (snapshots, size measurements, equality)."""
        ...

    @property
    def people(self) -> Mapping[str, Any]:
        """The buyers and visitors whose facts are held (for size measurements)."""
        ...


State = TypeVar("State", bound=SellerFacts)


class RatingModel(Protocol[State]):
    """A model: its rulebook, how to make and restore a seller's state, and how to rate it."""

    @property
    def book(self) -> Book: ...

    def new_state(self, seller_id: str, keep_for_freeze: bool = False) -> State: ...

    def state_from_entities(self, seller_id: str, items: Iterable[tuple[str, str, bytes]],
                            keep_for_freeze: bool = False) -> State:
        """A state rebuilt from the entities its `take_dirty()` wrote."""
        ...

    def rate(self, seller_id: str, state: State, at: int) -> dict[str, Any]:
        """The rating object of `state` at instant `at` (exact for any `at` the state still
        covers; incremental for a forward clock where the model can)."""
        ...

    def projection(self, seller_id: str, state: State, as_of: int, once: bool = False) -> dict[str, Any]:
        """The month's official rating if no event arrives after `as_of`, and the instants
        its stars would change (docs/spec.md §3.1). `once`: the state is projected this once
        (a replay, a what-if), so nothing is prepared for the next projection."""
        ...

    def stars(self, seller_id: str, state: State, at: int) -> tuple[int, str]:
        """`rate(...)`'s stars and risk alone (as incremental, and for less where the model can)."""
        ...

    def projected_stars(self, seller_id: str, state: State, as_of: int) -> tuple[int, str] | None:
        """`projection(...)`'s stars and risk, where the model can tell them for much less than
        the projection costs (the timeline walk); None where it cannot."""
        ...

    def actions(self, seller_id: str, state: State, rating: dict[str, Any], as_of: int) -> dict[str, Any]:
        """What the seller can do now to keep its stars, where the state can tell:
        `unanswered_conversations`, `to_keep` and `spend_leaving` (lists, possibly empty)."""
        ...

    def release(self, state: State) -> None:
        """Drop what rating the seller cached for the next rating (a one-off evaluation, such
        as a replay, has no next one): memory goes back to the state's own."""
        ...
