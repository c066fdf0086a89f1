"""The one place the overrides are composed: a Transport subclass per set of options."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from faust.transport.drivers import aiokafka as driver

from streams.service.kafka.fetch_loop import OwnFetchLoop
from streams.service.kafka.flush import DrainingProducer
from streams.service.kafka.generations import GenerationGuard
from streams.service.kafka.options import KafkaOptions
from streams.service.kafka.rebalance import RewindUncommitted
from streams.service.kafka.tansu import TansuEndOffsets


@lru_cache(maxsize=None)
def consumer_class(own_fetch_loop: bool, embedded_broker: bool) -> type[driver.Consumer]:
    """The aiokafka driver's consumer with every override the options ask for. Method
    resolution runs left to right; the overrides touch disjoint methods."""
    bases: list[type] = [GenerationGuard, RewindUncommitted]
    if own_fetch_loop:
        bases.append(OwnFetchLoop)
    if embedded_broker:
        bases.append(TansuEndOffsets)
    return type("StarcastConsumer", (*bases, driver.Consumer), {"__module__": __name__})


def transport_class(options: KafkaOptions) -> Any:
    """A Transport subclass carrying `options` (read by the consumer's overrides)."""
    return type("StarcastTransport", (driver.Transport,), {
        "__module__": __name__,
        "Consumer": consumer_class(options.own_fetch_loop, options.embedded_broker),
        "Producer": DrainingProducer,
        "options": options,
    })
