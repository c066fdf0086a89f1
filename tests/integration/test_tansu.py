"""tansu's short ListOffsets answer and the fetch-based end offsets the worker uses instead
(streams/service/kafka/tansu.py), on a real tansu broker."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from streams.local.broker import EmbeddedBroker
from streams.service.kafka.tansu import fetched_end_offsets


async def end_offsets(bootstrap: str) -> tuple[dict, dict]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=50)
    await producer.start()
    try:
        for i in range(5):  # five single-record batches...
            await (await producer.send("offsets", value=b"%d" % i, partition=0))
        futures = [await producer.send("offsets", value=b"%d" % i, partition=0) for i in range(5, 10)]
        await asyncio.gather(*futures)  # ...then one batch of five: offsets 0-9
        await producer.send_and_wait("empty", value=b"x", partition=1)
    finally:
        await producer.stop()
    tps = [TopicPartition("offsets", 0), TopicPartition("empty", 0)]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        listed = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return listed, await fetched_end_offsets(bootstrap, listed)


def test_fetch_high_watermarks_give_the_end_listoffsets_gets_wrong():
    broker = EmbeddedBroker().start()
    try:
        listed, true = asyncio.run(end_offsets(broker.bootstrap))
    finally:
        broker.stop()
    offsets, empty = TopicPartition("offsets", 0), TopicPartition("empty", 0)
    assert listed[offsets] < 10  # tansu's answer: the last batch's base offset + 1
    assert true == {offsets: 10, empty: 0}
