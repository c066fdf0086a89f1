"""What-if: a seller's rating and projection as if hypothetical events had happened.

The events are applied to a copy of the seller's state, rebuilt from the entities the live
state would write; the live state, its caches and every table stay as they were. Validation is
the input contract's, so a rejected event gets the reason a dead letter would carry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from streams.core.contract import Event, Rejected, validate
from streams.core.model import RatingModel, SellerFacts
from streams.core.timeutil import format_ts

MAX_EVENTS = 1000
"""Events one what-if may carry."""

NOT_OBJECT = "not_object"
SCHEMA = "schema"


@dataclass(frozen=True)
class Invalid:
    """One hypothetical event that cannot be applied: its position in the request and why."""

    index: int
    reason: str  # a dead-letter reason of the input contract
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "reason": self.reason, "message": self.message}


def hypothetical(seller_id: str, objects: Sequence[Any], clock: int) -> tuple[list[Event], list[Invalid]]:
    """Validated events from request objects: `seller_id` defaults to the seller (another one
    is refused), `event_id` to a generated one, `ts` to `clock` (the seller's partition clock,
    which also bounds future_ts)."""
    events: list[Event] = []
    invalid: list[Invalid] = []
    for index, obj in enumerate(objects):
        if not isinstance(obj, dict):
            invalid.append(Invalid(index, NOT_OBJECT, f"event must be a JSON object, got {type(obj).__name__}"))
            continue
        obj = {"seller_id": seller_id, "event_id": f"what-if-{index}", "ts": format_ts(clock), **obj}
        if obj["seller_id"] != seller_id:
            invalid.append(Invalid(index, SCHEMA, "seller_id: must be the seller of the request"))
            continue
        try:
            events.append(validate(obj, clock))
        except Rejected as exc:
            invalid.append(Invalid(index, exc.reason, exc.message))
    return events, invalid


def what_if(model: RatingModel[Any], seller_id: str, state: SellerFacts | None, events: Sequence[Event],
            clock: int) -> tuple[dict[str, Any] | None, list[Invalid]]:
    """The rating with its projection as if `events` had happened, as of the later of `clock`
    and the latest event; or, if the rulebook cannot use one of them, why (nothing is rated)."""
    copy: Any = model.new_state(seller_id) if state is None else model.state_from_entities(
        seller_id, [(kind, key, data) for (kind, key), data in state.entities()])
    if state is not None:
        copy.clock = state.clock  # the largest ts applied (not rewritten with every event's entities)
    invalid = []
    for index, event in enumerate(events):
        try:
            copy.apply(event)
        except Rejected as exc:
            invalid.append(Invalid(index, exc.reason, exc.message))
    if invalid:
        return None, invalid
    at = max([clock, *(event.ts for event in events)])
    copy.advance(at)
    rating = model.rate(seller_id, copy, at)
    rating["projection"] = model.projection(seller_id, copy, at, once=True)
    return rating, []
