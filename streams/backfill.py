"""`starcast backfill FILE [--at RFC3339] [--force]`: the official months of archived events,
into the history the API serves.

The records are `starcast replay --monthly`'s (streams/replay.py), so each is what the
worker's freeze would have made. They are written, in the compact form of the history table
(streams/service/history.py), to that table's changelog (`<prefix><app id>-history-changelog`,
keyed `<seller>\\0<YYYY-MM>`, in the seller's partition): a worker that starts, or takes the
partition over, restores them, and `/sellers/{id}/history` and the seller page show them.

- Idempotent: a record already in the changelog with the same value is not written again, so
  a second run writes nothing.
- A month the service froze itself (a record without the backfill header) is never replaced by
  a different one unless `--force`: the command says how many and writes nothing.
- star-ratings-monthly is not written: it is the `official` table's changelog, whose latest
  record per seller is the seller's current official rating after a restore, and a past month
  appended there would become it.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import IO, Any, Callable, Iterable

import orjson

from streams.core.groups import RulebookSelection
from streams.core.rulebook import AnyBook
from streams.service import history
from streams.service.processor import partition_for
from streams.service.settings import Settings

BACKFILL_HEADER = "starcast-backfill"


def changelog_topic(settings: Settings) -> str:
    return f"{settings.topic_prefix}{settings.app_id}-history-changelog"


async def read_to_end(consumer: Any, partitions: list, handle: Callable[[Any], None], timeout: float = 120.0,
                      max_records: int | None = None) -> None:
    """Every record of `partitions` (assigned to `consumer` here) from the beginning to each
    partition's high watermark as a fetch reports it (the embedded broker's ListOffsets may be
    short), each passed to `handle`."""
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    deadline = time.monotonic() + timeout
    while True:
        for records in (await consumer.getmany(timeout_ms=300, max_records=max_records)).values():
            for r in records:
                handle(r)
        behind = False
        for tp in partitions:
            end = consumer.highwater(tp)
            behind = behind or end is None or await consumer.position(tp) < end
        if not behind:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"could not read {sorted({tp.topic for tp in partitions})} to their end")


async def _existing(settings: Settings, topic: str) -> dict[bytes, tuple[bytes | None, bool]]:
    """The changelog's latest value per key, and whether it was written by a backfill."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, fetch_max_wait_ms=50,
                                **settings.aiokafka_options())
    await consumer.start()
    latest: dict[bytes, tuple[bytes | None, bool]] = {}
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            return latest
        def keep(r: Any) -> None:
            if r.key is not None:
                latest[r.key] = (r.value, any(name == BACKFILL_HEADER for name, _ in (r.headers or ())))

        await read_to_end(consumer, partitions, keep)
    finally:
        await consumer.stop()
    return latest


async def _ensure_topic(settings: Settings, topic: str) -> None:
    """The changelog as the worker's table expects it: its partitions, compacted."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(**settings.aiokafka_options())
    await admin.start()
    try:
        compacted = NewTopic(topic, settings.partitions, 1, topic_configs={"cleanup.policy": "compact"})
        await admin.create_topics([compacted])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()


async def backfill(records: Iterable[dict], settings: Settings, force: bool, out: IO[str]) -> int:
    from aiokafka import AIOKafkaProducer

    topic = changelog_topic(settings)
    await _ensure_topic(settings, topic)
    existing = await _existing(settings, topic)
    writes, same, frozen = [], 0, 0
    for record in records:
        seller = record["seller_id"]
        key, value = history.key(seller, record["month"]), orjson.dumps(history.record(record))
        known, by_backfill = existing.get(key, (None, True))
        if known == value:
            same += 1
            continue
        if known is not None and not by_backfill:
            frozen += 1
            if not force:
                continue
        writes.append((key, value, partition_for(seller, settings.partitions)))
    if frozen and not force:
        out.write(f"starcast backfill: {frozen:,} months were already frozen by the service with another "
                  f"record; nothing written (--force replaces them)\n")
        return 1
    producer = AIOKafkaProducer(acks="all", linger_ms=5, **settings.aiokafka_options())
    await producer.start()
    try:
        for key, value, partition in writes:
            await producer.send(topic, value, key=key, partition=partition, headers=[(BACKFILL_HEADER, b"1")])
        await producer.flush()
    finally:
        await producer.stop()
    out.write(f"starcast backfill: {len(writes):,} months written to {topic}, {same:,} already there"
              f"{f', {frozen:,} frozen by the service replaced' if frozen else ''}\n")
    return 0


def run(path: str, rulebook: AnyBook | RulebookSelection, at: str | None, force: bool) -> int:
    from streams.core.timeutil import parse_ts
    from streams.replay import FileLines, monthly

    lines: Iterable[bytes] = sys.stdin.buffer if path == "-" else FileLines(path)
    records = monthly(lines, rulebook, parse_ts(at) if at else None)
    return asyncio.run(backfill(records, Settings.from_env(), force, sys.stderr))
