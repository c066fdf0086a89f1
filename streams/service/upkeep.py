"""The worker's periodic upkeep, apart from the agent: the end offsets a due freeze waits for,
reading again partitions left with a hole or stuck, and the gauges.

Each method is one timer's body; `create_app` schedules them. They read and seek the
consumer, never write a table (only the agent may).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Collection

import orjson

from streams.service import kafka
from streams.service.freeze_hold import FreezeHold
from streams.service.metrics import Metrics
from streams.service.positions import InputPositions

log = logging.getLogger("starcast")


class Upkeep:
    def __init__(self, app: Any, processor: Any, metrics: Metrics, positions: InputPositions, hold: FreezeHold,
                 input_topics: Collection[str], ticks: Any) -> None:
        self.app, self.processor, self.metrics = app, processor, metrics
        self.positions, self.hold = positions, hold
        self.input_topics = frozenset(input_topics)  # full names of the input topics
        self.ticks = ticks  # the clock topic
        self.stalls = kafka.StallDetector()
        self.handled = 0  # input messages handled since start (counted by the agent)
        self._handled_at_last_check = -1

    async def refresh_end_offsets(self) -> None:
        """The broker's end offsets of this worker's input partitions, only while a freeze is
        due (a fetch's high watermark goes stale while fetching is paused). A held freeze
        whose lag ended without a message gets a tick at its partition's own clock."""
        app, processor, hold = self.app, self.processor, self.hold
        consumer = app.consumer
        if consumer is None or app.rebalancing:
            return
        tps = [tp for tp in consumer.assignment() if tp.topic in self.input_topics]
        if not any(processor.freeze_due(partition) for partition in {tp.partition for tp in tps}):
            hold.end_offsets.clear()  # unknown counts as lagging
            return
        if tps:
            try:
                hold.end_offsets.update(await asyncio.wait_for(consumer.highwaters(*tps), timeout=10))
            except Exception as exc:  # noqa: BLE001 - keep the last answer; the hold stays safe
                log.debug("starcast: end offsets unavailable: %r", exc)
        for partition, clock in hold.released(processor.clocks()):
            await self.ticks.send(value=orjson.dumps({"now": clock}), partition=partition)

    async def stall_watch(self) -> None:
        """Read again input partitions with a hole still open or left stuck with records waiting."""
        app, metrics = self.app, self.metrics
        consumer: Any = app.consumer
        if app.in_recovery or app.rebalancing or consumer is None or not consumer.flow_active:
            self.stalls.reset()
            return
        idle, self._handled_at_last_check = self.handled == self._handled_at_last_check, self.handled
        for tp, missing in self.positions.due_rereads():
            if tp in consumer.assignment():
                log.warning("starcast: %s/%d still misses offset %d: reading again from there",
                            tp.topic, tp.partition, missing)
                await consumer.seek(tp, missing)
                metrics.rereads.inc()
        for tp, committed, position, highwater in await consumer.reread_stalled(self.stalls, idle):
            log.warning("starcast: %s/%d stuck at committed offset %s (fetch position %s, end %s): re-reading",
                        tp.topic, tp.partition, committed, position, highwater)
            metrics.rereads.inc()

    def update_gauges(self) -> None:
        """Gauges read from the processor and the consumer (on a timer and on every scrape)."""
        metrics, processor = self.metrics, self.processor
        metrics.star_levels(processor.levels)
        metrics.at_risk(processor.at_risk)
        metrics.state_cache(processor.caches())
        metrics.sweep_waiting.set(processor.sweep_waiting())
        metrics.held.set(processor.holding())
        for partition, clock in processor.clocks().items():
            metrics.clock.labels(partition=str(partition)).set(clock / 1000)
        consumer = self.app.consumer
        if consumer is not None:
            waiting = 0
            for tp in consumer.assignment():
                if tp.topic in self.input_topics:
                    end = consumer.highwater(tp)  # from the last fetch: no request to the broker
                    done = self.positions.next_offset.get(tp, kafka.committed_offset(consumer, tp))
                    if end is not None and done is not None:
                        waiting += max(end - done, 0)
            metrics.input_lag.set(waiting)
