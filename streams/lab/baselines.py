"""Reference Faust workers that `starcast bench` runs beside the real one, on the same input.

- `floor`: an agent that only decodes each event (orjson) — Faust's own per-event ceiling.
- `naive`: the obvious rater — per event, read the seller's record from a table, update it,
  write it back and send it to an output topic.

Each runs as its own process and consumer group and prints one JSON line when it has handled
the expected number of events: `{"events": n, "first": t0, "last": t1}` (wall-clock seconds of
the first and last event it handled), which the bench turns into events/s.

    python -m streams.lab.baselines floor|naive BROKER_URL TOPIC_PREFIX EVENTS PARTITIONS
"""

from __future__ import annotations

import sys
import time

import faust
import orjson
from faust.worker import Worker

from streams.core.contract import TOPICS
from streams.lab.peers import tally


def create_baseline_app(kind: str, broker: str, prefix: str, expected: int, partitions: int) -> faust.App:
    app = faust.App(f"{prefix}baseline-{kind}", broker=broker, store="memory://", topic_partitions=partitions,
                    web_enabled=False, broker_rebalance_timeout=4.0, broker_session_timeout=10.0,
                    broker_heartbeat_interval=1.0, producer_linger_ms=5, topic_allow_declare=True,
                    consumer_auto_offset_reset="earliest")
    inputs = app.topic(*sorted({prefix + name for name in TOPICS.values()}), key_type=bytes, value_type=bytes,
                       key_serializer="raw", value_serializer="raw", partitions=partitions)
    seen = {"n": 0, "first": 0.0}

    def count() -> None:
        seen["n"] += 1
        if seen["n"] == 1:
            seen["first"] = time.time()
        if seen["n"] == expected:
            print(orjson.dumps({"events": expected, "first": seen["first"], "last": time.time()}).decode(),
                  flush=True)

    if kind == "floor":

        @app.agent(inputs)
        async def floor(stream):
            async for value in stream:
                orjson.loads(value)
                count()

    elif kind == "naive":
        table = app.Table("naive-ratings", key_type=bytes, value_type=bytes, partitions=partitions)
        out = app.topic(f"{prefix}naive-forecasts", key_type=bytes, value_type=bytes, key_serializer="raw",
                        value_serializer="raw", partitions=partitions)

        @app.agent(inputs)
        async def naive(stream):
            async for event in stream.events():
                e = orjson.loads(event.value)
                key = e["seller_id"].encode()
                data = orjson.dumps(tally(orjson.loads(table.get(key) or b"{}"), e))
                table[key] = data
                await out.send(key=key, value=data)
                count()

    else:
        raise SystemExit(f"unknown baseline {kind!r}")
    return app


def main(argv: list[str]) -> int:
    kind, broker, prefix, expected, partitions = argv[0], argv[1], argv[2], int(argv[3]), int(argv[4])
    worker = Worker(create_baseline_app(kind, broker, prefix, expected, partitions), loglevel="warning", quiet=True,
                    redirect_stdouts=False)  # the result line goes to stdout, not the log
    worker.spinner = None
    worker.execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
