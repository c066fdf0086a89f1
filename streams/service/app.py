"""The Faust worker, wired: topics, tables, the rating agent, its timers and the HTTP views.

Thin by design: the agent decides nothing; it hands each batch to the processor
(processor.py) and stages the returned effects in the outbox (kafka/outbox.py). Which input
offsets were handled lives in positions.py, which topics hold a due freeze in freeze_hold.py,
the views in http.py, and every override of Faust/aiokafka behaviour in kafka/. Tables:
- `state`: one key per seller entity (core/keys.py), so an event rewrites only what it
  touched; rebuilt into memory after every recovery.
- `forecasts`: the last published forecast per seller; its changelog *is* star-forecasts, so
  one write publishes a forecast and makes it durable for the API.
- `official`: the last monthly rating per seller; its changelog *is* star-ratings-monthly, so
  a record is in the table exactly when it is on the topic, and a freeze redone after a crash
  sends only what the topic lacks (once per seller per month).

Dead letters carry the original bytes as the message value and the key as it came; headers
say where it came from and why: `starcast-origin-topic`, `-partition`, `-offset`, `-reason`,
`-error`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial
from typing import Any, cast

import faust
import orjson
from faust.types import TP

from streams.core.contract import event_time
from streams.core.groups import load_groups
from streams.core.rulebook import load
from streams.service import fatal, kafka
from streams.service.freeze_hold import FreezeHold
from streams.service.http import install_access_log, register_views
from streams.service.live import KINDS, Hub, event_of
from streams.service.metrics import Metrics
from streams.service.positions import InputPositions
from streams.service.processor import Effects, GroupedProcessor, Incoming, RatingProcessor, Tick, defer_freeze
from streams.service.publisher import Publisher
from streams.service.settings import Settings
from streams.service.upkeep import Upkeep

log = logging.getLogger("starcast")

TICKS = "starcast-ticks"
INTAKE_BATCHES = 16  # records held for the agent, in batches: about one fetch per input topic-partition
# Per database (one per table and partition): a block cache and up to two memtables each. The
# state table is read whenever a seller loads; the published tables only by point reads at a
# load and in full at a takeover, so they get a small share.
ROCKSDB_OPTIONS = {"max_open_files": 64, "write_buffer_size": 4 << 20, "max_write_buffer_number": 2,
                   "target_file_size_base": 8 << 20, "block_cache_size": 8 << 20}
RECORD_TABLE_OPTIONS = {**ROCKSDB_OPTIONS, "write_buffer_size": 2 << 20, "block_cache_size": 1 << 20}


class WorkerApp(kafka.App):
    starcast: tuple[Settings, GroupedProcessor | RatingProcessor, Metrics]  # for tests and the runner
    starcast_intake: kafka.Intake | None


def create_app(settings: Settings | None = None) -> WorkerApp:
    kafka.check_versions()
    s = settings or Settings.from_env()
    wall = (lambda: int(time.time() * 1000)) if s.clock == "wall" else None
    selection = load_groups(s.rulebook_groups, default=s.rulebook) if s.rulebook_groups else None
    rulebook = selection.default if selection else load(s.rulebook)
    metrics = Metrics()
    input_names = sorted(set(s.input_topics.values()))
    # With the own fetch loop the agent's records skip Faust's stream (kafka/intake.py).
    # Input records are taken in event-time order across a partition's topics; ticks in the order sent.
    intake = kafka.Intake({s.topic(name) for name in (*input_names, TICKS)}, maxsize=INTAKE_BATCHES * s.batch_max,
                          per_source=s.batch_max // 8, ordered={s.topic(name) for name in input_names},
                          event_time=lambda message: event_time(message.value)) if s.fast_fetch else None
    app = WorkerApp(f"{s.topic_prefix}{s.app_id}", kafka_options=kafka.KafkaOptions(
        own_fetch_loop=s.fast_fetch, intake=intake, embedded_broker=s.embedded_broker,
        bootstrap=s.bootstrap_servers, fetch_wait_ms=s.effective_fetch_wait_ms(), bulk_restore=s.bulk_restore,
        on_standby_fallback=metrics.standby_fallbacks.inc),
        **s.faust_options())
    if intake is not None:
        app.flow_control.manage_queue(cast(Any, intake))  # Faust empties it when partitions are revoked
    app.starcast_intake = intake

    def topic(*names: str, **kw: Any) -> faust.TopicT:
        return app.topic(*(s.topic(n) for n in names), key_type=bytes, value_type=bytes, key_serializer="raw",
                         value_serializer="raw", partitions=s.partitions, internal=True, **kw)

    def table(name: str, **kw: Any) -> Any:
        schema: faust.Schema = faust.Schema(key_type=bytes, value_type=bytes, key_serializer="raw",
                                            value_serializer="raw")
        # key_type/value_type bytes make the store use the raw codec too.
        return app.Table(name, schema=schema, key_type=bytes, value_type=bytes, partitions=s.partitions,
                         options=ROCKSDB_OPTIONS if name == "state" else RECORD_TABLE_OPTIONS, **kw)

    ticks = topic(TICKS)
    tick_topic_name = s.topic(TICKS)
    input_topics = {s.topic(name) for name in input_names}
    inputs_and_ticks = topic(*input_names, TICKS, schema=RawBytes())  # one stream, one agent
    outputs = [topic(name) for name in ("star-changes", "starcast-dead-letters", *input_names)]
    state_table = table("state")
    forecasts = table("forecasts", changelog_topic=topic("star-forecasts", compacting=True))
    # Not compacted: every month of a seller stays.
    official = table("official", changelog_topic=topic("star-ratings-monthly"))
    # star-warnings is this table's changelog: a warning is sent exactly when it is saved, so a
    # restarted worker knows what it last said and repeats nothing unchanged.
    warnings = table("warnings", changelog_topic=topic("star-warnings", compacting=True))
    history = table("history")  # official records by seller and month, the latest 24 (history.py)
    # The published tables' stores hold what their topics' readers see last, a late record of
    # an earlier owner included: the worker publishes again what differs (kafka/fence.py).
    for published in (forecasts, official, warnings):
        published.fenced = False
    # With RocksDB the store is the state: sellers load on first touch into a bounded cache
    # (core/sellers.py). The memory store holds every seller in memory, as its name says.
    source = (kafka.StoreSource(app, state_table, {"forecasts": forecasts, "official": official,
                                                    "warnings": warnings}) if kafka.is_rocksdb(state_table) else None)
    cache_bytes = s.state_cache_mb << 20 if source is not None else None
    sweep = s.sweep_sellers if source is not None else None
    interval = s.forecast_interval_ms / 1000 if s.forecast_interval_ms else None
    processor: RatingProcessor | GroupedProcessor = (
        GroupedProcessor(selection, s.partitions, wall, s.projection, source, cache_bytes, sweep, s.sweep_seconds,
                         interval)
        if selection and selection.groups
        else RatingProcessor(rulebook, s.partitions, wall, s.projection, source, cache_bytes, sweep_chunk=sweep,
                             sweep_seconds=s.sweep_seconds, forecast_interval=interval))
    app.starcast = (s, processor, metrics)
    outbox = kafka.Outbox(lambda: kafka.aiokafka_producer(app), on_store_error=fatal.stop)
    batch_lock = asyncio.Lock()  # held by the agent while it handles a batch
    started = asyncio.Event()  # /healthz answers 503 until the topics and routing metadata are ready
    positions = InputPositions(lambda tp: kafka.first_offset(app.consumer, tp))
    handled_upto = lambda tp: positions.handled_upto(tp, kafka.committed_offset(app.consumer, tp))  # noqa: E731
    hold = FreezeHold(input_names, lambda name, partition: TP(s.topic(name), partition), handled_upto)
    publisher = Publisher(s, processor, metrics, outbox, state_table, forecasts, official, warnings, history)
    upkeep = Upkeep(app, processor, metrics, positions, hold, input_topics, ticks)
    first_handled: list[float] = []  # Kafka timestamps of this batch's records handled the first time

    @app.task
    async def declare_topics() -> None:
        for declared in outputs:
            await declared.maybe_declare()
        # The API routes a seller to its partition's owner through the producer's metadata of
        # the tables' changelogs; load it before answering.
        client = kafka.aiokafka_producer(app)
        for table_ in (forecasts, official):
            await client.partitions_for(table_.changelog_topic.get_topic_name())
        started.set()

    @state_table.on_recover
    async def rebuild() -> None:
        # Only from a quiet agent: a batch still being handled when the rebalance came, and
        # changelog writes not yet acknowledged, are not in the stores yet; memory rebuilt
        # without them could freeze a month without a batch's events.
        async with batch_lock:
            in_flight = await outbox.settled()
            positions.clear()  # stream positions go back to the committed offsets
            try:
                if source is not None:  # sellers load on first touch: nothing is rebuilt
                    restored = processor.restore_from_store()
                else:
                    restored = processor.restore(*map(kafka.stored_items, (state_table, forecasts, official,
                                                                           warnings)))
            except Exception as exc:  # Faust would only log it and go on with half a processor
                fatal.stop(f"rebuilding the processor from the stores failed ({type(exc).__name__}: {exc})", 70)
                raise
            # Keys whose late records the recovery fenced: written again as the store holds them
            # (kafka/fence.py), for the partitions this worker owns.
            for partition, writes in state_table.take_skipped(kafka.active_partitions(app, state_table)).items():
                processor.reassert(partition, writes)
                log.info("starcast: writing again %d state records of partition %d that a recovery fenced",
                         len(writes), partition)
        if in_flight:
            log.info("starcast: waited for %d changelog batches before rebuilding", in_flight)
        metrics.restored.set(restored)
        if processor.latest_month:  # a restarted worker still knows its latest freeze (the FreezeLate alert)
            metrics.froze(processor.latest_month)
        metrics.star_levels(processor.levels)
        metrics.at_risk(processor.at_risk)
        if source is not None:
            log.info("starcast: took over %d sellers from the stores (they load on first touch)", restored)
        else:
            log.info("starcast: rebuilt %d sellers from the state table", restored)

    def settle_freeze(partition: int) -> None:
        """A due monthly freeze, once no input topic of the partition lags behind it."""
        if not processor.freeze_due(partition):
            return
        behind = hold.hold(partition)
        gapped = {topic_[len(s.topic_prefix):] for topic_ in positions.gapped(partition)}
        effects = processor.freeze_if_ready(partition, behind, gapped)
        if effects.monthly:
            log.info("starcast: froze %d sellers of partition %d; input read up to %s", len(effects.monthly),
                     partition, hold.positions(partition))
        publisher.stage(effects, partition)

    def incoming(msg: Any) -> Incoming | Tick | None:
        """The processor's view of one consumed message (None: a malformed tick, skipped)."""
        if msg.topic == tick_topic_name:
            try:
                return Tick(msg.partition, int(orjson.loads(msg.value)["now"]))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                log.warning("starcast: ignoring a malformed tick on partition %d", msg.partition)
                return None
        if positions.handled(msg.tp, msg.offset, msg.topic, msg.partition) and msg.timestamp:
            first_handled.append(msg.timestamp)
        published = int(msg.timestamp * 1000) if msg.timestamp else None
        return Incoming(msg.value, msg.key, msg.topic[len(s.topic_prefix):], msg.partition, msg.offset, published)

    async def handle(messages: list) -> tuple[asyncio.Future[int], list[float]]:
        """One batch of consumed messages, rated and staged. Returns its flush, started (the
        batch is in the Kafka client once it is done), and the Kafka timestamps of the records
        handled the first time."""
        async with batch_lock:  # a table rebuild waits for the batch
            first_handled.clear()
            items = [item for item in map(incoming, messages) if item is not None]
            by_partition: dict[int, Effects] = {}
            # In slices: an API request or a stream arriving mid-batch waits for one slice,
            # not for the batch (tens to hundreds of ms of CPU when many sellers are re-rated).
            deadline = time.perf_counter() + s.slice_seconds
            for _ in processor.batch_steps(items, defer_freeze, by_partition):
                if s.slice_seconds and time.perf_counter() >= deadline:
                    await asyncio.sleep(0)
                    deadline = time.perf_counter() + s.slice_seconds
            for partition, effects in by_partition.items():
                publisher.stage(effects, partition)
            for partition in by_partition:
                settle_freeze(partition)
            # Started under the lock: a table rebuild that follows waits for it (outbox.settled).
            # Once its writes are in the stores, the sellers' overlay lets them go (sellers.py).
            flushed = outbox.start_flush(partial(processor.settled, processor.batch) if source is not None else None)
        upkeep.handled += sum(type(item) is Incoming for item in items)  # the stall watch's idleness
        return flushed, list(first_handled)

    async def delivered(flushed: asyncio.Future[int], stamps: list[float], messages: list) -> None:
        """Once a batch's records are in the Kafka client: its latency, and its messages acked
        (so their offsets may be committed)."""
        await flushed
        now = time.time()
        for published in stamps:
            metrics.latency.observe(max(now - published, 0))
        for msg in messages:
            app.consumer.ack(msg)

    @app.agent(inputs_and_ticks)
    async def rate(stream: Any) -> None:
        """One agent for input and ticks, in batches: what it publishes for a seller goes out
        in the order it was computed. A batch is acknowledged, and so committable, only after
        its records are in the Kafka client; a crash mid-batch replays it, which idempotent
        state makes harmless."""
        if intake is None:  # Faust's fetch loop: its stream delivers, and acks after each batch
            async for events in stream.take_events(s.batch_max, within=s.batch_seconds):
                await delivered(*await handle([event.message for event in events]), [])
            return
        aiter(stream.channel)  # subscribes the topics; the fetch loop puts their records in the intake
        # A batch's hand-over to the Kafka client (mostly a wait for the broker) runs while the
        # next batch is computed; at most one batch is in flight behind the one computed.
        previous: asyncio.Future | None = None
        while True:
            if previous is not None and not len(intake):  # nothing to compute meanwhile
                await previous
                previous = None
            messages = await intake.take(s.batch_max, s.batch_seconds)
            # Fetched before a rebalance, or during one: not this worker's to handle any more
            # (their partitions are read again from the committed offsets).
            messages = [m for m in messages if m.generation_id == app.consumer_generation_id]
            if not messages or not app.flow_control.is_active():
                continue
            flushed, stamps = await handle(messages)
            if previous is not None:
                await previous
            previous = asyncio.ensure_future(delivered(flushed, stamps, messages))

    @app.timer(0.05)
    async def sweep_marked() -> None:
        """Sellers the clock marked, rated a chunk per batch, and forecasts held back once due,
        while no input waits (with input, every batch does both besides its messages)."""
        # One batch after another while input is idle: each spends at most the sweep's time
        # budget, so a message that arrives waits for one of them at most.
        while ((processor.sweeping() or processor.forecasts_due()) and (intake is None or not len(intake))
               and app.flow_control.is_active()):
            flushed, _ = await handle([])
            await flushed

    @app.timer(0.5)
    async def refresh_end_offsets() -> None:
        await upkeep.refresh_end_offsets()

    @app.timer(5.0)
    async def stall_watch() -> None:
        await upkeep.stall_watch()

    @app.timer(5.0)
    async def refresh_gauges() -> None:
        upkeep.update_gauges()

    @app.timer(1.0)
    async def flush_access_log() -> None:
        # Installed at the first call, after Faust's logging setup; the lines still buffered
        # when the worker exits are flushed by logging's own shutdown.
        install_access_log().flush()

    if s.clock == "wall":

        @app.timer(s.tick_seconds, on_leader=True)
        async def wall_clock() -> None:
            now = int(time.time() * 1000)
            for partition in range(s.partitions):
                await ticks.send(value=orjson.dumps({"now": now}), partition=partition)

    hub = Hub()  # live.py: seller pages' streams, fed from the output topics below
    live_topics = {s.topic(name): name for name in KINDS}

    @app.task
    async def live_fanout() -> None:
        """Every output record to the hub: each worker reads all partitions itself, so it can
        stream any seller whoever owns it, across rebalances."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        await started.wait()
        # A short fetch wait: a broker that answers an empty fetch only when the wait is up (the
        # embedded one does) would otherwise add up to aiokafka's 500 ms to every delivery.
        consumer = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, fetch_max_wait_ms=50,
                                    **s.aiokafka_options())
        await consumer.start()
        try:
            consumer.assign([TopicPartition(t, p) for t in live_topics for p in range(s.partitions)])
            await consumer.seek_to_end()
            beat = time.monotonic()
            while not app.should_stop:  # stopping ends the streams, or the web server waits for them
                if time.monotonic() - beat >= 1.0:
                    hub.heartbeat()  # each stream's every 15 s, spread over the seconds
                    beat = time.monotonic()
                for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                    name = live_topics[tp.topic]
                    for record in records:
                        if record.key and record.value is not None:
                            hub.publish(record.key.decode("utf-8", "replace"),
                                        event_of(name, tp.partition, record.offset, record.value))
        finally:
            hub.close()  # the worker stops: end the streams, or the web server waits for them
            await consumer.stop()

    register_views(app, settings=s, processor=processor, rulebook=rulebook, selection=selection, hub=hub,
                   forecasts=forecasts, official=official, history=history, started=started, metrics=metrics,
                   update_gauges=upkeep.update_gauges)
    return app


class RawBytes(faust.Schema):
    """Events carry the bytes Kafka delivered: with raw codecs Faust's per-message decode
    (two codec-registry lookups, a coroutine) only copies references; the processor decodes
    and validates, and rejects a null value."""

    def compile(self, app: Any, *, on_key_decode_error: Any = None, on_value_decode_error: Any = None,
                default_propagate: bool = False) -> Any:
        create_event = app.create_event

        async def decode(message: Any, *, propagate: bool = False) -> Any:
            return create_event(message.key, message.value, message.headers, message)

        return decode
