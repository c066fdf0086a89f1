"""Network faults between workers and the broker, in CI form (the long form is `starcast soak
--faults`), and a worker started before its broker.

The fault round: two workers reach the embedded broker through a fault-injecting proxy while
a month streams in; one fault at a time is aimed at a worker (a cut, added latency, resets in
the middle of a fetch and of a produce, a stall with a kill -9 while it lasts, and an outage
of both workers longer than the group's session timeout; then both cut off again right after
the month-end tick). Every worker must forecast again after each fault, and at the end every
seller's forecast and monthly record must equal replay: nothing lost, no month frozen twice.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from streams.lab.soak_faults import SHORT, run_fault_round
from streams.local.broker import EmbeddedBroker, free_port
from streams.testing import WorkerProcess

KINDS = ("cut", "reset-fetch", "reset-produce", "latency", "stall+kill", "outage")


def test_network_faults_change_no_forecast_and_no_freeze(tmp_path):
    round_ = run_fault_round(seed=5, n_events=24_000, n_sellers=300, rate=200, durations=SHORT, kinds=KINDS,
                             workdir=tmp_path)
    result = round_.result
    assert [r.kind for r in round_.faults] == [*KINDS, "outage at the freeze"], "the stream ended before every fault ran"
    stuck = [r for r in round_.faults if r.measured and r.recovered is None]
    assert not stuck, f"no forecast after {stuck}; worker logs in {tmp_path}"
    assert all(code != 0 for r in round_.faults for code in r.exits), "a worker that exits on a fault exits non-zero"
    assert result.stalls == 0, f"consumption stalled; worker logs in {tmp_path}"
    assert (result.forecast_mismatches, result.freeze_mismatches) == (0, 0), f"see {tmp_path}/mismatches.txt"


def _health(worker: WorkerProcess) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(worker.base + "/healthz", timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_worker_started_before_its_broker_waits_says_so_and_starts_when_it_comes(tmp_path):
    port = free_port()
    worker = WorkerProcess(f"kafka://127.0.0.1:{port}", "late-", tmp_path, "w0").start()
    broker = None
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status = _health(worker)
                break
            except OSError:
                assert time.monotonic() < deadline and worker.running(), f"no /healthz; see {worker.log}"
                time.sleep(0.2)
        assert status == (503, {"status": "broker unreachable"})
        time.sleep(12)  # several probes (the backoff reaches 8 s)
        assert worker.running(), f"the worker exited instead of waiting; see {worker.log}"
        assert _health(worker) == (503, {"status": "broker unreachable"})
        broker = EmbeddedBroker(port=port).start()
        worker.wait_ready(timeout=60)
        status, body = _health(worker)
        assert status == 200 and body["status"] == "ok"
        log = worker.log.read_text(errors="replace")
        assert log.count("the broker is unreachable") == 1  # once for the wait, not once per attempt
        assert log.count("the broker is reachable after") == 1
    finally:
        worker.stop()
        if broker is not None:
            broker.stop()
