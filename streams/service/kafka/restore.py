"""Guarantee: a table recovery writes every changelog record from the store's persisted offset
to the changelog's end into the local RocksDB store, in offset order, and moves the persisted
offset with them, as Faust's recovery does; it reads them in bulk. And the memory rebuilt after
it reads the stores' bytes as stored (`stored_items`): what `table.items()` gives a table whose
keys and values are raw bytes, without Faust's per-record decode.

Upstream (faust-streaming 0.15.3): `Recovery._slurp_changelogs` takes the changelog one record
at a time from a queue fed by the consumer's fetcher (a task per `asyncio.wait_for`, two
formatted debug strings and a scan of every partition's remaining count per record): a fresh
worker restored ~4,300 records/s where a plain aiokafka read of the same topics ran at ~44,000.

Kept here: after Faust has computed each active changelog partition's start (the persisted
offset, or the earliest offset) and end (`_build_highwaters`, `_build_offsets`), a separate
aiokafka consumer reads from the start to the end in large fetches and hands each partition's
records to the table's `apply_changelog_batch` in offset order, in batches; Faust's own recovery
then finds nothing left to read and resumes the streams as usual. Only RocksDB stores are read
this way (the memory store keeps Faust's path). The bulk read stops at a deadline below Faust's
request timeout (the step it runs in is bounded by it); what remains is read by Faust's path
from where the bulk read stopped. Standby partitions keep Faust's path.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Iterator, cast

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from faust.tables import TableManager
from faust.tables.recovery import Recovery
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from faust.types import TP
from mode import Service

from streams.service.kafka.fence import FENCE_KEY, FencedTable, forget_fence, next_epoch
from streams.service.kafka.options import options_of
from streams.service.kafka.records import ChangelogRecord
from streams.service.kafka.standby import Follower, Verdict, check_before_serving, mark_fresh

log = logging.getLogger("starcast")

FETCH_BYTES = 4 << 20  # per partition and fetch
BATCH = 10_000  # records per apply_changelog_batch call


def _bulk_readable(table: Any) -> bool:
    return hasattr(table.data, "_db_for_partition")  # a RocksDB store


def stored_items(table: Any) -> Iterator[tuple[bytes, bytes]]:
    """The keys and values of the table's active partitions, as stored. For a table with raw
    key and value serializers this is `table.items()`; Faust's items view decodes every record
    through its serializer registry (~2 µs a record: about 0.5 s of a fresh worker's rebuild on
    the bench state), which gives back the same bytes. Stores other than RocksDB: `items()`."""
    if not _bulk_readable(table):
        return iter(table.items())
    return ((key, value) for key, value in table.data._iteritems() if key != FENCE_KEY)


class BulkRecovery(Recovery):
    """Faust's recovery, with the active changelog partitions read in bulk first (when the
    options ask for it), every store checked before it serves, and the standby partitions read
    by the project's own follower (standby.py)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.standbys_here: dict[TP, Any] = {}
        self.follower = Follower(lambda: changelog_reader(self.app, fetch_wait_ms=200), self._fell_back)

    def _fell_back(self, tp: TP, verdict: Verdict) -> None:
        log.warning("starcast: the local copy of %s/%d lacks %s; restoring the partition from the changelog",
                    tp.topic, tp.partition, verdict.describe())
        counter = options_of(self.app.consumer).on_standby_fallback
        if counter is not None:
            counter()

    def add_standby(self, table: Any, tp: TP) -> None:
        """Faust's recovery never reads a standby partition: the follower does."""
        self.standbys_here[tp] = table

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.follower.pause()  # nothing is written to a store from here until the new assignment
        super().on_partitions_revoked(revoked)

    async def on_rebalance(self, assigned: Any, revoked: Any, newly_assigned: Any, generation_id: int = 0) -> None:
        self.follower.pause()
        self.standbys_here = {}
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        if generation_id == self.app.consumer_generation_id:
            self.follower.follow(self.standbys_here)

    @Service.task
    async def _follow_standbys(self) -> None:
        await self.follower.run(lambda: self.should_stop)

    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        """Before the streams resume: the epoch this worker writes each active partition with,
        one above the highest its recovery applied (fence.py)."""
        generation = self.app.consumer_generation_id
        for table in self.tables.values():
            if isinstance(table, FencedTable):
                table.write_epochs = {}
        for tp in self.active_tps:
            table = self.tp_to_table.get(tp)
            if isinstance(table, FencedTable):
                table.write_epochs[tp.partition] = next_epoch(table.fence(tp.partition), generation)
        await super().on_recovery_completed(generation_id)

    async def _build_offsets(self, consumer: Any, tps: Any, destination: Any, title: str) -> None:
        if title == "active" and tps:
            tables = {tp: self.tp_to_table[tp] for tp in tps if tp in self.tp_to_table}
            for tp, table in tables.items():
                if not _bulk_readable(table):  # the memory store: read from the log start every time
                    forget_fence(cast(Any, table).data, tp.partition)
            log_starts = await consumer.earliest_offsets(*tables)
            for tp in check_before_serving(tables, log_starts, self._fell_back):
                destination[tp] = None  # read from the log start
            mark_fresh(tables, log_starts)
        await super()._build_offsets(consumer, tps, destination, title)
        if title == "active" and tps and options_of(consumer).bulk_restore:
            budget = max(self.app.conf.broker_request_timeout * 0.8 - 5, 1.0)
            await self.read_in_bulk(consumer, set(tps), destination, budget)

    async def read_in_bulk(self, consumer: Any, tps: set[TP], offsets: Any, budget: float) -> int:
        """Apply every record after `offsets[tp]` up to the partition's last offset to its table;
        `offsets` moves with them. Returns the number of records applied."""
        ends = {tp: self.active_highwaters.get(tp) for tp in tps}
        todo = {tp: end for tp, end in ends.items()
                if end is not None and end > offsets[tp] and tp in self.tp_to_table
                and _bulk_readable(self.tp_to_table[tp])}
        if not todo:
            return 0
        started = time.monotonic()
        reader = changelog_reader(self.app, fetch_wait_ms=50)
        await reader.start()
        applied = 0
        try:
            partitions = {TopicPartition(tp.topic, tp.partition): tp for tp in todo}
            reader.assign(list(partitions))
            for atp, tp in partitions.items():
                reader.seek(atp, offsets[tp] + 1)
            while todo and time.monotonic() - started < budget:
                fetched = await reader.getmany(*[a for a, tp in partitions.items() if tp in todo], timeout_ms=500,
                                               max_records=BATCH)
                for atp, records in fetched.items():
                    tp = partitions[atp]
                    end = todo.get(tp)
                    if end is None:
                        continue
                    batch = [ChangelogRecord(tp, r) for r in records if offsets[tp] < r.offset <= end]
                    if batch:
                        self.tp_to_table[tp].apply_changelog_batch(cast(Any, batch))
                        offsets[tp] = batch[-1].offset
                        applied += len(batch)
                for atp, tp in partitions.items():
                    # Done when the reader is past the end: the last offset may hold no record
                    # (a transaction marker; compaction), so the position says, not the records.
                    if tp in todo and await reader.position(atp) > todo[tp]:
                        offsets[tp] = max(offsets[tp], todo.pop(tp))
        finally:
            await reader.stop()
        log.info("starcast: restored %d changelog records in bulk in %.1f s%s", applied, time.monotonic() - started,
                 f"; {len(todo)} partitions left to Faust's path" if todo else "")
        return applied


def changelog_reader(app: Any, fetch_wait_ms: int) -> AIOKafkaConsumer:
    """A consumer of no group, for reading changelog partitions from explicit offsets."""
    options = options_of(app.consumer)
    bootstrap = options.bootstrap or ",".join(f"{u.host}:{u.port or 9092}" for u in app.conf.broker_consumer)
    return AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                            fetch_max_wait_ms=fetch_wait_ms, auto_offset_reset="earliest",
                            max_partition_fetch_bytes=FETCH_BYTES, fetch_max_bytes=8 * FETCH_BYTES,
                            **credentials_to_aiokafka_auth(app.conf.broker_credentials))


class BulkTableManager(TableManager):
    """Faust's table manager, recovering through BulkRecovery."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = BulkRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery
