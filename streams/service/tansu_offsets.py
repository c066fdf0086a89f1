"""True changelog end offsets on the embedded broker (tansu), so producers can batch.

tansu answers ListOffsets(latest) with the base offset of a partition's last record batch + 1,
not its last offset + 1 (NOTES.md); the high watermark in a Fetch response is right. Faust
reads changelog end offsets through ListOffsets when it recovers tables, so with batched
produces it would stop restoring early. Instead of producing one record per batch (a few
thousand records/s), the worker asks ListOffsets and then fetches from just below the answer:
the fetch's high watermark is the real end. Real Kafka needs none of this; the worker installs
it only in embedded mode.
"""

from __future__ import annotations

import logging
import time

import faust
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

log = logging.getLogger("starcast")


async def fetched_end_offsets(bootstrap: str, listed: dict, timeout: float = 10.0) -> dict:
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


def install(app: faust.App, bootstrap: str, fetch_wait_ms: int = 0) -> None:
    """Make the app's consumer answer `highwaters()` (what table recovery asks) from fetches."""
    new_consumer = app._new_consumer

    def consumer_with_true_highwaters():
        consumer = new_consumer()
        thread = consumer._thread
        create_client = thread._create_worker_consumer

        def client_with_short_fetch_wait(transport):
            # tansu answers a fetch that found nothing only when the wait is up, even if
            # records arrive meanwhile, and aiokafka keeps one fetch in flight per broker: with
            # Faust's 1,500 ms every quiet partition holds back the busy ones (throughput) and
            # puts up to 1.5 s on every quiet moment (latency). 20 ms with the worker's own fetch
            # loop (the default; or STARCAST_FETCH_WAIT_MS), Faust's with STARCAST_FAST_FETCH=0.
            client = create_client(transport)
            client._fetch_max_wait_ms = fetch_wait_ms
            return client

        if fetch_wait_ms:
            thread._create_worker_consumer = client_with_short_fetch_wait
        listed_highwaters = consumer.highwaters

        async def highwaters(*partitions):
            listed = await listed_highwaters(*partitions)
            if not listed:
                return listed
            true = await fetched_end_offsets(bootstrap, dict(listed))
            short = {tp: (listed[tp], true[tp]) for tp in listed if true[tp] != listed[tp]}
            if short:
                log.info("starcast: ListOffsets was short for %d partitions; using fetch high watermarks",
                         len(short))
            return true

        consumer.highwaters = highwaters
        return consumer

    app._new_consumer = consumer_with_true_highwaters
