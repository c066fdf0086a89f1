"""Guarantee: a batch's table writes and sends reach Kafka as one record batch per
topic-partition, in the order the batches were flushed even when flushes overlap, a table's
local store never runs ahead of its changelog, and its persisted offset never passes a
changelog record the store does not hold.

Upstream (faust-streaming 0.15.3): Faust's per-message path (`table[key] = value`,
`topic.send`: FutureMessage → ProducerBuffer → Topic.publish → aiokafka) costs ~90 µs a record,
more than rating an event, and a table write goes into the local store at once, before its
changelog record is acknowledged.

Kept here: a batch's records are appended to aiokafka record batches
(`create_batch`/`send_batch`) and its table values go straight into the RocksDB store of the
partition they belong to (Faust's store picks the partition from the current event, which a
batch of many partitions does not have). A table value goes into the local store of its
partition only when the broker has
acknowledged its changelog record, and the store's persisted offset moves with it (so a restart
replays only the changelog's tail). The store therefore never runs ahead of its changelog: a
worker killed between the two would otherwise restart with a forecast in its store that was
never published, and then not publish it because "nothing changed". Durability before commit
holds too: the agent acknowledges a batch only once the outbox has handed its records to the
Kafka client, and Faust flushes the Kafka client (which holds these batches) before it commits
offsets.

A flush can run while the agent computes its next batch (`start_flush`): the hand-over mostly
waits for aiokafka to send the partition's previous batch (a broker round trip), which would
otherwise hold the agent. Flushes run one after another, so every topic-partition's records go
to the client in the order they were staged.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Any, Callable

import faust
from faust.types import TP
from rocksdict import WriteBatch

from streams.service.kafka.fence import EPOCH_HEADER, FENCE_KEY, epoch_of, stored_fence

Headers = list[tuple[str, bytes]]

log = logging.getLogger("starcast")


def aiokafka_producer(app: faust.App) -> Any:
    """The started aiokafka producer under the app's Faust producer."""
    producer: Any = app.producer
    return producer._ensure_producer()


def store_write(table: faust.Table, partition: int, writes: list[tuple[bytes, bytes | None]],
                epoch: int | None = None) -> None:
    """Apply sets (and, with None, deletes) to the table's local store for `partition`, in order,
    and raise the partition's fence to the `epoch` they were written with (fence.py).

    Faust's RocksDB store picks the partition from the current event, which a batch of many
    partitions does not have; its per-partition databases are addressed directly instead, one
    RocksDB write batch per partition."""
    store: Any = table.data
    db_for_partition = getattr(store, "_db_for_partition", None)
    raise_fence = epoch is not None and (stored_fence(store, partition) or -1) < epoch
    if db_for_partition is None:  # the memory store: one dict for every partition
        for key, value in writes:
            if value is None:
                store.data.pop(key, None)
            else:
                store.data[key] = value
        if raise_fence:
            store.__dict__.setdefault("starcast_fences", {})[partition] = epoch
        return
    batch = WriteBatch(raw_mode=True)
    key_index = store._key_index
    for key, value in writes:
        if value is None:
            batch.delete(key)
        else:
            batch.put(key, value)
            key_index[key] = partition
    if raise_fence:
        batch.put(FENCE_KEY, str(epoch).encode())
    db_for_partition(partition).write(batch)


class Outbox:
    def __init__(self, client: Callable[[], Any], on_store_error: Callable[[str], None] | None = None):
        self.client = client  # -> the aiokafka producer (started by Faust)
        # Called with a description when an acknowledged write cannot go into its local store
        # (a full or failing disk): the store then stays behind its changelog, never ahead.
        self.on_store_error = on_store_error
        self.store_failed = False  # a store refused an acknowledged write: nothing is "stored" any more
        self._records: dict[tuple[str, int], list[tuple[bytes | None, bytes | None, Headers]]] = {}
        self._tables: dict[str, faust.Table] = {}  # changelog topic -> its table
        self._in_flight: set[asyncio.Future] = set()  # changelog batches sent, not yet acknowledged
        self._flushing: asyncio.Future | None = None  # the latest flush started, done or not

    async def settled(self, timeout: float = 30.0) -> int:
        """Wait until every changelog batch sent so far is acknowledged and in its store;
        returns how many were still in flight. A table recovery reads the stores: without this
        it could rebuild a seller from a store that lacks the worker's own latest writes."""
        if self._flushing is not None and not self._flushing.done():  # staged, not yet with the client
            await asyncio.wait([self._flushing], timeout=timeout)
        pending = list(self._in_flight)
        if pending:
            await asyncio.wait(pending, timeout=timeout)
        return len(pending)

    def send(self, topic: str, partition: int, key: bytes | None, value: bytes | None,
             headers: Headers | None = None) -> None:
        self._records.setdefault((topic, partition), []).append((key, value, headers or []))

    def put(self, table: faust.Table, partition: int, key: bytes, value: bytes | None) -> None:
        """A table write: the changelog record with the next flush, stamped with the epoch this
        worker owns the partition in (fence.py); the store once it is acknowledged."""
        topic = table.changelog_topic.get_topic_name()
        self._tables[topic] = table
        epoch = getattr(table, "write_epochs", {}).get(partition)
        self.send(topic, partition, key, value, None if epoch is None else [(EPOCH_HEADER, str(epoch).encode())])

    def _store_error(self, description: str) -> None:
        self.store_failed = True
        if self.on_store_error is None:
            raise RuntimeError(description)
        self.on_store_error(description)

    def start_flush(self, on_stored: Callable[[], None] | None = None) -> asyncio.Future[int]:
        """Start handing every record queued so far to the Kafka client, after every flush
        started before it; the future gives how many. Records queued from now on belong to
        the next flush.

        The topic-partitions go concurrently: aiokafka holds a new batch for a partition until
        the previous one has been sent (up to `linger_ms`), and waiting for each partition in
        turn made that wait once per partition per batch.

        `on_stored` is called once every table write of this flush is acknowledged and in its
        local store (never, if one failed)."""
        records, self._records = self._records, {}
        self._flushing = asyncio.ensure_future(self._flush_after(self._flushing, records, on_stored))
        return self._flushing

    async def _flush_after(self, previous: asyncio.Future | None, records: dict,
                           on_stored: Callable[[], None] | None = None) -> int:
        if previous is not None:
            await previous  # a failed flush fails every later one: nothing is sent out of order
        client = self.client()
        delivered: list[asyncio.Future] = []
        counts = await asyncio.gather(*(self._send_all(client, topic, partition, queued, delivered)
                                        for (topic, partition), queued in records.items()))
        if on_stored is not None:
            # Each delivery's _stored callback runs before the gather's own (callbacks run in
            # the order they were added), so the stores hold the writes when on_stored runs.
            asyncio.gather(*delivered).add_done_callback(partial(self._report_stored, on_stored))
        return sum(counts)

    def _report_stored(self, on_stored: Callable[[], None], done: asyncio.Future) -> None:
        if not done.cancelled() and done.exception() is None and not self.store_failed:
            on_stored()

    async def _send_all(self, client, topic: str, partition: int, queued: list,
                        delivered: list[asyncio.Future]) -> int:
        sent, batch, start = 0, client.create_batch(), 0
        for i, (key, value, headers) in enumerate(queued):
            if batch.append(timestamp=None, key=key, value=value, headers=headers) is None:
                sent += await self._send(client, batch, topic, partition, queued[start:i], delivered)
                batch, start = client.create_batch(), i
                batch.append(timestamp=None, key=key, value=value, headers=headers)
        return sent + await self._send(client, batch, topic, partition, queued[start:], delivered)

    async def _send(self, client, batch, topic: str, partition: int, records: list,
                    delivered_all: list[asyncio.Future]) -> int:
        count = batch.record_count()
        if count:
            delivered = await client.send_batch(batch, topic, partition=partition)
            table = self._tables.get(topic)
            if table is not None:
                writes = [(key, value) for key, value, _ in records]
                epochs = [stamped for _, _, headers in records if (stamped := epoch_of(headers)) is not None]
                delivered.add_done_callback(partial(_stored, table, TP(topic, partition), writes,
                                                    max(epochs, default=None), self._store_error))
                delivered_all.append(delivered)
                self._in_flight.add(delivered)  # after _stored: settled() returns once it has run
                delivered.add_done_callback(self._in_flight.discard)
        return count


def _stored(table: faust.Table, tp: TP, writes: list[tuple[bytes, bytes | None]], epoch: int | None,
            on_error: Callable[[str], None] | None, delivered) -> None:
    """The acknowledged changelog records into the store, and its persisted offset past them
    when they follow it directly. If the store cannot take them, neither moves: a restart
    reads them from the changelog.

    The persisted offset says the store holds every changelog record up to it, and recovery
    reads from the next one. A batch that does not start right after it follows records this
    store never had: another owner's, written while this worker was cut off or stalled and its
    batch was held (it lands late, after them). Moving the offset past such a batch would make
    the next recovery skip those records and rebuild sellers without their facts; so the offset
    stays, and the next recovery reads them, and this batch, in the changelog's order."""
    if delivered.cancelled() or delivered.exception() is not None:
        return  # not in the changelog: the store must not have it either (the batch is replayed)
    try:
        store_write(table, tp.partition, writes, epoch)
        if delivered.result() is not None:
            first = delivered.result().offset
            if _follows(table.data, tp, first):
                table.data.set_persisted_offset(tp, first + len(writes) - 1)
            elif tp not in _GAPS_LOGGED:
                _GAPS_LOGGED.add(tp)
                log.info("starcast: a changelog batch of %s[%d] at offset %d does not follow the store's persisted "
                         "offset; the offset stays, and the next recovery reads what is between", tp.topic,
                         tp.partition, first)
    except Exception as exc:  # noqa: BLE001 - RocksDB raises plain Exception for an I/O error
        if on_error is None:
            raise
        on_error(f"the local store of {tp.topic}[{tp.partition}] could not be written ({exc})")


_GAPS_LOGGED: set[TP] = set()


def _follows(store: Any, tp: TP, first: int) -> bool:
    """Whether changelog offset `first` is the next after the store's persisted offset."""
    if getattr(store, "_db_for_partition", None) is None:
        return True  # the memory store keeps no offset: its recovery always reads the whole changelog
    persisted = store.persisted_offset(tp)
    return first == (-1 if persisted is None else persisted) + 1
