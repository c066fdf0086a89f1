"""What a worker does with one message, as plain Python: the bookkeeping around the core.

`RatingProcessor` owns one rating engine per partition (each partition has its own event-time
clock), decides what to publish, and returns the results as `Effects` that the Faust agent
turns into table writes and sends. No Faust import here: it is tested directly, and the same
object serves any transport.

Messages come in batches (`handle_batch`; `handle` and `tick` are batches of one). Per message:
validate (bad input becomes a dead letter, state untouched) → move the partition clock (a day
boundary marks the sellers whose windows changed) → apply to the seller's state and mark the
seller. Once per batch: re-rate each marked seller at its partition's clock, publish the
forecast if any field but `as_of` changed (and a star change if the stars moved), collect the
seller's changed state entities, then the monthly freeze if one is due. A seller with ten
events in a batch is rated and written once: the coalescing is what makes the worker fast,
and it changes no rating, since every rating is a function of the state and the clock.
`batch_steps` is the same batch in steps, for a caller that serves other work between them.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections import ChainMap
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, fields
from typing import Callable, Collection, Iterable, Iterator

import orjson
from aiokafka.partitioner import murmur2

from streams.core.contract import Rejected, decode, validate
from streams.core.engine import Engine
from streams.core.groups import RulebookSelection
from streams.core.keys import SEP, SUMMARY, seller_of_key, split_state_key, state_key
from streams.core.model import SellerFacts
from streams.core.official import (freezable_month_end, labels, month_label, next_month_end, official_record,
                                   owed)
from streams.core.projection import first_drop, month_end
from streams.core.rulebook import AnyBook
from streams.core.sellers import FORECASTS, OFFICIAL, WARNINGS, Overlay, SellerCache, SellerSource

from streams.core.timeutil import month_start, next_local_midnight, parse_ts

log = logging.getLogger("starcast")



def partition_for(seller_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a seller-keyed message."""
    return (murmur2(seller_id.encode()) & 0x7FFFFFFF) % partitions


class _PartitionOf(dict):
    """seller id -> partition, computed once per seller (murmur2 in Python costs ~3 µs)."""

    def __init__(self, partitions: int):
        super().__init__()
        self.partitions = partitions

    def __missing__(self, seller_id: str) -> int:
        if len(self) >= 1_000_000:  # bounded: ids come from input, however hostile
            self.clear()
        p = self[seller_id] = partition_for(seller_id, self.partitions)
        return p


@dataclass
class DeadLetter:
    raw: bytes
    key: bytes | None
    topic: str
    partition: int
    offset: int
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Incoming:
    """One input message as the processor needs it."""

    raw: bytes
    key: bytes | None
    topic: str
    partition: int
    offset: int
    published_at: int | None = None  # the Kafka timestamp, epoch ms


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passing on a partition without events."""

    partition: int
    now: int


@dataclass
class Effects:
    """Everything a batch causes on one partition; applied by the agent in this order."""

    state_writes: list[tuple[bytes, bytes | None]] = field(default_factory=list)
    forecasts: list[tuple[str, dict]] = field(default_factory=list)
    changes: list[tuple[str, dict]] = field(default_factory=list)
    monthly: list[tuple[str, dict]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    forward: list[tuple[str, bytes, bytes]] = field(default_factory=list)  # (topic, key, raw): re-keyed
    outcomes: list[tuple[str, str]] = field(default_factory=list)  # (event type, applied|ignored|rejected|rekeyed)
    event_ts: list[int] = field(default_factory=list)
    warnings: list[tuple[str, dict]] = field(default_factory=list)  # star-warnings records
    projection_errors: list[str] = field(default_factory=list)  # exception type names
    held_seconds: list[float] = field(default_factory=list)  # how long each forecast held back waited


Lagging = Callable[[], Collection[str]] | None  # asked only when a freeze is due


def defer_freeze() -> Collection[str]:
    """Pass as `lagging` to leave a due freeze to `freeze_if_ready` (a worker finds out which
    topics lag by asking the broker, which it cannot do inside `handle`)."""
    raise AssertionError("never called: _maybe_freeze checks for it")


def _same_but_as_of(old: dict, new: dict) -> bool:
    """Whether two ratings differ in nothing but `as_of` (one copy, compared in C; nested
    values of memoised ratings are shared, so most compare by identity)."""
    return {**new, "as_of": old.get("as_of")} == old


DUE = b"\0due" + SEP  # state-table keys of the due index: DUE + seller -> next-change instant
META = b"\0meta" + SEP  # META + rulebook + SEP + partition -> the partition's clock and marks


def meta_key(book: str, partition: int) -> bytes:
    return META + book.encode() + SEP + str(partition).encode()


class RatingProcessor:
    """The bookkeeping around the core for one rulebook's sellers.

    Two ways to hold sellers. Without a `source`, every seller stays in memory (replay, tests,
    the memory store). With one (a worker's RocksDB stores), the store is the state: sellers
    load on first touch into a cache of `cache_bytes` (sellers.py), and what the clock needs
    lives in small records beside them in the state table, so a restore reads no seller:
    - the due index, `DUE + seller` -> the instant its windows next change (the day roll
      visits only the sellers due);
    - the partition's meta record: its clock, earliest event and the latest freeze known to be
      in every store (written once the freeze's batch is settled).
    """

    def __init__(self, rulebook: AnyBook, partitions: int, wall_clock: Callable[[], int] | None = None,
                 projection: bool = True, source: SellerSource | None = None, cache_bytes: int | None = None,
                 owns: Callable[[str], bool] | None = None, sweep_chunk: int | None = None,
                 sweep_seconds: float | None = None, monotonic: Callable[[], float] = time.monotonic,
                 forecast_interval: float | None = None):
        self.rulebook = rulebook
        # At most one projection (the costly part of a forecast) per seller per this many
        # seconds: a seller re-rated sooner, whose stars, risk and projected stars and risk are
        # unchanged, has its forecast held back until the interval ends, and then sends its
        # latest. A change of any of those four goes out at once. None or 0: every batch.
        self.forecast_interval = forecast_interval or None
        self._projected_at: dict[str, float] = {}  # seller -> when its projection was last computed
        self._holding: dict[str, tuple[float, float]] = {}  # seller held back -> (when due, since when)
        self._held: dict[int, list[tuple[float, str]]] = {}  # partition -> heap of (when due, seller)
        # Sellers the clock marks (a day roll's, a month start's, a restore's) are rated at most
        # this many per partition and batch; None: all in the batch that marked them. And, with
        # `sweep_seconds`, for at most about that long a batch (at least one seller a batch).
        self.sweep_chunk = sweep_chunk
        self.sweep_seconds = sweep_seconds
        self._monotonic = monotonic
        self._swept_since: float | None = None  # when this batch rated its first swept seller
        self._sweep: dict[int, dict[str, None]] = {}  # partition -> sellers to re-rate, in order
        self.source = source
        self.owns = owns  # which sellers are this processor's (None: all); a grouped worker has several
        self.batch = 0  # the number of the batch being handled (see settled)
        self._stored_through = 0  # every batch up to this one is in the stores
        self._stored_ahead: set[int] = set()  # later batches reported stored, a gap before them
        self.overlay = Overlay()
        self.cache: SellerCache | None = None
        if source is not None:
            self.cache = SellerCache(self._load, lambda state: state.size_hint(), lambda state: not state.dirty,
                                     cache_bytes, self._evicted)
        self.levels = [0] * 6  # sellers by published stars
        self.at_risk = 0  # sellers whose last star-warnings record is a warning
        self._meta: dict[int, dict] = {}  # partition -> what its meta record says (source mode)
        self._meta_dirty: set[int] = set()
        self._freezes: dict[int, tuple[int, int]] = {}  # partition -> (batch, month end) not settled yet
        self._unqueued: set[str] = set()  # sellers whose due entry the day roll took
        self.latest_month = ""  # the latest month of an official record held or sent
        self.projecting = projection  # False: forecasts carry `projection: null`, no star-warnings
        self.partitions = partitions
        self.wall_clock = wall_clock  # when set, the clock never lags the wall clock
        self.engines: dict[int, Engine] = {}
        self.partition_of = _PartitionOf(partitions)
        self.published: dict[str, dict] = {}  # seller -> last published forecast
        self.official: dict[str, dict] = {}  # seller -> last monthly (frozen) rating
        self._due: dict[int, list[tuple[int, str]]] = {}  # partition -> heap of (instant, seller)
        self._queued: dict[str, int] = {}  # seller -> its live entry's instant in the due heap
        self._frozen_through: dict[int, int] = {}  # partition -> month start whose freeze ran
        self._pending: dict[int, set[str]] = {}  # partition -> sellers to re-check after restore
        self._republish: dict[int, list[tuple[str, dict]]] = {}  # monthly records to send again
        self._reasserted: dict[int, list[tuple[bytes, bytes | None]]] = {}  # state records to write again
        self._topic_clock: dict[tuple[int, str], int] = {}  # (partition, topic) -> largest ts consumed
        self._next_freeze: dict[int, int] = {}  # partition -> clock at which the next freeze is due
        self._earliest: dict[int, int] = {}  # partition -> earliest event ts applied (or restored)
        self._day_end: dict[int, int] = {}  # partition -> next local midnight after its clock
        # seller -> (month end, timeline instants, projection) as last computed; valid while
        # the seller's state is unchanged (then only the timeline's passed entries drop out).
        self._projections: dict[str, tuple[int, list[int], dict]] = {}
        self._stale: set[str] = set()  # sellers whose state changed since their projection
        self.warned: dict[str, dict] = {}  # seller -> last star-warnings record

    # ---- entry points ----------------------------------------------------------------------
    def engine(self, partition: int) -> Engine:
        engine = self.engines.get(partition)
        if engine is None:
            engine = self.engines[partition] = Engine(self.rulebook, keep_for_freeze=True, states=self.cache)
        return engine

    def handle(self, raw: bytes, key: bytes | None, topic: str, partition: int, offset: int,
               published_at: int | None = None, lagging: Lagging = None) -> Effects:
        """One input message: a batch of one. `published_at` is its Kafka timestamp (epoch
        ms), if any; `lagging` says which input topics of the partition still have unconsumed
        messages (see _maybe_freeze)."""
        return self.handle_batch([Incoming(raw, key, topic, partition, offset, published_at)], lagging)[partition]

    def tick(self, partition: int, now: int, lagging: Lagging = None) -> Effects:
        """Time passing without events (a tick message on the partition): move the clock."""
        return self.handle_batch([Tick(partition, now)], lagging)[partition]

    def handle_batch(self, items: Iterable[Incoming | Tick], lagging: Lagging = None) -> dict[int, Effects]:
        """Messages and ticks in the order consumed; returns the effects per partition touched."""
        out: dict[int, Effects] = {}
        for _ in self.batch_steps(items, lagging, out):
            pass
        return out

    def batch_steps(self, items: Iterable[Incoming | Tick], lagging: Lagging,
                    out: dict[int, Effects]) -> Iterator[None]:
        """`handle_batch` in steps, its effects gathered in `out`: one step per message applied
        and per seller published. A caller that shares its thread (the worker's event loop
        serving the API) lets other work run between steps; between two steps every seller's
        state is whole (all of a message applied, or none), though the batch's forecasts are
        published only by its last steps. The result is the same however the steps are spaced."""
        touched: dict[int, set[str]] = {}
        self.batch += 1
        self._swept_since = None
        if self.cache is not None:
            self.cache.trim()
        for item in items:
            effects = out.get(item.partition)
            if effects is None:
                effects = out[item.partition] = Effects()
                touched[item.partition] = set()
                self._catch_up(item.partition, effects, touched[item.partition])
            if isinstance(item, Tick):
                self._advance(item.partition, item.now, touched[item.partition])
            else:
                self._apply(item, effects, touched[item.partition])
            yield
            if self.cache is not None and self.cache.full():
                # The sellers applied so far cannot leave memory before their writes are
                # collected: rate them now, so the cache stays near its budget however many
                # sellers a batch holds (a seller may then be published twice in a batch).
                for partition, pending in touched.items():
                    for seller in sorted(pending):
                        self._publish(partition, seller, out[partition])
                        yield
                    pending.clear()
        waiting = {p for p, queue in self._sweep.items() if queue} | self._partitions_due(self._monotonic())
        for partition in sorted(p for p in waiting if p not in out):
            out[partition] = Effects()  # a sweep, or forecasts held back, go on in batches without a message
            touched[partition] = set()
            self._catch_up(partition, out[partition], touched[partition])
        for partition, effects in out.items():
            for seller in sorted(touched[partition]):
                self._publish(partition, seller, effects)
                yield
            # Forecasts held back first: each waits at most the interval, and the budget (_spent)
            # is shared with the sweep, which a month start makes long.
            for seller in self._due_held(partition, self._monotonic()):
                self._publish(partition, seller, effects)
                yield
            for seller in self._sweep_chunk(partition, touched[partition]):
                with self._scan():  # every seller once: the busy ones stay in the cache
                    self._publish(partition, seller, effects)
                yield
            # After applying: a freeze rates the month's last instant, so later events applied
            # first change nothing, while the event that ends a hold (see _maybe_freeze) belongs in.
            self._maybe_freeze(partition, effects, lagging)
            self._write_meta(partition, effects)

    def _apply(self, message: Incoming, effects: Effects, touched: set[str]) -> None:
        """Validate one message and apply it to its seller's state (marked for re-rating).

        `future_ts` is judged against the partition clock or, when later, the time the message
        was published: topics of one partition are consumed at uneven speeds while a backlog
        drains, so the clock can trail a sparse topic by days without the event being bogus;
        an event claiming to happen more than a day after it was published is.
        """
        partition, topic = message.partition, message.topic
        engine = self.engine(partition)
        clock = engine.clock
        for bound in (message.published_at, self.wall_clock() if self.wall_clock is not None else None):
            if bound is not None and (clock is None or bound > clock):
                clock = bound
        try:
            event = validate(decode(message.raw), clock)
        except Rejected as exc:
            effects.dead_letters.append(DeadLetter(message.raw, message.key, topic, partition, message.offset,
                                                   exc.reason, exc.message))
            effects.outcomes.append(("unknown", "rejected"))
            return
        if self.partition_of[event.seller_id] != partition:
            # Not keyed by seller: send it on, keyed, to the partition that owns the seller.
            effects.forward.append((topic, event.seller_id.encode(), message.raw))
            effects.outcomes.append((event.type, "rekeyed"))
            return
        effects.event_ts.append(event.ts)
        if self._topic_clock.get((partition, topic), event.ts - 1) < event.ts:
            self._topic_clock[(partition, topic)] = event.ts
        if self._earliest.get(partition, event.ts + 1) > event.ts:
            self._earliest[partition] = event.ts
        self._advance(partition, event.ts, touched)
        state = engine.state(event.seller_id)
        try:
            applied = state.apply(event)
        except Rejected as exc:
            effects.dead_letters.append(DeadLetter(message.raw, message.key, topic, partition, message.offset,
                                                   exc.reason, exc.message))
            effects.outcomes.append((event.type, "rejected"))
        else:
            effects.outcomes.append((event.type, "applied" if applied else "ignored"))
            touched.add(event.seller_id)
            self._stale.add(event.seller_id)

    # ---- clock, day roll, monthly freeze ---------------------------------------------------
    def _advance(self, partition: int, ts: int, touched: set[str]) -> None:
        engine = self.engine(partition)
        old = engine.clock
        new = ts if old is None else max(old, ts)
        if self.wall_clock is not None:
            new = max(new, self.wall_clock())
        engine.advance(new)
        tz = self.rulebook.time_zone
        day_end = self._day_end.get(partition)
        if day_end is None:
            day_end = self._day_end[partition] = next_local_midnight(new if old is None else old, tz)
        if new >= day_end:  # one date computation per partition and day, not per event
            self._day_end[partition] = next_local_midnight(new, tz)
            self._roll_day(partition, new, self._swept(partition, touched))
            if old is not None and month_start(new, tz) != month_start(old, tz):
                # every projection now ends with the new month
                self._swept(partition, touched).update(dict.fromkeys(sorted(self._all_sellers(partition))))

    def _swept(self, partition: int, touched: set[str]) -> dict[str, None] | set[str]:
        """Where sellers the clock marks for re-rating go: with a sweep bound, to the partition's
        sweep queue (rated `sweep_chunk` at a time, a chunk per batch); without, to the batch."""
        if self.sweep_chunk is None:
            return touched
        return self._sweep.setdefault(partition, {})

    def _sweep_chunk(self, partition: int, touched: set[str]) -> Iterator[str]:
        """The next sellers of the partition's sweep, each taken off its queue as the caller
        asks for it (those the batch touched anyway are rated already): up to `sweep_chunk`,
        and while the batch has swept for less than `sweep_seconds`."""
        queue = self._sweep.get(partition)
        if not queue or self.sweep_chunk is None:
            return
        rated = 0
        while queue and rated < self.sweep_chunk:
            if self._spent():
                return
            seller = next(iter(queue))
            del queue[seller]
            if seller not in touched:
                rated += 1
                yield seller

    def _scan(self) -> AbstractContextManager[None]:
        return self.cache.scan() if self.cache is not None else nullcontext()

    def _spent(self) -> bool:
        """Whether the batch has spent its `sweep_seconds` on sellers it rates besides its own
        messages' (the clock's sweep, forecasts held back and now due); the count starts at
        the first ask."""
        if self.sweep_seconds is None:
            return False
        now = self._monotonic()
        if self._swept_since is None:
            self._swept_since = now
            return False
        return now - self._swept_since >= self.sweep_seconds

    def sweeping(self) -> bool:
        """Whether sellers the clock marked still wait to be re-rated (batches rate them, with or
        without messages: a worker runs empty batches while they wait and its input is idle)."""
        return any(self._sweep.values())

    def sweep_waiting(self) -> int:
        """How many sellers the clock marked still wait to be re-rated."""
        return sum(map(len, self._sweep.values()))

    def forecasts_due(self) -> bool:
        """Whether a forecast held back is due (a worker runs a batch for them when input is idle)."""
        return bool(self._partitions_due(self._monotonic()))

    def holding(self) -> int:
        """How many sellers' forecasts are held back (forecast_interval)."""
        return len(self._holding)

    def _partitions_due(self, now: float) -> set[int]:
        due = set()
        for partition, heap in self._held.items():
            while heap and self._holding.get(heap[0][1], (None,))[0] != heap[0][0]:
                heapq.heappop(heap)  # sent since, or held again: a stale entry
            if heap and heap[0][0] <= now:
                due.add(partition)
        return due

    def _due_held(self, partition: int, now: float) -> Iterator[str]:
        """The partition's sellers whose held-back forecast is due, each taken off as asked for,
        while the batch has time left (`_spent`: many fall due together, each a projection)."""
        heap = self._held.get(partition)
        while heap and heap[0][0] <= now:
            if self._spent():
                return
            due, seller = heapq.heappop(heap)
            if self._holding.get(seller, (None,))[0] == due:
                yield seller

    def _roll_day(self, partition: int, clock: int, touched: dict[str, None] | set[str]) -> None:
        """Mark for re-rating the sellers whose windows changed since they were last rated."""
        heap = self._due.get(partition, [])
        while heap and heap[0][0] <= clock:
            when, seller = heapq.heappop(heap)
            if self._queued.get(seller) == when:  # else a stale entry: an earlier one replaced it
                del self._queued[seller]
                self._unqueued.add(seller)
                if isinstance(touched, dict):
                    touched[seller] = None
                else:
                    touched.add(seller)

    def latest_freezable_month(self, clock: int) -> int:
        """Start (= end instant of the previous month) of the latest month whose freeze is due."""
        return freezable_month_end(clock, self.rulebook)

    def _maybe_freeze(self, partition: int, effects: Effects, lagging: Lagging,
                      gapped: Collection[str] = ()) -> None:
        """Freeze when the clock has passed a month end plus the grace period, unless an input
        topic of the partition with messages still unconsumed is behind that point.

        A partition's topics are consumed at uneven speeds when a backlog drains (after a
        restart, say): one event far ahead on a fast topic would otherwise freeze the month
        before the slow topics' events of that month are read, and a crash would change the
        official rating. A lagging topic holds the freeze until its own clock passes the point
        (or it is caught up); a lagging topic not yet read since the last restore holds it too.
        `lagging` is asked only while a freeze is due, so the check costs nothing otherwise.
        A lagging topic in `gapped` (records missing before ones already read: a worker re-reads
        them) holds the freeze whatever its clock says: its clock ran past the hole, and the
        records the re-read brings belong to the month.
        """
        if lagging is defer_freeze or not self.freeze_due(partition):
            return
        clock = self.engine(partition).clock
        if clock is None:  # freeze_due said no already
            return
        due = self.latest_freezable_month(clock)
        held = clock
        for topic in (lagging() if lagging is not None else ()):
            held = min(held, -1 if topic in gapped else self._topic_clock.get((partition, topic), -1))
        month_end = self.latest_freezable_month(held)
        if month_end > self._frozen_through.get(partition, month_end - 1):
            self._freeze(partition, month_end, effects)
        if month_end == due:  # else held back: asked again on the partition's next message or tick
            self._schedule_next_freeze(partition, due)

    def freeze_due(self, partition: int) -> bool:
        """Whether the partition's clock has passed a month end (plus grace) not frozen yet
        that some seller of the partition is owed (an event before that month end)."""
        clock = self.engine(partition).clock
        if clock is None or clock < self._next_freeze.get(partition, clock):
            return False
        due = self.latest_freezable_month(clock)
        if self._frozen_through.get(partition, due - 1) < due and self._earliest.get(partition, due) < due:
            return True
        self._frozen_through[partition] = max(due, self._frozen_through.get(partition, due))
        self._schedule_next_freeze(partition, due)
        return False

    def _schedule_next_freeze(self, partition: int, month_end: int) -> None:
        self._next_freeze[partition] = next_month_end(month_end, self.rulebook) + self.rulebook.grace_ms

    def freeze_if_ready(self, partition: int, lagging: Collection[str], gapped: Collection[str] = ()) -> Effects:
        """The freeze `handle`/`tick` deferred, given the input topics that still lag (and which
        of those have a hole in what was read)."""
        effects = Effects()
        self._maybe_freeze(partition, effects, lambda: lagging, gapped)
        return effects

    def _freeze(self, partition: int, month_end: int, effects: Effects) -> None:
        """Freeze every seller's rating at `month_end`, once: the seller's state records the
        freeze and its record in one write, and keeps the month's facts until then (see
        SellerState.keep_for_freeze). The record is built in streams/core/official.py, as
        `starcast replay --monthly` builds it."""
        with self._scan():  # every seller once: the busy ones stay in the cache
            self._freeze_all(partition, month_end, effects)
        self._frozen_through[partition] = month_end
        self._freezes[partition] = (self.batch, month_end)

    def _freeze_all(self, partition: int, month_end: int, effects: Effects) -> None:
        engine = self.engine(partition)
        months = labels(self.rulebook, month_end)  # the same for every seller of the month
        month = months["month"]
        for seller in sorted(self._all_sellers(partition)):
            state = engine.states.get(seller)
            if state is None or not owed(state, month_end):
                continue  # no event before the month ended: nothing to rate
            if state.frozen_until is not None and state.frozen_until >= month_end:
                # Frozen before: the record was saved with the state. If the official table
                # lacks it (a crash between the two writes), send it again.
                record = state.official
                if record is not None and self.official.get(seller, {}).get("month", "") < record["month"]:
                    self.official[seller] = record
                    effects.monthly.append((seller, record))
                    self._overlay(seller, OFFICIAL, record)
                continue
            known = self.official.get(seller)
            if known is not None and known.get("month", "") >= month:
                # Frozen and sent before (the official table is star-ratings-monthly); only the
                # state's copy was lost: keep it, send nothing twice.
                state.mark_frozen(month_end, known)
                self._write_summary(state, effects)
                continue
            record = official_record(engine, seller, month_end, months)
            self.latest_month = max(self.latest_month, record["month"])
            self.official[seller] = record
            effects.monthly.append((seller, record))
            self._overlay(seller, OFFICIAL, record)
            state.mark_frozen(month_end, record)
            self._write_summary(state, effects)

    # ---- publication ------------------------------------------------------------------------
    def _publish(self, partition: int, seller: str, effects: Effects) -> None:
        """Re-rate one seller at the partition clock; publish what changed, collect its writes."""
        engine = self.engine(partition)
        clock = engine.clock
        assert clock is not None  # a touched seller's partition has seen an event or a tick
        held = self._holding.get(seller)
        if self._holds(engine, seller, clock):
            if held is None:
                now = self._monotonic()
                due = self._projected_at[seller] + (self.forecast_interval or 0.0)
                self._holding[seller] = (due, now)
                heapq.heappush(self._held.setdefault(partition, []), (due, seller))
        else:
            if held is not None:
                del self._holding[seller]
                effects.held_seconds.append(max(self._monotonic() - held[1], 0.0))
            self._send(engine, seller, clock, effects)
        state = engine.states[seller]
        self._collect_writes(state, effects)
        meta = self._meta.setdefault(partition, {}) if self.source is not None else None
        if meta is not None and state.clock is not None and state.clock > (meta.get("clock") or -1):
            meta["clock"] = state.clock
            self._meta_dirty.add(partition)
        when = state.next_change()
        unqueued = seller in self._unqueued
        self._unqueued.discard(seller)
        queued = self._queued.get(seller)
        write = unqueued and queued is None  # its entry was taken: gone from the store too
        if when is not None and (queued is None or when < queued):
            # One live entry per seller: pushing on every event grew the heap by one entry per
            # event until the next midnight (unbounded under re-delivery bursts).
            queued = self._queued[seller] = when
            heapq.heappush(self._due.setdefault(partition, []), (when, seller))
            write = True
        if self.source is None:
            return
        if seller in self._holding:
            # The stored entry says "due at once" while the forecast is held back, so a worker
            # that restores the partition (after a crash, say) re-rates the seller and sends it.
            if held is None:
                effects.state_writes.append((DUE + seller.encode(), b"0"))
        elif write or held is not None:  # the entry as it is in memory, in place of "at once"
            effects.state_writes.append((DUE + seller.encode(), None if queued is None else str(queued).encode()))

    def _holds(self, engine: Engine, seller: str, clock: int) -> bool:
        """Whether the seller's forecast waits (forecast_interval): its state changed since its
        projection, computed less than the interval ago for this month, and neither the stars
        and risk published nor the projection's stars and risk would change. Asks the model
        for those four alone: a held forecast's rating object is never built."""
        if self.forecast_interval is None or not self.projecting or seller not in self._stale:
            return False  # an unchanged state reuses its projection: nothing to save
        since = self._projected_at.get(seller)
        if since is None or since + self.forecast_interval <= self._monotonic():
            return False  # as the due time is computed: a seller due is never held again
        last = self.published.get(seller)
        projection = last.get("projection") if last is not None else None
        cached = self._projections.get(seller)
        if projection is None or last is None or cached is None:
            return False
        if cached[0] != month_end(clock, self.rulebook.time_zone):
            return False
        return (engine.stars(seller, clock) == (last["stars"], last["risk"])
                and engine.projected_stars(seller, clock) == (projection["stars"], projection["risk"]))

    def _send(self, engine: Engine, seller: str, clock: int, effects: Effects) -> None:
        """The seller's forecast with its projection, if it changed; its star change; its warning."""
        rating = engine.rating(seller, clock)
        rating["projection"] = self._projection(engine, seller, clock, effects)
        last = self.published.get(seller)
        if last is None or not _same_but_as_of(last, rating):
            self.published[seller] = rating
            effects.forecasts.append((seller, rating))
            self._overlay(seller, FORECASTS, rating)
            self._count_level(last, rating)
            if last is not None and last["stars"] != rating["stars"]:
                effects.changes.append((seller, self._change(seller, last, rating)))
        self._warn(engine, seller, rating, clock, effects)

    def _projection(self, engine: Engine, seller: str, clock: int, effects: Effects) -> dict | None:
        """The seller's projection as of `clock` (docs/spec.md §3.1): computed again only when
        its state changed or a month began; otherwise the last one without the timeline entries
        that have passed. Never fails a batch: an error gives None, counted and logged without
        any id."""
        if not self.projecting:
            return None
        try:
            end = month_end(clock, self.rulebook.time_zone)
            cached = self._projections.get(seller)
            if cached is None or cached[0] != end or seller in self._stale:
                projection = engine.projection(seller, clock)
                instants = [parse_ts(entry["at"]) for entry in projection["timeline"]]
                self._projections[seller] = (end, instants, projection)
                self._stale.discard(seller)
                if self.forecast_interval is not None:
                    self._projected_at[seller] = self._monotonic()
                return projection
            _, instants, projection = cached
            if instants and instants[0] <= clock:
                keep = [i for i, instant in enumerate(instants) if instant > clock]
                projection = {**projection, "timeline": [projection["timeline"][i] for i in keep]}
                self._projections[seller] = (end, [instants[i] for i in keep], projection)
            return projection
        except Exception as exc:  # noqa: BLE001 - a projection must never fail a batch
            self._projections.pop(seller, None)
            effects.projection_errors.append(type(exc).__name__)
            log.warning("starcast: a projection failed (%s); the forecast goes out with projection null",
                        type(exc).__name__)
            return None

    def _warn(self, engine: Engine, seller: str, rating: dict, clock: int, effects: Effects) -> None:
        """A star-warnings record when the projected stars fall below the forecast's, and a
        `cleared` one when that stops; nothing while the warning is unchanged."""
        projection = rating.get("projection")
        if projection is None:
            return
        last = self.warned.get(seller)
        record: dict
        if projection["stars"] < rating["stars"]:
            drop = first_drop(rating) or {}
            record = {"seller_id": seller, "as_of": rating["as_of"], "kind": "warning", "stars": rating["stars"],
                      "projected_stars": projection["stars"], "projected_at": projection["at"],
                      "first_drop": {key: drop.get(key) for key in ("at", "stars", "indicators")}}
            if last is not None and last["kind"] == "warning" and _warning_key(last) == _warning_key(record):
                return
            record["actions"] = engine.actions(seller, rating, clock)
        elif last is not None and last["kind"] == "warning":
            record = {"seller_id": seller, "as_of": rating["as_of"], "kind": "cleared", "stars": rating["stars"],
                      "projected_stars": projection["stars"], "projected_at": projection["at"]}
        else:
            return
        self.at_risk += (record["kind"] == "warning") - (last is not None and last["kind"] == "warning")
        self.warned[seller] = record
        effects.warnings.append((seller, record))
        self._overlay(seller, WARNINGS, record)

    def _change(self, seller: str, old: dict, new: dict) -> dict:
        moved = [name for name, ind in new["indicators"].items()
                 if old["indicators"].get(name, {}).get("stars") != ind["stars"]]
        if old["risk"] != new["risk"]:
            moved.append("risk")
        return {
            "seller_id": seller,
            "rulebook": new["rulebook"],
            "as_of": new["as_of"],
            "from": old["stars"],
            "to": new["stars"],
            "direction": "up" if new["stars"] > old["stars"] else "down",
            "indicators_moved": moved,
            "limiting": new["limiting"],
            "official_stars": self.official.get(seller, {}).get("stars"),
        }

    def _write_summary(self, state: SellerFacts, effects: Effects) -> None:
        """Only the summary (freeze mark + record, one value): a month's freeze touches every
        seller of the partition, and their other pending writes can wait for their next event."""
        state.dirty.discard((SUMMARY, ""))
        self._stage(state.seller_id, state_key(state.seller_id, SUMMARY, ""), orjson.dumps(state.summary_dump()),
                    effects)

    def _collect_writes(self, state: SellerFacts, effects: Effects) -> None:
        if not state.dirty:
            return
        seller = state.seller_id
        for (kind, key), data in state.take_dirty():
            self._stage(seller, state_key(seller, kind, key), data, effects)
        if self.cache is not None:
            self.cache.resize(seller)

    def _stage(self, seller: str, key: bytes, data: bytes | None, effects: Effects) -> None:
        """A state write of this batch, readable from the overlay until the store has it."""
        effects.state_writes.append((key, data))
        if self.cache is not None:
            self.overlay.put(self.batch, seller, "state", key, data)

    def _overlay(self, seller: str, table: str, record: dict) -> None:
        """A published record, readable until the store has it (sellers.py)."""
        if self.cache is not None:
            self.overlay.put(self.batch, seller, table, seller.encode(), record)

    def _count_level(self, last: dict | None, rating: dict) -> None:
        if last is not None:
            self.levels[min(max(last["stars"], 0), 5)] -= 1
        self.levels[min(max(rating["stars"], 0), 5)] += 1

    # ---- recovery ---------------------------------------------------------------------------
    def restore(self, state_items: Iterable[tuple[bytes, bytes]], forecasts: Iterable[tuple[bytes, bytes]],
                official: Iterable[tuple[bytes, bytes]], warnings: Iterable[tuple[bytes, bytes]] = ()) -> int:
        """Rebuild memory from the tables after a (re)assignment; returns sellers restored."""
        self._clear_sellers()
        grouped: dict[str, list[tuple[str, str, bytes]]] = {}
        for raw_key, data in state_items:
            if bytes(raw_key[:1]) == b"\0":
                continue  # the due index and meta records (only a store-backed processor keeps them)
            seller, kind, key = split_state_key(bytes(raw_key))
            grouped.setdefault(seller, []).append((kind, key, bytes(data)))
        for seller, items in grouped.items():
            partition = self.partition_of[seller]
            engine = self.engine(partition)
            state = engine.states[seller] = engine.model.state_from_entities(seller, items, True)
            state.clock = max([state.clock or 0, *state.fact_instants()]) or None
            if state.clock is not None and (engine.clock is None or state.clock > engine.clock):
                engine.clock = state.clock
            self._pending.setdefault(partition, set()).add(seller)
            if state.first_seen is not None and state.first_seen < self._earliest.get(partition, state.first_seen + 1):
                self._earliest[partition] = state.first_seen
        self.published = {bytes(k).decode(): orjson.loads(v) for k, v in forecasts}
        self.official = {bytes(k).decode(): orjson.loads(v) for k, v in official}
        self.warned = {bytes(k).decode(): orjson.loads(v) for k, v in warnings}
        self._count_all(self.published.values(), self.warned.values())
        self.latest_month = max((r.get("month", "") for r in self.official.values()), default="")
        for partition, engine in self.engines.items():  # the state's record outranks the table
            for seller, state in engine.states.items():
                record = state.official
                if record is not None and self.official.get(seller, {}).get("month", "") < record["month"]:
                    # Saved with the state, lost on its way to star-ratings-monthly (the table).
                    self._republish.setdefault(partition, []).append((seller, record))
                if record is not None:
                    self.official[seller] = record
        return len(grouped)

    def _clear_sellers(self) -> None:
        self.engines.clear()
        self._projections.clear()
        self._stale.clear()
        self._projected_at.clear()
        self._holding.clear()  # a store-backed processor's entries say "due at once": restored as due
        self._held.clear()
        self._due.clear()
        self._queued.clear()
        self._unqueued.clear()
        self._frozen_through.clear()
        self._topic_clock.clear()  # positions go back to the committed offsets
        self._next_freeze.clear()
        self._earliest.clear()
        self._day_end.clear()
        self._pending.clear()
        self._sweep.clear()
        self._republish.clear()
        self._reasserted.clear()
        self._meta.clear()
        self._meta_dirty.clear()
        self._freezes.clear()
        self.overlay.clear()
        self._stored_through, self._stored_ahead = self.batch, set()  # a restore follows a settled outbox
        if self.cache is not None:
            self.cache.clear()

    def _count_all(self, forecasts: Iterable[dict], warnings: Iterable[dict]) -> None:
        self.levels = [0] * 6
        for rating in forecasts:
            self.levels[min(max(rating["stars"], 0), 5)] += 1
        self.at_risk = sum(1 for record in warnings if record["kind"] == "warning")

    def restore_from_store(self) -> int:
        """Take the partitions the source holds after a (re)assignment, reading no seller: the
        meta records give the clocks, the due index the sellers the clock will need, and the
        published records the gauges' counts. Sellers load on first touch. Returns the sellers
        with a published forecast."""
        assert self.source is not None and self.cache is not None
        self._clear_sellers()
        self.published, self.official, self.warned = {}, {}, {}
        owns = self.owns or (lambda seller: True)
        forecasts: list[dict] = []
        warnings: list[dict] = []
        self.latest_month = ""
        for partition in self.source.partitions():
            engine = self.engine(partition)
            key = meta_key(self.rulebook.name, partition)
            raw = next((v for k, v in self.source.scan(partition, key) if k == key), None)
            meta = self._meta[partition] = orjson.loads(raw) if raw is not None else {}
            if meta.get("clock") is not None:
                engine.clock = meta["clock"]
            if meta.get("earliest") is not None:
                self._earliest[partition] = meta["earliest"]
            if meta.get("frozen_through") is not None:
                self._frozen_through[partition] = meta["frozen_through"]
            heap = self._due.setdefault(partition, [])
            for key, value in self.source.scan(partition, DUE):
                seller = key[len(DUE):].decode()
                if owns(seller):
                    when = int(value)
                    self._queued[seller] = when
                    heap.append((when, seller))
            heapq.heapify(heap)
            if engine.clock is not None:  # windows that changed while no worker rated them
                pending: dict[str, None] = {}
                self._roll_day(partition, engine.clock, pending)
                self._pending[partition] = set(pending)
            forecasts.extend(r for r in map(orjson.loads, self.source.values(FORECASTS, partition))
                             if owns(r["seller_id"]))
            warnings.extend(r for r in map(orjson.loads, self.source.values(WARNINGS, partition))
                            if owns(r["seller_id"]))
            for record in map(orjson.loads, self.source.values(OFFICIAL, partition)):
                if owns(record.get("seller_id", "")) and record.get("month", "") > self.latest_month:
                    self.latest_month = record["month"]
        self._count_all(forecasts, warnings)
        return len(forecasts)

    def _load(self, seller: str) -> SellerFacts | None:
        """A seller from the store, with its unsettled writes on top (the cache's loader)."""
        assert self.source is not None
        partition = self.partition_of[seller]
        stored = self.overlay.over(seller, self.source.load(partition, seller))
        if not stored:
            return None
        engine = self.engine(partition)
        items = [split_state_key(key) for key, _ in stored.entities]
        state = engine.model.state_from_entities(
            seller, [(kind, key, value) for (_, kind, key), (_, value) in zip(items, stored.entities)], True)
        state.clock = max([state.clock or 0, *state.fact_instants()]) or None
        for table, into in ((FORECASTS, self.published), (OFFICIAL, self.official), (WARNINGS, self.warned)):
            value = stored.records.get(table)
            if value is not None:
                into[seller] = orjson.loads(value) if isinstance(value, bytes) else value
        record = state.official
        if record is not None and self.official.get(seller, {}).get("month", "") < record["month"]:
            # Saved with the state, lost on its way to star-ratings-monthly (the table).
            self._republish.setdefault(partition, []).append((seller, record))
            self.official[seller] = record
        return state

    def _evicted(self, seller: str, state: SellerFacts) -> None:
        self.engine(self.partition_of[seller]).model.release(state)  # the rating's caches point back at it
        for held in (self.published, self.official, self.warned, self._projections, self._projected_at):
            held.pop(seller, None)
        self._stale.discard(seller)

    def _all_sellers(self, partition: int) -> set[str]:
        """Every seller of the partition: those held, and (with a store) those stored."""
        engine = self.engine(partition)
        if self.source is None:
            return set(engine.states)
        owns = self.owns or (lambda seller: True)
        held = {seller for seller in self.cache or () if self.partition_of[seller] == partition}
        return held | {seller for seller in self.source.sellers(partition) if owns(seller)}

    def settled(self, batch: int) -> None:
        """Everything batch `batch` wrote is in the stores. Once every batch before it is too,
        the overlay lets their writes go, and a freeze of theirs may be recorded in the
        partition's meta record. (A batch whose changelog write failed is never reported: a
        later batch's report must not let its writes go, which the store does not have.)"""
        if batch <= self._stored_through:
            return
        self._stored_ahead.add(batch)
        while self._stored_through + 1 in self._stored_ahead:
            self._stored_through += 1
            self._stored_ahead.discard(self._stored_through)
        batch = self._stored_through
        self.overlay.settle(batch)
        for partition, (frozen_in, frozen_month) in list(self._freezes.items()):
            if frozen_in <= batch:
                del self._freezes[partition]
                meta = self._meta.setdefault(partition, {})
                if (meta.get("frozen_through") or -1) < frozen_month:
                    meta["frozen_through"] = frozen_month
                    self._meta_dirty.add(partition)

    def _write_meta(self, partition: int, effects: Effects) -> None:
        if self.source is None:
            return
        meta = self._meta.setdefault(partition, {})
        earliest = self._earliest.get(partition)
        if earliest is not None and earliest != meta.get("earliest"):
            meta["earliest"] = earliest
            self._meta_dirty.add(partition)
        if partition in self._meta_dirty:
            self._meta_dirty.discard(partition)
            effects.state_writes.append((meta_key(self.rulebook.name, partition), orjson.dumps(meta)))

    def reassert(self, partition: int, writes: list[tuple[bytes, bytes | None]]) -> None:
        """State records to write again (None: a delete), as they are, with the partition's next batch: values the
        store holds that the changelog may lack (kafka/fence.py, after a recovery fenced late
        records). Call after the restore."""
        self._reasserted.setdefault(partition, []).extend(writes)

    def _catch_up(self, partition: int, effects: Effects, touched: set[str]) -> None:
        """After a restore: publish what a crash may have left unpublished, rebuild due times."""
        effects.state_writes.extend(self._reasserted.pop(partition, ()))
        for seller, record in self._republish.pop(partition, []):
            effects.monthly.append((seller, record))
        self._swept(partition, touched).update(dict.fromkeys(sorted(self._pending.pop(partition, ()))))

    # ---- reads for the API and metrics ------------------------------------------------------
    def processor_for(self, seller_id: str) -> "RatingProcessor":
        return self

    def lookup(self, seller_id: str) -> tuple[Engine, SellerFacts | None, int | None]:
        """The engine of the seller's partition, its state if this worker holds one (not
        created, not moved: the API only reads), and the partition clock."""
        engine = self.engine(self.partition_of[seller_id])
        return engine, engine.states.get(seller_id), engine.clock

    def month_of(self, at: int) -> str:
        """The month label (YYYY-MM) containing `at` in the rulebook's time zone."""
        return month_label(at, self.rulebook)

    def clocks(self) -> dict[int, int]:
        return {p: e.clock for p, e in self.engines.items() if e.clock is not None}

    def caches(self) -> list[SellerCache]:
        return [] if self.cache is None else [self.cache]


def _warning_key(record: dict) -> tuple:
    """What makes a warning the same warning: the stars, the projection and the first drop."""
    return record["stars"], record["projected_stars"], record["projected_at"], record["first_drop"]


class GroupedProcessor:
    """Seller groups rated by different rulebooks in one worker: a `RatingProcessor` per
    rulebook of the selection, each seeing only its own sellers' messages (and every tick),
    behind the same interface. Each keeps its own clocks, day rolls and monthly freezes, so a
    `cn-2020` group freezes on Shanghai's month end while the default freezes on its own.

    Messages are routed by their `seller_id` before validation, which costs one extra JSON
    decode per message; a message without one goes to the default rulebook's processor, which
    dead-letters it. Not used at all when the deployment has no seller groups."""

    def __init__(self, selection: RulebookSelection, partitions: int, wall_clock: Callable[[], int] | None = None,
                 projection: bool = True, source: SellerSource | None = None, cache_bytes: int | None = None,
                 sweep_chunk: int | None = None, sweep_seconds: float | None = None,
                 forecast_interval: float | None = None):
        self.selection = selection
        books = selection.rulebooks
        share = None if cache_bytes is None else cache_bytes // len(books)  # the budget, split evenly
        seconds = None if sweep_seconds is None else sweep_seconds / len(books)  # likewise
        self.processors = {book.name: RatingProcessor(book, partitions, wall_clock, projection, source, share,
                                                      owns=self._owned_by(book.name), sweep_chunk=sweep_chunk,
                                                      sweep_seconds=seconds, forecast_interval=forecast_interval)
                           for book in books}
        self.default = self.processors[selection.default.name]
        self.partition_of = self.default.partition_of

    def processor_for(self, seller_id: str) -> RatingProcessor:
        return self.processors[self.selection.rulebook_for(seller_id).name]

    def _owned_by(self, name: str) -> Callable[[str], bool]:
        return lambda seller: self.selection.rulebook_for(seller).name == name

    @property
    def source(self) -> SellerSource | None:
        return self.default.source

    @property
    def batch(self) -> int:
        return self.default.batch  # every processor counts every batch (batch_steps)

    def settled(self, batch: int) -> None:
        for processor in self.processors.values():
            processor.settled(batch)

    def sweeping(self) -> bool:
        return any(p.sweeping() for p in self.processors.values())

    def sweep_waiting(self) -> int:
        return sum(p.sweep_waiting() for p in self.processors.values())

    def forecasts_due(self) -> bool:
        return any(p.forecasts_due() for p in self.processors.values())

    def reassert(self, partition: int, writes: list[tuple[bytes, bytes | None]]) -> None:
        self.default.reassert(partition, writes)  # raw state records: any processor writes them

    def holding(self) -> int:
        return sum(p.holding() for p in self.processors.values())

    def restore_from_store(self) -> int:
        return sum(processor.restore_from_store() for processor in self.processors.values())

    def caches(self) -> list[SellerCache]:
        return [cache for p in self.processors.values() for cache in p.caches()]

    @property
    def levels(self) -> list[int]:
        return [sum(counts) for counts in zip(*(p.levels for p in self.processors.values()))]

    @property
    def at_risk(self) -> int:
        return sum(p.at_risk for p in self.processors.values())

    @property
    def latest_month(self) -> str:
        return max(p.latest_month for p in self.processors.values())

    def _route(self, raw: bytes) -> RatingProcessor:
        try:
            seller = orjson.loads(raw).get("seller_id")
        except (orjson.JSONDecodeError, AttributeError):  # not JSON, or not an object
            return self.default
        return self.processor_for(seller) if isinstance(seller, str) else self.default

    # ---- the RatingProcessor interface -----------------------------------------------------
    def batch_steps(self, items: Iterable[Incoming | Tick], lagging: Lagging,
                    out: dict[int, Effects]) -> Iterator[None]:
        routed: dict[RatingProcessor, list[Incoming | Tick]] = {p: [] for p in self.processors.values()}
        for item in items:
            if isinstance(item, Tick):
                for batch in routed.values():
                    batch.append(item)
            else:
                routed[self._route(item.raw)].append(item)
        results: list[dict[int, Effects]] = []
        number = self.default.batch + 1
        for processor, batch in routed.items():
            busy = bool(batch) or processor.sweeping() or processor.forecasts_due()
            processor.batch = number - 1 if busy else number  # batch_steps counts its own
            if busy:
                results.append({})
                yield from processor.batch_steps(batch, lagging, results[-1])
        out.update(_merge(results))

    handle_batch = RatingProcessor.handle_batch  # all of batch_steps at once, as there
    handle = RatingProcessor.handle  # batches of one, as there
    tick = RatingProcessor.tick

    def freeze_due(self, partition: int) -> bool:
        return any([p.freeze_due(partition) for p in self.processors.values()])  # each settles its own

    def freeze_if_ready(self, partition: int, lagging: Collection[str], gapped: Collection[str] = ()) -> Effects:
        return _merge({partition: p.freeze_if_ready(partition, lagging, gapped)}
                      for p in self.processors.values()).get(partition, Effects())

    def restore(self, state_items: Iterable[tuple[bytes, bytes]], forecasts: Iterable[tuple[bytes, bytes]],
                official: Iterable[tuple[bytes, bytes]], warnings: Iterable[tuple[bytes, bytes]] = ()) -> int:
        parts: dict[RatingProcessor, tuple[list, list, list, list]] = {
            p: ([], [], [], []) for p in self.processors.values()}
        for raw_key, data in state_items:
            seller = seller_of_key(raw_key).decode()
            parts[self.processor_for(seller)][0].append((raw_key, data))
        for index, table in ((1, forecasts), (2, official), (3, warnings)):
            for raw_key, data in table:
                parts[self.processor_for(bytes(raw_key).decode())][index].append((raw_key, data))
        return sum(processor.restore(*items) for processor, items in parts.items())

    def clocks(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for processor in self.processors.values():
            for partition, clock in processor.clocks().items():
                out[partition] = max(clock, out.get(partition, clock))
        return out

    @property
    def published(self) -> ChainMap:
        return ChainMap(*(p.published for p in self.processors.values()))  # sellers are disjoint

    @property
    def official(self) -> ChainMap:
        return ChainMap(*(p.official for p in self.processors.values()))

    @property
    def warned(self) -> ChainMap:
        return ChainMap(*(p.warned for p in self.processors.values()))


def _merge(results: Iterable[dict[int, Effects]]) -> dict[int, Effects]:
    """Effects per partition from several processors, concatenated (their sellers are disjoint)."""
    out: dict[int, Effects] = {}
    for result in results:
        for partition, effects in result.items():
            into = out.get(partition)
            if into is None:
                out[partition] = effects
                continue
            for f in fields(Effects):
                getattr(into, f.name).extend(getattr(effects, f.name))
    return out
