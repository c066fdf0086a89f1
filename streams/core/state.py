"""Per-seller state: the facts a rating needs, kept so that delivery cannot change them.

Every update is a join on a set-like structure (sorted sets of instants, maps keyed by
`event_id`, last-writer-wins registers ordered by `(ts, event_id)`), so applying an event twice
or in any order gives the same state: at-least-once delivery, duplicates and reordering change
nothing by construction. Nothing here reads arrival order or the wall clock.

State is split into *entities* (a conversation, a person, an order, a product, a penalty) and a
small per-seller *summary* (profile, marketing, ads, showcases). `apply()` records which entity
keys it touched in `dirty`, so a store writes only those: a seller with 10,000 active buyers
does not rewrite a 10,000-entry blob on every event.

Pruning: `advance(clock)` moves the seller's watermark to the stream clock. A rating is never
evaluated earlier than `watermark - grace` (the monthly freeze looks back that far), so facts
that cannot fall inside any window ending after that instant are dropped, and events that old
are ignored on arrival (the same result as applying then pruning).
"""

from __future__ import annotations

from bisect import bisect_right
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import orjson

from streams.core.contract import Event
from streams.core.keys import SUMMARY
from streams.core.lww import lww_add, lww_prune
from streams.core.model import PRUNE_EVERY_MS
from streams.core.money import usd_micro
from streams.core.rulebook import Rulebook
from streams.core.timeutil import month_start

if TYPE_CHECKING:
    from streams.core.measures import Aggregator

# Entity kinds (first element of an entity key in a store; SUMMARY is keys.SUMMARY).
CONVERSATION, PERSON, ORDER, PRODUCT, PENALTY = "c", "p", "o", "g", "x"
# Contribution kinds (first element of a key in `changed`; see measures.py).
K_CONVERSATION, K_PERSON, K_PRODUCT, K_PENALTY, K_KWA, K_RFQ = "C", "P", "G", "X", "K", "R"


def _add_instant(instants: list[int], ts: int) -> bool:
    """Insert into a sorted set of instants; False when already present."""
    i = bisect_right(instants, ts)
    if i and instants[i - 1] == ts:
        return False
    instants.insert(i, ts)
    return True


def _drop_through(instants: list[int], cut: int) -> None:
    """Remove instants <= cut from a sorted list, in place."""
    i = bisect_right(instants, cut)
    if i:
        del instants[:i]


class Conversation:
    """A buyer's conversation: its first message, later messages, manual replies, spam actions."""

    __slots__ = ("first", "buyer", "messages", "replies", "spam", "last")

    def __init__(self, first=None, buyer=None, messages=None, replies=None, spam=None, last=None):
        self.first: int | None = first  # earliest buyer message ever seen
        self.buyer: str | None = buyer  # buyer of the earliest message (ties: smallest id)
        self.messages: list[int] = messages or []  # buyer message instants still in retention
        self.replies: list[int] = replies or []  # manual replies: all before `first`, first after
        self.spam: list[list[Any]] = spam or []  # [ts, event_id, action]
        self.last: int | None = last  # latest event of any kind: how long it has been silent

    def touch(self, ts: int) -> None:
        if self.last is None or ts > self.last:
            self.last = ts

    def add_message(self, ts: int, buyer: str, keep_after: int) -> None:
        self.touch(ts)
        if self.first is None or ts < self.first or ts == self.first and buyer < (self.buyer or ""):
            self.first, self.buyer = ts, buyer
        if ts > keep_after:
            _add_instant(self.messages, ts)
        self._compact_replies()

    def add_reply(self, ts: int) -> None:
        self.touch(ts)
        _add_instant(self.replies, ts)
        self._compact_replies()

    def _compact_replies(self) -> None:
        """Only the first reply at/after `first` can matter; earlier ones matter if `first`
        later moves back (a reordered earlier message)."""
        if self.first is None:
            return
        i = bisect_right(self.replies, self.first - 1)  # replies[i] is the first >= first
        if len(self.replies) > i + 1:
            del self.replies[i + 1 :]

    def first_reply(self) -> int | None:
        """The first manual reply at or after the first buyer message."""
        if self.first is None:
            return None
        i = bisect_right(self.replies, self.first - 1)
        return self.replies[i] if i < len(self.replies) else None

    def excluded(self, at: int, spam_window: int) -> bool:
        """docs/spec.md §1.1: moved to spam within `spam_window` of the first message and not restored
        since. Restores count whenever they happen; a move after the window changes nothing;
        an action before the first message (there was nothing to move yet) is ignored."""
        latest = None
        first = self.first or 0  # set: only conversations with a message are rated
        for ts, _eid, action in self.spam:
            if ts > at:
                break
            if ts >= first and (action == "restored" or ts <= first + spam_window):
                latest = action
        return latest == "moved_to_spam"

    def prune(self, cut: int) -> None:
        _drop_through(self.messages, cut)
        if self.first is not None and self.first <= cut:
            self.replies = []  # first is outside every future window: replies are irrelevant
        else:
            _drop_through(self.replies, cut)

    def silent_since(self, instant: int) -> bool:
        """No event after `instant`: past the rulebook's memory, the conversation is forgotten."""
        return self.last is None or self.last <= instant

    def dump(self) -> list[Any]:
        return [self.first, self.buyer, self.messages, self.replies, self.spam, self.last]


class Person:
    """A buyer/visitor identity's normal store visits (abnormal ones are never stored)."""

    __slots__ = ("visits",)

    def __init__(self, visits=None):
        self.visits: list[int] = visits or []

    def dump(self) -> list[Any]:
        return [self.visits]


class Order:
    """A Trade Assurance order: when it was first placed and its recent status history."""

    __slots__ = ("buyer", "placed", "statuses")

    def __init__(self, buyer: str = "", placed: int | None = None, statuses: list[list[Any]] | None = None):
        self.buyer: str = buyer
        self.placed: int | None = placed  # earliest `placed` event
        self.statuses: list[list[Any]] = statuses or []  # [ts, event_id, status]

    def dump(self) -> list[Any]:
        return [self.buyer, self.placed, self.statuses]


SIZE_BASE, SIZE_PER_ENTITY = 4_000, 2_100  # see size_hint

ENTITY_TYPES = {CONVERSATION: Conversation, PERSON: Person, ORDER: Order}


class SellerState:
    """All facts about one seller. Plain data; the rating reads it through `measures`."""

    __slots__ = (
        "rulebook", "seller_id", "watermark", "clock", "profile", "premium_ads", "showcases",
        "kwa", "rfq", "conversations", "people", "orders", "products", "penalties", "dirty",
        "changed", "buyer_conversations", "buyer_orders", "aggregator", "pruned_at", "first_seen",
        "frozen_until", "official", "keep_for_freeze",
    )

    def __init__(self, rulebook: Rulebook, seller_id: str, keep_for_freeze: bool = False):
        self.rulebook = rulebook
        self.seller_id = seller_id
        self.watermark: int | None = None  # clock of the last advance(); prunes below it
        self.clock: int | None = None  # largest ts applied to this seller
        self.first_seen: int | None = None  # smallest ts applied (no official rating before it)
        self.frozen_until: int | None = None  # end of the latest month frozen for this seller
        self.official: dict | None = None  # that month's record, saved in the same write
        # A worker freezes each month once its clock passes the month end plus grace; until
        # this seller's freeze is done, facts that the month end's windows need are kept, even
        # if the clock has run further (a restart, or late events of a later day first).
        self.keep_for_freeze = keep_for_freeze
        self.profile: list[list[Any]] = []  # LWW [ts, event_id, region, category]
        self.premium_ads: list[list[Any]] = []  # LWW [ts, event_id, active]
        self.showcases: list[list[Any]] = []  # LWW [ts, event_id, all_open]
        self.kwa: dict[str, list[int]] = {}  # event_id -> [ts, usd micro-units]
        self.rfq: dict[str, int] = {}  # event_id -> ts
        self.conversations: dict[str, Conversation] = {}
        self.people: dict[str, Person] = {}
        self.orders: dict[str, Order] = {}
        self.products: dict[str, list[list[Any]]] = {}  # LWW [ts, eid, tier, has_video, removed]
        self.penalties: dict[str, list[list[Any]]] = {}  # [ts, eid, points, serious, revoked]
        self.dirty: set[tuple[str, str]] = set()  # entity keys to write to a store
        self.changed: set[tuple[str, str]] = set()  # contribution keys to recompute
        # Derived indexes (rebuilt on load, never stored): a person's conversations and orders.
        self.buyer_conversations: dict[str, set[str]] = {}
        self.buyer_orders: dict[str, set[str]] = {}
        self.aggregator: Aggregator | None = None  # attached lazily by the rater (indicators.py)
        self.pruned_at: int | None = None  # watermark of the last prune

    # ---- cuts derived from the watermark -------------------------------------------------
    def _low(self) -> int | None:
        """The earliest instant a rating may still be evaluated at."""
        if self.watermark is None:
            return None
        low = self.watermark - self.rulebook.grace_ms
        if self.keep_for_freeze:
            month_end = month_start(self.watermark, self.rulebook.time_zone)
            owed = self.first_seen is not None and self.first_seen < month_end
            if owed and (self.frozen_until is None or self.frozen_until < month_end):
                low = min(low, month_end - 1)
        return low

    def next_change(self) -> int | None:
        """The next instant a window change alters this seller's measures (None: none known)."""
        heap = self.aggregator.heap if self.aggregator is not None else None
        return heap[0][0] if heap else None

    def mark_frozen(self, month_end: int, record: dict) -> None:
        """Record a freeze. The mark and the record live in one entity, so one write saves both:
        facts are only released once the record that needed them is durable."""
        self.frozen_until = month_end
        self.official = record
        self.dirty.add((SUMMARY, ""))

    def window_cut(self) -> int | None:
        """Windowed facts at or before this can never be inside a future window."""
        low = self._low()
        return None if low is None else low - self.rulebook.window_ms

    def expiry_cut(self) -> int | None:
        """Events at or before this are ignored on arrival (they are older than any rule)."""
        return None if self.watermark is None else self.watermark - self.rulebook.retention_ms

    # ---- updates -------------------------------------------------------------------------
    def apply(self, event: Event) -> bool:
        """Apply one validated event; False when it is too old to matter (nothing changed).

        Raises Rejected (before any change) for input the rulebook cannot use.
        """
        ts = event.ts
        expiry = self.expiry_cut()
        if expiry is not None and ts <= expiry:
            return False
        cut = self.window_cut()
        keep_after = cut if cut is not None else ts - 1
        body = event.body
        kind = event.type
        if self.clock is None or ts > self.clock:
            # Not a reason to rewrite the summary: clock and watermark only tune pruning and
            # are re-derived from the partition clock after a restore.
            self.clock = ts
        if self.first_seen is None or ts < self.first_seen:
            self.first_seen = ts
            self.dirty.add((SUMMARY, ""))

        if kind == "store_visit":
            if body.get("abnormal", False):
                return True  # abnormal traffic never counts: nothing to keep
            if ts <= keep_after:
                return False
            vid = body["visitor_id"]
            person = self.people.get(vid)
            if person is None:
                person = self.people[vid] = Person()
            if _add_instant(person.visits, ts):
                self.dirty.add((PERSON, vid))
                self.changed.add((K_PERSON, vid))
        elif kind == "buyer_message":
            cid = body["conversation_id"]
            conv = self._conversation(cid)
            memory = self.rulebook.memory_ms
            if conv.last is not None and ts > conv.last + memory:
                conv = self._reopen(cid, conv)  # silent past memory: a new conversation
            elif conv.first is not None and ts < conv.first - memory:
                return False  # from a conversation forgotten long before this one: outside any W
            before = conv.buyer
            conv.add_message(ts, body["buyer_id"], keep_after)
            buyer = conv.buyer or ""  # set by add_message
            if buyer != before:
                if before is not None:
                    self._unindex(self.buyer_conversations, before, cid)
                    self.changed.add((K_PERSON, before))
                self.buyer_conversations.setdefault(buyer, set()).add(cid)
            self.dirty.add((CONVERSATION, cid))
            self.changed.add((K_CONVERSATION, cid))
            self.changed.add((K_PERSON, buyer))
        elif kind == "seller_reply":
            if not body.get("manual", True):
                return True  # automatic replies never count: nothing to keep
            if ts <= keep_after:
                return False
            cid = body["conversation_id"]
            self._conversation(cid).add_reply(ts)
            self.dirty.add((CONVERSATION, cid))
            self.changed.add((K_CONVERSATION, cid))
        elif kind == "spam_action":
            cid = body["conversation_id"]
            conv = self._conversation(cid)
            conv.touch(ts)
            if lww_add(conv.spam, [ts, event.event_id, body["action"]]):
                self.dirty.add((CONVERSATION, cid))
                self.changed.add((K_CONVERSATION, cid))
                if conv.buyer is not None:
                    self.changed.add((K_PERSON, conv.buyer))
        elif kind == "ta_order":
            oid = body["order_id"]
            order = self.orders.get(oid)
            buyer = body["buyer_id"]
            if order is None:
                order = self.orders[oid] = Order(buyer)
                self.buyer_orders.setdefault(buyer, set()).add(oid)
            elif buyer < order.buyer:  # deterministic if sources disagree
                self._unindex(self.buyer_orders, order.buyer, oid)
                self.changed.add((K_PERSON, order.buyer))
                order.buyer = buyer
                self.buyer_orders.setdefault(buyer, set()).add(oid)
            if body["status"] == "placed" and (order.placed is None or ts < order.placed):
                order.placed = ts
            if ts > keep_after:  # older statuses can't be current inside a future window
                lww_add(order.statuses, [ts, event.event_id, body["status"]])
            self.dirty.add((ORDER, oid))
            self.changed.add((K_PERSON, order.buyer))
        elif kind == "product_update":
            pid = body["product_id"]
            version = [ts, event.event_id, body["tier"], body["has_video"], body.get("removed", False)]
            if lww_add(self.products.setdefault(pid, []), version):
                self.dirty.add((PRODUCT, pid))
                self.changed.add((K_PRODUCT, pid))
        elif kind == "penalty":
            pid = body["penalty_id"]
            version = [ts, event.event_id, int(body["points"]), body["serious"], body.get("revoked", False)]
            if lww_add(self.penalties.setdefault(pid, []), version):
                self.dirty.add((PENALTY, pid))
                self.changed.add((K_PENALTY, pid))
        elif kind == "marketing":
            self._apply_marketing(event, keep_after)
        elif kind == "seller_profile":
            if lww_add(self.profile, [ts, event.event_id, body["region"], body["category"]]):
                self.dirty.add((SUMMARY, ""))
        return True

    def _apply_marketing(self, event: Event, keep_after: int) -> None:
        body, ts, eid = event.body, event.ts, event.event_id
        what = body["kind"]
        if what == "kwa_spend":
            usd = usd_micro(body["amount"], body["currency"], self.rulebook.usd_per_unit, self.rulebook.name)
            if ts > keep_after and eid not in self.kwa:
                self.kwa[eid] = [ts, usd]
                self.changed.add((K_KWA, eid))
        elif what == "rfq_quotation":
            if ts > keep_after and eid not in self.rfq:
                self.rfq[eid] = ts
                self.changed.add((K_RFQ, eid))
        elif what == "premium_ads":
            lww_add(self.premium_ads, [ts, eid, body["active"]])
        elif what == "showcases":
            lww_add(self.showcases, [ts, eid, body["all_open"]])
        self.dirty.add((SUMMARY, ""))

    @staticmethod
    def _unindex(index: dict[str, set[str]], buyer: str, key: str) -> None:
        keys = index.get(buyer)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del index[buyer]

    def _reopen(self, cid: str, old: Conversation) -> Conversation:
        if old.buyer is not None:
            self._unindex(self.buyer_conversations, old.buyer, cid)
            self.changed.add((K_PERSON, old.buyer))
        conv = self.conversations[cid] = Conversation()
        return conv

    def _conversation(self, cid: str) -> Conversation:
        conv = self.conversations.get(cid)
        if conv is None:
            conv = self.conversations[cid] = Conversation()
        return conv

    def advance(self, clock: int) -> None:
        """Move the watermark to the stream clock (never back) and drop what can't matter."""
        if self.watermark is not None and clock <= self.watermark:
            return
        self.watermark = clock
        if self.pruned_at is None or clock - self.pruned_at >= PRUNE_EVERY_MS:
            self.prune()  # facts past the cuts are already ignored; dropping them can wait

    def prune(self) -> None:
        self.pruned_at = self.watermark
        self.dirty.add((SUMMARY, ""))  # persist the watermark with what it dropped
        self._prune()

    def _prune(self) -> None:
        cut, low, expiry = self.window_cut(), self._low(), self.expiry_cut()
        if cut is None or low is None or expiry is None:
            return  # all three are set once the watermark is
        forget = low - self.rulebook.memory_ms
        rb = self.rulebook
        for cid, conv in list(self.conversations.items()):
            before = len(conv.messages), len(conv.replies)
            conv.prune(cut)
            if conv.silent_since(forget):
                del self.conversations[cid]  # silent past the rulebook's memory
                if conv.buyer is not None:
                    self._unindex(self.buyer_conversations, conv.buyer, cid)
            elif (len(conv.messages), len(conv.replies)) == before:
                continue
            self.dirty.add((CONVERSATION, cid))
        for vid, person in list(self.people.items()):
            if person.visits and person.visits[0] <= cut:
                _drop_through(person.visits, cut)
                if not person.visits:
                    del self.people[vid]
                self.dirty.add((PERSON, vid))
        for oid, order in list(self.orders.items()):
            if order.statuses and order.statuses[0][0] <= cut:
                order.statuses = [s for s in order.statuses if s[0] > cut]
                self.dirty.add((ORDER, oid))
            # Like a conversation's first message, the placement is kept (a few bytes) for the
            # rulebook's memory, so a late duplicate `placed` is not taken for a new order.
            if not order.statuses and (order.placed is None or order.placed <= forget):
                del self.orders[oid]
                self._unindex(self.buyer_orders, order.buyer, oid)
                self.dirty.add((ORDER, oid))
        for pid, versions in list(self.products.items()):
            n = len(versions)
            if n == 1 and not versions[0][4]:
                continue  # a live product's only version: nothing to drop
            lww_prune(versions, low)
            if len(versions) == 1 and versions[0][4] and versions[0][0] <= expiry:
                del self.products[pid]  # a removed product's tombstone, older than any rule
            elif len(versions) == n:
                continue
            self.dirty.add((PRODUCT, pid))
        for pid, versions in list(self.penalties.items()):
            if versions[0][0] <= low - rb.risk_window_ms - rb.retention_ms:
                del self.penalties[pid]
                self.dirty.add((PENALTY, pid))
        summary = (len(self.kwa), len(self.rfq), len(self.profile), len(self.premium_ads), len(self.showcases))
        self.kwa = {k: v for k, v in self.kwa.items() if v[0] > cut}
        self.rfq = {k: v for k, v in self.rfq.items() if v > cut}
        for register in (self.profile, self.premium_ads, self.showcases):
            lww_prune(register, low)
        if summary != (len(self.kwa), len(self.rfq), len(self.profile), len(self.premium_ads), len(self.showcases)):
            self.dirty.add((SUMMARY, ""))

    # ---- serialisation -------------------------------------------------------------------
    def summary_dump(self) -> list[Any]:
        return [self.watermark, self.clock, self.first_seen, self.frozen_until, self.official, self.profile,
                self.premium_ads, self.showcases, self.kwa, self.rfq]

    def entity_dump(self, kind: str, key: str) -> list[Any] | None:
        """The serialisable form of one entity, or None when it no longer exists."""
        if kind == SUMMARY:
            return self.summary_dump()
        if kind in (PRODUCT, PENALTY):
            return (self.products if kind == PRODUCT else self.penalties).get(key)
        entity = self._entities(kind).get(key)
        return None if entity is None else entity.dump()

    def _entities(self, kind: str) -> dict[str, Any]:
        entities: dict[str, dict[str, Any]] = {CONVERSATION: self.conversations, PERSON: self.people,
                                               ORDER: self.orders, PRODUCT: self.products, PENALTY: self.penalties}
        return entities[kind]

    def take_dirty(self) -> Iterator[tuple[tuple[str, str], bytes | None]]:
        """Yield and clear ((kind, key), bytes-or-None-for-deleted) for every touched entity."""
        dirty, self.dirty = self.dirty, set()
        for kind, key in sorted(dirty):
            data = self.entity_dump(kind, key)
            yield (kind, key), None if data is None else orjson.dumps(data)

    def load_entity(self, kind: str, key: str, data: bytes) -> None:
        """Restore one entity written by take_dirty()."""
        value = orjson.loads(data)
        if kind == SUMMARY:
            (self.watermark, self.clock, self.first_seen, self.frozen_until, self.official, self.profile,
             self.premium_ads, self.showcases, self.kwa, self.rfq) = value
        elif kind in (PRODUCT, PENALTY):
            self._entities(kind)[key] = value
        else:
            entity = self._entities(kind)[key] = ENTITY_TYPES[kind](*value)
            if kind == CONVERSATION and entity.buyer is not None:
                self.buyer_conversations.setdefault(entity.buyer, set()).add(key)
            elif kind == ORDER:
                self.buyer_orders.setdefault(entity.buyer, set()).add(key)

    def fact_instants(self) -> Iterator[int]:
        """The latest instant of every entity (to re-derive the clock after a restore)."""
        for conv in self.conversations.values():
            if conv.last is not None:
                yield conv.last
        for person in self.people.values():
            if person.visits:
                yield person.visits[-1]
        for order in self.orders.values():
            if order.statuses:
                yield order.statuses[-1][0]
        for versions in (*self.products.values(), *self.penalties.values(), self.profile, self.premium_ads,
                         self.showcases):
            if versions:
                yield versions[-1][0]
        yield from (ts for ts, _ in self.kwa.values())
        yield from self.rfq.values()

    def entities(self) -> Iterator[tuple[tuple[str, str], bytes]]:
        """Every entity of this seller, serialised (for snapshots and size measurements)."""
        yield (SUMMARY, ""), orjson.dumps(self.summary_dump())
        for kind in (CONVERSATION, PERSON, ORDER, PRODUCT, PENALTY):
            for key in sorted(self._entities(kind)):
                yield (kind, key), orjson.dumps(self.entity_dump(kind, key))

    def size_hint(self) -> int:
        """Estimated bytes in memory with the rating's aggregates (sellers.py's budget);
        calibrated in docs/performance.md ("State beyond memory")."""
        return SIZE_BASE + SIZE_PER_ENTITY * (len(self.conversations) + len(self.people) + len(self.orders)
                                              + len(self.products) + len(self.penalties) + len(self.kwa)
                                              + len(self.rfq))

    def to_bytes(self) -> bytes:
        """The whole state as one compact orjson document."""
        return orjson.dumps([self.seller_id, [[k, key, orjson.Fragment(b)] for (k, key), b in self.entities()]])

    @classmethod
    def from_bytes(cls, rulebook: Rulebook, data: bytes) -> "SellerState":
        seller_id, items = orjson.loads(data)
        return cls.from_entities(rulebook, seller_id, ((k, key, orjson.dumps(v)) for k, key, v in items))

    @classmethod
    def from_entities(cls, rulebook: Rulebook, seller_id: str, items: Iterable[tuple[str, str, bytes]],
                      keep_for_freeze: bool = False) -> "SellerState":
        state = cls(rulebook, seller_id, keep_for_freeze)
        for kind, key, data in items:
            state.load_entity(kind, key, data)
        return state

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SellerState) and self.to_bytes() == other.to_bytes()
