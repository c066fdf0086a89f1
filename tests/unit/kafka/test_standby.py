"""A standby copy serves only if it holds every record of its changelog partition
(streams/service/kafka/standby.py): the coverage check on real RocksDB stores, and the follower
that applies nothing once it is paused. The Kafka reader is a stand-in whose fetches return when
the test says so."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import rocksdict
from faust.types import TP

from streams.service.kafka.standby import (Follower, Verdict, check_before_serving, judge, mark_fresh,
                                           read_coverage, write_coverage)

OFFSET_KEY = b"__faust\0offset__"
TP0 = TP("app-state-changelog", 0)


class Store:
    """The parts of Faust's RocksDB store that standby.py reads, on a real RocksDB."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._dbs: dict[int, rocksdict.Rdict] = {}

    def partition_path(self, partition: int) -> Path:
        return self.root / f"state-{partition}.db"

    def _db_for_partition(self, partition: int) -> rocksdict.Rdict:
        if partition not in self._dbs:
            self._dbs[partition] = rocksdict.Rdict(str(self.partition_path(partition)),
                                                   options=rocksdict.Options(raw_mode=True))
        return self._dbs[partition]

    def persisted_offset(self, tp: TP) -> int | None:
        value = self._db_for_partition(tp.partition).get(OFFSET_KEY)
        return None if value is None else int(value)

    def apply(self, batch: list) -> None:
        db = self._db_for_partition(batch[0].partition)
        for record in batch:
            db[record.key] = record.value
        db[OFFSET_KEY] = str(batch[-1].offset).encode()


def table_on(store: Store) -> SimpleNamespace:
    return SimpleNamespace(data=store, apply_changelog_batch=store.apply)


def test_a_store_serves_only_if_its_reading_began_at_the_log_start_and_the_log_kept_what_follows():
    assert judge(None, None, 0).serves  # empty: read from the log start
    assert judge(120, 0, 0).serves
    assert judge(120, 0, 100).serves  # the log start moved, but not past what the store holds
    assert judge(120, None, 0) == Verdict(False)  # no record of where its reading began
    assert judge(120, 40, 0) == Verdict(False, (0, 39))  # it began after records the log has
    assert judge(120, 0, 200) == Verdict(False, (121, 199))  # the log lost records it never read
    assert Verdict(False, (0, 39)).describe() == "offsets 0-39"


def test_a_copy_that_cannot_vouch_for_its_records_is_emptied_before_it_serves(tmp_path):
    store = Store(tmp_path)
    tables = {TP0: table_on(store), TP("app-state-changelog", 1): table_on(store)}
    mark_fresh(tables, {TP0: 0})
    assert read_coverage(store, 0) == 0 and read_coverage(store, 1) == 0
    store.apply([SimpleNamespace(key=b"k%d" % i, value=b"v", offset=i, partition=0) for i in range(5)])
    store.apply([SimpleNamespace(key=b"j", value=b"v", offset=7, partition=1)])
    write_coverage(store, 1, 3)  # partition 1's reading began at 3, but its log starts at 0
    fell_back: list = []
    emptied = check_before_serving(tables, {TP0: 0}, lambda tp, verdict: fell_back.append((tp, verdict)))
    assert emptied == [TP("app-state-changelog", 1)]
    assert fell_back == [(TP("app-state-changelog", 1), Verdict(False, (0, 2)))]
    assert store.persisted_offset(TP("app-state-changelog", 1)) is None  # read again from the log start
    assert list(store._db_for_partition(1).keys()) == [] and read_coverage(store, 1) is None
    assert store.persisted_offset(TP0) == 4 and len(list(store._db_for_partition(0).keys())) == 6  # kept


class Reader:
    """A stand-in for the follower's aiokafka consumer: each fetch waits for the test."""

    def __init__(self, log_start: int = 0) -> None:
        self.log_start = log_start
        self.sought: dict = {}
        self.fetches: asyncio.Queue = asyncio.Queue()
        self.waiting = asyncio.Event()

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def assign(self, partitions: list) -> None:
        self.partitions = partitions

    async def beginning_offsets(self, partitions: list) -> dict:
        return {p: self.log_start for p in partitions}

    def seek(self, partition, offset: int) -> None:
        self.sought[partition] = offset

    async def getmany(self, timeout_ms: int, max_records: int) -> dict:
        self.waiting.set()
        records = await self.fetches.get()
        self.waiting.clear()
        return {self.partitions[0]: records} if records else {}


def test_the_follower_applies_what_it_reads_in_order_and_nothing_once_paused(tmp_path):
    async def scenario() -> None:
        store = Store(tmp_path)
        reader = Reader()
        follower = Follower(lambda: reader, lambda tp, verdict: None)
        stopping = False
        task = asyncio.ensure_future(follower.run(lambda: stopping))
        follower.follow({TP0: table_on(store)})
        await reader.waiting.wait()
        assert list(reader.sought.values()) == [0] and read_coverage(store, 0) == 0  # from the log start
        reader.fetches.put_nowait([SimpleNamespace(key=b"a", value=b"1", offset=0, headers=()),
                                   SimpleNamespace(key=b"b", value=b"2", offset=1, headers=())])
        await asyncio.sleep(0.01)
        await reader.waiting.wait()
        assert store.persisted_offset(TP0) == 1 and follower.applied == 2
        follower.pause()  # a rebalance begins while a fetch is in flight
        reader.fetches.put_nowait([SimpleNamespace(key=b"c", value=b"3", offset=2, headers=())])
        await asyncio.sleep(0.01)
        assert store.persisted_offset(TP0) == 1 and follower.applied == 2  # not applied
        follower.follow({TP0: table_on(store)})  # the same standby again: from the store's offset
        await reader.waiting.wait()
        assert list(reader.sought.values()) == [2]
        stopping = True
        reader.fetches.put_nowait([])
        await asyncio.wait_for(task, 1)

    asyncio.run(scenario())
