"""The worker against a real Kafka-protocol broker (tansu, started by the fixture).

A scripted month goes in through the input topics; what comes out of star-forecasts,
star-changes, star-ratings-monthly and the dead-letter topic is checked against
`starcast replay` over the same events, including after a worker is killed (-9) mid-month and
again after the freeze. tests/integration/test_crash.py kills two workers at random points.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import time
import urllib.error
import urllib.request

import orjson

from streams.core.contract import TOPICS
from streams.core.rulebook import load
from streams.core.timeutil import parse_ts
from streams.replay import replay
from streams.local.broker import EmbeddedBroker
from streams import testing
from streams.lab.workload import events as simulated
from tests.conftest import Events as E
from tests.conftest import at

PARTITIONS = 4
_prefixes = itertools.count()


class Worker(testing.WorkerProcess):
    """A `starcast worker` child process with its own topic prefix and web port."""

    def __init__(self, broker: EmbeddedBroker, prefix: str, tmp_path, store: str = "memory://"):
        super().__init__(broker.url, prefix, tmp_path, "worker", store=store, partitions=PARTITIONS)

    def start(self) -> "Worker":
        super().start()
        self.wait_ready()
        return self

    def wait_processed(self, inputs: int, timeout: float = 120) -> None:
        """Until the worker has handled `inputs` input messages (any outcome)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.metrics().get("starcast_events_total", 0) >= inputs:
                return
            time.sleep(0.5)
        raise AssertionError(f"worker handled {self.metrics().get('starcast_events_total')} of {inputs}")

    def get(self, path: str) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=5) as response:
                return response.status, orjson.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, orjson.loads(exc.read())


async def _produce(bootstrap: str, prefix: str, messages: list[tuple[str, bytes | None, bytes, int | None]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        for topic, key, value, partition in messages:
            await producer.send(prefix + topic, key=key, value=value, partition=partition)
        await producer.flush()
    finally:
        await producer.stop()


def worker_pair(broker: EmbeddedBroker, prefix: str, tmp_path, env: dict[str, str]) -> list[testing.WorkerProcess]:
    """Two workers of one group, in-memory stores, `env` added (not started)."""
    return [testing.WorkerProcess(broker.url, prefix, tmp_path, name, store="memory://", partitions=PARTITIONS,
                                  extra_env=env) for name in ("a", "b")]


def produce_events(broker, prefix, events) -> None:
    asyncio.run(_produce(broker.bootstrap, prefix, [
        (TOPICS[e["type"]], e["seller_id"].encode(), orjson.dumps(e), None) for e in events]))


def tick_all(broker, prefix, when: str) -> None:
    value = orjson.dumps({"now": parse_ts(when)})
    asyncio.run(_produce(broker.bootstrap, prefix, [("starcast-ticks", None, value, p) for p in range(PARTITIONS)]))


def read_topic(broker, topic: str, idle: float = 3.0) -> list:
    return testing.read_topic(broker.bootstrap, topic, idle)


def latest_by_key(messages) -> dict[str, dict]:
    latest = {}
    for m in sorted(messages, key=lambda m: (m.partition, m.offset)):
        latest[m.key.decode()] = orjson.loads(m.value)
    return latest


without_as_of = testing.comparable  # every field but as_of (and a monthly record's month/validity)


def expected_ratings(events: list[dict], when: str) -> dict[str, dict]:
    return {r["seller_id"]: r for r in replay([orjson.dumps(e) for e in events], load(), parse_ts(when), io.StringIO())}


def scripted_month() -> list[dict]:
    """Simulated marketplace traffic plus a seller who only ever loses stars to time."""
    events = list(simulated(3000, 12, seed=5))
    # "fading": three stars on March 1-2 (48 products, 20 buyers, fast replies, KWA $300), then
    # silence: its buyers, replies and spend leave the 30-day window and it drops to 0 stars.
    f = "fading"
    events += [E.product(at(days=1), f"fp{i}", tier="top" if i < 6 else "potential", seller=f) for i in range(48)]
    events += [E.marketing(at(days=1), "kwa_spend", amount=300, currency="USD", seller=f)]
    for i in range(20):
        events += [E.visit(at(days=1, hours=i), f"fading-b{i}", seller=f),
                   E.message(at(days=1, hours=i, seconds=60), buyer=f"fading-b{i}", seller=f),
                   E.reply(at(days=1, hours=i + 1), f"c-fading-b{i}", seller=f)]
    return sorted(events, key=lambda e: e["ts"])


BAD_INPUT = [
    ("store-visits", b"seller-00001", b"\xff not json"),
    ("buyer-messages", b"seller-00001", orjson.dumps({**E.message(at(days=3), seller="seller-00001"), "channel": "fax"})),
    ("store-visits", b"seller-00001", orjson.dumps(E.visit("2099-01-01T00:00:00Z", "v", seller="seller-00001"))),
]


def test_stream_equals_replay_with_expiry_drops_dead_letters_and_one_freeze(broker, tmp_path):
    prefix = f"it{next(_prefixes)}-"
    worker = Worker(broker, prefix, tmp_path).start()
    try:
        events = scripted_month()
        produce_events(broker, prefix, events)
        asyncio.run(_produce(broker.bootstrap, prefix, [(t, k, v, None) for t, k, v in BAD_INPUT]))
        worker.wait_processed(len(events) + len(BAD_INPUT))
        final = "2026-04-05T00:00:00Z"  # a day boundary after the month's end plus grace
        tick_all(broker, prefix, final)

        expected = expected_ratings(events, final)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            forecasts = latest_by_key(read_topic(broker, prefix + "star-forecasts", idle=1.0))
            if {s: without_as_of(r) for s, r in forecasts.items()} == {s: without_as_of(r) for s, r in expected.items()}:
                break
            time.sleep(1)
        assert set(forecasts) == set(expected)
        for seller, rating in expected.items():
            assert without_as_of(forecasts[seller]) == without_as_of(rating), seller

        # The fading seller sent nothing after March 2: time alone took its stars.
        changes = [orjson.loads(m.value) for m in read_topic(broker, prefix + "star-changes") if m.key == b"fading"]
        assert changes and changes[-1]["direction"] == "down" and changes[-1]["to"] < changes[-1]["from"]
        assert "active_buyers" in changes[-1]["indicators_moved"]
        assert changes[-1]["from"] == 3 and expected["fading"]["stars"] == changes[-1]["to"] == 0

        monthly = read_topic(broker, prefix + "star-ratings-monthly")
        frozen = [orjson.loads(m.value) for m in monthly]
        assert sorted(r["seller_id"] for r in frozen) == sorted(expected)  # once per seller
        march = expected_ratings(events, "2026-03-31T23:59:59.999Z")
        for record in frozen:
            assert record["month"] == "2026-03" and record["valid_from"] == "2026-04-05T10:00:00Z"
            assert record["valid_until"] == "2026-05-05T09:59:59.999Z"
            assert testing.official(record) == testing.official(march[record["seller_id"]])

        dead = read_topic(broker, prefix + "starcast-dead-letters")
        reasons = sorted(dict(m.headers)["starcast-reason"].decode() for m in dead)
        assert reasons == ["future_ts", "invalid_json", "schema"]
        raw = {m.value for m in dead}
        assert raw == {v for _, _, v in BAD_INPUT}  # original bytes, untouched
        for m in dead:
            headers = dict(m.headers)
            assert headers["starcast-origin-topic"].decode() in ("store-visits", "buyer-messages")
            assert int(headers["starcast-origin-offset"]) >= 0

        # The API serves the same forecast, the official rating, and a JSON 404.
        status, body = worker.get("/sellers/fading")
        assert status == 200 and without_as_of(body) == without_as_of(expected["fading"])
        status, body = worker.get("/sellers/fading/official")
        assert status == 200 and body["month"] == "2026-03"
        status, body = worker.get("/sellers/nobody")
        assert status == 404 and "error" in body
        m = worker.metrics()
        assert m["starcast_dead_letters_total"] == 3
        assert m["starcast_freeze_sellers_total"] == len(expected)
    finally:
        worker.stop()


def test_kill_and_restart_restores_state_and_never_repeats_a_freeze(broker, tmp_path):
    prefix = f"it{next(_prefixes)}-"
    events = scripted_month()
    march, april = [e for e in events if e["ts"] < "2026-03-20"], [e for e in events if e["ts"] >= "2026-03-20"]
    worker = Worker(broker, prefix, tmp_path, store="rocksdb://").start()
    try:
        produce_events(broker, prefix, march)
        worker.wait_processed(len(march))
        worker.kill()  # kill -9 mid-month
        worker.start()
        produce_events(broker, prefix, april)
        tick_all(broker, prefix, "2026-04-03T00:00:00Z")  # freezes March
        month = expected_ratings(events, "2026-03-31T23:59:59.999Z")
        deadline = time.monotonic() + 90
        while len(read_topic(broker, prefix + "star-ratings-monthly", idle=1.0)) < len(month):
            assert time.monotonic() < deadline, "the freeze did not complete"
            time.sleep(1)
        worker.kill()  # and again, after the freeze
        worker.start()
        later = [E.visit("2026-04-04T00:00:00Z", "late-visitor", seller="fading")]
        produce_events(broker, prefix, later)
        final = "2026-04-06T00:00:00Z"
        tick_all(broker, prefix, final)
        expected = expected_ratings(events + later, final)
        deadline = time.monotonic() + 90
        while True:
            forecasts = latest_by_key(read_topic(broker, prefix + "star-forecasts", idle=1.0))
            same = {s: without_as_of(r) for s, r in forecasts.items()} == {s: without_as_of(r) for s, r in expected.items()}
            if same or time.monotonic() > deadline:
                break
            time.sleep(1)
        for seller, rating in expected.items():
            assert without_as_of(forecasts[seller]) == without_as_of(rating), seller
        frozen = read_topic(broker, prefix + "star-ratings-monthly")
        assert sorted(m.key.decode() for m in frozen) == sorted(month)  # once each, across two kills
        for m in frozen:
            assert testing.official(orjson.loads(m.value)) == testing.official(month[m.key.decode()])
    finally:
        worker.stop()


def test_a_monthly_record_sent_before_a_crash_is_not_sent_again(broker, tmp_path):
    """The crash window between a freeze's send and the seller's state write: the record is on
    star-ratings-monthly, the worker restarts without knowing it froze. It reads the topic as
    its official table and freezes that seller without a second record (docs/spec.md §3: once per seller
    per month); every other seller is frozen once."""
    from streams.service.processor import partition_for

    prefix = f"it{next(_prefixes)}-"
    events = scripted_month()
    month = expected_ratings(events, "2026-03-31T23:59:59.999Z")
    worker = Worker(broker, prefix, tmp_path, store="rocksdb://").start()
    try:
        produce_events(broker, prefix, events)
        worker.wait_processed(len(events))
        worker.kill()
        # What the killed worker's freeze had sent for "fading" (nothing of it saved).
        sent = {**month["fading"], "month": "2026-03", "valid_from": "2026-04-05T10:00:00Z",
                "valid_until": "2026-05-05T09:59:59.999Z"}
        asyncio.run(_produce(broker.bootstrap, prefix, [
            ("star-ratings-monthly", b"fading", orjson.dumps(sent), partition_for("fading", PARTITIONS))]))
        worker.start()
        tick_all(broker, prefix, "2026-04-05T00:00:00Z")
        deadline = time.monotonic() + 90
        while len(read_topic(broker, prefix + "star-ratings-monthly", idle=1.0)) < len(month):
            assert time.monotonic() < deadline, "the freeze did not complete"
            time.sleep(1)
        tick_all(broker, prefix, "2026-04-06T00:00:00Z")  # a later tick: still nothing more
        frozen = read_topic(broker, prefix + "star-ratings-monthly")
        assert sorted(m.key.decode() for m in frozen) == sorted(month)
        for m in frozen:
            assert testing.official(orjson.loads(m.value)) == testing.official(month[m.key.decode()])
        status, body = worker.get("/sellers/fading/official")
        assert status == 200 and body == sent
    finally:
        worker.stop()


def fading_only() -> list[dict]:
    return [e for e in scripted_month() if e["seller_id"] == "fading"]


def test_projection_in_forecasts_and_api_and_a_warning_then_its_clearing(broker, tmp_path):
    """The fading seller's March facts leave the window on April 1: as of the first instant of
    April its projection drops, so a warning goes out (once, however often it is re-rated
    unchanged), and once the drop has happened, a cleared record."""
    prefix = f"it{next(_prefixes)}-"
    worker = Worker(broker, prefix, tmp_path).start()
    try:
        events = fading_only()
        produce_events(broker, prefix, events)
        worker.wait_processed(len(events))
        tick_all(broker, prefix, "2026-04-01T00:00:00Z")
        deadline = time.monotonic() + 60
        warnings: list = []
        while not warnings and time.monotonic() < deadline:
            warnings = [orjson.loads(m.value) for m in read_topic(broker, prefix + "star-warnings", idle=1.0)]
        assert [w["kind"] for w in warnings] == ["warning"]
        warning = warnings[0]
        want = expected_ratings(events, "2026-04-01T00:00:00Z")["fading"]
        drop = next(e for e in want["projection"]["timeline"] if e["stars"] < want["stars"])
        assert warning["stars"] == want["stars"] > 0
        assert warning["projected_stars"] == want["projection"]["stars"] < want["stars"]
        assert warning["projected_at"] == "2026-04-30T23:59:59.999Z"
        assert warning["first_drop"] == {"at": drop["at"], "stars": drop["stars"], "indicators": drop["indicators"]}
        assert drop["at"].startswith("2026-04-0")  # its March 2 facts leave the window early in April
        status, served = worker.get("/sellers/fading")
        assert status == 200 and served["projection"] == want["projection"]
        published = latest_by_key(read_topic(broker, prefix + "star-forecasts"))["fading"]
        assert published["projection"] == want["projection"]
        tick_all(broker, prefix, "2026-04-01T00:00:30Z")  # re-rated, nothing changed: no second warning
        tick_all(broker, prefix, "2026-04-03T00:00:00Z")  # the drop has happened: cleared
        deadline = time.monotonic() + 60
        while len(warnings) < 2 and time.monotonic() < deadline:
            warnings = [orjson.loads(m.value) for m in read_topic(broker, prefix + "star-warnings", idle=1.0)]
        assert [w["kind"] for w in warnings] == ["warning", "cleared"]
        assert warnings[1]["stars"] == warnings[1]["projected_stars"]
        assert worker.metrics()["starcast_star_warnings_total"] == 2
        assert worker.metrics()["starcast_sellers_at_risk"] == 0
    finally:
        worker.stop()
