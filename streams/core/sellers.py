"""Sellers beyond memory: the store is the state, memory holds a bounded cache of hot sellers.

A worker's sellers live in its local store (the state table's RocksDB store, written from the
changelog). `SellerCache` keeps the most recently used ones decoded, up to a byte budget, and
loads a seller from its `SellerSource` on first touch. The contract that keeps this exact:

- **Nothing unwritten is ever dropped.** A seller is evicted only when its state has no
  uncollected change (`dirty` is empty): everything it holds was collected as a write.
- **A collected write is readable before the store has it.** Writes travel to the store
  through the changelog (the store takes a value only once its changelog record is
  acknowledged), so every write also goes into the `Overlay`, stamped with its batch, until
  the worker says that batch is in the store (`settle`). A load reads the store, then the
  overlay on top: an evicted seller loads back exactly as it was.
- Whatever is derived from the facts (the rating's aggregates, the projection's outlook) is
  rebuilt on load, as after a restore; every rating is a function of the facts and the clock.

The budget counts an estimate per seller (`size_hint()` of its state), not measured bytes; the
estimate is calibrated in docs/performance.md. A seller in use by the running batch may take
the cache over its budget for that batch.
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, Protocol, TypeVar

from streams.core.keys import SEP

S = TypeVar("S")

FORECASTS, OFFICIAL, WARNINGS = "forecasts", "official", "warnings"
RECORD_TABLES = (FORECASTS, OFFICIAL, WARNINGS)


@dataclass
class SellerRecords:
    """What a store holds about one seller: its state entities and its last published records."""

    entities: list[tuple[bytes, bytes]] = field(default_factory=list)  # (state key, value)
    records: dict[str, Any] = field(default_factory=dict)  # table name -> value (bytes, or decoded)

    def __bool__(self) -> bool:
        return bool(self.entities or self.records)


class SellerSource(Protocol):
    """A worker's local stores, read by seller. Implemented over RocksDB by the service
    (service/kafka/sellers.py) and over dicts by `MemorySource` (tests)."""

    def partitions(self) -> list[int]:
        """The partitions this worker owns (their stores are current)."""
        ...

    def load(self, partition: int, seller: str) -> SellerRecords:
        """The seller's entities (state-table keys in key order) and records, as stored."""
        ...

    def scan(self, partition: int, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """The state table's (key, value) pairs of the partition whose key starts with `prefix`."""
        ...

    def sellers(self, partition: int, after: str = "") -> Iterator[str]:
        """The sellers with state in the partition, in id order, starting after `after`."""
        ...

    def values(self, table: str, partition: int) -> Iterator[bytes]:
        """Every value of a record table (forecasts, official, warnings) in the partition."""
        ...


class MemorySource:
    """A `SellerSource` over plain dicts (key -> value per partition and table): the reference
    the tests drive a processor against, writing effects into it as a store would."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[int, dict[bytes, bytes]]] = {name: {} for name in ("state", *RECORD_TABLES)}
        self._heads: dict[int, dict[bytes, set[bytes]]] = {}  # partition -> key head (to SEP) -> state keys

    def write(self, table: str, partition: int, key: bytes, value: bytes | None) -> None:
        data = self.tables[table].setdefault(partition, {})
        heads = self._heads.setdefault(partition, {}).setdefault(key.split(SEP, 1)[0], set())
        if value is None:
            data.pop(key, None)
            if table == "state":
                heads.discard(key)
        else:
            data[key] = memoryview(value).tobytes()  # exact size: orjson's bytes keep a 4 KB buffer
            if table == "state":
                heads.add(key)

    def partitions(self) -> list[int]:
        return sorted(self.tables["state"])

    def load(self, partition: int, seller: str) -> SellerRecords:
        prefix = seller.encode() + SEP
        out = SellerRecords(list(self.scan(partition, prefix)))
        for name in RECORD_TABLES:
            value = self.tables[name].get(partition, {}).get(seller.encode())
            if value is not None:
                out.records[name] = value
        return out

    def scan(self, partition: int, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        data = self.tables["state"].get(partition, {})
        head, sep, _ = prefix.partition(SEP)
        keys = self._heads.get(partition, {}).get(head, set()) if sep else data
        return iter(sorted((k, data[k]) for k in keys if k.startswith(prefix)))

    def sellers(self, partition: int, after: str = "") -> Iterator[str]:
        found = {k.split(SEP, 1)[0].decode() for k in self.tables["state"].get(partition, {}) if SEP in k
                 and not k.startswith(b"\0")}
        return iter(sorted(s for s in found if s > after))

    def values(self, table: str, partition: int) -> Iterator[bytes]:
        return iter(list(self.tables[table].get(partition, {}).values()))


Written = bytes | dict[str, Any] | None
"""What the overlay holds for a key: a state entity's bytes (None: deleted), or a record table's
record, decoded."""


class Overlay:
    """Writes collected but maybe not in the store yet, by seller, each stamped with its batch.

    `settle(batch)` drops what batches up to `batch` wrote, unless a later batch wrote the same
    key again. Its memory is the bytes of the batches in flight (one or two), not the state's."""

    def __init__(self) -> None:
        self._by_seller: dict[str, dict[tuple[str, bytes], tuple[int, Written]]] = {}
        self._by_batch: dict[int, list[tuple[str, tuple[str, bytes]]]] = {}
        self.bytes = 0

    def put(self, batch: int, seller: str, table: str, key: bytes, value: Written) -> None:
        """A write of `batch`: a state entity's bytes (None: deleted), or for a record table the
        record itself, decoded or not."""
        entries = self._by_seller.setdefault(seller, {})
        old = entries.get((table, key))
        if old is not None:
            self.bytes -= _size(old[1])
        entries[(table, key)] = (batch, value)
        self.bytes += _size(value)
        self._by_batch.setdefault(batch, []).append((seller, (table, key)))

    def settle(self, batch: int) -> None:
        for done in [b for b in self._by_batch if b <= batch]:
            for seller, slot in self._by_batch.pop(done):
                entries = self._by_seller.get(seller)
                if entries is None:
                    continue
                entry = entries.get(slot)
                if entry is not None and entry[0] <= batch:
                    del entries[slot]
                    self.bytes -= _size(entry[1])
                    if not entries:
                        del self._by_seller[seller]

    def clear(self) -> None:
        self._by_seller.clear()
        self._by_batch.clear()
        self.bytes = 0

    def over(self, seller: str, stored: SellerRecords) -> SellerRecords:
        """The seller as stored, with its unsettled writes on top."""
        entries = self._by_seller.get(seller)
        if not entries:
            return stored
        state = dict(stored.entities)
        records = dict(stored.records)
        for (table, key), (_, value) in entries.items():
            target: dict = state if table == "state" else records
            name = key if table == "state" else table
            if value is None:
                target.pop(name, None)
            else:
                target[name] = value
        return SellerRecords(sorted(state.items()), records)

    def __len__(self) -> int:
        return len(self._by_seller)


def _size(value: object) -> int:
    return len(value) if isinstance(value, bytes) else 0


class SellerCache(Generic[S]):
    """seller id -> decoded state, least recently used first, within `budget` bytes (None: no
    bound, nothing is ever evicted). `load` gives a seller's state from the store (None: the
    store has none); `size` estimates one state's bytes; `evictable` says whether a state may
    leave (the caller's rule: no uncollected change); `on_evict` is given each seller that left
    and its state (to break its reference cycles: a cyclic state would wait for a full
    collection, which a worker's tuned collector runs rarely).

    Scan-resistant: inside `scan()` (the clock's sweep, a month's freeze: every seller once) a
    seller loaded enters as the least recently used, and one held keeps its place, so a pass
    over more sellers than the budget holds leaves the busy sellers held. Without it, the pass
    evicts every one of them, and each reloads (and re-projects) at its next event.
    """

    def __init__(self, load: Callable[[str], S | None], size: Callable[[S], int],
                 evictable: Callable[[S], bool], budget: int | None = None,
                 on_evict: Callable[[str, S], None] | None = None):
        self._load, self._size, self._evictable = load, size, evictable
        self.budget = budget
        self.on_evict = on_evict
        self._items: OrderedDict[str, S] = OrderedDict()
        self._sizes: dict[str, int] = {}
        self.bytes = 0
        self.hits = self.misses = self.evictions = 0
        self._scanning = False

    @contextmanager
    def scan(self) -> Iterator[None]:
        """A pass over many sellers that should not displace the busy ones (see the class)."""
        outer, self._scanning = self._scanning, True
        try:
            yield
        finally:
            self._scanning = outer

    def get(self, seller: str) -> S | None:
        """The seller's state, loaded if it is not held (None: the store has none either)."""
        state = self._items.get(seller)
        if state is not None:
            self.hits += 1
            if self.budget is not None and not self._scanning:
                self._items.move_to_end(seller)
            return state
        if self.budget is None:
            return None  # unbounded: everything is held, nothing is in a store
        self.misses += 1
        state = self._load(seller)
        if state is not None:
            self[seller] = state
        return state

    def peek(self, seller: str) -> S | None:
        """The seller's state if held, without loading or counting."""
        return self._items.get(seller)

    def __setitem__(self, seller: str, state: S) -> None:
        self._items[seller] = state
        self._items.move_to_end(seller, last=not self._scanning)
        self.resize(seller)
        self.trim(keep=seller)

    def __getitem__(self, seller: str) -> S:
        state = self.get(seller)
        if state is None:
            raise KeyError(seller)
        return state

    def __contains__(self, seller: object) -> bool:
        return seller in self._items

    def __iter__(self) -> Iterator[str]:
        """The sellers held (not the store's)."""
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def values(self) -> list[S]:
        return list(self._items.values())

    def items(self) -> list[tuple[str, S]]:
        return list(self._items.items())

    def full(self) -> bool:
        """Twice over budget after a trim: what is held cannot leave yet (uncollected changes).
        (Once over would have a batch rate its sellers after every message whenever the few
        busiest sellers alone fill the cache.)"""
        if self.budget is None or self.bytes <= 2 * self.budget:
            return False
        self.trim()
        return self.bytes > 2 * self.budget

    def resize(self, seller: str) -> None:
        """Estimate a held seller's bytes again (it grew or shrank)."""
        state = self._items.get(seller)
        if state is None:
            return
        size = self._size(state)
        self.bytes += size - self._sizes.get(seller, 0)
        self._sizes[seller] = size

    def trim(self, keep: str | None = None) -> None:
        """Evict least recently used sellers until within budget; `keep` stays. Sellers that may
        not leave yet are skipped (a running batch's, a few hundred at most)."""
        if self.budget is None or self.bytes <= self.budget:
            return
        excess, victims = self.bytes - self.budget, []
        for seller, state in self._items.items():  # least recent first, up to what must go
            if excess <= 0:
                break
            if seller != keep and self._evictable(state):
                victims.append(seller)
                excess -= self._sizes.get(seller, 0)
        for seller in victims:
            self.drop(seller)
            self.evictions += 1

    def drop(self, seller: str) -> None:
        state = self._items.pop(seller, None)
        if state is not None:
            self.bytes -= self._sizes.pop(seller, 0)
            if self.on_evict is not None:
                self.on_evict(seller, state)

    def clear(self) -> None:
        self._items.clear()
        self._sizes.clear()
        self.bytes = 0
