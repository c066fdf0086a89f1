"""Hostile input into every input topic of a real worker on a real broker: every message is
dead-lettered with its reason and bytes, the worker never crashes or restarts, and ratings
equal replay over the valid events alone.

The crash form (kill -9 at random points) is `starcast soak`; it does not pass reliably yet
(stalled partitions after restarts, see README "Reliability status"), so it is not in CI."""

from __future__ import annotations

import collections
import random
import urllib.request

import orjson
import pytest

from streams.core.contract import TOPICS
from streams.local.broker import EmbeddedBroker
from streams.testing import (WorkerProcess, expected, final_instant, produced_counts, read_topic, send,
                             tick_messages, wait_consumed)
from streams.lab.workload import events as simulate
from tests.support.hostile import hostile_stream


@pytest.fixture
def broker():
    b = EmbeddedBroker().start()
    yield b
    b.stop()


def test_hostile_input_in_every_topic_is_dead_lettered_and_changes_nothing(broker, tmp_path):
    prefix = "fuzz-"
    worker = WorkerProcess(broker.url, prefix, tmp_path, "w0").start()
    try:
        worker.wait_ready()
        valid = list(simulate(2_000, 30, seed=9))
        hostile = hostile_stream(valid, 400, seed=9)
        rnd = random.Random(9)
        topics = sorted(set(TOPICS.values()))
        messages = [(prefix + TOPICS[e["type"]], e["seller_id"].encode(), orjson.dumps(e), None) for e in valid]
        for raw, _reason, seller in hostile:
            messages.insert(rnd.randrange(len(messages) + 1), (prefix + rnd.choice(topics), seller.encode(), raw, None))
        send(broker.bootstrap, messages)
        wait_consumed(broker.bootstrap, f"{prefix}starcast", produced_counts(messages, worker.partitions), 180)
        send(broker.bootstrap, tick_messages(prefix, final_instant(valid), worker.partitions))
        want = expected(valid, final_instant(valid))

        dead = read_topic(broker.bootstrap, prefix + "starcast-dead-letters")
        got = collections.Counter(dict(m.headers)["starcast-reason"].decode() for m in dead)
        assert got == collections.Counter(reason for _, reason, _ in hostile)
        assert sorted(m.value or b"" for m in dead) == sorted(raw or b"" for raw, _, _ in hostile)
        assert sum(m.value is None for m in dead) == sum(raw is None for raw, _, _ in hostile) > 0

        import time

        deadline = time.monotonic() + 60
        while True:
            latest = {}
            for m in sorted(read_topic(broker.bootstrap, prefix + "star-forecasts", idle=1.0),
                            key=lambda m: (m.partition, m.offset)):
                latest[m.key.decode()] = {k: v for k, v in orjson.loads(m.value).items() if k != "as_of"}
            if latest == want or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert latest == want
        assert worker.process.poll() is None  # never crashed ...
        assert worker.recoveries() == 1  # ... nor restarted or rejoined
        assert "Crashed" not in worker.log.read_text()
        assert worker.metrics()["starcast_dead_letters_total"] == len(hostile)
        # Privacy: no buyer or visitor id reaches the worker's log or its metrics.
        people = {e[k] for e in valid for k in ("buyer_id", "visitor_id") if k in e}
        exposed = worker.log.read_text(errors="replace") + urllib.request.urlopen(worker.base + "/metrics").read().decode()
        assert people and not [p for p in people if p in exposed]
    finally:
        worker.stop()
