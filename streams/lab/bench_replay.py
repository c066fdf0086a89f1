"""`starcast bench --replay`: replay's speed and memory against the state it keeps.

For each size, a file of simulated events (the benchmarks' workload, 2,000 sellers, 30 days)
is written to a temporary directory, then, each in its own process:
- `starcast replay FILE --at T --jobs 1` (T: the latest ts, so one pass), timed, with its peak
  RSS, and the same with `--jobs N` (N: the machine's cores; its peak RSS is the largest of its
  processes'), whose output must be byte-identical;
- the worker's state for the same input: the events applied in order with the clock following
  them, as a worker would, and the latest value of every state entity serialized as the worker
  writes it to its changelog (key + value bytes).
Printed: events/s, peak RSS, the state's bytes and the ratio of the two. Nothing is asserted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson

from streams.lab.workload import events as simulate

SELLERS = 2_000


def write_events(path: Path, count: int, seed: int) -> str:
    """Write `count` simulated events; return the latest ts."""
    latest = ""
    with path.open("wb") as out:
        for e in simulate(count, SELLERS, seed=seed):
            latest = max(latest, e["ts"])
            out.write(orjson.dumps(e) + b"\n")
    return latest


def measured(argv: list[str]) -> tuple[float, float, bytes, str]:
    """Wall seconds, peak RSS (MB; of the largest process, the command's or one it started),
    the end of stdout and a digest of all of it, of a command run by a fresh measuring process."""
    probe = ("import hashlib, resource, subprocess, sys, time\n"
             "t = time.monotonic()\n"
             "out = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, check=True).stdout\n"
             "sys.stderr.write(f'{time.monotonic() - t} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss} '\n"
             "                 f'{hashlib.sha256(out).hexdigest()}\\n')\n"
             "sys.stdout.buffer.write(out[-4096:])\n")
    done = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, check=True)
    seconds, rss_kb, digest = done.stderr.decode().strip().splitlines()[-1].split()
    return float(seconds), int(rss_kb) / 1024, done.stdout, digest


def state_bytes(path: str) -> dict:
    """The worker's state for the file's events (run in its own process by the bench)."""
    from streams.core.contract import Rejected
    from streams.core.engine import Engine
    from streams.core.keys import state_key
    from streams.core.rulebook import load

    engine = Engine(load(), keep_for_freeze=True)
    with open(path, "rb") as fh:
        for line in fh:
            try:
                event = engine.ingest(line.rstrip(b"\n"), engine.clock)
                engine.advance(event.ts)
            except Rejected:
                continue
    total = entities = 0
    for state in engine.states.values():
        for (kind, key), data in state.take_dirty():
            if data is not None:
                total += len(state_key(state.seller_id, kind, key)) + len(data)
                entities += 1
    return {"bytes": total, "entities": entities, "sellers": len(engine.states)}


def run_replay_bench(sizes: list[int], seed: int, as_json: bool) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="starcast-bench-replay-"))
    cores = os.cpu_count() or 1
    rows = []
    for count in sizes:
        path = workdir / f"events-{count}.jsonl"
        latest = write_events(path, count, seed)
        _, _, out, _ = measured([sys.executable, "-m", "streams.lab.bench_replay", "state", str(path)])
        state = orjson.loads(out.splitlines()[-1])
        digests = set()
        for jobs in sorted({1, cores}):
            seconds, rss_mb, _, digest = measured([sys.executable, "-m", "streams.cli", "replay", str(path),
                                                   "--at", latest, "--jobs", str(jobs)])
            digests.add(digest)
            rows.append({"events": count, "jobs": jobs, "seconds": round(seconds, 2),
                         "events_per_s": round(count / seconds), "peak_rss_mb": round(rss_mb, 1),
                         "file_mb": round(path.stat().st_size / 2**20, 1), "state_mb": round(state["bytes"] / 2**20, 1),
                         "state_entities": state["entities"],
                         "rss_to_state": round(rss_mb / max(state["bytes"] / 2**20, 0.1), 1)})
        for row in rows[-len({1, cores}):]:
            row["same_output"] = len(digests) == 1
        path.unlink()
    if as_json:
        print(orjson.dumps({"sellers": SELLERS, "rows": rows}, option=orjson.OPT_INDENT_2).decode())
        return 0
    print(f"starcast replay bench: the workload's events over 30 days, {SELLERS:,} sellers, "
          "`replay FILE --at T --jobs N` (peak RSS: the largest process)")
    print(f"  {'events':>12} {'file':>9} {'jobs':>4} {'time':>8} {'events/s':>10} {'peak RSS':>10} {'state':>9} "
          f"{'RSS/state':>9} {'output':>9}")
    for r in rows:
        print(f"  {r['events']:>12,} {r['file_mb']:>7.1f}MB {r['jobs']:>4} {r['seconds']:>7.1f}s "
              f"{r['events_per_s']:>10,} {r['peak_rss_mb']:>8.1f}MB {r['state_mb']:>7.1f}MB {r['rss_to_state']:>8.1f}x "
              f"{'same' if r['same_output'] else 'DIFFERS':>9}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["state"]:
        print(orjson.dumps(state_bytes(sys.argv[2])).decode())
        sys.exit(0)
    sys.exit(2)
