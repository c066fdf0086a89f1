"""The worker's bookkeeping without a broker: clock, day roll, freeze, publication, restore."""

from __future__ import annotations

import orjson
import pytest

from streams.core.rulebook import load
from streams.core.timeutil import parse_ts
from streams.local.simulate import events as simulated
from streams.service.processor import Effects, Incoming, RatingProcessor, Tick, defer_freeze, partition_for
from tests.conftest import Events as E
from tests.conftest import at

PARTS = 4


@pytest.fixture
def processor():
    return RatingProcessor(load(), PARTS)


def feed(processor, events, published_at=None):
    """Deliver events to their sellers' partitions; return the merged effects."""
    merged = {"forecasts": [], "changes": [], "monthly": [], "dead": [], "writes": []}
    for offset, e in enumerate(events):
        raw = e if isinstance(e, bytes) else orjson.dumps(e)
        seller = "s1" if isinstance(e, bytes) else e["seller_id"]
        eff = processor.handle(raw, seller.encode(), "topic", partition_for(seller, PARTS), offset, published_at)
        merged["forecasts"] += eff.forecasts
        merged["changes"] += eff.changes
        merged["monthly"] += eff.monthly
        merged["dead"] += eff.dead_letters
        merged["writes"] += eff.state_writes
    return merged


def tick(processor, when):
    merged = {"forecasts": [], "changes": [], "monthly": []}
    for p in range(PARTS):
        eff = processor.tick(p, parse_ts(when))
        merged["forecasts"] += eff.forecasts
        merged["changes"] += eff.changes
        merged["monthly"] += eff.monthly
    return merged


def four_buyers(seller="s1", day=1):
    events = [E.message(at(days=day, hours=i), buyer=f"b{i}", seller=seller) for i in range(4)]
    events += [E.product(at(days=day), f"p{i}", tier="top", seller=seller) for i in range(12)]
    events += [E.visit(at(days=day), f"b{i}", seller=seller) for i in range(4)]
    events += [E.reply(at(days=day, hours=i + 1), f"c-b{i}", seller=seller) for i in range(4)]
    return events


def test_publishes_only_when_something_but_as_of_changes(processor):
    out = feed(processor, [E.message(at(days=1), buyer="b1")])
    assert len(out["forecasts"]) == 1
    out = feed(processor, [E.visit(at(days=1, hours=1), "x", abnormal=True)])  # changes nothing
    assert out["forecasts"] == []
    out = feed(processor, [E.message(at(days=1, hours=2), buyer="b2")])
    assert out["forecasts"][0][1]["indicators"]["active_buyers"]["value"] == 2


def test_star_change_up_then_down_by_expiry_alone(processor):
    out = feed(processor, four_buyers())
    ups = [c for _, c in out["changes"]]
    assert ups and ups[-1]["direction"] == "up" and ups[-1]["to"] == 1
    # Only time passes: at the first day boundary after the first buyer ages out, it drops.
    out = tick(processor, "2026-03-31T00:00:00Z")
    assert out["changes"] == []
    out = tick(processor, "2026-04-01T00:00:00Z")
    downs = [c for _, c in out["changes"]]
    assert downs == [{**downs[0], "from": 1, "to": 0, "direction": "down"}]
    assert "active_buyers" in downs[0]["indicators_moved"]


def test_monthly_freeze_once_per_seller_and_not_before_a_seller_existed(processor):
    feed(processor, four_buyers("s1") + four_buyers("s2"))
    late = feed(processor, [E.visit("2026-04-01T12:00:00Z", "late", seller="s3")],  # s3 starts in April
                published_at=parse_ts("2026-04-01T12:00:00Z"))
    assert late["dead"] == []
    assert tick(processor, "2026-04-01T23:59:59Z")["monthly"] == []  # within the 24 h grace
    out = tick(processor, "2026-04-02T00:00:00Z")
    frozen = {seller: r for seller, r in out["monthly"]}
    assert set(frozen) == {"s1", "s2"}
    assert frozen["s1"]["month"] == "2026-03" and frozen["s1"]["as_of"] == "2026-03-31T23:59:59.999Z"
    assert frozen["s1"]["stars"] == 1
    assert tick(processor, "2026-04-03T00:00:00Z")["monthly"] == []
    # Late March events inside the grace period were counted; after it they do not re-freeze.
    out = tick(processor, "2026-05-02T00:00:00Z")
    assert {s for s, _ in out["monthly"]} == {"s1", "s2", "s3"}
    assert {r["month"] for _, r in out["monthly"]} == {"2026-04"}


def test_a_lagging_topic_holds_the_freeze_until_its_march_events_are_read(processor):
    """One partition, two topics consumed unevenly (a backlog draining after a restart): an
    April event on the fast topic must not freeze March while the slow topic still holds
    March events; the freeze waits, then counts them, exactly as replay in time order does."""
    p = partition_for("s1", PARTS)
    march_messages = [e for e in four_buyers("s1") if e["type"] == "buyer_message"]
    march_products = [e for e in four_buyers("s1") if e["type"] != "buyer_message"]
    april = E.message("2026-04-03T00:00:00Z", buyer="b9")
    backlog = {"buyer-messages": march_messages + [april], "product-updates": list(march_products)}

    def deliver(topic):
        e = backlog[topic].pop(0)
        lagging = lambda: [t for t, left in backlog.items() if left]  # noqa: E731
        return processor.handle(orjson.dumps(e), b"s1", topic, p, 0, parse_ts(e["ts"]), lagging).monthly

    frozen = []
    while backlog["buyer-messages"]:  # the fast topic runs into April first
        frozen += deliver("buyer-messages")
    assert frozen == []  # held: product-updates still has March events
    while backlog["product-updates"]:
        frozen += deliver("product-updates")
    frozen += processor.tick(p, parse_ts("2026-04-03T00:00:01Z"), lambda: []).monthly
    reference = RatingProcessor(load(), PARTS)
    feed(reference, sorted(march_messages + march_products, key=lambda e: e["ts"]))
    want = tick(reference, "2026-04-02T00:00:00Z")["monthly"]
    assert len(frozen) == 1
    for k in want[0][1]:
        assert frozen[0][1][k] == want[0][1][k], k
    assert frozen[0][1]["indicators"]["top_super_products"]["value"] == 12  # the slow topic counted


def test_without_lag_information_the_fast_topic_freezes_early(processor):
    """What the hold prevents (and what this test suite would miss without it)."""
    p = partition_for("s1", PARTS)
    events = [e for e in four_buyers("s1") if e["type"] == "buyer_message"]
    events.append(E.message("2026-04-03T00:00:00Z", buyer="b9"))
    frozen = []
    for e in events:
        frozen += processor.handle(orjson.dumps(e), b"s1", "buyer-messages", p, 0, parse_ts(e["ts"])).monthly
    assert len(frozen) == 1 and frozen[0][1]["indicators"]["top_super_products"]["value"] == 0


def test_a_worker_defers_the_freeze_and_settles_it_with_the_lag_it_asked_the_broker(processor):
    p = partition_for("s1", PARTS)
    events = four_buyers("s1") + [E.message("2026-04-03T00:00:00Z", buyer="b9")]
    for i, e in enumerate(events):
        eff = processor.handle(orjson.dumps(e), b"s1", "buyer-messages", p, i, parse_ts(e["ts"]), defer_freeze)
        assert eff.monthly == []
    assert processor.freeze_due(p)
    assert processor.freeze_if_ready(p, ["store-visits"]).monthly == []  # never read here: held
    assert processor.freeze_due(p)
    frozen = processor.freeze_if_ready(p, []).monthly
    assert [s for s, _ in frozen] == ["s1"] and not processor.freeze_due(p)


def test_a_lagging_topic_read_past_a_hole_holds_the_freeze_whatever_its_clock(processor):
    """Soak seed 81: replies 613..620 were dropped around a rebalance, later replies (April)
    were read, so the topic's clock was past March while its March replies were not in yet."""
    p = partition_for("s1", PARTS)
    events = four_buyers("s1")
    replies = [e for e in events if e["type"] == "seller_reply"]
    for i, e in enumerate([e for e in events if e["type"] != "seller_reply"]):
        processor.handle(orjson.dumps(e), b"s1", "other", p, i, parse_ts(e["ts"]), defer_freeze)
    april = E.reply("2026-04-03T00:00:00Z", "c-b9")  # read past the hole
    processor.handle(orjson.dumps(april), b"s1", "seller-replies", p, 9, parse_ts(april["ts"]), defer_freeze)
    assert processor.freeze_due(p)
    assert processor.freeze_if_ready(p, ["seller-replies"], gapped={"seller-replies"}).monthly == []
    for i, e in enumerate(replies):  # the re-read brings the missing March replies
        processor.handle(orjson.dumps(e), b"s1", "seller-replies", p, 5 + i, parse_ts(e["ts"]), defer_freeze)
    frozen = processor.freeze_if_ready(p, []).monthly
    reference = RatingProcessor(load(), PARTS)
    feed(reference, sorted(events, key=lambda e: e["ts"]))
    want = tick(reference, "2026-04-02T00:00:00Z")["monthly"]
    assert [s for s, _ in frozen] == ["s1"]
    assert frozen[0][1]["indicators"] == want[0][1]["indicators"]
    assert frozen[0][1]["indicators"]["response_time"]["value"] == 1.0  # the replies counted


def test_restore_rebuilds_state_and_does_not_repeat_a_freeze(processor):
    out = feed(processor, four_buyers("s1"))
    out["monthly"] += tick(processor, "2026-04-02T00:00:00Z")["monthly"]
    state, forecasts, official = {}, {}, {}
    for key, value in out["writes"]:
        state[key] = value
    for seller, rating in out["forecasts"] + tick(processor, "2026-04-02T00:00:00Z")["forecasts"]:
        forecasts[seller.encode()] = orjson.dumps(rating)
    for seller, record in out["monthly"]:
        official[seller.encode()] = orjson.dumps(record)
    before = processor.engine(partition_for("s1", PARTS)).rating("s1", parse_ts("2026-04-02T00:00:00Z"))

    fresh = RatingProcessor(load(), PARTS)
    assert fresh.restore(state.items(), forecasts.items(), official.items()) == 1
    assert fresh.engine(partition_for("s1", PARTS)).rating("s1", parse_ts("2026-04-02T00:00:00Z")) == before
    again = tick(fresh, "2026-04-03T00:00:00Z")
    assert again["monthly"] == []  # March was already frozen before the restart


def test_bad_input_becomes_a_dead_letter_and_touches_nothing(processor):
    out = feed(processor, [b"{not json", {**E.message(at(days=1)), "channel": "fax"}])
    assert [d.reason for d in out["dead"]] == ["invalid_json", "schema"]
    assert out["dead"][0].raw == b"{not json" and out["dead"][1].topic == "topic"
    assert out["writes"] == [] and out["forecasts"] == []
    assert all(not e.states and e.clock is None for e in processor.engines.values())


def test_future_ts_against_the_clock_or_the_publication_time(processor):
    feed(processor, [E.message(at(days=1))])
    out = feed(processor, [E.message(at(days=3), buyer="b2")])
    assert [d.reason for d in out["dead"]] == ["future_ts"]
    # Published two days later (a sparse topic in a backlog): not bogus, accepted.
    out = feed(processor, [E.message(at(days=3), buyer="b2")], published_at=parse_ts(at(days=3)))
    assert out["dead"] == [] and out["forecasts"]


def test_a_message_not_keyed_by_seller_is_forwarded_to_its_partition(processor):
    event = E.message(at(days=1), seller="s1")
    wrong = (partition_for("s1", PARTS) + 1) % PARTS
    eff = processor.handle(orjson.dumps(event), b"other", "buyer-messages", wrong, 7)
    assert eff.forward == [("buyer-messages", b"s1", orjson.dumps(event))]
    assert eff.forecasts == [] and eff.state_writes == []


def test_wall_clock_mode_advances_without_events():
    now = [parse_ts("2026-03-01T00:00:00Z")]
    processor = RatingProcessor(load(), PARTS, wall_clock=lambda: now[0])
    feed(processor, four_buyers())
    now[0] = parse_ts("2026-04-02T00:00:00Z")
    eff = processor.tick(partition_for("s1", PARTS), parse_ts("2026-03-05T00:00:00Z"))  # stale tick
    assert [c["direction"] for _, c in eff.changes] == ["down"]
    assert [s for s, _ in eff.monthly] == ["s1"]


def test_hostile_input_never_raises_and_never_touches_state():
    """Every mutation is rejected with its reason; state and forecasts equal the valid-only run."""
    from tests.support.hostile import hostile_stream

    valid = four_buyers("s1") + four_buyers("s2", day=2)
    clean = RatingProcessor(load(), PARTS)
    feed(clean, valid)
    dirty = RatingProcessor(load(), PARTS)
    hostile = hostile_stream(valid, 600, seed=3)
    merged = list(valid)
    for i, item in enumerate(hostile):  # interleave
        merged.insert((i * 7) % (len(merged) + 1), item)
    for offset, item in enumerate(merged):
        if isinstance(item, dict):
            raw, seller, expected = orjson.dumps(item), item["seller_id"], None
        else:
            raw, expected, seller = item
        published = parse_ts(at(days=2))  # the Kafka timestamp: a clock even for a first message
        eff = dirty.handle(raw, seller.encode(), "t", partition_for(seller, PARTS), offset, published)
        if expected is None:
            assert eff.dead_letters == []
        else:
            assert [d.reason for d in eff.dead_letters] == [expected], (raw or b"")[:80]
            assert eff.state_writes == [] and eff.forecasts == []
    for seller in ("s1", "s2"):
        p = partition_for(seller, PARTS)
        at_ = clean.engine(p).clock
        assert dirty.engine(p).states[seller] == clean.engine(p).states[seller]
        assert dirty.engine(p).rating(seller, at_) == clean.engine(p).rating(seller, at_)


def march_frozen_for_s1():
    """s1's March (four buyers on March 2) frozen by an event of April 5 that moves the clock
    past the month end plus grace: the feed's effects, the freezing event's, and the record."""
    first = RatingProcessor(load(), PARTS)
    out = feed(first, four_buyers("s1", day=1))  # March 2: inside March's window, not April's
    late = E.visit("2026-04-05T00:00:00Z", "late", seller="s1")  # moves the clock past Apr 2
    eff = first.handle(orjson.dumps(late), b"s1", "t", partition_for("s1", PARTS), 99,
                       parse_ts("2026-04-05T00:00:00Z"))
    return out, eff, dict(eff.monthly)["s1"]


def as_table(writes) -> dict:
    """State writes as the table holds them (None deletes)."""
    table = {}
    for key, value in writes:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    return table


@pytest.mark.parametrize("lost", ["official", "state"])
def test_a_crash_around_the_freeze_neither_loses_nor_changes_it(lost):
    """The clock restored after a crash is already past the month end plus grace. Either the
    official table's write was lost (the record saved with the state is sent again) or the
    state's was (the month's facts were kept, and the freeze is redone to the same record)."""
    out, eff, frozen = march_frozen_for_s1()
    assert frozen["indicators"]["active_buyers"]["value"] == 4
    writes = as_table(out["writes"] + (eff.state_writes if lost == "official" else []))
    forecasts = {seller.encode(): orjson.dumps(r) for seller, r in out["forecasts"]}
    restarted = RatingProcessor(load(), PARTS)
    restarted.restore(writes.items(), forecasts.items(), [])
    again = tick(restarted, "2026-04-06T00:00:00Z")["monthly"]
    assert again == [("s1", frozen)]
    assert tick(restarted, "2026-04-07T00:00:00Z")["monthly"] == []


def test_a_freeze_sent_before_its_state_was_saved_is_not_sent_again():
    """A crash after the monthly record reached star-ratings-monthly (the official table's
    changelog) but before the seller's state write: the restored table has the record, the
    freeze is redone without sending it a second time, and the state takes the sent record."""
    out, _, frozen = march_frozen_for_s1()
    state = as_table(out["writes"])  # the freeze's own state writes lost
    restarted = RatingProcessor(load(), PARTS)
    restarted.restore(state.items(), [], [(b"s1", orjson.dumps(frozen))])
    p = partition_for("s1", PARTS)
    redone = restarted.tick(p, parse_ts("2026-04-06T00:00:00Z"))
    assert redone.monthly == []
    assert restarted.official["s1"] == frozen
    assert restarted.engine(p).states["s1"].official == frozen  # saved with the state now
    assert any(key.startswith(b"s1") for key, _ in redone.state_writes)


def official_part(rating: dict) -> tuple:
    return rating["stars"], rating["risk"], {n: {"value": b["value"], "stars": b["stars"]}
                                             for n, b in rating["indicators"].items()}


def test_the_freeze_equals_the_projection_published_before_it_across_a_day_roll(processor):
    # Four buyers on March 2-5 (1 star), then nothing: the projection as of March 10 says
    # what March 31's official record will be; days roll, the month ends, the freeze runs.
    events = [E.message(at(days=1 + i, hours=9), buyer=f"b{i}") for i in range(4)]
    events += [E.product(at(days=1), f"p{i}", tier="potential") for i in range(12)]
    out = feed(processor, events)
    out = tick(processor, "2026-03-10T00:00:00Z")
    forecast = processor.published["s1"]
    projection = forecast["projection"]
    assert projection["at"] == "2026-03-31T23:59:59.999Z" and projection["timeline"] == []
    out = tick(processor, "2026-03-20T00:00:00Z")  # a day roll: the same projection
    assert processor.published["s1"]["projection"] == projection
    out = tick(processor, "2026-04-02T00:00:01Z")  # past March's end and the grace: the freeze
    [(seller, record)] = out["monthly"]
    assert seller == "s1" and record["month"] == "2026-03"
    assert official_part(record) == (projection["stars"], projection["risk"], projection["indicators"])
    # April began: the forecast was published again with April's projection
    assert processor.published["s1"]["projection"]["at"] == "2026-04-30T23:59:59.999Z"


def test_timeline_entries_that_have_passed_drop_out_of_later_forecasts(processor):
    feed(processor, [E.message(at(days=4 + i, hours=10), buyer=f"b{i}") for i in range(5)])  # March 5-9
    tick(processor, "2026-04-01T00:00:00Z")
    first = processor.published["s1"]["projection"]["timeline"]
    assert [e["at"] for e in first] == ["2026-04-05T10:00:00Z"]  # 5 -> 4 buyers keeps 1 star; 4 -> 3 drops it
    tick(processor, "2026-04-06T00:00:00Z")
    later = processor.published["s1"]
    assert later["projection"]["timeline"] == [] and later["indicators"]["active_buyers"]["stars"] == 0


def test_a_failing_projection_never_fails_the_batch(processor, monkeypatch, caplog):
    from streams.core.engine import Engine

    def broken(self, seller_id, as_of):
        raise KeyError("buyer-secret-id")

    monkeypatch.setattr(Engine, "projection", broken)
    eff = processor.handle(orjson.dumps(E.message(at(days=1), buyer="buyer-secret-id")), b"s1", "topic",
                           partition_for("s1", PARTS), 0)
    [(seller, rating)] = eff.forecasts
    assert seller == "s1" and rating["projection"] is None and rating["stars"] == 0
    assert eff.projection_errors == ["KeyError"]
    assert "buyer-secret-id" not in caplog.text and "KeyError" in caplog.text


def test_a_warning_goes_out_once_and_its_clearing_once(processor):
    feed(processor, four_buyers(day=4))  # March 5: 1 star (4 active buyers); facts leave April 4
    march = [w for p in range(PARTS) for w in processor.tick(p, parse_ts("2026-03-20T00:00:00Z")).warnings]
    assert march == []  # March's projection keeps the star
    april = [w for p in range(PARTS) for w in processor.tick(p, parse_ts("2026-04-01T00:00:00Z")).warnings]
    [(seller, warning)] = april
    assert seller == "s1" and warning["kind"] == "warning"
    assert (warning["stars"], warning["projected_stars"], warning["projected_at"]) == (1, 0, "2026-04-30T23:59:59.999Z")
    assert warning["first_drop"] == {"at": "2026-04-04T00:00:00Z", "stars": 0, "indicators": {
        "active_buyers": {"value": 3, "stars": 0}, "conversion_rate": {"value": 0.0, "stars": 0}}}
    keep = warning["actions"]["to_keep"]
    assert keep[0] == {"indicator": "active_buyers", "stars": 1, "at": "2026-04-04T00:00:00Z", "value_then": 3,
                       "threshold": 4, "more": 1}
    assert keep[1]["indicator"] == "conversion_rate" and keep[1]["threshold"] == 0.1
    again = [w for p in range(PARTS) for w in processor.tick(p, parse_ts("2026-04-02T00:00:00Z")).warnings]
    assert again == []  # re-rated, unchanged: not sent again
    cleared = [w for p in range(PARTS) for w in processor.tick(p, parse_ts("2026-04-05T00:00:00Z")).warnings]
    [(_, record)] = cleared
    assert record["kind"] == "cleared" and record["stars"] == record["projected_stars"] == 0


def test_with_the_projection_switched_off_forecasts_carry_null_and_no_warning_is_sent():
    processor = RatingProcessor(load(), PARTS, projection=False)
    feed(processor, four_buyers(day=4))
    ticks = [processor.tick(p, parse_ts("2026-04-01T00:00:00Z")) for p in range(PARTS)]
    assert processor.published["s1"]["projection"] is None and processor.published["s1"]["stars"] == 1
    assert [w for eff in ticks for w in eff.warnings] == [] and processor.warned == {}


def _sliced_run(processor, batches):
    """Every batch through `batch_steps`; between two steps, each held seller is read as the
    API reads it (its rating, projection and actions at the partition clock)."""
    results, steps = [], 0
    for batch in batches:
        out: dict[int, Effects] = {}
        for _ in processor.batch_steps(batch, None, out):
            steps += 1
            for engine in processor.engines.values():
                for seller, state in list(engine.states.items()):
                    rating = engine.model.rate(seller, state, engine.clock)
                    engine.model.projection(seller, state, engine.clock)
                    engine.model.actions(seller, state, rating, engine.clock)
        results.append(out)
    return results, steps


def test_a_batch_in_steps_is_the_batch_whatever_is_read_between_steps():
    """The worker runs a batch in slices and serves the API between them: the API's reads
    mid-batch (which fill the model's caches) change nothing the batch publishes or writes."""
    raw = [orjson.dumps(e) for e in simulated(3_000, 20, seed=5, days=40)]
    items = [Incoming(line, (seller := orjson.loads(line)["seller_id"]).encode(), "topic",
                      partition_for(seller, PARTS), i, None) for i, line in enumerate(raw)]
    batches = [items[i:i + 250] for i in range(0, len(items), 250)]
    whole = RatingProcessor(load(), PARTS)
    expected = [whole.handle_batch(batch) for batch in batches]
    sliced, steps = _sliced_run(RatingProcessor(load(), PARTS), batches)
    published = sum(len(e.forecasts) for out in expected for e in out.values())
    assert published > 50 and steps > len(items)  # a step per message, then per seller re-rated
    for want, got in zip(expected, sliced):
        assert want == got  # the same partitions, each with every effect: forecasts, changes, writes
    assert any(e.monthly for out in expected for e in out.values())  # a freeze among the batches


def test_records_a_recovery_fenced_are_written_again_with_the_partitions_next_batch():
    """kafka/fence.py: after a restore, the values the store holds for keys whose late records
    the recovery skipped go out again, once, with the next batch of their partition."""
    processor = RatingProcessor(load("global-2023"), 2)
    processor.reassert(1, [(b"seller\x1fproduct\x1fp1", b"[1]"), (b"gone", None)])
    now = parse_ts("2026-03-02T10:00:00Z")
    first = processor.handle_batch([Tick(0, now), Tick(1, now)])
    assert first[1].state_writes[:2] == [(b"seller\x1fproduct\x1fp1", b"[1]"), (b"gone", None)]
    assert all(key != b"gone" for key, _ in first[0].state_writes)  # only their own partition
    later = processor.handle_batch([Tick(1, now + 1000)])
    assert (b"gone", None) not in later[1].state_writes  # once
