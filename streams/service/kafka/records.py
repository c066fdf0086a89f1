"""A changelog record as a RocksDB store's `apply_changelog_batch` reads it."""

from __future__ import annotations

from typing import Any

from faust.types import TP


class ChangelogRecord:
    """The parts of a Faust changelog event that a RocksDB store's `apply_changelog_batch` reads
    (the key, the value, the partition, the offset and the headers), built from an aiokafka record."""

    __slots__ = ("key", "value", "tp", "offset", "partition", "headers")

    def __init__(self, tp: TP, record: Any) -> None:
        self.key, self.value, self.offset, self.headers = record.key, record.value, record.offset, record.headers
        self.tp, self.partition = tp, tp.partition

    @property
    def message(self) -> "ChangelogRecord":
        return self
