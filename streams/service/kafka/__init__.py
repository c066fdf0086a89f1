"""Every override of Faust and aiokafka behaviour, in one fenced package.

Each module keeps one guarantee and says in its docstring what upstream does, the failure that
caused, what is kept and the upstream issue if any:

| module | guarantee |
|---|---|
| `commits.py` | a commit covers only a contiguous run of handled offsets |
| `generations.py` | acks and commits count only within the consumer generation they began in |
| `flush.py` | a commit's flush returns once every table write queued before it reached the client |
| `rebalance.py` | no input record is lost around a rebalance |
| `fetch_loop.py`, `intake.py` | the agent's records reach it in batches, in event-time order; Faust's guarantees kept |
| `outbox.py` | one record batch per topic-partition, in order across flushes; stores never ahead of changelogs |
| `restore.py` | a table recovery applies the same changelog records, in order, read in bulk; stores read as stored |
| `fence.py` | a late changelog record of an earlier owner never overwrites what a later owner wrote before it |
| `standby.py` | a standby copy serves only if it holds every record of its changelog partition |
| `tansu.py` | (embedded broker) recovery reads to the changelog's true end; short fetch wait |
| `versions.py` | the overrides run only on the library releases they were written against |

They plug in through Faust's extension points: the consumer and producer are subclasses of the
aiokafka driver's, composed into a `Transport` subclass (`transport.py`), which the `App`
subclass below uses, and the table manager is given through the `TableManager` setting; there
is no patching of live objects and no install order. Private members of Faust and aiokafka are
used here and nowhere else (ruff's SLF001 enforces it).
"""

from __future__ import annotations

from typing import Any

import faust

from streams.service.kafka.fence import FencedTable
from streams.service.kafka.intake import Intake
from streams.service.kafka.options import KafkaOptions
from streams.service.kafka.outbox import Outbox, aiokafka_producer
from streams.service.kafka.rebalance import StallDetector
from streams.service.kafka.restore import BulkTableManager, stored_items
from streams.service.kafka.sellers import StoreSource, active_partitions, is_rocksdb
from streams.service.kafka.transport import transport_class
from streams.service.kafka.versions import PINNED, VersionMismatch, check_versions

__all__ = ["App", "Intake", "KafkaOptions", "Outbox", "PINNED", "StallDetector", "StoreSource", "VersionMismatch",
           "active_partitions", "is_rocksdb",
           "aiokafka_producer", "check_versions", "committed_offset", "first_offset", "stored_items"]


class App(faust.App):
    """A Faust app whose transport carries starcast's consumer and producer."""

    def __init__(self, id: str, *, kafka_options: KafkaOptions = KafkaOptions(), **options: Any) -> None:
        self.kafka_options = kafka_options
        options.setdefault("TableManager", BulkTableManager)  # the store check and the standby, always
        options.setdefault("Table", FencedTable)  # changelog batches applied through the epoch fence
        super().__init__(id, **options)

    def _new_transport(self) -> Any:
        return transport_class(self.kafka_options)(self.conf.broker_consumer, self)


def committed_offset(consumer: Any, tp: Any) -> int | None:
    """The consumer's committed offset of `tp` as it last knew it (no broker request)."""
    return consumer._committed_offset.get(tp)


def first_offset(consumer: Any, tp: Any) -> int | None:
    """Where reading of input partition `tp` began at the last assignment (rebalance.py)."""
    return getattr(consumer, "first_offsets", {}).get(tp)
