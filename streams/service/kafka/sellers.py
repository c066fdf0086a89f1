"""Guarantee: the processor reads a seller from exactly the stores the worker restored and keeps
current, for the partitions it owns, by key and by prefix.

Upstream (faust-streaming 0.15.3): a table is read through the current event's partition
(`table[key]`) or as a whole (`items()` decodes every record); Faust's RocksDB store keeps one
database per partition (`_db_for_partition`, `_dbs`) and knows the active ones only through the
assignor (`_dbs_for_actives`).

Kept here: `StoreSource`, a `core.sellers.SellerSource` over those per-partition RocksDB
databases: one prefix scan for a seller's entities, a point read per published record, a
seek-and-skip walk for the sellers of a partition. Only partitions the assignor says are
active are listed; the store writes come from the outbox (outbox.py), once acknowledged.
"""

from __future__ import annotations

from typing import Any, Iterator

from streams.core.keys import SEP
from streams.core.sellers import RECORD_TABLES, SellerRecords
from streams.service.kafka.fence import FENCE_KEY

NOT_RECORDS = (b"__faust\0offset__", FENCE_KEY)  # Faust's persisted offset, the epoch fence


def is_rocksdb(table: Any) -> bool:
    """Whether the table's store is Faust's RocksDB store (one database per partition)."""
    return hasattr(table.data, "_db_for_partition")


def active_partitions(app: Any, table: Any) -> list[int]:
    """The partitions of `table` this worker owns (its changelog's partitions assigned as active)."""
    topic = table.changelog_topic.get_topic_name()
    return sorted(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic)


class StoreSource:
    def __init__(self, app: Any, state: Any, records: dict[str, Any]):
        assert set(records) == set(RECORD_TABLES)
        self.app, self.state, self.records = app, state, records

    def _db(self, table: Any, partition: int) -> Any:
        return table.data._db_for_partition(partition)

    def partitions(self) -> list[int]:
        return active_partitions(self.app, self.state)

    def load(self, partition: int, seller: str) -> SellerRecords:
        out = SellerRecords(list(self.scan(partition, seller.encode() + SEP)))
        key = seller.encode()
        for name, table in self.records.items():
            value = self._db(table, partition).get(key)
            if value is not None:
                out.records[name] = bytes(value)
        return out

    def scan(self, partition: int, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        for key, value in self._db(self.state, partition).items(from_key=prefix):
            if not key.startswith(prefix):
                return
            yield bytes(key), bytes(value)

    def sellers(self, partition: int, after: str = "") -> Iterator[str]:
        """Sellers in id order: after each seller found, the walk seeks past all its keys."""
        db = self._db(self.state, partition)
        start = after.encode() + SEP + b"\xff" if after else b"\x01"
        while True:
            key = next(iter(db.keys(from_key=start)), None)
            if key is None:
                return
            key = bytes(key)
            if SEP not in key:  # Faust's persisted offset, the epoch fence
                start = key + b"\0"
                continue
            seller = key.split(SEP, 1)[0]
            yield seller.decode()
            start = seller + SEP + b"\xff"

    def values(self, table: str, partition: int) -> Iterator[bytes]:
        for key, value in self._db(self.records[table], partition).items():
            if key not in NOT_RECORDS:
                yield bytes(value)
