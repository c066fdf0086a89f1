"""The live bench's highest sustained rate: a load handled within the slack of its end."""

from streams.lab.bench_live import SUSTAINED_SLACK, sustained


def row(offered: int, handled: float | None, seconds: int = 10) -> dict:
    return {"offered_per_s": offered, "events": offered * seconds, "handled_seconds": handled}


def test_the_highest_rate_handled_within_the_slack_of_the_loads_end_is_sustained():
    rows = [row(250, 10.2), row(500, 10 + SUSTAINED_SLACK), row(1000, 10 + SUSTAINED_SLACK + 0.1), row(2000, None)]
    assert sustained(rows) == 500


def test_no_rate_is_sustained_when_every_load_left_a_backlog():
    assert sustained([row(1000, 19.0), row(2000, None)]) is None
