"""Seller groups: a rulebook per group of sellers in one deployment (streams/core/groups.py), in
`starcast replay`, in the worker's processor (restore included) and checked by hand."""

from __future__ import annotations

import io
import subprocess
import sys

import orjson
import pytest
from hypothesis import given, settings, strategies as st

from streams.core.groups import RulebookSelection, SellerGroup, load_groups
from streams.core.rulebook import RulebookError, load
from streams.core.timeutil import parse_ts
from streams.replay import replay
from streams.service.processor import GroupedProcessor, Incoming, RatingProcessor, Tick, partition_for
from streams.lab.workload import events as simulate
from tests.conftest import Events as E
from tests.conftest import at, rate_events
from tests.unit.test_score_rulebooks import WHEN, caps, strong

GROUPS = """
default = "global-2023"

[[group]]
name = "cn-pilot"
rulebook = "cn-2020"
sellers = ["cn-1"]

[[group]]
name = "legacy"
rulebook = "merchant-3star"
prefixes = ["legacy-"]
"""


@pytest.fixture
def groups_file(tmp_path):
    path = tmp_path / "groups.toml"
    path.write_text(GROUPS)
    return path


def mixed_month() -> list[dict]:
    """The hand-checked score seller (tests/test_score_rulebooks.py) twice, under two ids, plus a
    seller of the six-indicator model with four answered buyers."""
    events = strong("cn-1") + strong("legacy-7")
    for i in range(4):
        events += [E.message(at(days=20, hours=i), buyer=f"b{i}", seller="g-1"),
                   E.reply(at(days=20, hours=i + 1), f"c-b{i}", seller="g-1")]
    return events


def test_first_matching_group_wins_and_the_rest_get_the_default(groups_file):
    selection = load_groups(str(groups_file))
    assert [b.name for b in selection.rulebooks] == ["global-2023", "cn-2020", "merchant-3star"]
    assert selection.rulebook_for("cn-1").name == "cn-2020"
    assert selection.rulebook_for("legacy-42").name == "merchant-3star"
    assert selection.rulebook_for("cn-2").name == "global-2023"  # listed ids are exact, not prefixes
    both = RulebookSelection(load(), (SellerGroup("a", load("cn-2020"), prefixes=("x",)),
                                      SellerGroup("b", load("merchant-3star"), sellers=frozenset({"x1"}))))
    assert both.rulebook_for("x1").name == "cn-2020"


def test_the_default_comes_from_the_file_or_else_from_the_deployment(tmp_path):
    path = tmp_path / "g.toml"
    path.write_text('[[group]]\nname = "cn"\nrulebook = "cn-2020"\nsellers = ["a"]\n')
    assert load_groups(str(path), default="merchant-3star").default.name == "merchant-3star"


@pytest.mark.parametrize("text, names", [
    ('default = "global-2023"\nextra = 1\n', "extra"),
    ('default = "nope"\n', "default: unknown rulebook 'nope'"),
    ('[[group]]\nname = "g"\nrulebook = "cn-2020"\n', "sellers or prefixes is required"),
    ('[[group]]\nname = "g"\nrulebook = "nope"\nsellers = ["a"]\n', "group[0].rulebook: unknown rulebook"),
    ('[[group]]\nname = "g"\nrulebook = "cn-2020"\nsellers = ["a"]\n'
     '[[group]]\nname = "g"\nrulebook = "cn-2020"\nsellers = ["b"]\n', "group[1].name"),
    ('[[group]]\nname = "g"\nrulebook = "cn-2020"\nsellers = "a"\n', "group[0].sellers"),
    ('[[group]]\nname = "g"\nrulebook = "cn-2020"\nsellerz = ["a"]\n', "unknown key 'sellerz'"),
    ("default = [", "not valid TOML"),
])
def test_a_bad_groups_file_is_refused_naming_the_key(tmp_path, text, names):
    path = tmp_path / "g.toml"
    path.write_text(text)
    with pytest.raises(RulebookError, match=names.replace("[", r"\[").replace("]", r"\]")):
        load_groups(str(path), default="global-2023")


def test_replay_rates_each_group_with_its_rulebook_by_hand(groups_file):
    ratings = {r["seller_id"]: r for r in replay([orjson.dumps(e) for e in mixed_month()],
                                                 load_groups(str(groups_file)), parse_ts(WHEN))}
    assert [ratings[s]["rulebook"] for s in ("cn-1", "g-1", "legacy-7")] == ["cn-2020", "global-2023",
                                                                            "merchant-3star"]
    # cn-2020: customized track, transaction 80 points = 3 stars (hand-checked in test_score_rulebooks)
    assert ratings["cn-1"]["track"] == "customized" and ratings["cn-1"]["stars"] == 3
    # merchant-3star: 90 / 92 / 80 / 92.67 points, three stars
    assert caps(ratings["legacy-7"]) == {"information_display": (90.0, 3), "communication_service": (92.0, 3),
                                         "transaction_conversion": (80.0, 3), "performance_guarantee": (92.67, 3)}
    # global-2023: four active buyers, each answered in 1 h
    assert ratings["g-1"]["indicators"]["active_buyers"]["value"] == 4
    assert ratings["g-1"]["indicators"]["response_time"]["value"] == 1.0


def test_replay_command_takes_a_groups_file(tmp_path, groups_file):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in mixed_month()) + b"\n")
    out = subprocess.run([sys.executable, "-m", "streams.cli", "replay", str(path), "--at", WHEN, "--groups",
                          str(groups_file)], capture_output=True, check=True, timeout=120).stdout
    ratings = [orjson.loads(line) for line in out.splitlines()]
    assert [(r["seller_id"], r["rulebook"]) for r in ratings] == [
        ("cn-1", "cn-2020"), ("g-1", "global-2023"), ("legacy-7", "merchant-3star")]
    bad = subprocess.run([sys.executable, "-m", "streams.cli", "replay", str(path), "--groups",
                          str(tmp_path / "missing.toml")], capture_output=True, timeout=120)
    assert bad.returncode == 2 and b"cannot read the groups file" in bad.stderr


SIMULATED = list(simulate(900, 12, seed=3))
SELLERS = sorted({e["seller_id"] for e in SIMULATED})


@settings(max_examples=15, deadline=None)
@given(st.lists(st.sampled_from(["cn-2020", "merchant-3star", None]), min_size=len(SELLERS), max_size=len(SELLERS)))
def test_grouped_replay_is_each_group_replayed_alone(choice):
    assigned = dict(zip(SELLERS, choice))
    groups = tuple(SellerGroup(name, load(name), frozenset(s for s, c in assigned.items() if c == name))
                   for name in ("cn-2020", "merchant-3star") if name in choice)
    selection = RulebookSelection(load("global-2023"), groups)
    grouped = {r["seller_id"]: r for r in replay([orjson.dumps(e) for e in SIMULATED], selection, None, io.StringIO())}
    when = max(e["ts"] for e in SIMULATED)
    for name in ("cn-2020", "merchant-3star", "global-2023"):
        mine = [e for e in SIMULATED if (assigned[e["seller_id"]] or "global-2023") == name]
        if mine:
            alone = rate_events(mine, when, name)
            assert {s: grouped[s] for s in alone} == alone


def feed_batches(processor, events, partitions=4, size=50):
    """Events in batches of `size`, each to its seller's partition, then every partition ticked
    to the last instant; returns every effect's forecasts, monthly records and state writes."""
    out = {"forecasts": {}, "monthly": [], "state": {}, "rulebooks": set()}
    items = [Incoming(orjson.dumps(e), e["seller_id"].encode(), "t", partition_for(e["seller_id"], partitions), i,
                      parse_ts(e["ts"])) for i, e in enumerate(events)]
    end = max(parse_ts(e["ts"]) for e in events)
    batches = [items[i:i + size] for i in range(0, len(items), size)] + [[Tick(p, end) for p in range(partitions)]]
    for batch in batches:
        for effects in processor.handle_batch(batch).values():
            for seller, rating in effects.forecasts:
                out["forecasts"][seller] = rating
            out["monthly"] += effects.monthly
            out["state"].update(effects.state_writes)
    return out


def without_as_of(rating: dict) -> dict:
    return {k: v for k, v in rating.items() if k != "as_of"}


def test_the_worker_rates_each_group_as_replay_does_and_restores_into_the_right_group(groups_file):
    selection = load_groups(str(groups_file))
    events = mixed_month()
    processor = GroupedProcessor(selection, 4)
    out = feed_batches(processor, events)
    want = {r["seller_id"]: r for r in replay([orjson.dumps(e) for e in events], selection, None, io.StringIO())}
    assert {s: without_as_of(r) for s, r in out["forecasts"].items()} == {s: without_as_of(r) for s, r in want.items()}
    assert isinstance(processor.processors["cn-2020"], RatingProcessor)
    assert set(processor.processors["cn-2020"].published) == {"cn-1"}
    assert set(processor.published) == {"cn-1", "g-1", "legacy-7"}

    # A restarted worker: rebuilt from its tables, each seller back in its group's processor.
    fresh = GroupedProcessor(selection, 4)
    restored = fresh.restore(list(out["state"].items()),
                             [(s.encode(), orjson.dumps(r)) for s, r in out["forecasts"].items()], [])
    assert restored == 3
    assert {name: set(p.published) for name, p in fresh.processors.items()} == {
        "global-2023": {"g-1"}, "cn-2020": {"cn-1"}, "merchant-3star": {"legacy-7"}}
    more = [E.message(at(days=29), buyer="late", seller=s) for s in ("cn-1", "g-1", "legacy-7")]
    again, reference = feed_batches(fresh, more), feed_batches(processor, more)
    assert {s: without_as_of(r) for s, r in again["forecasts"].items()} == {
        s: without_as_of(r) for s, r in reference["forecasts"].items()}


def test_each_group_freezes_on_its_own_rulebooks_month_end(groups_file):
    processor = GroupedProcessor(load_groups(str(groups_file)), 4)
    feed_batches(processor, mixed_month())
    # 2026-04-01T16:00:01Z is past March + 24 h grace in Beijing, not yet in UTC (global-2023:
    # March ends at 00:00Z on April 1, then its own grace).
    frozen = {}
    for p in range(4):
        for seller, record in processor.tick(p, parse_ts("2026-04-01T16:00:01Z")).monthly:
            frozen[seller] = record
    assert frozen["cn-1"]["valid_from"] == "2026-04-05T02:00:00Z"  # the 5th, 10:00 Beijing
    assert frozen["cn-1"]["rulebook"] == "cn-2020" and frozen["cn-1"]["stars"] == 3
    assert frozen["legacy-7"]["rulebook"] == "merchant-3star"


def test_a_message_without_a_seller_is_dead_lettered_by_the_default_rulebook(groups_file):
    processor = GroupedProcessor(load_groups(str(groups_file)), 4)
    effects = processor.handle(b"{not json", None, "buyer-messages", 0, 7)
    (dead,) = effects.dead_letters
    assert dead.reason == "invalid_json" and effects.forecasts == []
