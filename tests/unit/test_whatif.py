"""What-if (streams/core/whatif.py): the rating as if hypothetical events had happened equals
replaying them with the real ones, the live state stays as it was, and rejected events say
which and why with the dead-letter reasons."""

from __future__ import annotations

import orjson

from streams.core.engine import Engine
from streams.core.rulebook import load
from streams.core.timeutil import parse_ts
from streams.core.whatif import hypothetical, what_if
from tests.conftest import Events as E
from tests.conftest import at

RB = load()


def engine_with(events: list[dict]) -> Engine:
    engine = Engine(RB)
    for event in events:
        engine.ingest(orjson.dumps(event))
    return engine


REAL = [E.message(at(days=1), buyer="b1", conv="c1"), E.message(at(days=2), buyer="b2", conv="c2"),
        E.reply(at(days=2, hours=1), "c2"), E.visit(at(days=3), "v1")]


def test_a_what_if_equals_replaying_the_events_and_leaves_the_live_state_alone():
    engine = engine_with(REAL)
    clock = parse_ts(at(days=5))
    engine.advance(clock)
    before_rating = engine.rating_with_projection("s1", clock)  # (moves the state to the clock)
    live = engine.states["s1"]
    before_bytes = live.to_bytes()
    extra = [{"type": "seller_reply", "conversation_id": "c1", "manual": True, "ts": at(days=1, hours=3)},
             {"type": "buyer_message", "buyer_id": "b3", "conversation_id": "c3", "channel": "inquiry"}]
    events, invalid = hypothetical("s1", extra, clock)
    assert invalid == [] and [e.event_id for e in events] == ["what-if-0", "what-if-1"]
    assert events[1].ts == clock  # no ts: the seller's clock
    rating, problems = what_if(engine.model, "s1", live, events, clock)
    assert problems == []
    replayed = engine_with(REAL + [dict(e.body) for e in events])
    want = replayed.rating_with_projection("s1", clock)
    assert rating == {**want, "as_of": rating["as_of"]} and rating["as_of"] == want["as_of"]
    assert rating["indicators"]["active_buyers"]["value"] == 3
    assert rating != before_rating
    assert live.to_bytes() == before_bytes  # nothing live changed
    assert engine.rating_with_projection("s1", clock) == before_rating


def test_an_unknown_seller_is_rated_from_the_hypothetical_events_alone():
    clock = parse_ts(at(days=5))
    events, _ = hypothetical("new", [{"type": "buyer_message", "buyer_id": "b1", "conversation_id": "c1",
                                      "channel": "inquiry"}], clock)
    rating, problems = what_if(Engine(RB).model, "new", None, events, clock)
    assert problems == [] and rating["seller_id"] == "new"
    assert rating["indicators"]["active_buyers"]["value"] == 1 and rating["projection"] is not None


def test_each_rejected_event_is_listed_with_its_index_and_dead_letter_reason():
    clock = parse_ts(at(days=5))
    objects = [
        {"type": "buyer_message", "buyer_id": "b1", "conversation_id": "c1", "channel": "inquiry"},  # fine
        [1, 2],
        {"type": "no_such_thing"},
        {"type": "buyer_message", "buyer_id": "b1", "conversation_id": "c1", "channel": "inquiry",
         "seller_id": "someone-else"},
        {"type": "buyer_message", "buyer_id": "b1", "conversation_id": "c1", "channel": "inquiry",
         "ts": at(days=9)},  # four days ahead of the clock
        {"type": "buyer_message", "conversation_id": "c1", "channel": "inquiry"},  # no buyer_id
    ]
    events, invalid = hypothetical("s1", objects, clock)
    assert len(events) == 1
    assert [(i.index, i.reason) for i in invalid] == [
        (1, "not_object"), (2, "unknown_type"), (3, "schema"), (4, "future_ts"), (5, "schema")]
    assert "buyer_id" in invalid[-1].message
