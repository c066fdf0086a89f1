"""`starcast run`: the one-command local stack.

Starts the embedded broker when STARCAST_BROKER is unset, a worker (a child process running
`starcast worker`), and with `--simulate` a producer of a simulated marketplace month. Prints
where the API and metrics are and a live progress line. Ctrl-C (or the end of `--until-done`)
stops everything it started: the worker's and the broker's process groups are terminated and
waited for, so nothing is left behind.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from argparse import Namespace

import orjson

from streams.core.contract import TOPICS
from streams.local.broker import EmbeddedBroker
from streams.service.settings import Settings


def scrape(url: str) -> dict[str, float]:
    """Sum each metric family's samples (labels folded), from a worker's /metrics."""
    totals: dict[str, float] = {}
    text = urllib.request.urlopen(url, timeout=2).read().decode()
    for line in text.splitlines():
        if line.startswith("starcast_") and " " in line:
            name_labels, value = line.rsplit(" ", 1)
            name = name_labels.split("{", 1)[0]
            if "{" in name_labels and 'stars="' in name_labels:
                name = name + name_labels[name_labels.index('stars="') + 7 : name_labels.index('stars="') + 8]
            totals[name] = totals.get(name, 0.0) + float(value)
    return totals


def wait_ready(base: str, worker: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with {worker.returncode} before it was ready")
        try:
            urllib.request.urlopen(base + "/healthz", timeout=1).read()
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    raise RuntimeError("the worker did not become ready")


async def produce(bootstrap: str, prefix: str, events, rate: float, progress) -> int:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    sent = 0
    started = time.monotonic()
    try:
        for event in events:
            await producer.send(prefix + TOPICS[event["type"]], key=event["seller_id"].encode(),
                                value=orjson.dumps(event))
            sent += 1
            if sent % 200 == 0:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
                progress(sent)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


def stop_group(process: subprocess.Popen | None, timeout: float = 15.0) -> None:
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)
    except ProcessLookupError:
        pass


def run_stack(args: Namespace) -> int:
    env = dict(os.environ)
    broker = None
    workdir = tempfile.mkdtemp(prefix="starcast-run-")
    worker = None

    def on_signal(signum, frame):  # Ctrl-C and SIGTERM stop the stack at once, wherever it is
        raise KeyboardInterrupt

    # Also for SIGINT: asyncio.run's own handler only cancels the producing task, which could
    # leave Ctrl-C waiting on the producer while the simulation was still being sent.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        if "STARCAST_BROKER" not in env:
            broker = EmbeddedBroker().start()
            env.update(STARCAST_BROKER=broker.url, STARCAST_EMBEDDED_BROKER="1")
            print(f"starcast: embedded broker (tansu) on {broker.bootstrap}", flush=True)
        env.setdefault("STARCAST_DATA_DIR", workdir)
        settings = Settings.from_env(env)
        base = f"http://{settings.web_host}:{settings.web_port}"
        worker = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=env,
                                  stdout=open(os.path.join(workdir, "worker.log"), "wb"),
                                  stderr=subprocess.STDOUT, start_new_session=True)
        wait_ready(base, worker)
        print(f"starcast: worker ready — forecasts at {base}/sellers/<seller_id>, "
              f"official at {base}/sellers/<seller_id>/official, metrics at {base}/metrics "
              f"(log: {workdir}/worker.log)", flush=True)
        produced = 0

        def progress(sent: int) -> None:
            nonlocal produced
            produced = sent
            line(base, f"produced {sent:,}")

        if args.simulate:
            from streams.local.simulate import events

            size = f"{args.events:,} events" if args.events else "a month of events"
            print(f"starcast: simulating {size} for {args.sellers} sellers at "
                  f"{args.rate:,.0f} events/s; Ctrl-C stops", flush=True)
            asyncio.run(produce(settings.bootstrap_servers, settings.topic_prefix,
                                events(args.events, args.sellers, seed=11), args.rate, progress))
        deadline = time.monotonic() + args.until_done if args.until_done else None
        while deadline is None or time.monotonic() < deadline:
            if worker.poll() is not None:
                print(f"\nstarcast: the worker exited with {worker.returncode}", flush=True)
                return 1
            time.sleep(1)
            line(base, f"produced {produced:,}")
    except KeyboardInterrupt:
        pass
    finally:
        print("\nstarcast: stopping", flush=True)
        stop_group(worker)
        if broker is not None:
            broker.stop()
        print("starcast: stopped", flush=True)
    return 0


def line(base: str, prefix: str) -> None:
    try:
        m = scrape(base + "/metrics")
    except (urllib.error.URLError, OSError, ValueError):
        return
    stars = " ".join(f"{n}★:{int(m.get(f'starcast_sellers{n}', 0))}" for n in range(6))
    sys.stdout.write(
        f"\r{prefix} | events {int(m.get('starcast_events_total', 0)):,} | forecasts "
        f"{int(m.get('starcast_forecasts_published_total', 0)):,} | star changes "
        f"{int(m.get('starcast_star_changes_total', 0)):,} | dead letters "
        f"{int(m.get('starcast_dead_letters_total', 0)):,} | sellers {stars}   "
    )
    sys.stdout.flush()
