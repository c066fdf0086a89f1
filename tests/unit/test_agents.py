"""The Faust agent in isolation: `agent.test_context()` with the memory store (Faust's own
testing guide); the broker is not involved, so the table changelog and sends are Faust's test
doubles — what runs for real is the agent body, the processor and the table writes."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import faust.topics
from faust.types.tuples import Message
import orjson
import pytest

from streams.service.app import create_app
from streams.service.settings import Settings
from tests.conftest import Events as E
from tests.conftest import at


@pytest.fixture
def sent(monkeypatch):
    """Stand-in for the producer (no broker in a unit test): records what the agent sends."""
    records = []

    async def send(self, *args, key=None, value=None, **kwargs):
        records.append((self.get_topic_name(), key, value, kwargs.get("headers")))

    monkeypatch.setattr(faust.topics.Topic, "send", send)
    monkeypatch.setattr("streams.service.kafka.aiokafka_producer", lambda app: KafkaClient(records))
    return records


class RecordBatch:
    def __init__(self):
        self.records = []

    def append(self, *, timestamp, key, value, headers):
        self.records.append((key, value, dict(headers) or None))
        return object()

    def record_count(self):
        return len(self.records)


class KafkaClient:
    """Stand-in for the aiokafka producer that the outbox hands record batches to."""

    def __init__(self, records: list):
        self.records = records

    def create_batch(self):
        return RecordBatch()

    async def send_batch(self, batch, topic, partition):
        self.records.extend((topic, key, value, headers) for key, value, headers in batch.records)
        done = asyncio.get_running_loop().create_future()
        done.set_result(SimpleNamespace(offset=len(self.records)))
        return done


@pytest.fixture(params=["intake", "faust-stream"])
def app(sent, request):
    """The agent as the own fetch loop feeds it (intake.py) and as Faust's stream does."""
    return unit_app(sent, fast_fetch=request.param == "intake")


def sample(metrics, name: str, **labels) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def unit_app(sent: list, fast_fetch: bool):
    settings = Settings(store="memory://", broker="kafka://127.0.0.1:1", partitions=1, fast_fetch=fast_fetch)
    app = create_app(settings)
    app.finalize()
    app.conf.store = "memory://"
    app.flow_control.resume()
    return app


def test_agent_rates_writes_tables_and_counts_dead_letters(app, sent):
    settings, processor, metrics = app.starcast
    agent = app.agents[next(name for name in app.agents if name.endswith(".rate"))]
    forecasts = app.tables["forecasts"]
    state = app.tables["state"]

    values = [orjson.dumps(E.message(at(days=1, hours=i), buyer=f"b{i}")) for i in range(4)] + [b"not json"]
    asyncio.run(deliver(app, agent, values))
    rating = orjson.loads(forecasts[b"s1"])
    assert rating["indicators"]["active_buyers"]["value"] == 4
    assert any(key.startswith(b"s1\x1fc\x1f") for key in state.keys())
    assert sample(metrics, "starcast_dead_letters_total", reason="invalid_json") == 1
    assert sample(metrics, "starcast_events_total", type="buyer_message", outcome="applied") == 4
    topics = [topic for topic, *_ in sent]
    forecast_values = [orjson.loads(value) for topic, _, value, _ in sent if topic == "star-forecasts"]
    # One forecast per batch that moved active_buyers (the table's changelog), the last one right.
    assert 1 <= len(forecast_values) <= 4 and forecast_values[-1] == rating
    assert topics.count("star-changes") == 0  # without products the seller stays at 0 stars
    dead = [(value, headers) for topic, key, value, headers in sent if topic == "starcast-dead-letters"]
    assert dead == [(b"not json", dead[0][1])] and dead[0][1]["starcast-reason"] == b"invalid_json"


def message(app, offset: int, value: bytes, generation: int | None = None) -> Message:
    settings = app.starcast[0]
    return Message(settings.topic("buyer-messages"), 0, offset, time.time(), 0, [], b"s1", value, None,
                   generation_id=app.consumer_generation_id if generation is None else generation)


async def deliver(app, agent, values: list[bytes]) -> None:
    """Messages to the agent the way its worker's fetch loop would, and back once handled."""
    settings, _, metrics = app.starcast
    async with agent.test_context() as ctx:
        if not settings.fast_fetch:
            for value in values:
                await ctx.put(value, key=b"s1")
            return
        for offset, value in enumerate(values):
            app.starcast_intake.put(message(app, offset, value))
        await handled(metrics, len(values))


async def handled(metrics, n: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while sum(sample.value for sample in metrics.events.collect()[0].samples
              if sample.name.endswith("_total")) < n:
        assert time.monotonic() < deadline, "the agent did not handle its messages"
        await asyncio.sleep(0.01)


def test_messages_fetched_before_a_rebalance_are_dropped_not_handled(sent):
    """A batch taken from the intake after the consumer generation moved on (its partitions
    are read again from the committed offsets, maybe by another worker) changes nothing."""
    app = unit_app(sent, fast_fetch=True)
    agent = app.agents[next(name for name in app.agents if name.endswith(".rate"))]
    _, processor, metrics = app.starcast

    async def run():
        async with agent.test_context():
            stale = app.consumer_generation_id - 1
            app.starcast_intake.put(message(app, 0, orjson.dumps(E.message(at(days=1), buyer="b0")), stale))
            app.starcast_intake.put(message(app, 1, b"not json"))  # the current generation: handled
            await handled(metrics, 1)

    asyncio.run(run())
    assert "s1" not in processor.published  # the stale buyer message never reached the state
    assert sample(metrics, "starcast_dead_letters_total", reason="invalid_json") == 1


def test_latency_counts_each_record_once_when_a_hole_is_read_again(sent):
    """Offset 1 arrives after 2 (a hole, sought back to), and 2 is then read again: all are
    handled (state is idempotent), but produce->forecast latency is observed once per record;
    counting the re-read put records handled seconds earlier into the histogram again."""
    app = unit_app(sent, fast_fetch=True)
    agent = app.agents[next(name for name in app.agents if name.endswith(".rate"))]
    _, _, metrics = app.starcast
    value = orjson.dumps(E.message(at(days=1), buyer="b0"))

    async def run():
        async with agent.test_context():
            for n, offset in enumerate([0, 2, 1, 2, 3], start=1):
                app.starcast_intake.put(message(app, offset, value))
                await handled(metrics, n)  # one batch each, in this order

    asyncio.run(run())
    observed = next(sample.value for sample in metrics.latency.collect()[0].samples
                    if sample.name.endswith("_count"))
    assert observed == 4  # offsets 0, 2, 1, 3; not 2's re-read
