"""The Faust worker: topics, tables, the rating agent, the clock timer and the HTTP API.

Thin by design: the agent decodes nothing itself and decides nothing; it hands each message to
`RatingProcessor` and applies the returned effects (table writes, sends). Tables:
- `state`: one key per seller entity (`seller␟kind␟id`), so an event rewrites only what it
  touched; rebuilt into memory after every recovery.
- `forecasts`: the last published forecast per seller (the API's answer, and the baseline for
  "did anything change").
- `official`: the last monthly rating per seller; its changelog *is* star-ratings-monthly, so
  a record is in the table exactly when it is on the topic, and a freeze redone after a crash
  sends only what the topic lacks (once per seller per month, SPEC).

Dead letters carry the original bytes as the message value and the key as it came; headers
say where it came from and why: `starcast-origin-topic`, `-partition`, `-offset`, `-reason`,
`-error`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

import faust
from faust.types import TP
import orjson
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from streams.core.groups import load_groups
from streams.core.rulebook import load
from streams.service import faust_fixes, tansu_offsets
from streams.service.intake import Intake
from streams.service.metrics import Metrics
from streams.service.outbox import Outbox
from streams.service.processor import Effects, GroupedProcessor, Incoming, RatingProcessor, Tick, defer_freeze
from streams.service.settings import Settings

log = logging.getLogger("starcast")

TICKS = "starcast-ticks"
OUTPUTS = ("star-forecasts", "star-changes", "star-ratings-monthly", "starcast-dead-letters")


def create_app(settings: Settings | None = None) -> faust.App:
    s = settings or Settings.from_env()
    wall = (lambda: int(time.time() * 1000)) if s.clock == "wall" else None
    selection = load_groups(s.rulebook_groups, default=s.rulebook) if s.rulebook_groups else None
    rulebook = selection.default if selection else load(s.rulebook)
    processor: RatingProcessor | GroupedProcessor = (
        GroupedProcessor(selection, s.partitions, wall) if selection and selection.groups
        else RatingProcessor(rulebook, s.partitions, wall))
    metrics = Metrics()

    options: dict[str, Any] = dict(
        broker=s.broker,
        broker_credentials=s.broker_credentials(),
        store=s.store,
        datadir=s.data_dir,
        topic_partitions=s.partitions,
        web_port=s.web_port,
        web_host=s.web_host,
        web_bind="127.0.0.1" if s.web_host in ("127.0.0.1", "localhost") else "0.0.0.0",
        table_standby_replicas=s.standby_replicas,
        broker_rebalance_timeout=4.0 if s.embedded_broker else 60.0,
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        producer_linger_ms=5,
        topic_allow_declare=True,
        table_key_serializer="raw",  # stores decode keys with these, whatever the table schema
        table_value_serializer="raw",
        # Agents commit only after the message's effects are handed to the producer; a crash
        # replays the message and idempotent state makes that harmless.
        stream_wait_empty=False,
        # Back-pressure: a burst waits in Kafka, not here. Fetched-but-unprocessed data is at
        # most 128 KiB per assigned partition plus 1,024 events in the stream buffer (Faust's
        # defaults, 4 MiB and 4,096, let memory grow by ~100 MiB during a burst).
        consumer_max_fetch_size=128 * 1024,
        broker_max_poll_records=1000,
        stream_buffer_maxsize=1024,
    )
    app = faust.App(f"{s.topic_prefix}{s.app_id}", **options)
    input_names = sorted(set(s.input_topics.values()))
    # With the own fetch loop the agent's records skip Faust's stream (intake.py); Faust empties
    # the intake with its own queues when partitions are revoked.
    intake = Intake({s.topic(name) for name in (*input_names, TICKS)}, maxsize=2 * s.batch_max) \
        if s.fast_fetch else None
    if intake is not None:
        app.flow_control.manage_queue(intake)
    faust_fixes.install(app, fast_fetch=s.fast_fetch, intake=intake)
    if s.embedded_broker:
        # tansu answers ListOffsets(latest) short after batched produces (NOTES.md); table
        # recovery reads its end offsets from fetch high watermarks instead. Real Kafka: not needed.
        fetch_wait_ms = s.fetch_wait_ms if s.fetch_wait_ms >= 0 else (20 if s.fast_fetch else 0)
        tansu_offsets.install(app, s.broker.split("://", 1)[-1], fetch_wait_ms)
    app.starcast = (s, processor, metrics)  # for tests and the runner
    app.starcast_intake = intake

    def topic(*names: str, **kw) -> faust.TopicT:
        return app.topic(*(s.topic(n) for n in names), key_type=bytes, value_type=bytes, key_serializer="raw",
                         value_serializer="raw", partitions=s.partitions, internal=True, **kw)

    class RawBytes(faust.Schema):
        """Events carry the bytes Kafka delivered: with raw codecs Faust's per-message decode
        (two codec-registry lookups, a coroutine) only copies references; the processor
        decodes and validates, and rejects a null value."""

        def compile(self, app_, **_):
            create_event = app_.create_event

            async def decode(message, *, propagate: bool = False):
                return create_event(message.key, message.value, message.headers, message)

            return decode

    ticks = topic(TICKS)
    tick_topic_name = s.topic(TICKS)
    inputs_and_ticks = topic(*input_names, TICKS, schema=RawBytes())  # one stream, one agent
    forecasts_topic = topic("star-forecasts", compacting=True)
    # Sent to through the outbox (not Faust), so declared here: created at start if missing.
    monthly_topic = topic("star-ratings-monthly")  # not compacted: a seller's every month stays
    outputs = [topic(name) for name in ("star-changes", "starcast-dead-letters")]
    outputs += [topic(name) for name in input_names]  # re-keyed messages are forwarded to them

    started = asyncio.Event()  # /healthz answers 503 until the topics and routing metadata are ready

    @app.task
    async def declare_topics() -> None:
        for declared in outputs:
            await declared.maybe_declare()
        # The API routes a seller to its partition's owner through the producer's metadata of
        # the table's changelog; Faust's own sends used to load it, the outbox's come later.
        client = app.producer._ensure_producer()
        for table_ in (forecasts, official):
            await client.partitions_for(table_.changelog_topic.get_topic_name())
        started.set()

    def table(name: str, **kw) -> faust.Table:
        schema = faust.Schema(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
        # key_type/value_type bytes make the store use the raw codec too (tables/base.py).
        return app.Table(name, schema=schema, key_type=bytes, value_type=bytes, partitions=s.partitions, **kw,
                         options={"max_open_files": 64, "write_buffer_size": 4 << 20,
                                  "max_write_buffer_number": 2, "target_file_size_base": 8 << 20,
                                  "block_cache_size": 8 << 20})

    state_table = table("state")
    # star-forecasts *is* the forecasts table's changelog: one write publishes the forecast
    # and makes it durable for the API, instead of a table write plus a send.
    forecasts = table("forecasts", changelog_topic=forecasts_topic)
    # Likewise star-ratings-monthly is the official table's changelog: sending a monthly record
    # and saving it are one write. As two (soak, CI round 3), a worker killed between them
    # restarted without the saved copy and sent 12 records a second time.
    official = table("official", changelog_topic=monthly_topic)

    @state_table.on_recover
    async def _rebuild() -> None:
        # Rebuild only from a quiet agent: a batch still being handled when the rebalance came
        # (Faust does not wait for it: stream_wait_empty=False), and changelog writes not yet
        # acknowledged, are not in the stores yet; memory rebuilt without them once froze a
        # month without a batch's events while later events of the same partitions were in
        # (soak seed 60: 46 freezes).
        async with batch_lock:
            in_flight = await outbox.settled()
            next_offset.clear()  # stream positions go back to the committed offsets
            rewound.clear()
            read_past.clear()
            seek_back.clear()
            # Forecast and official tables recover in the same pass; read them as they are now.
            restored = processor.restore(state_table.items(), forecasts.items(), official.items())
        if in_flight:
            log.info("starcast: waited for %d changelog batches before rebuilding", in_flight)
        metrics.restored.set(restored)
        months = [record["month"] for record in processor.official.values() if "month" in record]
        if months:  # a restarted worker still knows its latest freeze (the FreezeLate alert)
            metrics.froze(max(months))
        metrics.star_levels(processor.published)
        log.info("starcast: rebuilt %d sellers from the state table", restored)

    outbox = Outbox(lambda: app.producer._ensure_producer())  # the aiokafka producer
    batch_lock = asyncio.Lock()  # held by the agent while it handles a batch
    names = {topic_: s.topic(topic_) for topic_ in (*OUTPUTS, *input_names)}

    def stage(effects: Effects, partition: int) -> None:
        """Queue a partition's effects in the outbox (sent by the caller's flush)."""
        for key, value in effects.state_writes:
            outbox.put(state_table, partition, key, value)
        for seller, rating in effects.forecasts:  # star-forecasts is this table's changelog
            outbox.put(forecasts, partition, seller.encode(), orjson.dumps(rating))
        for seller, change in effects.changes:
            outbox.send(names["star-changes"], partition, seller.encode(), orjson.dumps(change))
            metrics.star_changes.labels(direction=change["direction"]).inc()
        for seller, record in effects.monthly:
            data = orjson.dumps(record)
            outbox.put(official, partition, seller.encode(), data)  # = star-ratings-monthly
            metrics.frozen.inc()
            metrics.froze(record["month"])
        for dead in effects.dead_letters:  # kept in the partition they came from
            headers = [("starcast-origin-topic", dead.topic.encode()),
                       ("starcast-origin-partition", str(dead.partition).encode()),
                       ("starcast-origin-offset", str(dead.offset).encode()),
                       ("starcast-reason", dead.reason.encode()),
                       ("starcast-error", dead.message.encode()[:1024])]
            outbox.send(names["starcast-dead-letters"], partition, dead.key, dead.raw, headers)
            metrics.dead_letters.labels(reason=dead.reason).inc()
        for name, key, raw in effects.forward:
            outbox.send(names[name], processor.partition_of[key.decode()], key, raw)
        if effects.forecasts:
            metrics.forecasts.inc(len(effects.forecasts))
        for (kind, outcome), n in Counter(effects.outcomes).items():
            metrics.events.labels(type=kind, outcome=outcome).inc(n)
        now = time.time()
        for ts in effects.event_ts:
            metrics.lag.observe(max(now - ts / 1000, 0))

    input_topic_names = {s.topic(name) for name in input_names}
    next_offset: dict = {}  # input TP -> the offset after the last message handled here
    rewound: dict = {}  # input TP -> the offset it was sought back to after a skip
    read_past: dict = {}  # input TP -> the offset after the furthest message handled here
    # Kafka timestamps of the batch's input messages handled for the first time: the latency
    # histogram counts each once. The records after a hole are read again once it is sought
    # back to (their forecasts went out the first time); counted again, one hole found 9 s
    # late re-read ~5,500 records up to 9 s old and put the bench's p99 at 10 s.
    first_handled: list[float] = []
    seek_back: dict = {}  # input TP -> first missing offset, re-read by stall_watch if still missing

    end_offsets: dict = {}  # input TP -> end offset, refreshed by a timer (never awaited per message)
    held_by: dict[int, list[str]] = {}

    @app.timer(0.5)
    async def refresh_end_offsets() -> None:
        """The broker's end offsets of this worker's input partitions, for the freeze hold: a
        fetch's high watermark goes stale while Faust pauses fetching under back-pressure
        (which let a freeze through early in the soak), and asking the broker inside the
        agent would stall it whenever the broker is slow to answer. Only while a freeze is
        due: the rest of the month needs no answer (and on the embedded broker each asking
        costs a short-lived consumer)."""
        consumer = app.consumer
        if consumer is None or app.rebalancing:
            return
        tps = [tp for tp in consumer.assignment() if tp.topic in input_topic_names]
        if not any(processor.freeze_due(partition) for partition in {tp.partition for tp in tps}):
            end_offsets.clear()  # asked only while a freeze waits; unknown counts as lagging
            return
        if tps:
            try:
                end_offsets.update(await asyncio.wait_for(consumer.highwaters(*tps), timeout=10))
            except Exception as exc:  # noqa: BLE001 - keep the last answer; the hold stays safe
                log.debug("starcast: end offsets unavailable: %r", exc)
        # A held freeze is settled by a message of its partition; if the lag ended without one
        # (the last lagging message came before these end offsets), send the partition a tick
        # at its own clock: it moves nothing and lets the agent freeze.
        for partition, behind in list(held_by.items()):
            clock = processor.clocks().get(partition)
            if behind and clock is not None and not lagging_topics(partition):
                held_by[partition] = []
                await ticks.send(value=orjson.dumps({"now": clock}), partition=partition)

    def lagging_topics(partition: int) -> list[str]:
        """Input topics of `partition` with messages this worker has not handled yet (by the
        last end offsets asked; unknown counts as lagging)."""
        behind = []
        for name in input_names:
            tp = TP(s.topic(name), partition)
            end = end_offsets.get(tp)
            if end is None or handled_upto(tp) < end:
                behind.append(name)
        return behind

    def handled_upto(tp) -> int:
        """The offset before which every message of an input partition is in this worker's
        state: the next one in sequence since the last rebuild, else the committed offset."""
        done = next_offset.get(tp)
        return done if done is not None else app.consumer._committed_offset.get(tp) or 0

    def settle_freeze(partition: int) -> None:
        """A due monthly freeze, once no input topic of the partition lags behind it; checked
        after every batch with messages of the partition while it is due, so the batch that
        ends the lag (or the next tick) releases it: tables are written only by the agent."""
        if not processor.freeze_due(partition):
            return
        behind = lagging_topics(partition)
        if behind and held_by.get(partition) != behind:
            log.info("starcast: monthly freeze of partition %d waits for %s", partition, ", ".join(behind))
        held_by[partition] = behind
        # A topic read past a hole: its clock is past records still to come (see _maybe_freeze).
        gapped = {tp.topic[len(s.topic_prefix):] for tp, furthest in read_past.items()
                  if tp.partition == partition and next_offset.get(tp, furthest) < furthest}
        effects = processor.freeze_if_ready(partition, behind, gapped)
        if effects.monthly:
            log.info("starcast: froze %d sellers of partition %d; input read up to %s", len(effects.monthly),
                     partition, input_positions(partition))
        stage(effects, partition)

    def input_positions(partition: int) -> str:
        """Each input topic's handled offset / end offset on `partition` (for the freeze log)."""
        return ", ".join(f"{name} {handled_upto(tp)}/{end_offsets.get(tp)}"
                         for name in input_names for tp in [TP(s.topic(name), partition)])

    def incoming(msg) -> Incoming | Tick | None:
        """The processor's view of one consumed message (None: a malformed tick, skipped)."""
        if msg.topic == tick_topic_name:
            try:
                return Tick(msg.partition, int(orjson.loads(msg.value)["now"]))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                log.warning("starcast: ignoring a malformed tick on partition %d", msg.partition)
                return None
        tp, offset = msg.tp, msg.offset
        if msg.timestamp and (offset >= read_past.get(tp, 0) or rewound.get(tp) == offset):
            first_handled.append(msg.timestamp)  # not a re-read of one handled before
        expected = next_offset.get(tp)
        if expected is None:  # the first message since the last assignment: reading starts here
            expected = getattr(app.consumer, "starcast_first_offsets", {}).get(tp)
        if expected is not None and offset > expected:
            # Offsets skipped: Faust drops records fetched before a rebalance and carries on
            # from its fetch position. Handle this one (state is idempotent); until the first
            # missing offset comes back the partition counts as lagging, so no freeze runs
            # without the skipped records. Often Faust's own seek after an assignment brings
            # it; if not, stall_watch reads the partition again from there once the group has
            # settled (seeking here, in the middle of Faust's recovery seek, stalled commits).
            if rewound.get(tp) != expected:
                log.info("starcast: %s/%d skipped from offset %d to %d: waiting for %d",
                         msg.topic, msg.partition, expected, offset, expected)
                rewound[tp] = expected
                seek_back[tp] = (expected, time.monotonic())
                next_offset[tp] = expected
        else:
            if expected is not None and offset < expected:  # re-delivered: harmless, rare
                log.info("starcast: %s/%d re-delivered from offset %d (next was %d)", msg.topic,
                         msg.partition, offset, expected)
            rewound.pop(tp, None)
            next_offset[tp] = offset + 1
        if read_past.get(tp, 0) <= offset:
            read_past[tp] = offset + 1
        published = int(msg.timestamp * 1000) if msg.timestamp else None
        return Incoming(msg.value, msg.key, msg.topic[len(s.topic_prefix):], msg.partition, msg.offset, published)

    async def handle(messages: list) -> None:
        """One batch of consumed messages, up to its records being in the Kafka client."""
        async with batch_lock:  # a table rebuild waits for the batch (see _rebuild)
            first_handled.clear()
            items = [item for item in map(incoming, messages) if item is not None]
            by_partition = processor.handle_batch(items, defer_freeze)
            for partition, effects in by_partition.items():
                stage(effects, partition)
            for partition in by_partition:
                settle_freeze(partition)
            await outbox.flush()
        now = time.time()
        for published in first_handled:
            metrics.latency.observe(max(now - published, 0))

    @app.agent(inputs_and_ticks)
    async def rate(stream):
        """One agent for input and ticks, in batches: what it publishes for a seller goes out
        in the order it was computed (two agents could interleave their sends and leave a
        stale forecast last). A batch is acknowledged, and so committable, only after its
        records are in the Kafka client; a crash mid-batch replays it, which idempotent state
        makes harmless."""
        if intake is None:  # Faust's fetch loop: its stream delivers, and acks after each batch
            async for events in stream.take_events(s.batch_max, within=s.batch_seconds):
                await handle([event.message for event in events])
            return
        aiter(stream.channel)  # subscribes the topics; the fetch loop puts their records in the intake
        flow = app.flow_control
        while True:
            messages = await intake.take(s.batch_max, s.batch_seconds)
            generation = app.consumer_generation_id
            # Fetched before a rebalance, or during one: not this worker's to handle any more
            # (their partitions are read again from the committed offsets).
            messages = [m for m in messages if m.generation_id == generation]
            if not messages or not flow.is_active():
                continue
            await handle(messages)
            ack = app.consumer.ack
            for msg in messages:
                ack(msg)

    if s.clock == "wall":

        @app.timer(s.tick_seconds, on_leader=True)
        async def wall_clock() -> None:
            now = int(time.time() * 1000)
            for partition in range(s.partitions):
                await ticks.send(value=orjson.dumps({"now": now}), partition=partition)

    stalls = faust_fixes.StallDetector()
    handled_at_last_check = [-1.0]

    @app.timer(5.0)
    async def stall_watch() -> None:
        """Re-read input partitions left stuck with records waiting (faust_fixes, hole 3)."""
        consumer = app.consumer
        if app.in_recovery or app.rebalancing or consumer is None or not consumer.flow_active:
            stalls.reset()
            return
        handled = sum(sample.value for sample in metrics.events.collect()[0].samples
                      if sample.name.endswith("_total"))
        idle, handled_at_last_check[0] = handled == handled_at_last_check[0], handled
        for tp, (missing, since) in list(seek_back.items()):
            if time.monotonic() - since < 5.0:
                continue  # Faust's own seek after an assignment usually brings it back first
            del seek_back[tp]
            if rewound.get(tp) == missing and next_offset.get(tp) == missing and tp in consumer.assignment():
                log.warning("starcast: %s/%d still misses offset %d: reading again from there",
                            tp.topic, tp.partition, missing)
                await consumer.seek(tp, missing)
                metrics.rereads.inc()
        for tp, committed, position, highwater in await faust_fixes.reread_stalled(consumer, stalls, idle):
            log.warning("starcast: %s/%d stuck at committed offset %s (fetch position %s, end %s): re-reading",
                        tp.topic, tp.partition, committed, position, highwater)
            metrics.rereads.inc()

    @app.timer(5.0)
    async def refresh_gauges() -> None:
        update_gauges()

    def update_gauges() -> None:
        """Gauges read from the processor and the consumer (on a timer and on every scrape)."""
        metrics.star_levels(processor.published)
        for partition, clock in processor.clocks().items():
            metrics.clock.labels(partition=str(partition)).set(clock / 1000)
        consumer = app.consumer
        if consumer is not None:
            waiting = 0
            for tp in consumer.assignment():
                if tp.topic in input_topic_names:
                    end = consumer.highwater(tp)  # from the last fetch: no request to the broker
                    done = next_offset.get(tp, consumer._committed_offset.get(tp))
                    if end is not None and done is not None:
                        waiting += max(end - done, 0)
            metrics.input_lag.set(waiting)

    def authorised(request) -> bool:
        return not s.api_token or request.headers.get("Authorization") == f"Bearer {s.api_token}"

    def error(web, status: int, message: str):
        return web.json({"error": message}, status=status)

    def seller_document(view, request, table, seller_id: str, missing: str):
        """A seller's JSON document from a table this worker owns, or a JSON 401/404."""
        if not authorised(request):
            return error(view, 401, "bearer token required")
        data = table.get(seller_id.encode())
        if data is None:
            return error(view, 404, missing)
        return view.bytes(bytes(data), content_type="application/json")

    @app.page("/sellers/{seller_id}")
    class SellerForecast(faust.web.View):
        @app.table_route(table=forecasts, match_info="seller_id")
        async def get(self, request, seller_id: str):
            return seller_document(self, request, forecasts, seller_id, f"unknown seller {seller_id!r}")

    @app.page("/sellers/{seller_id}/official")
    class SellerOfficial(faust.web.View):
        @app.table_route(table=official, match_info="seller_id")
        async def get(self, request, seller_id: str):
            return seller_document(self, request, official, seller_id,
                                   f"no official rating for seller {seller_id!r} yet")

    @app.page("/healthz")
    class Health(faust.web.View):
        async def get(self, request):
            if not started.is_set():
                return self.json({"status": "starting"}, status=503)
            groups = {g.name: g.rulebook.name for g in selection.groups} if selection else {}
            return self.json({"status": "ok", "rulebook": rulebook.name, "groups": groups, "partitions": s.partitions,
                              "clocks": {str(p): c for p, c in processor.clocks().items()}})

    @app.page("/metrics")
    class MetricsView(faust.web.View):
        async def get(self, request):
            update_gauges()
            return self.bytes(generate_latest(metrics.registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    return app

