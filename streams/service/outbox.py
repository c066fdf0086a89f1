"""Everything one batch writes and sends, handed to Kafka as one record batch per topic-partition.

Faust's per-message path (`table[key] = value`, `topic.send`: FutureMessage → ProducerBuffer
→ Topic.publish → aiokafka) costs ~90 µs a record, more than rating an event. Here a batch's
records are appended to aiokafka record batches (`create_batch`/`send_batch`) and its table
values go straight into the store of the partition they belong to.

What Faust does on a table write is kept: the value lands in the local store of its partition,
the changelog record goes to the same partition, and when the broker acknowledges it the
store's persisted offset moves (so a restart replays only the changelog's tail). Durability
before commit holds too: the agent flushes the outbox before its batch is acknowledged, and
Faust flushes the Kafka client (which holds these batches) before it commits offsets.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

import faust
from faust.types import TP
from rocksdict import WriteBatch

Headers = list[tuple[str, bytes]]


def store_write(table: faust.Table, partition: int, writes: list[tuple[bytes, bytes | None]]) -> None:
    """Apply sets (and, with None, deletes) to the table's local store for `partition`, in order.

    Faust's RocksDB store picks the partition from the current event, which a batch of many
    partitions does not have; its per-partition databases are addressed directly instead, one
    RocksDB write batch per partition."""
    store = table.data
    db_for_partition = getattr(store, "_db_for_partition", None)
    if db_for_partition is None:  # the memory store: one dict for every partition
        for key, value in writes:
            if value is None:
                store.data.pop(key, None)
            else:
                store.data[key] = value
        return
    batch = WriteBatch(raw_mode=True)
    key_index = store._key_index
    for key, value in writes:
        if value is None:
            batch.delete(key)
        else:
            batch.put(key, value)
            key_index[key] = partition
    db_for_partition(partition).write(batch)


class Outbox:
    def __init__(self, client: Callable[[], Any]):
        self.client = client  # -> the aiokafka producer (started by Faust)
        self._records: dict[tuple[str, int], list[tuple[bytes | None, bytes | None, Headers]]] = {}
        self._tables: dict[str, faust.Table] = {}  # changelog topic -> table whose offset it moves
        self._stores: dict[tuple[str, int], list[tuple[bytes, bytes | None]]] = {}  # (changelog, partition)

    def __len__(self) -> int:
        return sum(len(records) for records in self._records.values())

    def send(self, topic: str, partition: int, key: bytes | None, value: bytes | None,
             headers: Headers | None = None) -> None:
        self._records.setdefault((topic, partition), []).append((key, value, headers or []))

    def put(self, table: faust.Table, partition: int, key: bytes, value: bytes | None) -> None:
        """A table write: to the store and the changelog with the next flush."""
        topic = table.changelog_topic.get_topic_name()
        self._tables[topic] = table
        self._stores.setdefault((topic, partition), []).append((key, value))
        self.send(topic, partition, key, value)

    async def flush(self) -> int:
        """Write the stores, then hand every queued record to the Kafka client; returns how many."""
        stores, self._stores = self._stores, {}
        for (topic, partition), writes in stores.items():
            store_write(self._tables[topic], partition, writes)
        records, self._records = self._records, {}
        client = self.client()
        sent = 0
        for (topic, partition), queued in records.items():
            batch = client.create_batch()
            for key, value, headers in queued:
                if batch.append(timestamp=None, key=key, value=value, headers=headers) is None:
                    sent += await self._send(client, batch, topic, partition)
                    batch = client.create_batch()
                    batch.append(timestamp=None, key=key, value=value, headers=headers)
            sent += await self._send(client, batch, topic, partition)
        return sent

    async def _send(self, client, batch, topic: str, partition: int) -> int:
        count = batch.record_count()
        if count:
            delivered = await client.send_batch(batch, topic, partition=partition)
            table = self._tables.get(topic)
            if table is not None:
                delivered.add_done_callback(partial(_persisted, table, TP(topic, partition), count))
        return count


def _persisted(table: faust.Table, tp: TP, count: int, delivered) -> None:
    if not delivered.cancelled() and delivered.exception() is None and delivered.result() is not None:
        table.data.set_persisted_offset(tp, delivered.result().offset + count - 1)
