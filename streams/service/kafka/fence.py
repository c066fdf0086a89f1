"""Guarantee: a changelog record written late by a worker that had lost its partition never
overwrites, in any recovery, what the partition's owner wrote before it landed.

Upstream (faust-streaming 0.15.3 with aiokafka 0.14.0; no transactions on the embedded broker):
changelog records are not fenced. A worker cut off or stalled past the session timeout keeps
rating the records it had fetched; its changelog batches are held by the network and sent when
it comes back, after the records the partition's new owner wrote meanwhile. Those late records
hold the zombie's values, computed without the events the owner handled since. Every recovery
applies the changelog in offset order, so the zombie's value of a key wins over the owner's
earlier one: the owner's own store reads them at its next rebalance (its persisted offset stays
before a batch that does not follow it, outbox.py) and rebuilds those sellers without facts it
had rated. Seen as a reply missing from a seller's response time after a 12 s stall of one
worker in the fault soak.

Kept here: every changelog record the worker writes carries the **epoch** of its owner
(`starcast-epoch` header): a counter one above the highest epoch in the partition's changelog
when its recovery finished, and the consumer generation it was assigned in (the tie-break for
two owners that recovered the same changelog). Recovery, the standby follower and Faust's
per-record path apply a changelog batch through `FencedTable.apply_changelog_batch`, which
skips a record whose epoch is below the highest epoch already applied to the partition's store
(kept in the store, `FENCE_KEY`, written with the records in one RocksDB write batch). A
zombie's late records follow an owner's records of a higher epoch, so they are skipped; records
that land before the new owner wrote anything are applied, and the owner, which re-reads the
zombie's uncommitted input, writes its own values after them. Records without the header
(written before it existed) are applied as they always were.

A skipped record's key may still hold the zombie's value in the zombie's own store: the outbox
put the late batch there when the broker acknowledged it, before any recovery could fence it.
When that worker owns the partition again, re-reading the zombie's input changes nothing in its
store (the facts are there), so nothing is written, and the changelog, which fenced the
records, never gets those facts: the next owner restores without them. So after a recovery the
owner writes again, with its own epoch, the value its store holds for every key a fenced
record had (`FencedTable.take_skipped`): the changelog then holds what the owner's store holds.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any, Callable, Iterable

import faust

log = logging.getLogger("starcast")

EPOCH_HEADER = "starcast-epoch"
FENCE_KEY = b"__starcast\0epoch__"
"""In each partition's RocksDB store: the highest epoch applied or written to it."""


def epoch(counter: int, generation: int) -> int:
    """Owner epochs order by counter, then by consumer generation."""
    return counter << 32 | (generation & 0xFFFFFFFF)


def next_epoch(fence: int | None, generation: int) -> int:
    """The epoch of an owner whose recovery found `fence` as the highest epoch applied."""
    return epoch(((fence or 0) >> 32) + 1, generation)


def epoch_of(headers: Any) -> int | None:
    """The epoch a changelog record carries; None: none (written before epochs existed)."""
    if not headers:
        return None
    items = headers.items() if isinstance(headers, dict) else headers
    for key, value in items:
        if key == EPOCH_HEADER:
            try:
                return int(value)
            except (TypeError, ValueError):
                return None
    return None


def keep(batch: Iterable[Any], fence: Callable[[int], int | None]) -> tuple[list, dict[int, int | None], list]:
    """The records of a changelog batch to apply, in order; each partition's highest epoch after
    them; and the records skipped. `fence(partition)`: the highest epoch applied before."""
    fences: dict[int, int | None] = {}
    kept, skipped = [], []
    for event in batch:
        message = event.message
        partition = message.partition
        if partition not in fences:
            fences[partition] = fence(partition)
        stamped, highest = epoch_of(message.headers), fences[partition]
        if stamped is not None and highest is not None and stamped < highest:
            skipped.append(event)
            continue
        if stamped is not None and (highest is None or stamped > highest):
            fences[partition] = stamped
        kept.append(event)
    return kept, fences, skipped


def stored_fence(store: Any, partition: int) -> int | None:
    """The highest epoch in a partition's store: RocksDB's key, or the memory store's dict."""
    db_for_partition = getattr(store, "_db_for_partition", None)
    if db_for_partition is None:
        return getattr(store, "starcast_fences", {}).get(partition)
    value = db_for_partition(partition).get(FENCE_KEY)
    return None if value is None else int(value)


def forget_fence(store: Any, partition: int) -> None:
    """A memory store read again from the log start: its epochs start over."""
    getattr(store, "starcast_fences", {}).pop(partition, None)


class FencedTable(faust.Table):
    """A Faust table whose changelog batches are applied through the epoch fence, and which
    knows the epoch this worker writes each of its active partitions with.

    `fenced = False` for a table whose changelog is a published topic (the forecasts on
    star-forecasts): its store must hold what the topic's readers see last, late records
    included, so that the worker publishes again whatever differs from it."""

    fenced = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.write_epochs: dict[int, int] = {}
        self.skipped = 0  # records skipped, since start
        self.skipped_keys: dict[int, set[bytes]] = defaultdict(set)  # partition -> keys of records skipped

    def take_skipped(self, partitions: Iterable[int]) -> dict[int, list[tuple[bytes, bytes | None]]]:
        """For each of `partitions` (this worker's active ones) whose recovery skipped records:
        their keys with the value the store holds now (None: it holds none, a delete), to be
        written again with this worker's epoch. Forgets what it returns."""
        out: dict[int, list[tuple[bytes, bytes | None]]] = {}
        for partition in partitions:
            keys = self.skipped_keys.pop(partition, None)
            if keys:
                out[partition] = [(key, self._stored_value(partition, key)) for key in sorted(keys)]
        return out

    def _stored_value(self, partition: int, key: bytes) -> bytes | None:
        store = self.data
        db_for_partition = getattr(store, "_db_for_partition", None)
        value = db_for_partition(partition).get(key) if db_for_partition is not None else store.data.get(key)
        return None if value is None else bytes(value)

    def fence(self, partition: int) -> int | None:
        return stored_fence(self.data, partition)

    def apply_changelog_batch(self, batch: Iterable[Any]) -> None:
        if not self.fenced:
            super().apply_changelog_batch(batch)
            return
        batch = list(batch)
        kept, fences, skipped = keep(batch, self.fence)
        if skipped:
            self.skipped += len(skipped)
            _log_skipped(self.changelog_topic.get_topic_name(), skipped, fences)
            for event in skipped:
                if event.message.key is not None:
                    self.skipped_keys[event.message.partition].add(bytes(event.message.key))
        store = self.data
        if getattr(store, "_db_for_partition", None) is None:  # the memory store
            super().apply_changelog_batch(kept)
            known = store.__dict__.setdefault("starcast_fences", {})
            known.update({p: f for p, f in fences.items() if f is not None})
            return
        _write(store, batch, kept, fences)


def _log_skipped(topic: str, skipped: list, fences: dict[int, int | None]) -> None:
    """One line per partition: how many records, their offsets, and their owner's epoch against
    the highest applied (counter/generation)."""
    by_partition: dict[int, list] = defaultdict(list)
    for event in skipped:
        by_partition[event.message.partition].append(event.message)
    for partition, messages in by_partition.items():
        stamped = max(epoch_of(m.headers) or 0 for m in messages)
        log.info("starcast: skipped %d late changelog records of %s[%d] (offsets %d-%d, epoch %s) written by an "
                 "earlier owner after the records of epoch %s", len(messages), topic, partition,
                 messages[0].offset, messages[-1].offset, _shown(stamped), _shown(fences.get(partition)))


def _shown(value: int | None) -> str:
    return "none" if value is None else f"{value >> 32}/{value & 0xFFFFFFFF}"


def _write(store: Any, batch: list, kept: list, fences: dict[int, int | None]) -> None:
    """Faust's RocksDB `apply_changelog_batch`, with the fence in the same write batch: the
    kept records, then each partition's persisted offset (past skipped records too) and its
    highest epoch."""
    import rocksdict

    batches: dict[int, Any] = defaultdict(lambda: rocksdict.WriteBatch(raw_mode=True))
    for event in kept:
        message = event.message
        if message.value is None:
            batches[message.partition].delete(message.key)
        else:
            batches[message.partition].put(message.key, message.value)
    offsets: dict[int, int] = {}
    for event in batch:
        message = event.message
        offsets[message.partition] = max(message.offset, offsets.get(message.partition, -1))
    for partition, offset in offsets.items():
        batches[partition].put(store.offset_key, str(offset).encode())
        if fences.get(partition) is not None:
            batches[partition].put(FENCE_KEY, str(fences[partition]).encode())
    for partition, write in batches.items():
        store._db_for_partition(partition).write(write)
