"""The flush before a commit empties the producer buffer (streams/service/kafka/flush.py). The Kafka
client is a stand-in: what is under test is Faust's buffer in front of it, which needs no broker."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import faust
from faust.transport.producer import ProducerBuffer

from streams.service.kafka import App
from streams.service.kafka.flush import DrainingProducerBuffer



def slow_messages(n: int, delivered: list, seconds: float = 0.15) -> list:
    """Messages whose hand-over to the client takes longer than Faust's 0.1 s flush patience."""

    async def publish_message(fut, wait=False):
        await asyncio.sleep(seconds)
        delivered.append(fut)

    channel = SimpleNamespace(publish_message=publish_message)
    return [SimpleNamespace(message=SimpleNamespace(channel=channel)) for _ in range(n)]


async def flushed(buffer_class) -> tuple[int, int]:
    app = faust.App("durable-commits-test", broker="kafka://127.0.0.1:1")
    buffer = buffer_class()
    buffer.app = app
    delivered: list = []
    await buffer.start()
    try:
        for message in slow_messages(4, delivered):
            buffer.put(message)
        await buffer.flush()
        return len(delivered), 4
    finally:
        buffer.pending = asyncio.Queue()  # what Faust's flush left behind would block its stop
        await buffer.stop()


def test_flush_returns_only_when_every_queued_write_reached_the_client():
    delivered, queued = asyncio.run(flushed(DrainingProducerBuffer))
    assert delivered == queued


def test_fausts_own_flush_returns_early_which_is_why_this_exists():
    delivered, queued = asyncio.run(flushed(ProducerBuffer))
    assert delivered < queued  # if this starts failing, Faust fixed it and the patch can go


def test_the_apps_producer_has_the_draining_buffer():
    app = App("durable-commits-install", broker="kafka://127.0.0.1:1")
    assert isinstance(app.producer.buffer, DrainingProducerBuffer)


def test_flush_does_not_wait_for_messages_queued_after_it_began():
    """Under load the agent keeps queueing while a commit flushes: the flush must end."""

    async def scenario() -> tuple[int, int]:
        buffer = DrainingProducerBuffer()
        buffer.app = faust.App("durable-commits-load", broker="kafka://127.0.0.1:1")
        delivered: list = []
        await buffer.start()
        try:
            for message in slow_messages(3, delivered, seconds=0.05):
                buffer.put(message)
            flush = asyncio.ensure_future(buffer.flush())
            while not flush.done():  # a queue that never empties
                for message in slow_messages(2, delivered, seconds=0.05):
                    buffer.put(message)
                await asyncio.sleep(0.05)
            return len(delivered), buffer.size
        finally:
            buffer.pending = asyncio.Queue()
            await buffer.stop()

    delivered, still_queued = asyncio.run(asyncio.wait_for(scenario(), timeout=30))
    assert delivered >= 3 and still_queued > 0
