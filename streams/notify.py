"""`starcast notify`: output records POSTed to a webhook, signed, at least once, in order per seller.

For back-ends that do not read Kafka. The notifier is its own consumer group (`<prefix>
starcast-notify` by default) on the output topics it is given (star-changes and star-warnings
by default) and, for each record, in partition order:

- POSTs the record's value (JSON) with `Content-Type: application/json`,
  `X-Starcast-Signature: sha256=<hex HMAC-SHA256 of the body with STARCAST_WEBHOOK_SECRET>`,
  `X-Starcast-Idempotency-Key: <topic>/<partition>/<offset>` (the same on every retry and
  re-delivery: a receiver keeps the keys it has handled), `X-Starcast-Topic` and
  `X-Starcast-Seller` (the record's key);
- a 2xx is delivered; a 5xx, 408, 429, a timeout or a refused connection is retried with
  exponential backoff and full jitter; after `tries` attempts, or at once for any other status
  (the receiver refuses the record itself), the record is parked on `starcast-notify-failed`
  with the origin and the last error in its headers;
- a partition's offset is committed only once every record before it is delivered or parked.

Records keyed by seller share a partition, so a seller's records arrive in order; partitions
are delivered concurrently. A crash re-sends what was not committed: the idempotency key makes
that harmless. No Faust import.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import random
import signal
from dataclasses import dataclass
from typing import Any, Callable

import aiohttp

log = logging.getLogger("starcast.notify")

FAILED_TOPIC = "starcast-notify-failed"
DEFAULT_TOPICS = ("star-changes", "star-warnings")
RETRIED_STATUSES = frozenset({408, 429})


def signature(secret: str, body: bytes) -> str:
    """The X-Starcast-Signature value of `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """For receivers: whether `header` signs `body` (constant-time comparison)."""
    return header is not None and hmac.compare_digest(signature(secret, body), header)


def backoff(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Seconds to wait before retry `attempt` (1, 2, ...): full jitter over an exponential bound."""
    return rng.uniform(0, min(cap, base * 2 ** (attempt - 1)))


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    tries: int
    error: str  # the last error when not delivered


@dataclass(frozen=True)
class Options:
    webhook: str
    secret: str
    tries: int = 5
    timeout: float = 5.0  # seconds per POST
    backoff_base: float = 0.5
    backoff_cap: float = 30.0


async def post(session: aiohttp.ClientSession, options: Options, body: bytes, headers: dict[str, str],
               sleep: Callable[[float], Any] = asyncio.sleep, rng: random.Random | None = None) -> Outcome:
    """POST until delivered, refused, or out of tries."""
    rng = rng or random.Random()
    headers = {**headers, "Content-Type": "application/json", "X-Starcast-Signature": signature(options.secret, body)}
    error = ""
    for attempt in range(1, options.tries + 1):
        try:
            async with session.post(options.webhook, data=body, headers=headers,
                                    timeout=aiohttp.ClientTimeout(total=options.timeout)) as response:
                await response.read()
                if 200 <= response.status < 300:
                    return Outcome(True, attempt, "")
                error = f"HTTP {response.status}"
                if response.status < 500 and response.status not in RETRIED_STATUSES:
                    return Outcome(False, attempt, error)  # refused: trying again changes nothing
        except asyncio.TimeoutError:
            error = f"timeout after {options.timeout:g} s"
        except aiohttp.ClientError as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
        if attempt < options.tries:
            await sleep(backoff(attempt, options.backoff_base, options.backoff_cap, rng))
    return Outcome(False, options.tries, error)


class Notifier:
    def __init__(self, options: Options, kafka: dict[str, Any], topics: list[str], group: str, failed_topic: str):
        self.options, self.kafka, self.topics, self.group = options, kafka, topics, group
        self.failed_topic = failed_topic
        self.delivered = self.parked = 0
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        consumer = AIOKafkaConsumer(*self.topics, group_id=self.group, enable_auto_commit=False,
                                    auto_offset_reset="earliest", **self.kafka)
        producer = AIOKafkaProducer(acks="all", **self.kafka)
        await consumer.start()
        await producer.start()
        try:
            async with aiohttp.ClientSession() as session:
                while not self._stop.is_set():
                    batches = await consumer.getmany(timeout_ms=500, max_records=500)
                    if batches:
                        done = await asyncio.gather(*(self._partition(session, producer, records)
                                                      for records in batches.values()))
                        await consumer.commit({tp: offset for tp, offset in zip(batches, done)})
        finally:
            await consumer.stop()
            await producer.stop()

    async def _partition(self, session: aiohttp.ClientSession, producer: Any, records: list) -> int:
        """Deliver or park each record in order; the offset to commit after them."""
        for record in records:
            key = f"{record.topic}/{record.partition}/{record.offset}"
            headers = {"X-Starcast-Idempotency-Key": key, "X-Starcast-Topic": record.topic,
                       "X-Starcast-Seller": (record.key or b"").decode("utf-8", "replace")}
            outcome = await post(session, self.options, record.value or b"null", headers)
            if outcome.delivered:
                self.delivered += 1
                continue
            await (await producer.send(self.failed_topic, key=record.key, value=record.value, headers=[
                ("starcast-origin-topic", record.topic.encode()),
                ("starcast-origin-partition", str(record.partition).encode()),
                ("starcast-origin-offset", str(record.offset).encode()),
                ("starcast-tries", str(outcome.tries).encode()),
                ("starcast-error", outcome.error.encode()[:1024])]))
            self.parked += 1
            log.warning("starcast notify: parked %s after %d tries: %s", key, outcome.tries, outcome.error)
        return records[-1].offset + 1


def run_notifier(webhook: str, topics: list[str], tries: int, timeout: float) -> int:
    from streams.service.settings import Settings, SettingsError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        s = Settings.from_env()
    except SettingsError as exc:
        log.error("%s", exc)
        return 2
    if not s.webhook_secret:
        log.error("starcast notify: set STARCAST_WEBHOOK_SECRET (the receivers verify each POST with it)")
        return 2
    if not webhook.startswith(("http://", "https://")):
        log.error("starcast notify: --webhook must be an http(s) URL")
        return 2
    notifier = Notifier(Options(webhook, s.webhook_secret, tries=tries, timeout=timeout), s.aiokafka_options(),
                        [s.topic(t) for t in topics], f"{s.topic_prefix}starcast-notify", s.topic(FAILED_TOPIC))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, notifier.stop)
        await notifier.run()

    asyncio.run(main())
    log.info("starcast notify: stopped; %d delivered, %d parked", notifier.delivered, notifier.parked)
    return 0
