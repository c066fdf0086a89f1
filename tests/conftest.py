"""Fixture factories for the rating core: build events tersely, rate them through replay."""

from __future__ import annotations

import io
import itertools
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from streams.core.rulebook import load
from streams.replay import replay

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
"""Scenarios start here; `hours`/`days` offsets are relative to it."""

_ids = itertools.count()


def at(days: float = 0, hours: float = 0, seconds: float = 0) -> str:
    """RFC 3339 for T0 + offset."""
    moment = T0 + timedelta(days=days, hours=hours, seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{moment.microsecond // 1000:03d}" if moment.microsecond else "") + "Z"


def event(type_: str, ts: str, seller: str = "s1", **fields) -> dict:
    return {"event_id": f"e{next(_ids)}", "type": type_, "seller_id": seller, "ts": ts, **fields}


class Events:
    """Factory for each event type with sensible defaults; `ts` is an RFC 3339 string."""

    @staticmethod
    def message(ts, buyer="b1", conv=None, seller="s1", channel="inquiry"):
        return event("buyer_message", ts, seller, buyer_id=buyer, conversation_id=conv or f"c-{buyer}",
                     channel=channel)

    @staticmethod
    def reply(ts, conv, manual=True, seller="s1"):
        return event("seller_reply", ts, seller, conversation_id=conv, manual=manual)

    @staticmethod
    def spam(ts, conv, action="moved_to_spam", seller="s1"):
        return event("spam_action", ts, seller, conversation_id=conv, action=action)

    @staticmethod
    def order(ts, buyer, order, status="placed", seller="s1", amount=100.0, currency="USD", track=None):
        extra = {} if track is None else {"track": track}
        return event("ta_order", ts, seller, buyer_id=buyer, order_id=order, status=status,
                     amount=amount, currency=currency, **extra)

    @staticmethod
    def visit(ts, visitor, abnormal=False, seller="s1"):
        return event("store_visit", ts, seller, visitor_id=visitor, abnormal=abnormal)

    @staticmethod
    def product(ts, pid, tier="potential", video=False, removed=False, seller="s1"):
        return event("product_update", ts, seller, product_id=pid, tier=tier, has_video=video, removed=removed)

    @staticmethod
    def penalty(ts, pid, points, serious=True, revoked=False, seller="s1"):
        return event("penalty", ts, seller, penalty_id=pid, points=points, serious=serious, revoked=revoked)

    @staticmethod
    def marketing(ts, kind, seller="s1", **fields):
        return event("marketing", ts, seller, kind=kind, **fields)

    @staticmethod
    def profile(ts, region, category, seller="s1"):
        return event("seller_profile", ts, seller, region=region, category=category)

    # ---- the score models' events (cn-2020, merchant-3star) -------------------------------
    @staticmethod
    def quality(ts, pid, score, removed=False, seller="s1"):
        return event("product_quality", ts, seller, product_id=pid, score=score, removed=removed)

    @staticmethod
    def certificate(ts, cid, valid=True, seller="s1"):
        return event("certificate", ts, seller, certificate_id=cid, valid=valid)

    @staticmethod
    def search(ts, date, exposures, clicks, seller="s1"):
        return event("search_stats", ts, seller, date=date, exposures=exposures, clicks=clicks)

    @staticmethod
    def fulfil(ts, order, agreed, status="shipped", track="customized", seller="s1"):
        return event("order_fulfilment", ts, seller, order_id=order, status=status, agreed_date=agreed, track=track)

    @staticmethod
    def evaluation(ts, order, buyer, scores=(5, 5, 5), track="customized", seller="s1"):
        quality, service, delivery = scores
        return event("buyer_evaluation", ts, seller, order_id=order, buyer_id=buyer, track=track,
                     product_quality=quality, seller_service=service, delivery=delivery)

    @staticmethod
    def dispute(ts, order, arbitration=True, track="customized", seller="s1"):
        return event("dispute", ts, seller, order_id=order, arbitration=arbitration, track=track)

    @staticmethod
    def export(ts, order, kind="one_touch_export", track="customized", seller="s1"):
        return event("export_signal", ts, seller, order_id=order, kind=kind, track=track)


@pytest.fixture
def ev() -> type[Events]:
    return Events


def rate_events(events: list[dict], when: str | None = None, rulebook: str = "global-2023") -> dict[str, dict]:
    """Replay events (as JSON lines) and return ratings by seller; fails on any rejected line."""
    errors = io.StringIO()
    lines = [orjson.dumps(e) for e in events]
    from streams.core.timeutil import parse_ts

    ratings = replay(lines, load(rulebook), parse_ts(when) if when else None, errors)
    assert errors.getvalue() == "", errors.getvalue()
    return {r["seller_id"]: r for r in ratings}


@pytest.fixture
def rate():
    return rate_events


def pytest_collection_modifyitems(config, items):
    """Mark every test by its folder: `unit` (pure Python, no broker, no apt tools, seconds)
    or `integration` (real broker, worker processes, Prometheus, Debian tools)."""
    for item in items:
        parts = item.path.parts
        if "integration" in parts:
            item.add_marker(pytest.mark.integration)
        elif "unit" in parts:
            item.add_marker(pytest.mark.unit)
