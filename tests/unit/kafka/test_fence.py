"""A late changelog record of an earlier owner never overwrites what a later owner wrote before
it landed (streams/service/kafka/fence.py). The interleaving of a stalled worker: its batch is
held by the network while the partition's new owner recovers and writes; the batch lands after
the owner's records; the owner's next recovery, and a fresh worker's, read it. Stores are real
RocksDB; the Kafka client is a stand-in that keeps what the outbox sends, headers included."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import rocksdict
from faust.types import TP

from streams.service.kafka.fence import (EPOCH_HEADER, FENCE_KEY, FencedTable, epoch, epoch_of, keep, next_epoch,
                                         stored_fence)
from streams.service.kafka.outbox import Outbox

TOPIC = "app-state-changelog"
TP0 = TP(TOPIC, 0)


class Store:
    """Faust's RocksDB store as the outbox and the fence use it, on a real RocksDB."""

    offset_key = b"__faust\0offset__"

    def __init__(self, path: Path) -> None:
        self.db = rocksdict.Rdict(str(path), options=rocksdict.Options(raw_mode=True))
        self._key_index: dict = {}

    def _db_for_partition(self, partition: int) -> rocksdict.Rdict:
        return self.db

    def persisted_offset(self, tp: TP) -> int | None:
        value = self.db.get(self.offset_key)
        return None if value is None else int(value)

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        self.db[self.offset_key] = str(offset).encode()


class Table:
    """The parts of a FencedTable the outbox and the fence read, on a Store."""

    def __init__(self, store: Store) -> None:
        self.data, self.write_epochs, self.skipped, self.fenced = store, {}, 0, True
        self.skipped_keys: dict[int, set[bytes]] = defaultdict(set)
        self.changelog_topic = SimpleNamespace(get_topic_name=lambda: TOPIC)

    take_skipped = FencedTable.take_skipped
    _stored_value = FencedTable._stored_value

    def fence(self, partition: int) -> int | None:
        return stored_fence(self.data, partition)

    def apply_changelog_batch(self, batch: list) -> None:
        FencedTable.apply_changelog_batch(self, batch)  # type: ignore[arg-type]


class Log:
    """The changelog partition: what the client was given, appended at the next offsets."""

    def __init__(self) -> None:
        self.records: list[SimpleNamespace] = []


def record(offset: int, key: bytes, value: bytes, stamped: int | None) -> SimpleNamespace:
    headers = [] if stamped is None else [(EPOCH_HEADER, str(stamped).encode())]
    message = SimpleNamespace(key=key, value=value, offset=offset, partition=0, headers=headers, tp=TP0)
    return SimpleNamespace(message=message)


def written(outbox: Outbox, table: Table, log: Log, writes: list[tuple[bytes, bytes]]) -> None:
    """The owner writes through its outbox; its batch is acknowledged at the log's end."""
    sent: list = []

    async def send_batch(batch, topic, partition):
        delivered = asyncio.get_running_loop().create_future()
        sent.append((batch, delivered))
        return delivered

    async def scenario():
        client = SimpleNamespace(create_batch=lambda: Batch(), send_batch=send_batch)
        outbox.client = lambda: client
        for key, value in writes:
            outbox.put(table, 0, key, value)  # type: ignore[arg-type]
        await outbox.start_flush()
        batch, delivered = sent[0]
        first = len(log.records)
        for key, value, headers in batch.records:
            log.records.append(record(len(log.records), key, value, epoch_of(headers)))
        delivered.set_result(SimpleNamespace(offset=first))
        await outbox.settled()

    asyncio.run(scenario())


class Batch:
    def __init__(self) -> None:
        self.records: list = []

    def append(self, timestamp, key, value, headers):
        self.records.append((key, value, headers))
        return object()

    def record_count(self) -> int:
        return len(self.records)


def recover(table: Table, log: Log) -> None:
    """Recovery: the changelog after the store's persisted offset, in order."""
    persisted = table.data.persisted_offset(TP0)
    table.apply_changelog_batch(log.records[(-1 if persisted is None else persisted) + 1:])


def test_epochs_order_by_counter_then_generation():
    assert next_epoch(None, 7) == epoch(1, 7)
    assert next_epoch(epoch(1, 9), 3) == epoch(2, 3) > epoch(1, 9)  # a later recovery wins a lower generation
    assert epoch(2, 8) > epoch(2, 3)  # two owners that recovered the same log: the later generation
    assert epoch_of([("other", b"1"), (EPOCH_HEADER, b"42")]) == 42 and epoch_of(()) is None


def test_a_record_below_the_highest_epoch_applied_is_skipped_and_one_without_an_epoch_is_kept():
    batch = [record(0, b"a", b"1", 5), record(1, b"a", b"2", 9), record(2, b"a", b"stale", 5),
             record(3, b"b", b"old", None), record(4, b"a", b"3", 9)]
    kept, fences, skipped = keep(batch, lambda partition: None)
    assert [event.message.offset for event in kept] == [0, 1, 3, 4] and fences == {0: 9}
    assert [event.message.offset for event in skipped] == [2]
    kept, _, skipped = keep(batch[:1], lambda partition: 9)  # the store had applied epoch 9 already
    assert kept == [] and len(skipped) == 1


def test_a_stalled_owners_late_batch_does_not_overwrite_the_new_owners_values(tmp_path):
    log = Log()
    # A owns the partition and writes k=v1; its next batch (k=stale, computed before the
    # events B handles below) is held by the network.
    a = Table(Store(tmp_path / "a"))
    recover(a, log)
    a.write_epochs[0] = next_epoch(a.fence(0), generation=5)
    written(Outbox(lambda: None), a, log, [(b"k", b"v1")])
    # A is stalled past the session timeout: B owns the partition, recovers it and writes k=v2.
    b = Table(Store(tmp_path / "b"))
    recover(b, log)
    b.write_epochs[0] = next_epoch(b.fence(0), generation=6)
    b_outbox = Outbox(lambda: None)
    written(b_outbox, b, log, [(b"k", b"v2")])
    # A's held batch lands after B's record; then B writes another key (its persisted offset
    # stays before A's late record: that batch does not follow it).
    log.records.append(record(len(log.records), b"k", b"stale", a.write_epochs[0]))
    written(b_outbox, b, log, [(b"j", b"w")])
    assert b.data.persisted_offset(TP0) == 1  # the next recovery reads A's late record
    # A rebalance: B recovers its tail; a fresh worker recovers all of it.
    recover(b, log)
    fresh = Table(Store(tmp_path / "fresh"))
    recover(fresh, log)
    for table in (b, fresh):
        assert table.data.db[b"k"] == b"v2" and table.data.db[b"j"] == b"w"
        assert table.data.persisted_offset(TP0) == 3 and table.skipped == 1
        assert int(table.data.db[FENCE_KEY]) == b.write_epochs[0]


def test_a_value_only_the_zombies_own_store_kept_is_written_again_when_it_owns_the_partition_again(tmp_path):
    """The zombie's late batch goes into its own store when acknowledged. When it owns the
    partition again, its recovery fences the late record, but its store still holds the value,
    so re-reading the input writes nothing: the value must be written again from the store, or
    the next owner restores without it."""
    log = Log()
    a = Table(Store(tmp_path / "a"))
    recover(a, log)
    a.write_epochs[0] = next_epoch(a.fence(0), generation=5)
    a_outbox = Outbox(lambda: None)
    written(a_outbox, a, log, [(b"k", b"v1")])
    # A stalls; B owns the partition and writes k=v2.
    b = Table(Store(tmp_path / "b"))
    recover(b, log)
    b.write_epochs[0] = next_epoch(b.fence(0), generation=6)
    written(Outbox(lambda: None), b, log, [(b"k", b"v2")])
    # A's held batch (a product B never touched) lands after B's record, and into A's store.
    written(a_outbox, a, log, [(b"p", b"facts")])
    assert a.data.db[b"p"] == b"facts"
    # A owns the partition again: its recovery fences the late record; its store keeps p.
    recover(a, log)
    a.write_epochs[0] = next_epoch(a.fence(0), generation=7)
    assert a.skipped == 1 and a.data.db[b"k"] == b"v2"
    again = a.take_skipped([0])
    assert again == {0: [(b"p", b"facts")]} and a.take_skipped([0]) == {}
    written(a_outbox, a, log, again[0])
    # The next owner, from the changelog alone, has what A's store had.
    fresh = Table(Store(tmp_path / "fresh"))
    recover(fresh, log)
    assert fresh.data.db[b"p"] == b"facts" and fresh.data.db[b"k"] == b"v2"


def test_only_the_partitions_asked_for_are_written_again_and_a_key_the_store_lacks_is_a_delete(tmp_path):
    table = Table(Store(tmp_path / "t"))
    table.data.db[b"held"] = b"value"
    table.skipped_keys[0].update({b"held", b"gone"})
    table.skipped_keys[1].add(b"other")
    assert table.take_skipped([0]) == {0: [(b"gone", None), (b"held", b"value")]}
    assert table.skipped_keys == {1: {b"other"}}  # not this worker's to write
