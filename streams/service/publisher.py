"""What the agent does with a partition's effects: outbox records and counters."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import faust
import orjson

from streams.service import history
from streams.service.kafka import Outbox
from streams.service.metrics import Metrics
from streams.service.processor import Effects
from streams.service.settings import Settings


class Publisher:
    """Stages a partition's effects in the outbox (sent by the caller's flush) and counts them."""

    def __init__(self, s: Settings, processor: Any, metrics: Metrics, outbox: Outbox, state: faust.Table,
                 forecasts: faust.Table, official: faust.Table, warnings: faust.Table, history: faust.Table) -> None:
        self.processor, self.metrics, self.outbox = processor, metrics, outbox
        self.state, self.forecasts, self.official, self.warnings = state, forecasts, official, warnings
        self.history = history
        self.changes, self.dead_letters = s.topic("star-changes"), s.topic("starcast-dead-letters")
        self.topic = s.topic

    def stage(self, effects: Effects, partition: int) -> None:
        outbox, metrics = self.outbox, self.metrics
        for key, value in effects.state_writes:
            outbox.put(self.state, partition, key, value)
        for seller, rating in effects.forecasts:  # star-forecasts is this table's changelog
            outbox.put(self.forecasts, partition, seller.encode(), orjson.dumps(rating))
        for seller, change in effects.changes:
            outbox.send(self.changes, partition, seller.encode(), orjson.dumps(change))
            metrics.star_changes.labels(direction=change["direction"]).inc()
        for seller, record in effects.monthly:
            outbox.put(self.official, partition, seller.encode(), orjson.dumps(record))  # = star-ratings-monthly
            month = record["month"]
            outbox.put(self.history, partition, history.key(seller, month), orjson.dumps(history.record(record)))
            outbox.put(self.history, partition, history.key(seller, history.months_before(month, history.KEPT)), None)
            metrics.frozen.inc()
            metrics.froze(record["month"])
        for seller, record in effects.warnings:  # star-warnings is this table's changelog
            outbox.put(self.warnings, partition, seller.encode(), orjson.dumps(record))
            metrics.star_warnings.labels(kind=record["kind"]).inc()
        for seconds in effects.held_seconds:
            metrics.held_seconds.observe(seconds)
        for error in effects.projection_errors:
            metrics.projection_errors.labels(error=_error_label(error)).inc()
        for dead in effects.dead_letters:  # kept in the partition they came from
            headers = [("starcast-origin-topic", dead.topic.encode()),
                       ("starcast-origin-partition", str(dead.partition).encode()),
                       ("starcast-origin-offset", str(dead.offset).encode()),
                       ("starcast-reason", dead.reason.encode()),
                       ("starcast-error", dead.message.encode()[:1024])]
            outbox.send(self.dead_letters, partition, dead.key, dead.raw, headers)
            metrics.dead_letters.labels(reason=dead.reason).inc()
        for name, key, raw in effects.forward:  # re-keyed input, to the partition owning the seller
            outbox.send(self.topic(name), self.processor.partition_of[key.decode()], key, raw)
        if effects.forecasts:
            metrics.forecasts.inc(len(effects.forecasts))
        for (kind, outcome), n in Counter(effects.outcomes).items():
            metrics.events.labels(type=kind, outcome=outcome).inc(n)
        now = time.time()
        for ts in effects.event_ts:
            metrics.lag.observe(max(now - ts / 1000, 0))


def _error_label(name: str) -> str:
    """A bounded label value for an exception type (names outside a known set are "other")."""
    return name if name in ("KeyError", "ValueError", "TypeError", "IndexError", "ZeroDivisionError",
                            "AssertionError", "AttributeError", "OverflowError", "RecursionError") else "other"
