"""Guarantee: a standby copy serves only if it holds every record of its changelog partition.

Upstream (faust-streaming 0.15.3): standby changelog partitions are read by the worker's own
consumer and applied through the recovery's shared, per-table buffers (`_slurp_changelogs`).
Records fetched before a standby partition is resumed are dropped while the fetch position
moves past them; a standby partition's "seen" offset lives in memory and survives a rebalance
(`Recovery._add` keeps it when the store has no persisted offset yet, while its records still
sit in a buffer); an event of a partition that left the standby set in the middle of a
rebalance is applied to the previous event's table. Any of these leaves the standby store
without some records while its persisted offset is past them. The worker that takes the
partition over then recovers only from that offset on and rates its sellers without the
missing facts: scaling 1 -> 2 -> 1 workers with a standby replica lost the first ~290 records
of a state changelog partition (one fetch) about one run in two, and nothing said so.

Kept here, in two parts:

1. **The project's own standby** (`Follower`). Faust's assignor still picks the standby
   partitions (STARCAST_STANDBY_REPLICAS is its `table_standby_replicas`), but Faust's
   recovery never resumes them: a follower reads them with a consumer of its own (no group,
   explicit seeks), so every record it applies follows the previous one in the partition, from
   the store's persisted offset or from the log start. It stops applying at the first moment
   of a rebalance (`on_partitions_revoked`) and starts again, from each store's persisted
   offset, once the new assignment is known.
2. **Coverage, checked before a copy serves.** Beside each RocksDB partition store a small file
   (`<store>.covered`) records the offset its reading began at when the store was empty: the
   store holds every record from there up to its persisted offset, since every writer (the
   recovery, the follower, the worker's own writes through the outbox) appends only records
   that follow. When a changelog partition becomes active, its store is used as it is only if
   that file exists and the changelog's log start has not passed the store's reach (records the
   store never saw cannot have been removed before it read them). Otherwise the store is
   emptied and the partition is restored from the changelog topic; the fallback is logged in
   one line naming the partition and the range that cannot be vouched for, and counted
   (`starcast_standby_fallbacks_total`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from faust.types import TP

from streams.service.kafka.records import ChangelogRecord

log = logging.getLogger("starcast")

FOLLOW_BATCH = 10_000  # records per apply_changelog_batch call
RETRY_SECONDS = 1.0  # after a failed read: the broker may be away


def rocksdb_store(table: Any) -> Any | None:
    """The table's RocksDB store, or None for another store (memory: nothing persists)."""
    data = table.data
    return data if hasattr(data, "_db_for_partition") and hasattr(data, "partition_path") else None


def coverage_path(store: Any, partition: int) -> Path:
    path = store.partition_path(partition)
    return path.with_name(path.name + ".covered")


def read_coverage(store: Any, partition: int) -> int | None:
    """The offset the store's reading began at when it was empty; None: not known."""
    try:
        return int(coverage_path(store, partition).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def write_coverage(store: Any, partition: int, since: int) -> None:
    """Record that the (empty) store holds every record of its partition from `since` on."""
    path = coverage_path(store, partition)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{since}\n")
    os.replace(tmp, path)


def empty(store: Any, partition: int) -> int:
    """Delete every key of the partition's store, its persisted offset included, and forget its
    coverage. Returns the number of keys deleted."""
    import rocksdict

    db = store._db_for_partition(partition)
    batch = rocksdict.WriteBatch(raw_mode=True)
    n = 0
    for key in db.keys():
        batch.delete(key)
        n += 1
    db.write(batch)
    coverage_path(store, partition).unlink(missing_ok=True)
    return n


@dataclass(frozen=True)
class Verdict:
    """Whether a store partition's copy may serve, and if not the offsets it cannot vouch for."""

    serves: bool
    missing: tuple[int, int] | None = None  # first, last offset not vouched for (inclusive)

    def describe(self) -> str:
        if self.missing is None:
            return "no record of where its reading began"
        first, last = self.missing
        return f"offsets {first}-{last}"


def judge(persisted: int | None, since: int | None, log_start: int) -> Verdict:
    """May a store with `persisted` as its last applied offset, whose reading began at `since`
    (None: unknown), serve a changelog partition whose log starts at `log_start`? An empty store
    (nothing persisted) always may: it is read from the log start."""
    if persisted is None:
        return Verdict(True)
    if since is None:
        return Verdict(False)
    if since > log_start:  # began after records the log still has
        return Verdict(False, (log_start, since - 1))
    if persisted + 1 < log_start:  # the log lost records the store never read
        return Verdict(False, (persisted + 1, log_start - 1))
    return Verdict(True)


def check_before_serving(tables: Mapping[TP, Any], log_starts: Mapping[TP, int | None],
                         on_fallback: Callable[[TP, Verdict], None]) -> list[TP]:
    """For each changelog partition about to become active: keep its store if it may serve,
    else empty it (its recovery then reads the changelog from the log start). Returns the
    partitions emptied; `on_fallback` is called for each."""
    emptied: list[TP] = []
    for tp, table in tables.items():
        store = rocksdb_store(table)
        if store is None:
            continue
        persisted = store.persisted_offset(tp)
        verdict = judge(persisted, read_coverage(store, tp.partition), log_starts.get(tp) or 0)
        if not verdict.serves:
            empty(store, tp.partition)
            on_fallback(tp, verdict)
            emptied.append(tp)
    return emptied


def mark_fresh(tables: Mapping[TP, Any], log_starts: Mapping[TP, int | None]) -> None:
    """Stores with nothing persisted are about to be read from the log start: say so."""
    for tp, table in tables.items():
        store = rocksdb_store(table)
        if store is not None and store.persisted_offset(tp) is None:
            write_coverage(store, tp.partition, log_starts.get(tp) or 0)


class Follower:
    """Keeps this worker's standby changelog partitions' stores up to date, each from its store's
    persisted offset (or the log start), with a consumer of its own.

    `follow(tables)` sets what to follow, `pause()` stops applying at once: both are plain
    calls, and a fetched batch is applied only if its partition is still followed when it
    arrives, so nothing is written to a store after the call returns."""

    def __init__(self, new_reader: Callable[[], Any], on_fallback: Callable[[TP, Verdict], None]) -> None:
        self._new_reader = new_reader
        self._on_fallback = on_fallback
        self._wanted: dict[TP, Any] = {}
        self._generation = 0  # moves on every follow/pause: reading starts again from the stores
        self._changed = asyncio.Event()
        self.applied = 0  # records applied, all partitions (tests and logs)

    @property
    def following(self) -> frozenset[TP]:
        return frozenset(self._wanted)

    def follow(self, tables: Mapping[TP, Any]) -> None:
        self._wanted = {tp: table for tp, table in tables.items() if rocksdb_store(table) is not None}
        self._generation += 1
        self._changed.set()

    def pause(self) -> None:
        self.follow({})

    async def run(self, stopping: Callable[[], bool]) -> None:
        """Follow until `stopping()`; a failed read starts reading again after a pause."""
        while not stopping():
            if not self._wanted:
                self._changed.clear()
                await self._changed.wait()
                continue
            try:
                await self._follow_generation(stopping)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the broker away, a rebalance: read again
                log.warning("starcast: standby reading failed (%s: %s); reading again in %.0f s",
                            type(exc).__name__, exc, RETRY_SECONDS)
                await asyncio.sleep(RETRY_SECONDS)

    async def _follow_generation(self, stopping: Callable[[], bool]) -> None:
        from aiokafka.structs import TopicPartition

        generation, wanted = self._generation, dict(self._wanted)
        reader = self._new_reader()
        await reader.start()
        try:
            partitions = {TopicPartition(tp.topic, tp.partition): tp for tp in wanted}
            reader.assign(list(partitions))
            log_starts = await reader.beginning_offsets(list(partitions))
            if generation != self._generation:
                return
            starts = {tp: log_starts.get(atp) or 0 for atp, tp in partitions.items()}
            check_before_serving(wanted, starts, self._on_fallback)
            mark_fresh(wanted, starts)
            for atp, tp in partitions.items():
                persisted = wanted[tp].data.persisted_offset(tp)  # follow() keeps RocksDB stores only
                reader.seek(atp, starts[tp] if persisted is None else persisted + 1)
            log.info("starcast: following %d standby changelog partitions from their stores", len(partitions))
            while generation == self._generation and not stopping():
                fetched = await reader.getmany(timeout_ms=500, max_records=FOLLOW_BATCH)
                if generation != self._generation:
                    return  # paused or reassigned meanwhile: apply nothing
                for atp, records in fetched.items():
                    tp = partitions[atp]
                    if records:
                        wanted[tp].apply_changelog_batch([ChangelogRecord(tp, r) for r in records])
                        self.applied += len(records)
        finally:
            await reader.stop()

