"""`starcast bench`: the worker against Faust's own ceiling, on the embedded broker.

One run, one pre-produced input (a simulated month, Zipf-skewed sellers), each contender in its
own process and consumer group reading all of it:
  (a) floor — a Faust agent that only decodes;
  (b) naive — per event: table read, update, table write, send;
  (c) the starcast worker, alone (with and without the projection, STARCAST_PROJECTION=0),
      then two of them in one group;
  (d) the peers (streams/lab/peers.py), when Quix Streams is installed: the naive rater and the
      real rating core, each in a Quix Streams application.
Events/s is measured from the first to the last event each one handled (start-up and group join
excluded). Then: time for a fresh worker (empty data directory) to restore the tables from the
changelogs; and produce→forecast latency percentiles of that worker under a fixed offered load
that continues the input in event time
(after a 2 s warm-up at that load, which absorbs the catch-up after its restore),
from its `starcast_processing_latency_seconds` histogram (Kafka timestamp of the input to the
moment its effects were sent). Peak RSS is sampled from /proc every 0.2 s. Nothing is asserted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

import orjson

from streams.core.contract import TOPICS
from streams.core.timeutil import format_ts, parse_ts
from streams.local.broker import EmbeddedBroker
from streams.testing import PeakRss, WorkerProcess, cpu_seconds, event_messages, send
from streams.lab.peers import PEERS
from streams.lab.peers import available as peers_available
from streams.lab.workload import events as simulate

PREFIX = "bench-"
PARTITIONS = 4


def create_input_topics(bootstrap: str) -> None:
    """The input topics, created before the input is produced, with PARTITIONS partitions and an
    explicit retention: Quix Streams derives its changelogs' retention from its inputs', and tansu
    describes only the configs a topic was created with."""
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(PREFIX + name, PARTITIONS, 1,
                                                topic_configs={"retention.ms": "-1", "retention.bytes": "-1"})
                                       for name in sorted(set(TOPICS.values()))])
        finally:
            await admin.close()

    asyncio.run(create())


def run_baseline(kind: str, broker: EmbeddedBroker, n: int, timeout: float) -> dict:
    return run_contender([sys.executable, "-m", "streams.lab.baselines", kind, broker.url, PREFIX, str(n),
                          str(PARTITIONS)], f"baseline {kind}", n, timeout)


def run_peer(kind: str, broker: EmbeddedBroker, topics: list[str], n: int, timeout: float, workdir: Path) -> dict:
    """One peer engine (streams/lab/peers.py) over the input topics `topics`."""
    return run_contender([sys.executable, "-m", "streams.lab.peers", kind, broker.bootstrap, ",".join(topics), str(n),
                          str(workdir / kind)], f"peer {kind}", n, timeout)


def run_contender(argv: list[str], name: str, n: int, timeout: float) -> dict:
    """Run one contender process over the input; it prints JSON lines with the number of events
    handled and the wall-clock instants of the first and last. Its rate is taken over all `n`, or,
    if it has not handled them all within `timeout`, over those it had (then `partial`)."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    result: dict = {}

    def read() -> None:
        for line in process.stdout or ():
            if line.startswith(b"{"):
                result.update(orjson.loads(line))
                if result["events"] >= n:
                    return

    reader = threading.Thread(target=read, daemon=True)
    with PeakRss(process.pid) as rss:
        reader.start()
        reader.join(timeout)
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
    if not result or result["last"] <= result["first"]:
        raise RuntimeError(f"{name} did not handle {n:,} events in {timeout:.0f} s")
    figures = {"events_per_s": round(result["events"] / (result["last"] - result["first"])),
               "peak_rss_mib": rss.peak >> 20}
    if result["events"] < n:
        figures["partial"] = f"stopped after {timeout:.0f} s with {result['events']:,} of {n:,} events handled"
    return figures


def _events_handled(worker: WorkerProcess) -> float:
    try:
        return worker.metrics().get("starcast_events_total", 0.0)
    except OSError:
        return 0.0


def latency_buckets(worker: WorkerProcess, histogram: str = "starcast_processing_latency_seconds"
                    ) -> list[tuple[float, float]]:
    """The worker's (upper bound, cumulative count) buckets of a histogram, now."""
    text = urllib.request.urlopen(worker.base + "/metrics", timeout=5).read().decode()
    out = []
    for line in text.splitlines():
        if line.startswith(histogram + "_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
    return sorted(out)


def quantile(before: list, after: list, q: float) -> float:
    """Upper bucket bound holding quantile q of the observations made between two scrapes."""
    counts = [(le, a - b) for (le, a), (_, b) in zip(after, before)]
    total = counts[-1][1]
    if not total:
        return 0.0  # nothing observed
    for le, c in counts:
        if c >= q * total:
            return le
    return float("inf")


def until(condition: Callable[[], bool], timeout: float, every: float = 0.5) -> bool:
    """Ask `condition` every `every` seconds until it holds or `timeout` seconds have passed;
    whether it held."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(every)
    return True


def wait_handled(worker: WorkerProcess, target: float, timeout: float) -> bool:
    """Whether the worker has handled `target` events in all (its starcast_events_total) within
    `timeout` seconds."""
    return until(lambda: _events_handled(worker) >= target, timeout)


def offer(broker: EmbeddedBroker, worker: WorkerProcess, events: list[dict], rate: float,
          timeout: float) -> tuple[float, bool]:
    """Send `events` at `rate` and wait until the worker has handled as many more; returns the
    rate achieved and whether it handled them all within `timeout`. (The group's offsets are
    past the first input, so every event it handles now is one of these.)"""
    handled_before = _events_handled(worker)
    sent = time.monotonic()
    send(broker.bootstrap, event_messages(PREFIX, events), rate=rate)
    achieved = len(events) / (time.monotonic() - sent)
    return achieved, wait_handled(worker, handled_before + len(events), timeout)


def measure_workers(broker: EmbeddedBroker, workdir: Path, names: list[str], n: int, timeout: float,
                    app_id: str = "starcast", env: dict[str, str] | None = None) -> dict:
    """Events/s of starcast workers sharing one consumer group over the whole input, counted
    while all of them are handling events (a second worker joins a few seconds after the
    first starts; re-deliveries after that rebalance count too, slightly in its favour)."""
    workers = [WorkerProcess(broker.url, PREFIX, workdir, name, partitions=PARTITIONS,
                             extra_env={"STARCAST_APP_ID": app_id, **(env or {})}) for name in names]
    for w in workers:
        w.start()
    samplers = [PeakRss(w.pid).__enter__() for w in workers]
    pids = {"workers": [w.pid for w in workers], "broker": [broker.process.pid] if broker.process else []}

    def cpu() -> dict[str, float]:
        return {name: sum(cpu_seconds(pid) for pid in group) for name, group in pids.items()}

    try:
        first = last = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            counts = [_events_handled(w) for w in workers]
            now = time.monotonic()
            if first is None and all(counts):
                first, cpu_first = (now, sum(counts)), cpu()
            if sum(counts) >= n:
                last, cpu_last = (now, sum(counts)), cpu()
                break
            time.sleep(0.25)  # each poll is a /metrics scrape of a busy worker: not too often
    finally:
        for sampler in samplers:
            sampler.__exit__()
        for w in workers:
            w.stop()
    if first is None or last is None or last[0] <= first[0]:
        raise RuntimeError(f"workers {names} did not share {n:,} events in {timeout:.0f} s; see {workdir}")
    window = last[0] - first[0]
    # Cores busy while measured: on a machine whose cores are all busy, one more worker cannot add.
    cores = {name: round((cpu_last[name] - cpu_first[name]) / window, 2) for name in pids}
    return {"events_per_s": round((last[1] - first[1]) / window),
            "peak_rss_mib": max(sampler.peak for sampler in samplers) >> 20,
            "cores_busy": {**cores, "machine": os.cpu_count()}}


def stored_state(broker: EmbeddedBroker, events: list[dict]) -> dict:
    """What the worker keeps per seller: the latest value of every key in its state table's
    changelog, summed per seller (key + value bytes), and per buyer or visitor tracked."""
    from streams.core.engine import Engine
    from streams.core.keys import seller_of_key
    from streams.core.rulebook import load
    from streams.testing import read_topic

    latest: dict[bytes, int] = {}
    for m in read_topic(broker.bootstrap, f"{PREFIX}starcast-state-changelog"):
        if m.value is None:
            latest.pop(m.key, None)
        else:
            latest[m.key] = len(m.key) + len(m.value)
    per_seller: dict[bytes, int] = {}
    for key, size in latest.items():
        if key.startswith(b"\0"):
            continue  # the due index and the partitions' meta records: not a seller's
        seller = seller_of_key(key)
        per_seller[seller] = per_seller.get(seller, 0) + size
    engine = Engine(load(), keep_for_freeze=True)  # the same events in process, to count people
    for e in events:
        engine.ingest(orjson.dumps(e))
    people = sum(len(state.people) for state in engine.states.values())
    sizes = sorted(per_seller.values())
    return {"sellers": len(sizes), "median_bytes": sizes[len(sizes) // 2], "p99_bytes": sizes[int(len(sizes) * 0.99)],
            "total_bytes": sum(sizes), "people": people, "bytes_per_person": round(sum(sizes) / max(people, 1), 1)}


RESTORED = ("starcast-state-changelog", "star-forecasts", "star-ratings-monthly", "star-warnings",
            "starcast-history-changelog")  # what a fresh worker of app "starcast" restores


def raw_changelog_read(bootstrap: str, topics: list[str]) -> dict:
    """The same changelogs read with aiokafka alone (getmany, values decoded), from the first
    fetch to every partition's high watermark: the rate a restore could reach."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, TopicPartition

    from streams.backfill import read_to_end

    async def read() -> dict:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50,
                                    max_partition_fetch_bytes=4 << 20)
        await consumer.start()
        try:
            tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
            count = [0, 0]  # records, bytes

            def decode(r: Any) -> None:
                count[0] += 1
                count[1] += len(r.key or b"") + len(r.value or b"")
                if r.value is not None:
                    orjson.loads(r.value)

            started = time.monotonic()
            await read_to_end(consumer, tps, decode, max_records=20_000)
            records, size = count
            return {"records": records, "bytes": size, "seconds": round(time.monotonic() - started, 2)}
        finally:
            await consumer.stop()

    return asyncio.run(read())


def _service_figures(broker: EmbeddedBroker, workdir: Path, events: list[dict], report: dict, n_sellers: int,
                     seed: int, offered: float, timeout: float) -> None:
    """The worker without the projection and on Faust's fetch loop, two workers, the state, the
    restore and the latency, into `report`."""
    n_events = len(events)
    report["starcast_no_projection"] = measure_workers(broker, workdir, ["no-projection"], n_events, timeout,
                                                       app_id="starcast-no-projection",
                                                       env={"STARCAST_PROJECTION": "0"})
    report["ratio_no_projection_to_floor"] = round(report["starcast_no_projection"]["events_per_s"]
                                                   / report["floor"]["events_per_s"], 3)
    # And the same worker on Faust's own fetch loop (STARCAST_FAST_FETCH=0; README).
    report["starcast_faust_fetch"] = measure_workers(broker, workdir, ["faust-fetch"], n_events, timeout,
                                                     app_id="starcast-faust-fetch",
                                                     env={"STARCAST_FAST_FETCH": "0"})
    report["ratio_faust_fetch_to_floor"] = round(report["starcast_faust_fetch"]["events_per_s"]
                                                 / report["floor"]["events_per_s"], 3)
    report["starcast_two_workers"] = measure_workers(broker, workdir, ["pair-a", "pair-b"], n_events, timeout,
                                                     app_id="starcast-pair")
    report["scaling_two_to_one"] = round(report["starcast_two_workers"]["events_per_s"]
                                         / report["starcast"]["events_per_s"], 2)

    report["state"] = stored_state(broker, events)
    # First a fresh worker restoring through Faust's own per-record recovery
    # (STARCAST_BULK_RESTORE=0), stopped once ready; then the default one, measured and kept.
    from streams.lab.bench_restore import restore_once  # it builds on this module

    faust_path_seconds = restore_once(broker, workdir, "restored-faust-path", {"STARCAST_BULK_RESTORE": "0"},
                                      timeout)["ready"]
    fresh = WorkerProcess(broker.url, PREFIX, workdir, "restored", partitions=PARTITIONS)
    started = time.monotonic()
    fresh.start().wait_ready(timeout=timeout, recoveries_before=0)
    report["restore_seconds"] = round(time.monotonic() - started, 1)
    raw = raw_changelog_read(broker.bootstrap, [PREFIX + t for t in RESTORED])
    report["restore"] = {"records": raw["records"], "mb": round(raw["bytes"] / 2**20, 1),
                         "worker_records_per_s": round(raw["records"] / report["restore_seconds"]),
                         "raw_read_seconds": raw["seconds"],
                         "raw_records_per_s": round(raw["records"] / max(raw["seconds"], 0.01)),
                         "worker_to_raw": round(raw["seconds"] / report["restore_seconds"], 3),
                         "faust_path_seconds": faust_path_seconds,
                         "faust_path_to_raw": round(raw["seconds"] / faust_path_seconds, 3)}
    try:
        # Two seconds of the same load first, not counted: a worker's first batch after a
        # restore re-rates every seller it restored (catch-up), which is a restart cost,
        # not the steady latency under this load.
        # Both continue the input in event time, as live traffic does (a load simulated
        # again from the input's first day would be a month of late events).
        since = format_ts(max(parse_ts(e["ts"]) for e in events) + 1)
        warm_up = list(simulate(int(offered * 2), n_sellers, seed=seed + 2, start=since, days=1))
        offer(broker, fresh, warm_up, offered, timeout)
        since = format_ts(max(parse_ts(e["ts"]) for e in warm_up) + 1)
        load = list(simulate(int(offered * 10), n_sellers, seed=seed + 1, start=since, days=5))
        before = latency_buckets(fresh)
        achieved, handled = offer(broker, fresh, load, offered, timeout)
        if not handled:
            raise RuntimeError(
                f"the restored worker did not handle the {len(load):,} latency events; see {workdir}")
        after = latency_buckets(fresh)
        report["latency"] = {"offered_per_s": round(achieved), "events": len(load),
                             "p50_s": quantile(before, after, 0.5), "p99_s": quantile(before, after, 0.99)}
    finally:
        fresh.stop()


def run_service_bench(n_events: int, n_sellers: int, seed: int, offered: float, as_json: bool,
                      peers_only: bool = False) -> int:
    """Every figure above; with `peers_only`, the floor, the worker and the peers alone."""
    workdir = Path(tempfile.mkdtemp(prefix="starcast-bench-"))
    broker = EmbeddedBroker().start()
    report: dict = {"events": n_events, "sellers": n_sellers, "partitions": PARTITIONS, "seed": seed}
    try:
        events = list(simulate(n_events, n_sellers, seed=seed))
        create_input_topics(broker.bootstrap)
        send(broker.bootstrap, event_messages(PREFIX, events))
        timeout = 120 + n_events / 500
        report["floor"] = run_baseline("floor", broker, n_events, timeout)
        if not peers_only:
            report["naive"] = run_baseline("naive", broker, n_events, timeout)
        report["starcast"] = measure_workers(broker, workdir, ["starcast"], n_events, timeout)
        report["ratio_starcast_to_floor"] = round(
            report["starcast"]["events_per_s"] / report["floor"]["events_per_s"], 3)
        # The peers, on the same input: Quix Streams with the naive rater and with the real core.
        report["peers"] = {}
        topics = sorted({PREFIX + TOPICS[e["type"]] for e in events})  # those the input went to
        for kind in PEERS:
            why_not = peers_available(kind)
            if why_not is not None:
                report["peers"][kind] = {"skipped": why_not}
                continue
            try:
                # A peer far slower than the worker is stopped early and rated on what it handled.
                peer = report["peers"][kind] = run_peer(kind, broker, topics, n_events, min(timeout, 180), workdir)
            except RuntimeError as failed:  # a peer that stalls is a figure too, not the bench's end
                report["peers"][kind] = {"skipped": str(failed)}
                continue
            peer["starcast_to_peer"] = round(report["starcast"]["events_per_s"] / peer["events_per_s"], 2)
        if not peers_only:
            _service_figures(broker, workdir, events, report, n_sellers, seed, offered, timeout)
    finally:
        broker.stop()
    if as_json:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
        return 0
    print(f"starcast service bench: {n_events:,} events, {n_sellers:,} sellers, {PARTITIONS} partitions, "
          f"embedded broker, one process each")
    for name in ("floor", "naive", "starcast", "starcast_no_projection", "starcast_faust_fetch",
                 "starcast_two_workers"):
        if name not in report:
            continue
        r = report[name]
        cores = r.get("cores_busy")
        busy = (f"   cores busy: worker(s) {cores['workers']}, broker {cores['broker']} of {cores['machine']}"
                if cores else "")
        print(f"  {name:<22} {r['events_per_s']:>8,} events/s   peak RSS {r['peak_rss_mib']} MiB (per process){busy}")
    for kind, r in report["peers"].items():
        if "skipped" in r:
            print(f"  {kind:<22} skipped: {r['skipped']}")
        else:
            print(f"  {kind:<22} {r['events_per_s']:>8,} events/s   peak RSS {r['peak_rss_mib']} MiB   "
                  f"starcast / {kind} = {r['starcast_to_peer']}" + (f" ({r['partial']})" if "partial" in r else ""))
    if peers_only:
        print(f"  starcast / floor = {report['ratio_starcast_to_floor']}")
        return 0
    print(f"  starcast / floor = {report['ratio_starcast_to_floor']} (on Faust's fetch loop, STARCAST_FAST_FETCH=0: "
          f"{report['ratio_faust_fetch_to_floor']}; without the projection, STARCAST_PROJECTION=0: "
          f"{report['ratio_no_projection_to_floor']}); two workers / one = {report['scaling_two_to_one']}")
    st = report["state"]
    print(f"  state table per seller (key + value bytes, latest per key): median {st['median_bytes']:,} B, "
          f"p99 {st['p99_bytes']:,} B; {st['total_bytes']:,} B for {st['people']:,} buyers/visitors tracked = "
          f"{st['bytes_per_person']} B per person")
    rs = report["restore"]
    print(f"  restore from changelogs (fresh worker, start to ready): {report['restore_seconds']} s for "
          f"{rs['records']:,} records ({rs['mb']} MB), {rs['worker_records_per_s']:,} records/s; a raw aiokafka read "
          f"of the same topics: {rs['raw_read_seconds']} s, {rs['raw_records_per_s']:,} records/s "
          f"(worker / raw = {rs['worker_to_raw']}); through Faust's per-record recovery (STARCAST_BULK_RESTORE=0): "
          f"{rs['faust_path_seconds']} s (/ raw = {rs['faust_path_to_raw']})")
    lat = report["latency"]
    print(f"  produce->forecast latency at {lat['offered_per_s']:,} events/s offered ({lat['events']:,} events): "
          f"p50 <= {lat['p50_s']} s, p99 <= {lat['p99_s']} s (histogram bucket bounds)")
    return 0
