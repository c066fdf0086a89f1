"""The restore bench's reading of a worker's log: each step's seconds from the worker's start."""

from datetime import datetime

from streams.lab.bench_restore import steps

LOG = """[2026-11-27 00:46:00,646] [15051] [INFO] Setting newly assigned partitions
[2026-11-27 00:46:01,203] [15051] [INFO] [^---BulkRecovery]: Highwater for active changelog partitions:
[2026-11-27 00:46:05,864] [15051] [INFO] starcast: restored 440214 changelog records in bulk in 4.6 s
[2026-11-27 00:46:08,475] [15051] [INFO] starcast: rebuilt 9981 sellers from the state table
"""


def test_steps_are_seconds_from_the_start_to_each_logged_step():
    started = datetime(2026, 11, 27, 0, 45, 53, 800000).timestamp()
    out = steps(LOG, started, started + 20.5)
    assert out == {"assigned": 6.8, "read": 12.1, "rebuilt": 14.7, "ready": 20.5}


def test_a_step_not_logged_is_left_out():
    started = datetime(2026, 11, 27, 0, 45, 53).timestamp()
    assert steps(LOG.splitlines()[0], started, started + 9) == {"assigned": 7.6, "ready": 9.0}
