"""`starcast soak --faults`: network faults between one worker and the broker, under traffic,
mixed with kill -9; then every forecast and every monthly freeze compared with replay.

One round: a fresh embedded broker behind a fault-injecting proxy (faults.py), two workers, a
producer at a fixed rate, and a loop that, while the input streams in, aims one fault at a
time at a random worker: a cut of every connection, added latency, a reset in the middle of a
fetch or of a produce, a stall (connections accepted, nothing answered), or one of these with
the worker killed -9 while it lasts. The loop is also the supervisor: a worker that exits on
its own is restarted, and its exit code recorded. For each fault: how long until the worker
published a forecast again after the fault ended. At the end, as in `starcast soak`, the latest
forecast of every seller and every seller's monthly record must equal replay.
"""

from __future__ import annotations

import random
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from streams.lab.faults import FaultProxy
from streams.lab.soak import RoundResult, finish_and_compare
from streams.lab.workload import events as simulate
from streams.local.broker import EmbeddedBroker, free_port
from streams.testing import WorkerProcess, event_messages, send

KINDS = ("cut", "latency", "reset-fetch", "reset-produce", "stall", "outage")
"""The faults; each also comes with a kill -9 of the worker while it lasts (`+kill`). An outage
is a cut of every worker at once, longer than the group's session timeout."""


@dataclass(frozen=True)
class Durations:
    """How long each fault lasts, in seconds (a range: drawn per fault)."""

    cut: tuple[float, float] = (5.0, 60.0)
    latency: tuple[float, float] = (10.0, 30.0)
    stall: tuple[float, float] = (30.0, 30.0)
    outage: tuple[float, float] = (20.0, 60.0)  # the session timeout is 4 s on the embedded broker


SHORT = Durations(cut=(5.0, 12.0), latency=(5.0, 8.0), stall=(12.0, 12.0), outage=(15.0, 15.0))
"""For the CI round: every kind, at the short end."""


@dataclass
class FaultRecord:
    kind: str
    worker: str
    seconds: float  # how long the fault lasted
    recovered: float | None = None  # from the fault's end to the worker's next forecast; None: none in time
    exits: list[int] = field(default_factory=list)  # exit codes of the worker's own exits (supervisor restarts)
    measured: bool = True  # False: no recovery time is taken (the outage at the freeze: its check is the freeze)


@dataclass
class FaultRound:
    result: RoundResult
    faults: list[FaultRecord]


def run_fault_round(seed: int, n_events: int = 30_000, n_sellers: int = 600, rate: float = 400,
                    durations: Durations = Durations(), kinds: tuple[str, ...] | None = None,
                    workdir: Path | None = None, log=print) -> FaultRound:
    """Faults, one at a time, while `n_events` stream in at `rate`; then the replay comparison.
    `kinds`: the faults to inject, in this order (default: every kind, and every kind with a
    kill, shuffled), as many as the stream has time for. Then, right after the month-end tick,
    an outage of every worker: the freeze must still happen once per seller."""
    rnd = random.Random(seed)
    workdir = Path(workdir or tempfile.mkdtemp(prefix=f"starcast-faults-{seed}-"))
    workdir.mkdir(parents=True, exist_ok=True)
    result = RoundResult(seed, n_events)
    records: list[FaultRecord] = []
    started = time.monotonic()
    proxy_port = free_port()
    broker = EmbeddedBroker(advertised_port=proxy_port).start()
    proxy = FaultProxy(broker.listen_port, proxy_port, seed).start()
    prefix = f"faults{seed}-"
    workers = [WorkerProcess(broker.url, prefix, workdir, f"w{i}") for i in range(2)]
    plan = list(kinds) if kinds is not None else [*KINDS, *(f"{k}+kill" for k in KINDS)]
    if kinds is None:
        rnd.shuffle(plan)

    def watch() -> None:
        proxy.watch({w.name: w.pid for w in workers if w.process is not None})

    def supervise(record: FaultRecord | None) -> None:
        """Restart a worker that exited on its own, as a supervisor would."""
        for w in workers:
            if w.process is not None and not w.running():
                code = w.process.returncode
                log(f"  {w.name} exited with {code}; restarted")
                if record is not None and w.name == record.worker:
                    record.exits.append(code)
                w.start()
                watch()

    try:
        for w in workers:
            w.start()
        watch()
        for w in workers:
            result.recovery_seconds.append(w.wait_ready())
        events = list(simulate(n_events, n_sellers, seed=seed))
        messages = event_messages(prefix, events)
        sender = threading.Thread(target=send, args=(broker.bootstrap, messages, rate))
        sender.start()
        for kind in plan:
            time.sleep(rnd.uniform(1.0, 3.0))
            if not sender.is_alive():
                break
            victim = rnd.choice(workers)
            record = _inject(kind, victim, workers, proxy, durations, rnd, result, watch, supervise)
            records.append(record)
            _recover(record, victim, supervise, sender)
            log(f"  {kind} on {victim.name} for {record.seconds:.1f}s: forecasting again "
                + (f"{record.recovered:.1f}s after it ended" if record.recovered is not None else "never (in time)")
                + (f"; exited {record.exits}" if record.exits else ""))
        sender.join()
        supervise(None)

        def mid_freeze() -> None:  # every worker cut off right after the month-end tick
            seconds = rnd.uniform(*durations.outage)
            proxy.cut(seconds, [w.name for w in workers])
            records.append(FaultRecord("outage at the freeze", "w0,w1", seconds, measured=False))
            time.sleep(seconds)
            supervise(None)

        finish_and_compare(broker, prefix, events, messages, workers, result, workdir, log, mid_freeze)
    finally:
        for w in workers:
            w.stop()
        proxy.stop()
        broker.stop()
    result.seconds = time.monotonic() - started
    return FaultRound(result, records)


def _inject(kind: str, victim: WorkerProcess, workers: list[WorkerProcess], proxy: FaultProxy,
            durations: Durations, rnd: random.Random, result: RoundResult, watch, supervise) -> FaultRecord:
    base, _, kill = kind.partition("+")
    names = [victim.name]
    began = time.monotonic()
    if base == "cut":
        seconds = rnd.uniform(*durations.cut)
        proxy.cut(seconds, names)
    elif base == "outage":
        seconds = rnd.uniform(*durations.outage)
        proxy.cut(seconds, [w.name for w in workers])
    elif base == "latency":
        seconds = rnd.uniform(*durations.latency)
        proxy.latency(seconds, names)
    elif base == "stall":
        seconds = rnd.uniform(*durations.stall)
        proxy.stall(seconds, names)
    else:  # a reset: lasts until it fires (a fetch answers within the fetch wait; a produce with traffic)
        seconds = 30.0
        proxy.reset(base.removeprefix("reset-"), names, within=seconds)
    record = FaultRecord(kind, victim.name, seconds)
    if kill:
        time.sleep(rnd.uniform(0.2, 0.6) * min(seconds, 10.0))
        victim.kill()
        result.kills += 1
        time.sleep(rnd.uniform(0.0, 2.0))
        victim.start()
        watch()
    while time.monotonic() - began < seconds:
        if base.startswith("reset") and not proxy.pending_resets():
            break
        supervise(record)
        time.sleep(0.2)
    record.seconds = time.monotonic() - began
    return record


def _recover(record: FaultRecord, victim: WorkerProcess, supervise, sender: threading.Thread,
             timeout: float = 180.0) -> None:
    """Until the worker publishes a forecast after the fault ended (or the input runs out)."""
    ended = time.monotonic()
    pid = victim.pid
    before = _forecasts(victim)
    while time.monotonic() - ended < timeout:
        supervise(record)
        if victim.pid != pid:  # restarted: a fresh process counts from zero
            pid, before = victim.pid, 0.0
        now = _forecasts(victim)
        if before is None:
            before = now
        elif now is not None and now > before:
            record.recovered = time.monotonic() - ended
            return
        if not sender.is_alive():
            return
        time.sleep(0.2)


def _forecasts(worker: WorkerProcess) -> float | None:
    try:
        return worker.metrics().get("starcast_forecasts_published_total", 0.0)
    except OSError:
        return None


def run_fault_soak(rounds: int, n_events: int, n_sellers: int, rate: float, seed: int,
                   durations: Durations = Durations()) -> int:
    """Rounds of faults; prints a table per fault kind and the mismatches."""
    rounds_done = []
    for i in range(rounds):
        print(f"round {i + 1}/{rounds} (seed {seed + i}): {n_events:,} events at {rate:,.0f}/s, "
              f"{n_sellers:,} sellers", flush=True)
        rounds_done.append(run_fault_round(seed + i, n_events, n_sellers, rate, durations))
    print(f"\n{'fault':<20} {'count':>5} {'lasted s (max)':>14} {'recovery p50 s':>14} {'recovery max s':>14} "
          f"{'never':>5} {'exits':>5}")
    for kind in sorted({r.kind for rd in rounds_done for r in rd.faults}):
        mine = [r for rd in rounds_done for r in rd.faults if r.kind == kind]
        times = sorted(r.recovered for r in mine if r.recovered is not None)
        p50 = f"{times[len(times) // 2]:.1f}" if times else "-"
        worst = f"{times[-1]:.1f}" if times else "-"
        print(f"{kind:<20} {len(mine):>5} {max(r.seconds for r in mine):>14.1f} {p50:>14} {worst:>14} "
              f"{sum(r.measured and r.recovered is None for r in mine):>5} {sum(len(r.exits) for r in mine):>5}")
    bad = sum(rd.result.mismatches for rd in rounds_done)
    print(f"total: {sum(len(rd.faults) for rd in rounds_done)} faults, {sum(rd.result.kills for rd in rounds_done)} "
          f"kills, {sum(rd.result.events for rd in rounds_done):,} events, {bad} mismatches "
          f"({sum(rd.result.forecast_mismatches for rd in rounds_done)} forecasts, "
          f"{sum(rd.result.freeze_mismatches for rd in rounds_done)} freezes)")
    return 1 if bad else 0
