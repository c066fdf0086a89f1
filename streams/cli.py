"""The `starcast` command."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from importlib import resources

from streams.core.rulebook import RulebookError, available, load


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="starcast", description="Real-time seller star ratings.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("replay", help="rate the sellers in a JSON-lines event file",
                       description="Rate the sellers in a JSON-lines event file, in memory bounded by the rating "
                                   "state: events are applied as they are read. Without --at a file is read twice "
                                   "(the first pass finds the latest ts); stdin without --at is buffered in memory. "
                                   "An input over 8 MiB is rated (or frozen) a share of the sellers at a time: its "
                                   "lines are spilled to temporary files (TMPDIR; about the input's size) by the "
                                   "seller each names.")
    p.add_argument("file", help="JSON lines of events, or - for stdin (buffered unless --at is given)")
    p.add_argument("--at", help="evaluation instant, RFC 3339 (default: the latest ts in the file)")
    p.add_argument("--monthly", action="store_true",
                   help="print every month's official record instead, as the worker freezes it: each month whose "
                        "end plus the rulebook's grace is at or before --at, sorted by seller then month")
    p.add_argument("--rulebook", default="global-2023", help=f"one of {', '.join(available())}, or a .toml path")
    p.add_argument("--groups", help="a seller-groups file: a rulebook per group of sellers (docs/rulebooks.md)")
    p.add_argument("--jobs", type=_positive, default=os.cpu_count() or 1,
                   help="processes rating the shares of a large input (default: the machine's cores); the output "
                        "is the same for any number")

    p = sub.add_parser("backfill", help="write the official months of archived events into the history the API "
                                        "serves (the history table's changelog on STARCAST_BROKER)")
    p.add_argument("file", help="JSON lines of events, or - for stdin")
    p.add_argument("--at", help="the months whose freeze falls at or before this instant, RFC 3339 "
                                "(default: the latest ts in the file)")
    p.add_argument("--rulebook", default="global-2023", help=f"one of {', '.join(available())}, or a .toml path")
    p.add_argument("--groups", help="a seller-groups file: a rulebook per group of sellers (docs/rulebooks.md)")
    p.add_argument("--force", action="store_true", help="replace months the service froze with another record")

    p = sub.add_parser("worker", help="run a Faust worker against STARCAST_BROKER")
    p.add_argument("--loglevel", default="warning")

    p = sub.add_parser("config", help="check the worker's settings from the environment, or print their reference")
    p.add_argument("--markdown", action="store_true", help="print docs/configuration.md")

    p = sub.add_parser("run", help="the one-command local stack: embedded broker, worker, API")
    p.add_argument("--simulate", action="store_true", help="also produce a simulated marketplace month")
    p.add_argument("--sellers", type=int, default=150, help="sellers to simulate")
    p.add_argument("--events", type=int, default=None,
                   help="events to simulate (default: what the sellers' plans make, about 800 each)")
    p.add_argument("--rate", type=float, default=3_000, help="events per second to produce")
    p.add_argument("--until-done", type=float, default=0, metavar="SECONDS",
                   help="stop by itself this long after the simulation was sent (default: run until Ctrl-C)")
    p.add_argument("--replay-sample", action="store_true", help="only replay the bundled sample file and exit")

    p = sub.add_parser("notify", help="POST output records to a webhook, signed, at least once, in order per seller")
    p.add_argument("--webhook", required=True, help="the receiver's URL")
    p.add_argument("--topics", default="star-changes,star-warnings", help="output topics, comma-separated")
    p.add_argument("--tries", type=int, default=5, help="attempts before a record is parked on starcast-notify-failed")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per POST")

    p = sub.add_parser("token", help="mint a seller's API token (JWT HS256) with STARCAST_API_JWT_SECRET")
    p.add_argument("--seller", required=True, help="the seller id the token opens")
    p.add_argument("--ttl", default="1h", help="how long it is valid: seconds, or a number with s, m, h or d")

    p = sub.add_parser("simulate", help="print a synthetic month of marketplace events as JSON lines")
    p.add_argument("--events", type=int, default=None,
                   help="scale the sellers' plans to about this many events (default: the plans' own "
                        "size, about 800 a seller, where the spread of stars is a marketplace's)")
    p.add_argument("--sellers", type=int, default=40)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--start", default="2026-03-01T00:00:00Z",
                   help="first day, RFC 3339, or 'recent': the days up to today (for a wall-clock worker)")
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--produce", metavar="BOOTSTRAP", help="send to the input topics at host:port instead of printing")
    p.add_argument("--rate", type=float, default=500, help="with --produce: events per second")

    p = sub.add_parser("soak", help="kill -9 workers at random under traffic; compare with replay")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--events", type=int, default=50_000)
    p.add_argument("--sellers", type=int, default=1_000)
    p.add_argument("--kills", type=int, default=5, help="kill points per round (plus one mid-freeze)")
    p.add_argument("--rate", type=float, default=1_500, help="events per second to produce")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rebalance", action="store_true",
                   help="instead of kills: scale 1 -> 2 -> 1 workers, with 0 and then 1 standby replica")
    p.add_argument("--standby", type=int, choices=(0, 1), help="with --rebalance: only this many standby replicas")
    p.add_argument("--hog", action="store_true", help="with --rebalance: a CPU hog beside every second round")
    p.add_argument("--overload", action="store_true",
                   help="instead of kills: one burst of --events as fast as possible; print drain time and RSS")
    p.add_argument("--faults", action="store_true",
                   help="instead of kills alone: network faults between a worker and the broker (cuts, latency, "
                        "resets mid-fetch and mid-produce, stalls), each also with a kill -9, through a proxy")
    p.add_argument("--short", action="store_true", help="with --faults: each fault at the short end (as in CI)")

    p = sub.add_parser("bench", help="the worker beside Faust's floor and a naive rater, on the embedded broker")
    # 300,000: at ~15,000 events/s a 100,000-event input left the two-worker figure a window of
    # 3 s between both workers starting and the input running out (1.29x and 0.66x in two runs).
    p.add_argument("--events", type=int, default=300_000)
    p.add_argument("--sellers", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--offered", type=float, default=5_000, help="events/s offered for the latency figure")
    p.add_argument("--core", action="store_true", help="only the in-process rating core, no broker or Faust")
    p.add_argument("--peers", action="store_true",
                   help="only Faust's floor, the worker and the peer engines (Quix Streams, Bytewax; "
                        "pip install 'starcast[peers]')")
    p.add_argument("--live", action="store_true",
                   help="produce->forecast latency with event time at the wall clock's pace, in the month after "
                        "the input, at a fifth, half and all of --offered events/s (or at each of --rates), with and "
                        "without the projection, and the highest rate each sustains")
    p.add_argument("--rates", default=None,
                   help="with --live: the offered rates, events/s, comma-separated (default: a fifth, half and all "
                        "of --offered)")
    p.add_argument("--bursts", action="store_true",
                   help="new events' produce->forecast latency while a day roll and a month start re-rate "
                        "20,000 sellers, at 250 events/s, and how long those sweeps take")
    p.add_argument("--api", action="store_true",
                   help="the seller API under concurrent clients while one worker handles --offered events/s")
    p.add_argument("--sse", action="store_true",
                   help="seller streams (one per seller, plus --idle held ones) while one worker handles --offered "
                        "events/s for those sellers")
    p.add_argument("--clients", type=int, default=None,
                   help="concurrent clients: API clients with --api (default 500), streams with --sse (default 1000)")
    p.add_argument("--replay", action="store_true",
                   help="replay's speed and peak RSS beside the state it keeps, on files of --sizes events")
    p.add_argument("--restore", action="store_true",
                   help="a fresh worker's restore beside a raw read of its changelogs, on the state of --sizes events")
    p.add_argument("--memory", action="store_true",
                   help="one worker's peak RSS, events/s and cache hit rate on a state 1x and 4x the size with a "
                        "64 MiB state cache, a fresh worker's restore of the larger; events/s with a cache holding "
                        "the state and a tenth of it")
    p.add_argument("--baseline", default=None,
                   help="with --memory: a checkout of an earlier commit whose worker runs first on the same input")
    p.add_argument("--faust-path", action="store_true",
                   help="with --restore: also restore through Faust's per-record recovery (STARCAST_BULK_RESTORE=0)")
    p.add_argument("--sizes", default=None,
                   help="with --replay (default 100000,1000000) or --restore (default 300000): event counts, "
                        "comma-separated")
    p.add_argument("--idle", type=int, default=10_000, help="with --sse: idle streams held beside them")
    p.add_argument("--seconds", type=float, default=20, help="with --api or --sse: how long the clients run")
    p.add_argument("--rate", type=float, default=0,
                   help="with --api: requests due per second across the clients (open loop); 0, the default: each "
                        "client asks again when answered (closed loop)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")

    args = parser.parse_args(argv)
    try:
        rulebook = load(getattr(args, "rulebook", None) or os.environ.get("STARCAST_RULEBOOK", "global-2023"))
    except RulebookError as exc:
        parser.error(str(exc))

    if args.command in ("replay", "backfill"):
        from streams.core.groups import load_groups

        try:
            selection = load_groups(args.groups, default=rulebook.name) if args.groups else rulebook
        except RulebookError as exc:
            parser.error(str(exc))
        try:
            if args.command == "backfill":
                from streams import backfill

                return backfill.run(args.file, selection, args.at, args.force)
            from streams.replay import run

            return run(args.file, selection, args.at, sys.stdout.buffer, args.monthly, args.jobs)
        except ValueError as exc:
            parser.error(f"--at: {exc}")
    if args.command == "notify":
        from streams.notify import run_notifier

        return run_notifier(args.webhook, [t.strip() for t in args.topics.split(",") if t.strip()],
                            max(args.tries, 1), args.timeout)
    if args.command == "token":
        return _token(args.seller, args.ttl)
    if args.command == "worker":
        from streams.service.worker import run_worker

        return run_worker(args.loglevel)
    if args.command == "config":
        from streams.service.settings import Settings, SettingsError, markdown

        if args.markdown:
            sys.stdout.write(markdown())
            return 0
        try:
            print(Settings.from_env())
        except SettingsError as exc:
            print(f"starcast config: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.command == "run" and args.replay_sample:
        from streams.replay import run

        sample = resources.files("streams.samples") / "marketplace.jsonl"
        print(f"starcast: replaying the bundled sample {sample.name} with {rulebook.name}", file=sys.stderr)
        return run(str(sample), rulebook, None, sys.stdout.buffer)
    if args.command == "run":
        from streams.local.runner import run_stack

        return run_stack(args)
    if args.command == "simulate":
        import orjson

        from streams.local.simulate import events

        start = args.start
        if start == "recent":
            import time

            from streams.core.timeutil import DAY, format_ts

            start = format_ts((int(time.time() * 1000) // DAY - args.days + 1) * DAY)
        generated = events(args.events, args.sellers, args.seed, start, args.days)
        if args.produce:
            import asyncio

            from streams.local.runner import produce

            prefix = os.environ.get("STARCAST_TOPIC_PREFIX", "")
            sent = asyncio.run(produce(args.produce, prefix, generated, args.rate, lambda n: None))
            print(f"sent {sent:,} events to {args.produce}", file=sys.stderr)
            return 0
        out = sys.stdout.buffer
        for e in generated:
            out.write(orjson.dumps(e) + b"\n")
        return 0
    if args.command == "soak":
        from streams.lab.soak import run_rebalances, run_soak

        if args.overload:
            from streams.lab.soak import print_overload

            return print_overload(args.events, args.sellers, args.seed)
        if args.faults:
            from streams.lab.soak_faults import SHORT, Durations, run_fault_soak

            return run_fault_soak(args.rounds, args.events, args.sellers, args.rate, args.seed,
                                  SHORT if args.short else Durations())
        if args.rebalance:
            standbys = (args.standby,) if args.standby is not None else (0, 1)
            return run_rebalances(args.rounds, args.events, args.sellers, args.rate, args.seed, standbys, args.hog)
        return run_soak(args.rounds, args.events, args.sellers, args.kills, args.rate, args.seed)
    if args.command == "bench":
        if args.core:
            from streams.lab.bench_core import run_core_bench

            return run_core_bench(args.events, args.sellers, args.seed, args.json)
        if args.live:
            from streams.lab.bench_live import SHARES, run_live_bench

            rates = ([float(r) for r in args.rates.split(",")] if args.rates
                     else [args.offered * share for share in SHARES])
            return run_live_bench(args.events, args.sellers, args.seed, rates, args.json)
        if args.bursts:
            from streams.lab.bench_bursts import run_bursts_bench

            return run_bursts_bench(args.seed, args.json)
        if args.api:
            from streams.lab.bench_api import run_api_bench

            month = args.events if args.events != 300_000 else 60_000  # a month to serve, not a throughput run
            return run_api_bench(month, args.sellers, args.seed, args.offered, args.clients or 500, args.seconds,
                                 args.json, rate=args.rate)
        if args.replay:
            from streams.lab.bench_replay import run_replay_bench

            return run_replay_bench([int(n) for n in (args.sizes or "100000,1000000").split(",")], args.seed,
                                    args.json)
        if args.memory:
            from streams.lab.bench_memory import run_memory_bench

            return run_memory_bench(64, args.seed, Path(args.baseline) if args.baseline else None, args.json)
        if args.restore:
            from streams.lab.bench_restore import run_restore_bench

            return run_restore_bench([int(n) for n in (args.sizes or "300000").split(",")], args.sellers, args.seed,
                                     args.faust_path, args.json)
        if args.sse:
            from streams.lab.bench_sse import run_sse_bench

            month = args.events if args.events != 300_000 else 60_000
            return run_sse_bench(month, args.sellers, args.seed, args.offered, args.clients or 1000, args.idle,
                                 args.seconds, args.json)
        from streams.lab.bench_service import run_service_bench

        return run_service_bench(args.events, args.sellers, args.seed, args.offered, args.json,
                                 peers_only=args.peers)
    return 2


def _token(seller: str, ttl: str) -> int:
    from streams.service.access import mint

    secret = os.environ.get("STARCAST_API_JWT_SECRET", "")
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = ttl.strip().lower()
    try:
        seconds = float(text[:-1]) * units[text[-1]] if text and text[-1] in units else float(text)
    except ValueError:
        seconds = 0
    if not secret:
        print("starcast token: set STARCAST_API_JWT_SECRET (the worker's) first", file=sys.stderr)
        return 2
    if not seconds > 0:
        print(f"starcast token: --ttl {ttl!r} is not a duration such as 3600, 15m or 1h", file=sys.stderr)
        return 2
    print(mint(secret, seller, seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())

