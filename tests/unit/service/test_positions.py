"""Input positions and holes (streams/service/positions.py)."""

from __future__ import annotations

from aiokafka.structs import TopicPartition as TP

from streams.service.positions import InputPositions

VISITS = TP("store-visits", 2)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_in_sequence_messages_move_the_handled_offset_and_leave_no_hole():
    positions = InputPositions(lambda tp: 10)
    assert all(positions.handled(VISITS, offset) for offset in (10, 11, 12))
    assert positions.handled_upto(VISITS, committed=3) == 13
    assert positions.gapped(2) == set()


def test_a_skip_keeps_the_partition_gapped_until_the_missing_offset_comes_back():
    clock = Clock()
    positions = InputPositions(lambda tp: 10, reread_after=5.0, clock=clock)
    assert positions.handled(VISITS, 14)  # 10..13 skipped
    assert positions.handled_upto(VISITS, committed=10) == 10  # not past the hole
    assert positions.gapped(2) == {"store-visits"} and positions.gapped(1) == set()
    assert positions.due_rereads() == []  # Faust's own seek gets the first chance
    clock.now += 5.0
    assert positions.due_rereads() == [(VISITS, 10)]
    assert positions.due_rereads() == []  # returned once
    # The re-read: the first missing record counts as new; the rest of the re-read lies below
    # the furthest offset read, so latency never counts a record twice (it may leave out
    # the hole's other records: an undercount, never a double count).
    assert [positions.handled(VISITS, offset) for offset in (10, 11, 12, 13, 14)] == [True] + [False] * 4
    assert positions.handled(VISITS, 15)
    assert positions.gapped(2) == set() and positions.handled_upto(VISITS, None) == 16


def test_a_hole_filled_by_faust_is_not_read_again():
    clock = Clock()
    positions = InputPositions(lambda tp: 0, clock=clock)
    positions.handled(VISITS, 3)
    for offset in range(0, 4):
        positions.handled(VISITS, offset)
    clock.now += 60
    assert positions.due_rereads() == []


def test_without_a_first_offset_the_committed_one_bounds_what_is_handled():
    positions = InputPositions(lambda tp: None)
    assert positions.handled_upto(VISITS, committed=42) == 42
    assert positions.handled(VISITS, 50) and positions.gapped(2) == set()  # nothing known to compare with
    positions.clear()
    assert positions.handled_upto(VISITS, committed=42) == 42
