"""A worker running a score rulebook (STARCAST_RULEBOOK) on the embedded broker: its API
answers what `starcast replay --rulebook` says, and March freezes on Beijing time."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import orjson
import pytest

from streams.core.rulebook import load
from streams.core.timeutil import parse_ts
from streams import testing
from tests.conftest import rate_events
from tests.integration.test_streaming import produce_events, tick_all
from tests.unit.test_score_rulebooks import strong


def get(base: str, path: str) -> dict | None:
    """The JSON document, or None for a 404 (not rated or not frozen yet)."""
    try:
        with urllib.request.urlopen(base + path, timeout=5) as response:
            return orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def ratings_as_served(base: str, want: dict, deadline: float) -> dict:
    """What the API answers for each seller of `want`, polled until it matches or the deadline."""
    while True:
        got = {s: get(base, f"/sellers/{s}") for s in want}
        if all(got[s] and testing.comparable(got[s]) == testing.comparable(want[s]) for s in want) \
                or time.monotonic() > deadline:
            return got
        time.sleep(1)


@pytest.mark.parametrize("rulebook", ["merchant-3star", "cn-2020"])
def test_worker_rates_and_freezes_with_a_score_rulebook(broker, tmp_path, rulebook):
    prefix = f"score-{rulebook}-"
    worker = testing.WorkerProcess(broker.url, prefix, tmp_path, "w", store="memory://",
                                extra_env={"STARCAST_RULEBOOK": rulebook})
    worker.start().wait_ready()
    try:
        events = strong("s1") + strong("s2", order_usd=600.0, prefix="q")
        produce_events(broker, prefix, events)
        tick_all(broker, prefix, "2026-04-02T00:00:00Z")  # past March's end + 24 h grace, Beijing time
        want = rate_events(events, "2026-04-02T00:00:00Z", rulebook)
        deadline = time.monotonic() + 90
        got = ratings_as_served(worker.base, want, deadline)
        for seller in want:
            assert testing.comparable(got[seller]) == testing.comparable(want[seller])
        assert got["s1"]["stars"] == 3 and got["s2"]["stars"] == 0  # $600 of orders: no transaction star
        official = get(worker.base, "/sellers/s1/official")
        while official is None and time.monotonic() < deadline + 30:  # 404 until the freeze is out
            time.sleep(1)
            official = get(worker.base, "/sellers/s1/official")
        march = rate_events(events, "2026-03-31T15:59:59.999Z", rulebook)["s1"]
        assert official["month"] == "2026-03" and testing.official(official) == testing.official(march)
        assert official["valid_from"] == "2026-04-05T02:00:00Z"
        assert load(rulebook).time_zone.key == "Asia/Shanghai"
        assert parse_ts(official["as_of"]) == parse_ts("2026-03-31T15:59:59.999Z")
    finally:
        worker.stop()


def test_one_worker_rates_seller_groups_with_their_own_rulebooks(broker, tmp_path):
    """STARCAST_RULEBOOK_GROUPS: the default and two groups in one worker; the API answers each
    seller with its group's rulebook, as `starcast replay --groups` does, and the /healthz
    answer names the groups."""
    from streams.core.groups import load_groups
    from streams.replay import replay
    from tests.unit.test_groups import GROUPS, mixed_month

    groups = tmp_path / "groups.toml"
    groups.write_text(GROUPS)
    prefix = "groups-"
    worker = testing.WorkerProcess(broker.url, prefix, tmp_path, "w", store="memory://",
                                extra_env={"STARCAST_RULEBOOK_GROUPS": str(groups)})
    worker.start().wait_ready()
    try:
        events = mixed_month()
        produce_events(broker, prefix, events)
        tick_all(broker, prefix, "2026-04-02T00:00:00Z")
        ratings = replay([orjson.dumps(e) for e in events], load_groups(str(groups)), parse_ts("2026-04-02T00:00:00Z"))
        want = {r["seller_id"]: r for r in ratings}
        deadline = time.monotonic() + 90
        got = ratings_as_served(worker.base, want, deadline)
        assert {s: testing.comparable(got[s]) for s in want} == {s: testing.comparable(want[s]) for s in want}
        assert {s: got[s]["rulebook"] for s in want} == {"cn-1": "cn-2020", "g-1": "global-2023",
                                                         "legacy-7": "merchant-3star"}
        health = get(worker.base, "/healthz")
        assert health["rulebook"] == "global-2023"
        assert health["groups"] == {"cn-pilot": "cn-2020", "legacy": "merchant-3star"}
    finally:
        worker.stop()
