"""The local disk: a data directory that cannot be written is refused at start, and a disk that
fills up mid-run stops the worker (exit 74, one clear line) with nothing lost: after the disk
has room again, a restart restores its store from the changelog and every forecast and monthly
record equals replay.

The full disk is real: a 3 MB tmpfs mounted for the test. Where mounting is not allowed (not
root, or no tmpfs), that test is skipped and says so; the failing write path is also covered
with an injected error in tests/unit/kafka/test_outbox.py.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from streams.lab.soak import RoundResult, finish_and_compare
from streams.lab.workload import events as simulate
from streams.local.broker import EmbeddedBroker
from streams.testing import WorkerProcess, event_messages, send


def test_a_data_directory_that_cannot_be_written_is_refused_at_start(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    done = subprocess.run([sys.executable, "-m", "streams.cli", "worker"], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "STARCAST_DATA_DIR": str(blocker / "data"),
                               "STARCAST_BROKER": "kafka://127.0.0.1:1"})
    assert done.returncode == 2
    assert f"the data directory {blocker / 'data'} is not writable" in done.stderr


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()}); the injected-error unit test "
                    "covers the write path")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_stops_the_worker_and_a_restart_loses_nothing(tmp_path, small_disk):
    broker = EmbeddedBroker().start()
    prefix = "disk-"
    worker = WorkerProcess(broker.url, prefix, tmp_path, "w0")
    worker.data_dir = str(small_disk / "data")
    try:
        worker.start().wait_ready()
        events = list(simulate(20_000, 600, seed=4))
        messages = event_messages(prefix, events)
        send(broker.bootstrap, messages, 4_000)
        deadline = time.monotonic() + 120
        while worker.running():
            assert time.monotonic() < deadline, f"the worker did not stop on a full disk; see {worker.log}"
            time.sleep(0.5)
        assert worker.process is not None and worker.process.returncode == 74
        log = worker.log.read_text(errors="replace")
        assert "could not be written" in log and "No space left on device" in log
        assert log.count("stopping the worker (exit 74)") == 1
        subprocess.run(["mount", "-o", "remount,size=256m", str(small_disk)], check=True)
        worker.start()  # as a supervisor would, once the disk has room
        result = RoundResult(4, len(events))
        finish_and_compare(broker, prefix, events, messages, [worker], result, Path(tmp_path), print)
        assert result.stalls == 0, f"consumption stalled; see {worker.log}"
        assert (result.forecast_mismatches, result.freeze_mismatches) == (0, 0), f"see {tmp_path}/mismatches.txt"
    finally:
        worker.stop()
        broker.stop()
