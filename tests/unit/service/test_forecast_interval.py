"""Forecasts held back (STARCAST_FORECAST_INTERVAL_MS): at most one projection per seller per
interval, the latest forecast always sent in the end, star changes and warnings never held."""

from __future__ import annotations

import pytest

from streams.core.rulebook import load
from streams.core.sellers import FORECASTS, OFFICIAL, MemorySource
from streams.service.processor import DUE, Effects, RatingProcessor, Tick
from tests.unit.test_sellers import PARTITIONS, apply, as_tables, batches, tables

INTERVAL = 1.0
STEP = 0.125
"""Seconds of the fake clock a batch takes: eight batches to an interval (exact in binary)."""


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def changes_of(out: dict[int, Effects]) -> list:
    return sorted((s, c["from"], c["to"], c["as_of"]) for e in out.values() for s, c in e.changes)


def turns_of(out: dict[int, Effects], last: dict[str, str]) -> list:
    """The warnings' turns: a seller warned, or cleared (what a seller is alerted by); `last`
    keeps each seller's last kind."""
    turns = []
    for seller, record in sorted((s, r) for e in out.values() for s, r in e.warnings):
        if last.get(seller) != record["kind"]:
            turns.append((seller, record["kind"], record["stars"], record["projected_stars"], record["as_of"]))
        last[seller] = record["kind"]
    return turns


def drain(processor: RatingProcessor, clock: Clock, source: MemorySource | None = None) -> int:
    """Empty batches, as the worker's timer runs them, until no forecast is held back; returns
    the forecasts they sent."""
    sent = 0
    clock.now += INTERVAL
    while processor.forecasts_due():
        for partition, effects in processor.handle_batch([]).items():
            sent += len(effects.forecasts)
            if source is not None:
                apply(source, partition, effects)
        if source is not None:
            processor.settled(processor.batch)
    assert processor.holding() == 0
    return sent


@pytest.mark.parametrize("seed", [5, 13])
def test_held_forecasts_end_where_every_batch_does_and_star_changes_are_never_late(seed):
    book = load("global-2023")
    every = RatingProcessor(book, PARTITIONS)
    clock = Clock()
    held = RatingProcessor(book, PARTITIONS, monotonic=clock, forecast_interval=INTERVAL)
    sent = {"every": 0, "held": 0}
    most_holding = 0
    kinds: tuple[dict[str, str], dict[str, str]] = ({}, {})
    for chunk in batches(2500, 30, seed):
        expected, got = every.handle_batch(chunk), held.handle_batch(chunk)
        clock.now += STEP
        # The same star changes in the same batch, and the same warnings raised and cleared.
        assert changes_of(got) == changes_of(expected)
        assert turns_of(got, kinds[0]) == turns_of(expected, kinds[1])
        sent["every"] += sum(len(e.forecasts) for e in expected.values())
        sent["held"] += sum(len(e.forecasts) for e in got.values())
        most_holding = max(most_holding, held.holding())
    sent["held"] += drain(held, clock)
    assert as_tables(held) == as_tables(every)  # the latest forecast of every seller went out
    assert most_holding > 0 and sent["held"] < sent["every"]


def test_a_forecast_waits_at_most_the_interval_and_goes_out_without_new_events():
    book = load("global-2023")
    clock = Clock()
    held = RatingProcessor(book, PARTITIONS, monotonic=clock, forecast_interval=INTERVAL)
    waited: list[float] = []
    for chunk in batches(2500, 30, 5):
        for effects in held.handle_batch(chunk).values():
            waited.extend(effects.held_seconds)
        clock.now += STEP
        for effects in held.handle_batch([]).values():  # the timer's batch, between messages
            waited.extend(effects.held_seconds)
    assert waited and max(waited) <= INTERVAL + 1e-9
    # Each seller held had its projection computed at most once an interval since.
    assert all(clock.now - since <= INTERVAL + STEP + 1e-9 for due, since in held._holding.values())  # noqa: SLF001


def test_a_restore_sends_what_a_crash_left_held_back():
    """With a store, a seller held back is "due at once" in the due index until its forecast
    is sent: a worker that takes the partition over after a crash sends it."""
    book = load("global-2023")
    every = RatingProcessor(book, PARTITIONS)
    source = MemorySource()
    clock = Clock()
    stored = RatingProcessor(book, PARTITIONS, source=source, cache_bytes=1 << 30, monotonic=clock,
                             forecast_interval=INTERVAL)
    chunks = batches(2500, 30, 7)
    for chunk in chunks[:-1]:  # the last holds the tick past the month's freeze
        every.handle_batch(chunk)
        for partition, effects in stored.handle_batch(chunk).items():
            apply(source, partition, effects)
        stored.settled(stored.batch)
        clock.now += STEP
    assert stored.holding() > 0
    index = {k[len(DUE):].decode(): int(v) for p in source.tables["state"] for k, v in
             source.tables["state"][p].items() if k.startswith(DUE)}
    assert all(index[seller] == 0 for seller in stored._holding)  # noqa: SLF001
    # The crash: forecasts held back are lost with the process; a new one restores the store.
    taker = RatingProcessor(book, PARTITIONS, source=source, cache_bytes=1 << 30, monotonic=clock,
                            forecast_interval=INTERVAL)
    taker.restore_from_store()
    clocks = {p: e.clock for p, e in stored.engines.items() if e.clock is not None}
    for partition, effects in taker.handle_batch([Tick(p, c) for p, c in clocks.items()]).items():
        apply(source, partition, effects)
    taker.settled(taker.batch)
    while taker.sweeping() or taker.forecasts_due():
        clock.now += INTERVAL
        for partition, effects in taker.handle_batch([]).items():
            apply(source, partition, effects)
        taker.settled(taker.batch)
    assert tables(source)[FORECASTS] == as_tables(every)[FORECASTS]
    index = {k[len(DUE):].decode(): int(v) for p in source.tables["state"] for k, v in
             source.tables["state"][p].items() if k.startswith(DUE)}
    assert 0 not in index.values()  # every "at once" entry is back to the seller's next change


def test_a_store_backed_processor_that_holds_ends_where_memory_does():
    book = load("global-2023")
    every = RatingProcessor(book, PARTITIONS)
    source = MemorySource()
    clock = Clock()
    stored = RatingProcessor(book, PARTITIONS, source=source, cache_bytes=1, sweep_chunk=3, monotonic=clock,
                             forecast_interval=INTERVAL)
    for chunk in batches(2500, 30, 11):
        every.handle_batch(chunk)
        for batch in (chunk, []):
            for partition, effects in stored.handle_batch(batch).items():
                apply(source, partition, effects)
            stored.settled(stored.batch)
            clock.now += STEP / 2
    while stored.sweeping() or stored.forecasts_due() or stored.holding():
        clock.now += INTERVAL
        for partition, effects in stored.handle_batch([]).items():
            apply(source, partition, effects)
        stored.settled(stored.batch)
    assert tables(source) == as_tables(every) and as_tables(every)[OFFICIAL]


def test_forecasts_falling_due_together_are_sent_a_time_budget_at_a_time():
    """Many held forecasts due at once are each a projection: a batch sends them only while its
    `sweep_seconds` last, the next batches the rest (a clock that moves a second a call)."""
    book = load("global-2023")
    clock = Clock()
    held = RatingProcessor(book, PARTITIONS, monotonic=clock, forecast_interval=INTERVAL, sweep_seconds=2.5)
    for chunk in batches(2500, 30, 5)[:40]:
        held.handle_batch(chunk)
        clock.now += STEP / 4
    waiting = held.holding()
    assert waiting > 3
    clock.now += INTERVAL
    ticking = clock.now

    class Ticking(Clock):
        def __call__(self) -> float:
            self.now += 1.0
            return self.now

    held._monotonic = ticking_clock = Ticking()  # noqa: SLF001 - the budget's clock
    ticking_clock.now = ticking
    sent = [sum(len(e.forecasts) for e in held.handle_batch([]).values())]
    assert 0 < held.holding() < waiting  # some went, not all
    while held.holding():
        sent.append(sum(len(e.forecasts) for e in held.handle_batch([]).values()))
    assert len(sent) > 1
