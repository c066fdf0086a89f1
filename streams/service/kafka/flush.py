"""Guarantee: a commit's flush returns only once every table write queued before it began has
reached the Kafka client.

Upstream (faust-streaming 0.15.3, `ProducerBuffer.flush_atmost`): table changelog writes go
through a `ProducerBuffer`, and before committing offsets Faust calls `producer.flush()`, whose
buffer part gives up as soon as 0.1 s pass without a message leaving the buffer.

Failure it caused: with a slow broker the commit went ahead with changelog writes still queued;
a crash then lost the state changes of events whose offsets were already committed, and they
were never replayed (wrong monthly freezes).

Kept here: `DrainingProducerBuffer.flush` waits until every message queued before it began has
been handed to the client, so the client's own flush that follows covers them all. Not "until
the queue is empty": under load the agent keeps queueing and a commit would starve. No upstream
issue is known.
"""

from __future__ import annotations

import asyncio
from typing import Any

from faust.transport.drivers.aiokafka import Producer
from faust.transport.producer import ProducerBuffer


class DrainingProducerBuffer(ProducerBuffer):
    def __post_init__(self) -> None:
        super().__post_init__()
        self.queued = 0  # messages ever put
        self.handed_over = 0  # messages ever handed to the client (the queue is FIFO)

    def put(self, fut: Any) -> None:
        self.queued += 1
        super().put(fut)

    async def _send_pending(self, fut: Any) -> None:
        try:
            await super()._send_pending(fut)
        finally:
            self.handed_over += 1

    async def flush(self) -> None:
        target = self.queued
        while self.handed_over < target and self.state == "running":
            self.message_sent.clear()
            try:
                await asyncio.wait_for(self.message_sent.wait(), timeout=0.1)
            except asyncio.TimeoutError:
                pass
        if self.size and self.state != "running":  # stopping: Faust's own flush says so
            await super().flush()


class DrainingProducer(Producer):
    """The aiokafka driver's producer with the draining buffer (the threaded producer keeps
    its own queue and is left as it is)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.app.conf.producer_threaded:
            buffer = DrainingProducerBuffer(loop=self.loop, beacon=self.beacon)
            buffer.app = self.app
            self.buffer = buffer
