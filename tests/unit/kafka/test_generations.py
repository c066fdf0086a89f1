"""Acks and commits count only within their consumer generation (streams/service/kafka/generations.py)."""

from __future__ import annotations

import asyncio

import faust
from aiokafka.structs import TopicPartition as TP
from faust.types.tuples import ConsumerMessage

from streams.service.kafka import App



def generation_app(name: str, app_class: type[faust.App] = App):
    """An app (starcast's, or `app_class`), its consumer (never started) acking topic "visits"."""
    app = app_class(name, broker="kafka://127.0.0.1:1")
    app.topics._acking_topics.add("visits")
    app.consumer_generation_id = 2
    return app, app.consumer


def visit(offset: int, generation: int):
    return ConsumerMessage("visits", 0, offset, 0.0, 0, [], b"k", b"v", None, generation_id=generation)


def test_acks_of_messages_fetched_before_the_last_rebalance_are_ignored():
    app, consumer = generation_app("generation-acks")
    tp = TP("visits", 0)
    # Mid-rebalance: the revoke forgot the committed offset, and an old batch finishes late.
    assert consumer.ack(visit(140, generation=1)) is False
    consumer._committed_offset[tp] = 293  # the assignment reads it from the broker
    assert consumer.ack(visit(293, generation=2)) is True
    assert consumer._acked[tp] == [293]


def test_a_commit_whose_generation_ended_during_its_flush_is_dropped():
    app, consumer = generation_app("generation-commit")
    tp = TP("visits", 0)
    sent: list = []

    async def commit(offsets):
        sent.append(dict(offsets))
        return True

    async def rebalance_during_flush():
        app.consumer_generation_id += 1  # revoked and assigned again meanwhile...
        consumer._committed_offset[tp] = 293  # ...and the committed offset read from the broker

    async def flush_only():
        pass

    consumer._commit, consumer.assignment = commit, lambda: {tp}
    app.producer.flush = rebalance_during_flush
    assert asyncio.run(consumer._commit_offsets({tp: 141})) is False
    assert sent == [] and consumer._committed_offset[tp] == 293  # not sent, not recorded

    app.producer.flush = flush_only  # the same generation throughout: committed as Faust does
    assert asyncio.run(consumer._commit_offsets({tp: 300})) is True
    assert sent == [{tp: 300}] and consumer._committed_offset[tp] == 300


def test_fausts_own_consumer_counts_a_stale_generations_ack_which_is_why_this_exists():
    app, consumer = generation_app("generation-acks-faust", faust.App)
    # Mid-rebalance, the committed offset forgotten: an old batch's ack is recorded, and the
    # next commit could take the committed offset back to 141.
    assert consumer.ack(visit(140, generation=1)) is True
    assert consumer._acked[TP("visits", 0)] == [140]
