"""Guarantee: acks and commits count only within the consumer generation they began in.

Upstream (faust-streaming 0.15.3, `Consumer.ack` and `Consumer._commit_offsets`): a rebalance
forgets a partition's acked offsets and committed offset, then sets the committed offset again
from the broker. Two things from before it can still land afterwards: acks of messages the
agent was handling when it began (a batch finishes after the rebalance), and a commit whose
offsets were computed before it and whose `producer.flush()` outlasted it. Faust records (and
sends) the old offset.

Failure it caused: the committed offset went back (293 -> 134) while the acked offsets were
beyond it, and the partition never committed again ("commit stuck behind the end" in the
1 -> 2 -> 1 scaling test).

Kept here: an ack of a message fetched in an earlier generation is a no-op (the message is
read again if its offset was not committed), and a commit whose generation ended before it
reached the broker is dropped. The commit flushes the producer first, as Faust does; that the
flush really empties it is `flush.py`'s guarantee. No upstream issue is known.
"""

from __future__ import annotations

from typing import Any, Mapping

from faust.transport.drivers.aiokafka import Consumer
from faust.types import TP


class GenerationGuard(Consumer):
    """Consumer mixin."""

    def ack(self, message: Any) -> bool:
        generation = getattr(message, "generation_id", None)
        if generation is not None and generation != self.app.consumer_generation_id:
            return False  # fetched before the last rebalance: not this generation's to commit
        return super().ack(message)

    async def _commit_offsets(self, offsets: Mapping[TP, int], start_new_transaction: bool = True) -> bool:
        if self.in_transaction:
            return await super()._commit_offsets(offsets, start_new_transaction)
        app = self.app
        generation = app.consumer_generation_id
        assignment = self.assignment()
        committable = {tp: offset for tp, offset in offsets.items() if tp in assignment}
        if not committable:
            return False
        await app.producer.flush()  # the table writes before the offsets
        if app.consumer_generation_id != generation or app.rebalancing:
            self.log.info("starcast: commit computed before a rebalance dropped: %r", committable)
            return False
        did_commit = await self._commit(committable)
        if app.consumer_generation_id != generation:
            return False  # the new generation's committed offsets were set from the broker
        if did_commit:
            app.tables.on_commit(committable)
        self._committed_offset.update(committable)  # as Faust: a refused commit is retried higher
        app.monitor.on_tp_commit(committable)
        return did_commit
