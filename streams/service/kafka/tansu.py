"""Guarantee (embedded broker only): table recovery reads to the changelog's true end, and a
quiet partition does not hold back the busy ones.

Upstream: the embedded broker (tansu 0.6) answers ListOffsets(latest) with the base offset of
a partition's last record batch + 1, not its last offset + 1 (10 records at offsets 0-9, the
last five in one batch: 6); the high watermark in a Fetch response is right. Faust reads
changelog end offsets through ListOffsets when it recovers tables (`Consumer.highwaters`).
tansu also answers a fetch that found nothing only when the fetch wait is up, even if records
arrive meanwhile, and aiokafka keeps one fetch in flight per broker.

Failure it caused: with batched produces recovery stopped early (or, with persisted RocksDB
state, crashed with "The persisted offset ... is higher than the last offset"); with Faust's
1,500 ms fetch wait every quiet partition held back the busy ones and put up to 1.5 s on every
quiet moment.

Kept here: `highwaters` asks ListOffsets, then fetches from just below each answer and takes
the fetch's high watermark; the worker's fetch wait is `fetch_wait_ms` (20 ms with the own
fetch loop). Real Kafka needs none of this: the worker composes it only with
STARCAST_EMBEDDED_BROKER=1.
"""

from __future__ import annotations

import logging
import time

from typing import Any, Mapping

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer
from faust.types import TP

from streams.service.kafka.options import options_of

log = logging.getLogger("starcast")


async def fetched_end_offsets(bootstrap: str, listed: Mapping[Any, int | None], timeout: float = 10.0) -> dict:
    """End offsets read from Fetch high watermarks, starting just below ListOffsets' answers."""
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             fetch_max_wait_ms=50, max_partition_fetch_bytes=1024)
    await probe.start()
    try:
        tps = [TopicPartition(tp.topic, tp.partition) for tp in listed]
        probe.assign(tps)
        for tp, original in zip(tps, listed):
            probe.seek(tp, max((listed[original] or 0) - 1, 0))
        ends: dict = {}
        deadline = time.monotonic() + timeout
        while len(ends) < len(tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no fetch high watermark for {sorted(set(tps) - set(ends))}")
            await probe.getmany(*[tp for tp in tps if tp not in ends], timeout_ms=200)
            for tp in tps:
                if tp not in ends and probe.highwater(tp) is not None:
                    ends[tp] = probe.highwater(tp)
        return {original: max(listed[original] or 0, ends[tp]) for tp, original in zip(tps, listed)}
    finally:
        await probe.stop()


class ShortFetchWait(AIOKafkaConsumerThread):
    """The consumer thread whose aiokafka client waits `fetch_wait_ms` for a fetch."""

    fetch_wait_ms = 0

    def _create_worker_consumer(self, transport: Any) -> AIOKafkaConsumer:
        client = super()._create_worker_consumer(transport)
        client._fetch_max_wait_ms = self.fetch_wait_ms
        return client


class TansuEndOffsets(Consumer):
    """Consumer mixin: true end offsets from fetch high watermarks, and a short fetch wait."""

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        wait = options_of(self).fetch_wait_ms
        if not wait:
            return super()._new_consumer_thread()
        thread = ShortFetchWait(self, loop=self.loop, beacon=self.beacon)
        thread.fetch_wait_ms = wait
        return thread

    async def highwaters(self, *partitions: TP) -> Mapping[TP, int]:
        listed = await super().highwaters(*partitions)
        if not listed:
            return listed
        true = await fetched_end_offsets(options_of(self).bootstrap, dict(listed))
        short = {tp: (listed[tp], true[tp]) for tp in listed if true[tp] != listed[tp]}
        if short:
            log.info("starcast: ListOffsets was short for %d partitions; using fetch high watermarks", len(short))
        return true
