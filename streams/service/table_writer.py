"""Write a Faust table's store and its changelog with the Kafka client directly.

`table[key] = value` costs about 90 µs in Faust 0.15.3 (measured by `starcast bench`: a naive
agent with one table write and one send per event runs at ~3,700 events/s against 13,000 for
decode only), most of it in the per-message path FutureMessage → ProducerBuffer → Topic.publish
→ aiokafka. Here the store gets the value and aiokafka gets the changelog record, nothing else.

What Faust does on a write is kept: the value lands in the local store (for RocksDB, in the
current event's partition), the changelog record goes to the same partition, and when the
broker acknowledges it the store's persisted offset moves (so a restart replays only the
changelog's tail). Durability before commit holds too: Faust flushes the Kafka client before it
commits offsets, and that flush covers these records.
"""

from __future__ import annotations

from functools import partial

import faust
from faust.types import TP


class TableWriter:
    def __init__(self, app: faust.App, table: faust.Table):
        self.app, self.table = app, table

    async def put(self, key: bytes, value: bytes | None, partition: int) -> None:
        """Set (or, with None, delete) `key` in the partition the current event belongs to."""
        store = self.table.data
        if value is None:
            store.pop(key, None)
        else:
            store[key] = value
        topic = self.table.changelog_topic.get_topic_name()
        client = self.app.producer._ensure_producer()  # the aiokafka producer
        sent = await client.send(topic, value=value, key=key, partition=partition)
        sent.add_done_callback(partial(self._persisted, TP(topic, partition)))

    def _persisted(self, tp: TP, sent) -> None:
        if not sent.cancelled() and sent.exception() is None:
            self.table.data.set_persisted_offset(tp, sent.result().offset)
