"""The Faust agent in isolation: `agent.test_context()` with the memory store (Faust's own
testing guide); the broker is not involved, so the table changelog and sends are Faust's test
doubles — what runs for real is the agent body, the processor and the table writes."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import faust.topics
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


@pytest.fixture
def app(sent):
    app = create_app(Settings(store="memory://", broker="kafka://127.0.0.1:1", partitions=1))
    app.producer._ensure_producer = lambda: KafkaClient(sent)
    app.finalize()
    app.conf.store = "memory://"
    app.flow_control.resume()
    return app


def test_agent_rates_writes_tables_and_counts_dead_letters(app, sent):
    settings, processor, metrics = app.starcast
    agent = app.agents[next(name for name in app.agents if name.endswith(".rate"))]
    forecasts = app.tables["forecasts"]
    state = app.tables["state"]

    async def run():
        async with agent.test_context() as ctx:
            for i in range(4):
                await ctx.put(orjson.dumps(E.message(at(days=1, hours=i), buyer=f"b{i}")), key=b"s1")
            await ctx.put(b"not json", key=b"s1")

    asyncio.run(run())
    rating = orjson.loads(forecasts[b"s1"])
    assert rating["indicators"]["active_buyers"]["value"] == 4
    assert any(key.startswith(b"s1\x1fc\x1f") for key in state.keys())
    assert metrics.dead_letters.labels(reason="invalid_json")._value.get() == 1
    assert metrics.events.labels(type="buyer_message", outcome="applied")._value.get() == 4
    topics = [topic for topic, *_ in sent]
    forecast_values = [orjson.loads(value) for topic, _, value, _ in sent if topic == "star-forecasts"]
    # One forecast per batch that moved active_buyers (the table's changelog), the last one right.
    assert 1 <= len(forecast_values) <= 4 and forecast_values[-1] == rating
    assert topics.count("star-changes") == 0  # without products the seller stays at 0 stars
    dead = [(value, headers) for topic, key, value, headers in sent if topic == "starcast-dead-letters"]
    assert dead == [(b"not json", dead[0][1])] and dead[0][1]["starcast-reason"] == b"invalid_json"
