"""The store is the state: a processor over a store with a cache too small to hold a seller gives
exactly the output of one that holds every seller in memory, through batches, day rolls, a month
start, the monthly freeze and restores (core/sellers.py, service/processor.py)."""

from __future__ import annotations

import random
from collections import Counter

import orjson
import pytest

from streams.core.keys import state_key
from streams.core.rulebook import load
from streams.core.sellers import FORECASTS, OFFICIAL, WARNINGS, MemorySource, Overlay, SellerCache, SellerRecords
from streams.core.timeutil import format_ts, parse_ts
from streams.lab.workload import events as workload
from streams.service.processor import DUE, Effects, Incoming, RatingProcessor, Tick, partition_for

PARTITIONS = 3


def apply(source: MemorySource, partition: int, effects: Effects) -> None:
    """What a worker's stores take once a batch's changelog records are acknowledged."""
    for key, value in effects.state_writes:
        source.write("state", partition, key, value)
    for table, records in ((FORECASTS, effects.forecasts), (OFFICIAL, effects.monthly),
                           (WARNINGS, effects.warnings)):
        for seller, record in records:
            source.write(table, partition, seller.encode(), orjson.dumps(record))


def outputs(out: dict[int, Effects]) -> list:
    return sorted((p, [orjson.dumps(x) for x in (e.forecasts, e.changes, e.monthly, e.warnings)])
                  for p, e in out.items())


def batches(n: int, sellers: int, seed: int) -> list[list[Incoming | Tick]]:
    """The workload in batches, shuffled a little within each, with a tick past each midnight
    and a last one past the month's freeze."""
    rng = random.Random(seed)
    items: list[Incoming | Tick] = []
    day = None
    for i, event in enumerate(workload(n, sellers, seed=seed, start="2026-03-20T00:00:00Z", days=14)):
        raw = orjson.dumps(event)
        if day is not None and event["ts"][:10] != day:
            items.extend(Tick(p, parse_ts(event["ts"][:10] + "T00:00:01Z")) for p in range(PARTITIONS))
        day = event["ts"][:10]
        partition = partition_for(event["seller_id"], PARTITIONS)
        items.append(Incoming(raw, event["seller_id"].encode(), "buyer-messages", partition, i))
    last = parse_ts("2026-04-10T00:00:00Z")
    items.extend(Tick(p, last) for p in range(PARTITIONS))
    out, i = [], 0
    while i < len(items):
        size = rng.randint(1, 60)
        chunk = items[i:i + size]
        i += size
        out.append(chunk)
    return out


def _timeless(record: dict) -> dict:
    """A record without `as_of`: when it was published depends on how a batch was split, and
    a forecast goes out again only when something else changed. Likewise a warning's
    `actions`, computed when the warning was first sent."""
    return {key: value for key, value in record.items() if key not in ("as_of", "actions")}


def tables(source: MemorySource) -> dict[str, dict[str, dict]]:
    return {name: {k.decode(): _timeless(orjson.loads(v)) for p in source.tables[name]
                   for k, v in source.tables[name][p].items()} for name in (FORECASTS, OFFICIAL, WARNINGS)}


def as_tables(memory: RatingProcessor) -> dict[str, dict[str, dict]]:
    return {name: {seller: _timeless(orjson.loads(orjson.dumps(record))) for seller, record in held.items()}
            for name, held in ((FORECASTS, memory.published), (OFFICIAL, memory.official), (WARNINGS, memory.warned))}


@pytest.mark.parametrize("seed", [3, 11])
def test_a_one_byte_cache_over_a_store_ends_where_memory_does(seed):
    """Eviction all the time, writes reaching the store a batch late: the same forecasts,
    monthly records and warnings in the end (a full cache publishes sellers mid-batch, so the
    forecasts in between may be more)."""
    book = load("global-2023")
    memory = RatingProcessor(book, PARTITIONS)
    source = MemorySource()
    stored = RatingProcessor(book, PARTITIONS, source=source, cache_bytes=1)
    pending: list[tuple[int, dict[int, Effects]]] = []  # batches in flight: stored one batch late
    monthly: dict[str, list] = {"memory": [], "stored": []}
    for chunk in batches(2500, 30, seed):
        for name, processor in (("memory", memory), ("stored", stored)):
            out = processor.handle_batch(chunk)
            monthly[name].extend(orjson.dumps(r) for e in out.values() for _, r in e.monthly)
        pending.append((stored.batch, out))
        if len(pending) > 1:
            number, effects = pending.pop(0)
            for partition, e in effects.items():
                apply(source, partition, e)
            stored.settled(number)
    for number, effects in pending:
        for partition, e in effects.items():
            apply(source, partition, e)
    assert len(monthly["memory"]) >= 20  # March was frozen on the way
    assert sorted(monthly["stored"]) == sorted(monthly["memory"])  # each once, the same
    assert tables(source) == as_tables(memory)
    assert stored.cache is not None and stored.cache.evictions > 100  # eviction ran all along
    assert len(stored.cache) <= 2  # a seller applied is rated before the next is loaded
    assert memory.levels == stored.levels and memory.at_risk == stored.at_risk
    assert memory.levels == [sum(1 for r in memory.published.values() if r["stars"] == n) for n in range(6)]


def test_a_cache_that_holds_every_seller_gives_memorys_output_batch_by_batch():
    book = load("global-2023")
    memory = RatingProcessor(book, PARTITIONS)
    source = MemorySource()
    stored = RatingProcessor(book, PARTITIONS, source=source, cache_bytes=1 << 30)
    for chunk in batches(2500, 30, 3):
        expected = memory.handle_batch(chunk)
        got = stored.handle_batch(chunk)
        assert outputs(got) == outputs(expected)
        for partition, e in got.items():
            apply(source, partition, e)
        stored.settled(stored.batch)


def test_a_restore_reads_no_seller_and_the_next_batches_agree():
    book = load("global-2023")
    memory = RatingProcessor(book, PARTITIONS)
    source = MemorySource()
    stored = RatingProcessor(book, PARTITIONS, source=source, cache_bytes=1 << 30)
    chunks = batches(2500, 30, 5)
    half = len(chunks) // 2
    for chunk in chunks[:half]:
        memory.handle_batch(chunk)
        for partition, e in stored.handle_batch(chunk).items():
            apply(source, partition, e)
        stored.settled(stored.batch)
    # A restart: the memory processor rebuilds every seller, the stored one reads none.
    tables = {name: [(k, v) for p in data for k, v in data[p].items()] for name, data in source.tables.items()}
    memory.restore(tables["state"], tables[FORECASTS], tables[OFFICIAL], tables[WARNINGS])
    loads = []
    stored.source = source
    original = source.load
    source.load = lambda p, s: loads.append(s) or original(p, s)  # type: ignore[method-assign]
    assert stored.restore_from_store() == len(memory.published)
    assert loads == [] and len(stored.cache or ()) == 0
    assert stored.levels == memory.levels and stored.latest_month == memory.latest_month
    assert {p: e.clock for p, e in stored.engines.items()} == {p: e.clock for p, e in memory.engines.items()}
    for chunk in chunks[half:]:
        expected = memory.handle_batch(chunk)
        got = stored.handle_batch(chunk)
        for partition, e in got.items():
            apply(source, partition, e)
        stored.settled(stored.batch)
        assert [(s, r["stars"]) for e in got.values() for s, r in e.monthly] == \
            [(s, r["stars"]) for e in expected.values() for s, r in e.monthly]
    # Whatever came out in between, the last forecasts agree (the stored one's from its tables).
    final = {seller: orjson.loads(v) for p in source.tables[FORECASTS] for seller, v in
             ((k.decode(), v) for k, v in source.tables[FORECASTS][p].items())}
    assert final == {s: orjson.loads(orjson.dumps(r)) for s, r in memory.published.items()}
    assert len(loads) < len(memory.published) + 1  # only the sellers touched since were loaded


def test_the_due_index_is_what_the_clock_keeps():
    book = load("global-2023")
    source = MemorySource()
    stored = RatingProcessor(book, PARTITIONS, source=source, cache_bytes=1)
    for chunk in batches(1500, 20, 7):
        for partition, e in stored.handle_batch(chunk).items():
            apply(source, partition, e)
        stored.settled(stored.batch)
    index = {k[len(DUE):].decode(): int(v) for p in source.tables["state"] for k, v in
             source.tables["state"][p].items() if k.startswith(DUE)}
    assert index == stored._queued and index  # noqa: SLF001 - the index is the heap's persisted copy


def test_the_overlay_keeps_a_write_until_its_batch_and_no_later_one_is_settled():
    overlay = Overlay()
    key = state_key("s1", "p", "v1")
    overlay.put(1, "s1", "state", key, b"one")
    overlay.put(2, "s1", "state", key, b"two")
    overlay.put(2, "s1", FORECASTS, b"s1", {"stars": 3})
    overlay.settle(1)
    seen = overlay.over("s1", SellerRecords([(key, b"stored")], {}))
    assert seen.entities == [(key, b"two")] and seen.records == {FORECASTS: {"stars": 3}}
    overlay.settle(2)
    assert overlay.over("s1", SellerRecords([(key, b"stored")], {})).entities == [(key, b"stored")]
    assert len(overlay) == 0 and overlay.bytes == 0
    overlay.put(3, "s1", "state", key, None)  # a delete hides the stored value until settled
    assert overlay.over("s1", SellerRecords([(key, b"stored")], {})).entities == []


def test_the_cache_evicts_least_recent_first_and_never_a_dirty_state():
    class St:
        def __init__(self, size: int, dirty: bool = False):
            self.size, self.dirty = size, dirty

    stored = {"a": St(10), "b": St(10, dirty=True), "c": St(10)}
    evicted: list[str] = []
    cache = SellerCache(stored.get, lambda s: s.size, lambda s: not s.dirty, budget=25,
                        on_evict=lambda seller, _: evicted.append(seller))
    for seller in ("a", "b", "c"):
        assert cache.get(seller) is stored[seller]
    assert evicted == ["a"] and "b" in cache and cache.bytes == 20  # b is dirty: it stays
    cache.get("c")
    cache.get("a")  # loaded again; c is now the least recent clean one
    assert evicted == ["a", "c"] and cache.misses == 4 and cache.hits == 1


def test_a_scan_over_more_sellers_than_the_budget_leaves_the_busy_ones_held():
    class St:
        size, dirty = 10, False

    stored = {f"s{i}": St() for i in range(20)}
    cache = SellerCache(stored.get, lambda s: s.size, lambda s: not s.dirty, budget=35)
    for seller in ("s0", "s1"):
        cache.get(seller)  # the busy sellers
    with cache.scan():
        for i in range(20):  # every seller once, as a sweep or a freeze does
            cache.get(f"s{i}")
    assert "s0" in cache and "s1" in cache and cache.bytes <= 35
    misses = cache.misses
    cache.get("s0")
    cache.get("s1")
    assert cache.misses == misses  # no reload after the scan
    # Outside a scan the same pass is plain LRU: it evicts the busy sellers.
    for i in range(2, 20):
        cache.get(f"s{i}")
    assert "s0" not in cache and "s1" not in cache


def test_ticks_only_batches_keep_the_days_forecasts_flowing():
    """A seller whose window changes at a day roll is re-rated with a store too."""
    book = load("global-2023")
    source = MemorySource()
    stored = RatingProcessor(book, 1, source=source, cache_bytes=1)
    memory = RatingProcessor(book, 1)
    start = parse_ts("2026-03-02T10:00:00Z")
    events = [{"event_id": f"e{i}", "type": "store_visit", "seller_id": "s1", "ts": format_ts(start + i * 1000),
               "visitor_id": f"v{i}"} for i in range(5)]
    for processor in (stored, memory):
        out = processor.handle_batch([Incoming(orjson.dumps(e), b"s1", "store-visits", 0, i)
                                      for i, e in enumerate(events)])
        if processor is stored:
            apply(source, 0, out[0])
            stored.settled(stored.batch)
    for day in range(3, 40):
        when = parse_ts(f"2026-{3 + (day - 1) // 31:02d}-{(day - 1) % 31 + 1:02d}T00:00:05Z")
        got = stored.handle_batch([Tick(0, when)])
        assert outputs(got) == outputs(memory.handle_batch([Tick(0, when)]))
        for partition, e in got.items():
            apply(source, partition, e)
        stored.settled(stored.batch)


def test_a_bounded_sweep_rates_what_the_clock_marked_a_chunk_per_batch_and_ends_where_memory_does():
    book = load("global-2023")
    memory = RatingProcessor(book, PARTITIONS)
    source = MemorySource()
    stored = RatingProcessor(book, PARTITIONS, source=source, cache_bytes=1, sweep_chunk=2)
    largest = most_waiting = 0
    for chunk in batches(2500, 30, 13):
        memory.handle_batch(chunk)
        for batch in (chunk, [], []):  # empty batches: what the worker runs while a sweep waits
            got = stored.handle_batch(batch)
            largest = max([largest, *(len(e.forecasts) for e in got.values())]) if not batch else largest
            most_waiting = max(most_waiting, stored.sweep_waiting())
            assert stored.sweeping() == (stored.sweep_waiting() > 0)
            for partition, e in got.items():
                apply(source, partition, e)
            stored.settled(stored.batch)
    while stored.sweeping():
        for partition, e in stored.handle_batch([]).items():
            apply(source, partition, e)
        stored.settled(stored.batch)
    assert largest <= 2  # an empty batch rates one chunk of a partition's sweep
    assert most_waiting > 2 and stored.sweep_waiting() == 0  # what the gauge shows: more than a chunk waited
    assert tables(source) == as_tables(memory) and as_tables(memory)[OFFICIAL]


def test_a_sweep_with_a_time_budget_stops_when_it_is_spent_and_still_ends_where_memory_does():
    """`sweep_seconds`: each call of the clock below takes a second, so a budget of 2.5 s
    rates three swept sellers a batch, however many `sweep_chunk` allows."""
    ticks = iter(range(10**9))
    book = load("global-2023")
    memory = RatingProcessor(book, PARTITIONS)
    source = MemorySource()
    stored = RatingProcessor(book, PARTITIONS, source=source, cache_bytes=1, sweep_chunk=1000, sweep_seconds=2.5,
                             monotonic=lambda: float(next(ticks)))
    most = 0
    for chunk in batches(2500, 30, 13):
        memory.handle_batch(chunk)
        for batch in (chunk, [], []):
            waiting = stored.sweep_waiting()
            for partition, e in stored.handle_batch(batch).items():
                apply(source, partition, e)
            stored.settled(stored.batch)
            if not batch:
                most = max(most, waiting - stored.sweep_waiting())
    while stored.sweeping():
        for partition, e in stored.handle_batch([]).items():
            apply(source, partition, e)
        stored.settled(stored.batch)
    assert most == 3
    assert tables(source) == as_tables(memory) and as_tables(memory)[OFFICIAL]


@pytest.mark.parametrize("boundary", ["2026-04-01T00:00:01Z", "2026-04-10T00:00:00Z"])
def test_a_month_starts_sweep_and_its_freeze_leave_the_busy_sellers_in_the_cache(boundary):
    """A month start re-rates every seller, and the freeze after it rates every seller: each a
    pass over more sellers than the cache holds. The sellers busy before it stay held, so their
    next events load nothing from the store, and the tables still end where memory's do."""
    book = load("global-2023")
    memory = RatingProcessor(book, 1)
    source = MemorySource()
    stored = RatingProcessor(book, 1, source=source, sweep_chunk=5, cache_bytes=1 << 40)

    def run(batch: list[Incoming | Tick]) -> None:
        memory.handle_batch(batch)
        for _ in range(1000):
            for partition, e in stored.handle_batch(batch).items():
                apply(source, partition, e)
            stored.settled(stored.batch)
            batch = []
            if not stored.sweeping():
                return

    events = list(workload(1500, 40, seed=5, start="2026-03-20T00:00:00Z", days=10))
    items = [Incoming(orjson.dumps(e), e["seller_id"].encode(), "buyer-messages", 0, i) for i, e in enumerate(events)]
    for i in range(0, len(items), 50):
        run(items[i:i + 50])
    counts = Counter(event["seller_id"] for event in events)
    busy = [seller for seller, _ in counts.most_common(2)]
    cache = stored.cache
    assert cache is not None and len(cache) == len(counts)
    sizes = {seller: cache.peek(seller).size_hint() for seller in counts}  # type: ignore[union-attr]
    others = sorted(size for seller, size in sizes.items() if seller not in busy)
    cache.budget = sum(sizes[s] for s in busy) + sum(others[-10:])  # the busy two and about ten more
    late = [[e for e in events if e["seller_id"] == seller][-1] for seller in busy]
    run([Incoming(orjson.dumps({**e, "event_id": e["event_id"] + "-again", "ts": "2026-03-31T20:00:00Z"}),
                  e["seller_id"].encode(), "buyer-messages", 0, len(items) + k) for k, e in enumerate(late)])
    assert all(seller in cache for seller in busy) and len(cache) < len(counts)
    run([Tick(0, parse_ts(boundary))])  # every seller once: re-rated, or frozen (and re-rated)
    assert all(seller in cache for seller in busy)
    misses = cache.misses
    nxt = [Incoming(orjson.dumps({**e, "event_id": e["event_id"] + "-next", "ts": boundary}),
                    e["seller_id"].encode(), "buyer-messages", 0, len(items) + 10 + k) for k, e in enumerate(late)]
    run(nxt)
    assert cache.misses == misses  # their next events loaded nothing
    assert tables(source) == as_tables(memory)


def test_a_batch_never_reported_stored_keeps_its_writes_readable_whatever_later_batches_report():
    """A changelog write that failed is never reported stored; a later batch that was stored
    must not let the failed batch's writes go (the store does not have them)."""
    book = load("global-2023")
    source = MemorySource()
    stored = RatingProcessor(book, 1, source=source, cache_bytes=1)
    visit = {"event_id": "e1", "type": "store_visit", "seller_id": "s1", "ts": "2026-03-02T10:00:00Z",
             "visitor_id": "v1"}
    stored.handle_batch([Incoming(orjson.dumps(visit), b"s1", "store-visits", 0, 0)])  # batch 1: never stored
    other = {**visit, "event_id": "e2", "seller_id": "s2"}
    out = stored.handle_batch([Incoming(orjson.dumps(other), b"s2", "store-visits", 0, 1)])  # batch 2
    apply(source, 0, out[0])
    stored.settled(2)
    assert len(stored.overlay) == 2  # nothing let go: batch 1, before batch 2, is not in the store
    assert stored.cache is not None and stored.cache.get("s1") is not None and stored.cache.get("s1").people
