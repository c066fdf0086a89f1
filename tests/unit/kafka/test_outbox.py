"""The outbox's order of durability (streams/service/kafka/outbox.py): a table value reaches the local
store only when its changelog record is acknowledged, and `settled()` — what a table rebuild
waits for — returns only after every acknowledged write is in its store. The Kafka client is a
stand-in that acknowledges when the test says so."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from streams.service.kafka.outbox import Outbox


class Batch:
    def __init__(self):
        self.records = []

    def append(self, timestamp, key, value, headers):
        self.records.append((key, value))
        return object()

    def record_count(self):
        return len(self.records)


class Client:
    def __init__(self):
        self.sent: list = []

    def create_batch(self):
        return Batch()

    async def send_batch(self, batch, topic, partition):
        delivered = asyncio.get_running_loop().create_future()
        self.sent.append((topic, partition, batch.records, delivered))
        return delivered


def memory_table(changelog: str):
    persisted = {}
    store = SimpleNamespace(data={}, set_persisted_offset=lambda tp, offset: persisted.__setitem__(tp, offset))
    return SimpleNamespace(data=store, changelog_topic=SimpleNamespace(get_topic_name=lambda: changelog)), persisted


def test_settled_waits_for_every_acknowledgement_and_the_store_writes_behind_it():
    async def scenario():
        client = Client()
        outbox = Outbox(lambda: client)
        table, persisted = memory_table("state-changelog")
        outbox.put(table, 2, b"s1", b"v1")
        outbox.put(table, 3, b"s2", b"v2")
        outbox.send("star-changes", 2, b"s1", b"change")  # not a table: nothing to store
        assert await outbox.start_flush() == 3
        assert table.data.data == {}  # sent, not acknowledged: not in the store
        waiting = asyncio.ensure_future(outbox.settled())
        await asyncio.sleep(0.01)
        assert not waiting.done()
        by_partition = {(topic, partition): fut for topic, partition, _, fut in client.sent}
        by_partition[("state-changelog", 2)].set_result(SimpleNamespace(offset=40))
        await asyncio.sleep(0.01)
        assert not waiting.done() and table.data.data == {b"s1": b"v1"}
        by_partition[("state-changelog", 3)].set_exception(RuntimeError("broker said no"))
        assert await asyncio.wait_for(waiting, 1) == 2  # two changelog batches were in flight
        # The refused write never reaches the store (its batch is replayed); the other did.
        assert table.data.data == {b"s1": b"v1"} and list(persisted.values()) == [40]
        assert await outbox.settled() == 0  # nothing left in flight

    asyncio.run(scenario())


def test_a_store_that_cannot_be_written_is_reported_and_its_persisted_offset_stays():
    class FullDisk(dict):
        def __setitem__(self, key, value):
            raise Exception("IO error: No space left on device")  # what RocksDB raises

    async def scenario():
        client = Client()
        reported: list[str] = []
        outbox = Outbox(lambda: client, on_store_error=reported.append)
        table, persisted = memory_table("state-changelog")
        table.data.data = FullDisk()
        outbox.put(table, 1, b"s1", b"v1")
        await outbox.start_flush()
        client.sent[0][3].set_result(SimpleNamespace(offset=7))
        assert await outbox.settled() == 1
        # Reported with where and why; the offset does not move past what the store lacks.
        assert reported == ["the local store of state-changelog[1] could not be written "
                            "(IO error: No space left on device)"]
        assert persisted == {}

    asyncio.run(scenario())


def test_the_persisted_offset_moves_only_over_a_batch_that_follows_it():
    """A batch acknowledged after another owner's records (held while this worker was cut off)
    must not move the offset past them: the next recovery would skip them."""
    class Db:
        def __init__(self):
            self.writes = 0

        def write(self, batch):
            self.writes += 1

    db = Db()
    persisted: dict = {}
    store = SimpleNamespace(_db_for_partition=lambda partition: db, _key_index={},
                            persisted_offset=lambda tp: persisted.get(tp),
                            set_persisted_offset=lambda tp, offset: persisted.__setitem__(tp, offset))
    table = SimpleNamespace(data=store, changelog_topic=SimpleNamespace(get_topic_name=lambda: "state-changelog"))

    async def scenario():
        client = Client()
        outbox = Outbox(lambda: client)
        for offset, count in ((0, 2), (2, 1), (10, 2), (12, 1)):  # offsets 3-9: another owner's
            for i in range(count):
                outbox.put(table, 0, b"k%d" % i, b"v")
            await outbox.start_flush()
            client.sent[-1][3].set_result(SimpleNamespace(offset=offset))
            await outbox.settled()
            yield dict(persisted), db.writes

    async def run():
        return [step async for step in scenario()]

    steps = asyncio.run(run())
    offsets = [list(p.values()) for p, _ in steps]
    assert offsets == [[1], [2], [2], [2]]  # 0-1, then 2; 10-11 and 12 follow a gap: it stays
    assert [writes for _, writes in steps] == [1, 2, 3, 4]  # the values still reach the store


class GatedClient(Client):
    """aiokafka's send_batch returns once the partition's previous batch has left; here the
    first hand-over waits until the test opens the gate, and later ones go at once."""

    def __init__(self):
        super().__init__()
        self.gate = asyncio.Event()
        self.calls = 0
        self.failures = 0  # how many of the next hand-overs fail

    async def send_batch(self, batch, topic, partition):
        self.calls += 1
        if self.calls == 1:
            await self.gate.wait()
        if self.failures:
            self.failures -= 1
            raise RuntimeError("the client is closed")
        return await super().send_batch(batch, topic, partition)


def test_a_flush_started_behind_another_sends_nothing_before_it_and_settled_waits_for_both():
    async def scenario():
        client = GatedClient()
        outbox = Outbox(lambda: client)
        table, _ = memory_table("state-changelog")
        outbox.put(table, 0, b"s1", b"first")
        first = outbox.start_flush()
        outbox.put(table, 0, b"s1", b"second")  # the next batch, staged while the first waits
        outbox.send("star-changes", 0, b"s1", b"change")
        second = outbox.start_flush()
        settling = asyncio.ensure_future(outbox.settled())
        await asyncio.sleep(0.01)
        assert client.sent == [] and not first.done() and not second.done() and not settling.done()
        client.gate.set()
        assert await first == 1 and await second == 2
        # Each partition's records reach the client in the order they were staged.
        assert [records for topic, _, records, _ in client.sent if topic == "state-changelog"] == [
            [(b"s1", b"first")], [(b"s1", b"second")]]
        await asyncio.sleep(0.01)
        assert not settling.done()  # handed over, not yet acknowledged
        for _, _, _, delivered in client.sent:
            delivered.set_result(SimpleNamespace(offset=0))
        await asyncio.wait_for(settling, 1)
        assert table.data.data == {b"s1": b"second"}

    asyncio.run(scenario())


def test_a_failed_flush_fails_every_flush_behind_it():
    async def scenario():
        client = GatedClient()
        outbox = Outbox(lambda: client)
        client.failures = 1  # the first hand-over fails; the client would take the second
        outbox.send("star-changes", 0, b"s1", b"a")
        first = outbox.start_flush()
        outbox.send("star-changes", 0, b"s1", b"b")
        second = outbox.start_flush()
        client.gate.set()
        for flush in (first, second):
            try:
                await flush
            except RuntimeError as exc:
                assert str(exc) == "the client is closed"
            else:
                raise AssertionError("a flush behind a failed one went through")
        assert client.sent == []  # the second batch did not go out after the first failed

    asyncio.run(scenario())


def test_on_stored_runs_once_every_table_write_of_the_flush_is_in_its_store():
    async def scenario():
        client = Client()
        outbox = Outbox(lambda: client)
        table, _ = memory_table("state-changelog")
        stored: list[dict] = []
        outbox.put(table, 2, b"s1", b"v1")
        outbox.put(table, 3, b"s2", b"v2")
        outbox.send("star-changes", 2, b"s1", b"change")
        await outbox.start_flush(lambda: stored.append(dict(table.data.data)))
        outbox.put(table, 2, b"s3", b"v3")
        failing: list[int] = []
        await outbox.start_flush(lambda: failing.append(1))
        sent = {(topic, partition, records[0][0]): fut for topic, partition, records, fut in client.sent}
        sent[("state-changelog", 2, b"s1")].set_result(SimpleNamespace(offset=0))
        await asyncio.sleep(0.01)
        assert stored == []  # one of the flush's two writes is not acknowledged yet
        sent[("state-changelog", 3, b"s2")].set_result(SimpleNamespace(offset=0))
        await asyncio.sleep(0.01)
        assert stored == [{b"s1": b"v1", b"s2": b"v2"}]  # the stores held both when it ran
        sent[("state-changelog", 2, b"s3")].set_exception(RuntimeError("broker said no"))
        await asyncio.sleep(0.01)
        assert failing == []  # a refused write is not in the store: never reported as stored

    asyncio.run(scenario())
