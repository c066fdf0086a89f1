"""`starcast run --simulate`, as the README runs it: broker, worker, simulator, live progress,
and a clean stop that leaves no process behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

from streams.local.broker import free_port


def children_alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
            alive.append(pid)
        except ProcessLookupError:
            pass
    return alive


def descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
    tree: dict[int, list[int]] = {}
    for line in out.splitlines():
        child, parent = map(int, line.split())
        tree.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def test_run_simulate_shows_live_forecasts_and_stops_cleanly_on_ctrl_c(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "STARCAST_BROKER"}
    env["STARCAST_WEB_PORT"] = str(free_port())
    run = subprocess.Popen([sys.executable, "-m", "streams.cli", "run", "--simulate", "--events", "3000",
                            "--sellers", "30", "--rate", "3000"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, cwd=tmp_path)
    started = time.monotonic()
    output = b""
    seen_forecasts = False
    os.set_blocking(run.stdout.fileno(), False)
    pids: list[int] = []
    while time.monotonic() - started < 90 and not seen_forecasts:
        time.sleep(0.5)
        output += run.stdout.read() or b""
        pids = sorted(set(pids) | set(descendants(run.pid)))
        counts = re.findall(rb"forecasts ([0-9,]+)", output)
        seen_forecasts = bool(counts) and int(counts[-1].replace(b",", b"")) > 0
    assert seen_forecasts, output.decode(errors="replace")[-2000:]
    text = output.decode()
    assert "embedded broker" in text and "/sellers/<seller_id>" in text and "/metrics" in text
    assert len(pids) >= 2  # the broker and the worker
    run.send_signal(signal.SIGINT)  # Ctrl-C
    run.wait(60)  # the runner gives the worker 15 s to stop, then kills it, then stops the broker
    output += run.stdout.read() or b""
    assert run.returncode == 0
    assert b"starcast: stopped" in output
    time.sleep(0.5)
    assert children_alive(pids) == []
