"""The peer engines `starcast bench` runs beside the worker, on the same input and broker.

Quix Streams (`pip install 'starcast[peers]'`; benchmark-only, never a runtime dependency),
written the way its documentation teaches: one `Application`, one `StreamingDataFrame` per
input topic concatenated into one, a stateful `apply` (RocksDB state, changelogged), and
`to_topic`:
- `quix-naive`: the bench's naive rater (per event: the seller's record from state, one count
  more, written back and sent);
- `quix-core`: the real starcast rating core in the same app (per event: validate and apply it
  to the seller's state, rate it with its projection, write the changed entities to Quix's
  state and send the rating). Quix calls a stateful function once per message, so this rates
  on every event; the worker rates once per seller per batch.

Bytewax (the same extra): `bytewax-naive`, the naive rater as a dataflow with `stateful_map`.

Each prints a JSON line, `{"events": n, "first": t0, "last": t1}`, every 10,000 events and when
it has handled the expected number, as `streams.lab.baselines` does once.

    python -m streams.lab.peers quix-naive|quix-core|bytewax-naive BOOTSTRAP TOPICS EVENTS STATE_DIR

TOPICS: the input topics, comma-separated; the bench passes those its input was produced to
(Quix Streams names a concatenation's changelog after every topic in it, within 255 characters).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import orjson


FETCH_WAIT = {"fetch.wait.max.ms": "20"}
"""The fetch wait the worker uses on the embedded broker (docs/decisions.md): tansu answers a
fetch that finds nothing only when its wait is up, and librdkafka's default wait is 500 ms."""

POLL_TIMEOUT = 0.05
"""Quix Streams' `consumer_poll_timeout` (default 1 s). Across concatenated topics its consumer
asks librdkafka for up to 10,000 messages at a time and waits the whole timeout for them; at the
default it waited 88 % of the time and handled 3,067 events/s, at 0.05 s 13,479 (30,000 events)."""

PEERS = ("quix-naive", "quix-core", "bytewax-naive")


def available(kind: str) -> str | None:
    """None when this peer can run here, else why not."""
    module = "bytewax" if kind.startswith("bytewax") else "quixstreams"
    try:
        __import__(module)
    except ImportError:
        return f"{module} is not installed (pip install 'starcast[peers]')"
    return None


class Counter:
    """The first and last wall-clock instants of the events handled: a line every `PROGRESS`
    events (a bench that stops a slow peer early rates what it handled) and at `expected`."""

    PROGRESS = 10_000

    def __init__(self, expected: int):
        self.expected, self.n, self.first = expected, 0, 0.0

    def __call__(self) -> None:
        self.n += 1
        if self.n == 1:
            self.first = time.time()
        if self.n == self.expected or self.n % self.PROGRESS == 0:
            print(orjson.dumps({"events": self.n, "first": self.first, "last": time.time()}).decode(), flush=True)


def tally(record: dict | None, event: dict) -> dict:
    """The naive rater's whole work: the seller's record, one count more for the event's type.
    Every naive contender (Faust's baseline, Quix, Bytewax) does exactly this."""
    record = record or {}
    record[event["type"]] = record.get(event["type"], 0) + 1
    return record


def naive(counter: Counter):
    def rate(event: dict, state: Any) -> dict:
        record = tally(state.get("record"), event)
        state.set("record", record)
        counter()
        return record

    return rate, "json"


def core(counter: Counter):
    from streams.core.contract import Rejected
    from streams.core.engine import Engine, tune_gc
    from streams.core.rulebook import load

    tune_gc()
    engine = Engine(load())  # the seller states in memory, as the worker keeps them; Quix's
    clock = [0]  # state holds their entities, as the worker's table does

    def rate(raw: bytes, state: Any) -> dict | None:
        try:
            event = engine.ingest(raw)
        except Rejected:
            counter()
            return None
        clock[0] = max(clock[0], event.ts)
        engine.advance(clock[0])
        rating = engine.rating_with_projection(event.seller_id, clock[0])
        for (kind, key), data in engine.states[event.seller_id].take_dirty():
            if data is None:
                state.delete(f"{kind}/{key}")
            else:
                state.set(f"{kind}/{key}", data)
        counter()
        return rating

    return rate, "bytes"


def _as_bytes(value: Any) -> bytes:
    """Quix's state `dumps` for the core: its keys as orjson, its values (bytes) as they are."""
    return value if isinstance(value, bytes) else orjson.dumps(value)


def run(kind: str, bootstrap: str, topics: list[str], expected: int, state_dir: str) -> None:
    from quixstreams import Application

    counter = Counter(expected)
    rate, decode = (naive if kind == "quix-naive" else core)(counter)
    options: dict[str, Any] = {}
    if kind == "quix-core":  # the core's entities are orjson bytes already: stored as they are
        from quixstreams.state.rocksdb import RocksDBOptions

        options["rocksdb_options"] = RocksDBOptions(dumps=_as_bytes, loads=bytes)
    app = Application(broker_address=bootstrap, consumer_group=kind, auto_offset_reset="earliest",
                      state_dir=state_dir, loglevel="WARNING", consumer_extra_config=dict(FETCH_WAIT),
                      consumer_poll_timeout=POLL_TIMEOUT, **options)
    frames = [app.dataframe(app.topic(name, key_deserializer="str", value_deserializer=decode)) for name in topics]
    sdf = frames[0]
    for other in frames[1:]:
        sdf = sdf.concat(other)
    sdf = sdf.apply(rate, stateful=True).filter(lambda rating: rating is not None)
    sdf.to_topic(app.topic(f"{kind}-forecasts", value_serializer="json"))
    app.run()


def run_bytewax(bootstrap: str, topics: list[str], expected: int, state_dir: str) -> None:
    """The naive rater as Bytewax's documentation teaches it: the Kafka input operator, a key,
    `stateful_map`, the Kafka output operator; one worker (`bytewax.run`'s `cli_main`), with
    recovery configured (state snapshots to SQLite at each 10 s epoch, Bytewax's default), so
    that its state survives a crash as every other contender's does."""
    from datetime import timedelta
    from pathlib import Path

    import bytewax.operators as op
    from bytewax.connectors.kafka import KafkaSinkMessage
    from bytewax.connectors.kafka import operators as kop
    from bytewax.dataflow import Dataflow
    from bytewax.recovery import RecoveryConfig, init_db_dir
    from bytewax.run import cli_main

    counter = Counter(expected)

    def decode(message: Any) -> tuple[str, dict]:
        return message.key.decode(), orjson.loads(message.value)

    def rate(record: dict | None, event: dict) -> tuple[dict, dict]:
        record = tally(record, event)
        counter()
        return record, record

    flow = Dataflow("bytewax-naive")
    messages = kop.input("in", flow, brokers=[bootstrap], topics=topics, tail=True, add_config=dict(FETCH_WAIT))
    ratings = op.stateful_map("rate", op.map("decode", messages.oks, decode), rate)
    out = op.map("encode", ratings, lambda kv: KafkaSinkMessage(kv[0].encode(), orjson.dumps(kv[1])))
    kop.output("out", out, brokers=[bootstrap], topic="bytewax-naive-forecasts")
    recovery = Path(state_dir)
    recovery.mkdir(parents=True, exist_ok=True)
    init_db_dir(recovery, 1)
    cli_main(flow, workers_per_process=1, epoch_interval=timedelta(seconds=10),
             recovery_config=RecoveryConfig(str(recovery)))


def main(argv: list[str]) -> int:
    kind, bootstrap, topics, expected, state_dir = argv[0], argv[1], argv[2].split(","), int(argv[3]), argv[4]
    if kind not in PEERS:
        raise SystemExit(f"unknown peer {kind!r}; one of {', '.join(PEERS)}")
    if kind == "bytewax-naive":
        run_bytewax(bootstrap, topics, expected, state_dir)
    else:
        run(kind, bootstrap, topics, expected, state_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
