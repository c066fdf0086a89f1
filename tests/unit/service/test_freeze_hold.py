"""Which input topics hold a due freeze (streams/service/freeze_hold.py)."""

from __future__ import annotations

from aiokafka.structs import TopicPartition as TP

from streams.service.freeze_hold import FreezeHold


def hold_with(handled: dict) -> FreezeHold:
    return FreezeHold(["buyer-messages", "store-visits"], lambda name, p: TP("x-" + name, p),
                      lambda tp: handled.get(tp, 0))


def test_unknown_end_offsets_count_as_lagging():
    assert hold_with({}).lagging(0) == ["buyer-messages", "store-visits"]


def test_a_topic_holds_the_freeze_until_its_handled_offset_reaches_the_end():
    handled = {TP("x-buyer-messages", 0): 7, TP("x-store-visits", 0): 3}
    hold = hold_with(handled)
    hold.end_offsets.update({TP("x-buyer-messages", 0): 7, TP("x-store-visits", 0): 5})
    assert hold.hold(0) == ["store-visits"]
    assert hold.released({0: 1000}) == []  # still lagging
    handled[TP("x-store-visits", 0)] = 5
    assert hold.released({0: 1000}) == [(0, 1000)]  # lag ended without a message: tick it
    assert hold.released({0: 1000}) == []  # once
    assert hold.positions(0) == "buyer-messages 7/7, store-visits 5/5"


def test_a_partition_without_a_clock_is_not_released():
    hold = hold_with({})
    hold.held_by[1] = ["store-visits"]
    hold.end_offsets.update({TP("x-buyer-messages", 1): 0, TP("x-store-visits", 1): 0})
    assert hold.released({}) == []
