"""Worker settings: each declared once, with its type, default, environment variable and help.

`Settings.from_env()` reads them all; a value that cannot be used stops the process at start
with a message naming the variable and what it allows. docs/configuration.md is generated
from the same declaration (`starcast config --markdown`), and a test keeps the two equal.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field, fields
from typing import Any, Callable

from streams.core.contract import TOPICS


class SettingsError(ValueError):
    """A setting's value cannot be used; the message names the variable and what it allows."""


@dataclass(frozen=True)
class Spec:
    """How one setting is read from the environment."""

    env: str
    help: str
    group: str
    parse: Callable[[str], Any]
    allowed: str  # what a valid value looks like, for errors and the docs
    secret: bool = False


def _integer(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise ValueError(text)
        return value
    return parse


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(text)
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise ValueError(text)
    return value


def _origins(text: str) -> tuple[str, ...]:
    origins = tuple(part.strip().rstrip("/") for part in text.split(",") if part.strip())
    for origin in origins:
        if not origin.startswith(("http://", "https://")) or origin.count("/") != 2:
            raise ValueError(text)
    return origins


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(text)


def _one_of(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(text)
        return text
    return parse


def _optional_ms(text: str) -> int | None:
    return None if text.strip().lower() in ("", "auto") else _integer(0)(text)


def _text(text: str) -> str:
    return text


def _broker_url(text: str) -> str:
    if "://" not in text or not text.split("://", 1)[1]:
        raise ValueError(text)
    return text


def spec(env: str, help: str, group: str, parse: Callable[[str], Any] = _text, allowed: str = "any text",
         secret: bool = False) -> Any:
    """A dataclass field's metadata: the setting's declaration."""
    return {"spec": Spec(env, help, group, parse, allowed, secret)}


@dataclass(frozen=True)
class Settings:
    broker: str = field(default="kafka://localhost:9092", metadata=spec(
        "STARCAST_BROKER", "The Kafka bootstrap server(s).", "Broker", _broker_url, "kafka://HOST:PORT[;...]"))
    embedded_broker: bool = field(default=False, metadata=spec(
        "STARCAST_EMBEDDED_BROKER", "The broker is the embedded tansu (set by `starcast run`): end offsets are "
        "read from fetch high watermarks and the fetch wait is short. Never for a real Kafka.", "Broker",
        _boolean, "1 or 0"))
    broker_ssl: bool = field(default=False, metadata=spec(
        "STARCAST_BROKER_SSL", "TLS to the broker with the system's CAs (also on when a TLS file is set).",
        "Broker security", _boolean, "1 or 0"))
    broker_ssl_cafile: str = field(default="", metadata=spec(
        "STARCAST_BROKER_SSL_CAFILE", "A private CA bundle (PEM) for the broker's certificate.", "Broker security",
        allowed="a file path"))
    broker_ssl_certfile: str = field(default="", metadata=spec(
        "STARCAST_BROKER_SSL_CERTFILE", "Client certificate (PEM) for mutual TLS.", "Broker security",
        allowed="a file path"))
    broker_ssl_keyfile: str = field(default="", metadata=spec(
        "STARCAST_BROKER_SSL_KEYFILE", "The client certificate's private key (PEM).", "Broker security",
        allowed="a file path"))
    broker_sasl_mechanism: str = field(default="PLAIN", metadata=spec(
        "STARCAST_BROKER_SASL_MECHANISM", "SASL mechanism, used when a SASL user is set.", "Broker security",
        _one_of("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"), "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"))
    broker_sasl_username: str = field(default="", metadata=spec(
        "STARCAST_BROKER_SASL_USERNAME", "SASL user; SASL is on when set.", "Broker security"))
    broker_sasl_password: str = field(default="", repr=False, metadata=spec(
        "STARCAST_BROKER_SASL_PASSWORD", "SASL password (never logged).", "Broker security", secret=True))
    topic_prefix: str = field(default="", metadata=spec(
        "STARCAST_TOPIC_PREFIX", "Prepended to every topic and to the consumer group: several deployments on "
        "one broker.", "Topics and state"))
    app_id: str = field(default="starcast", metadata=spec(
        "STARCAST_APP_ID", "The Faust app id: the consumer group and the tables' changelog topic names "
        "(`<prefix><app id>-state-changelog`). Workers of one deployment share it.", "Topics and state"))
    partitions: int = field(default=4, metadata=spec(
        "STARCAST_PARTITIONS", "Partitions of every topic the worker declares, and of its tables. Fixed for "
        "the life of a deployment.", "Topics and state", _integer(1), "an integer >= 1"))
    store: str = field(default="rocksdb://", metadata=spec(
        "STARCAST_STORE", "Table store: RocksDB on local disk, or memory (tests).", "Topics and state",
        _one_of("rocksdb://", "memory://"), "rocksdb:// or memory://"))
    data_dir: str = field(default="./starcast-data", metadata=spec(
        "STARCAST_DATA_DIR", "Where the RocksDB stores live.", "Topics and state", allowed="a directory path"))
    state_cache_mb: int = field(default=256, metadata=spec(
        "STARCAST_STATE_CACHE_MB", "Memory for decoded sellers (MiB, estimated). With the RocksDB store the "
        "store is the state: sellers load on first touch and the least recently used leave when this is "
        "full. The memory store keeps every seller.", "Topics and state", _integer(1), "an integer >= 1"))
    sweep_sellers: int = field(default=200, metadata=spec(
        "STARCAST_SWEEP_SELLERS", "Sellers the clock marks for re-rating (a day roll's, a month start's, a "
        "takeover's) are rated at most this many per batch, between the batches of new events, so new events "
        "do not wait behind them. With the RocksDB store only; the memory store rates them all at once.",
        "Performance", _integer(1), "an integer >= 1"))
    sweep_seconds: float = field(default=0.005, metadata=spec(
        "STARCAST_SWEEP_SECONDS", "And a batch spends at most about this long on them, and on forecasts held "
        "back and now due (at least one seller a batch): a month start re-projects every seller, at several "
        "milliseconds each, and writes what each seller's facts leaving the window changed; new events wait "
        "for the batch and for its records to be acknowledged.", "Performance", _seconds, "a number of seconds > 0"))
    standby_replicas: int = field(default=0, metadata=spec(
        "STARCAST_STANDBY_REPLICAS", "Standby replicas of each table partition: another worker keeps a "
        "copy of it from the changelog, so a takeover reads only the tail. A copy that cannot be shown to hold "
        "every record is not used (starcast_standby_fallbacks_total).",
        "Topics and state", _integer(0), "an integer >= 0"))
    rulebook: str = field(default="global-2023", metadata=spec(
        "STARCAST_RULEBOOK", "The rulebook: a bundled name (global-2023, cn-2020, merchant-3star) or a .toml "
        "path.", "Rating"))
    rulebook_groups: str = field(default="", metadata=spec(
        "STARCAST_RULEBOOK_GROUPS", "A seller-groups file: a rulebook per group of sellers "
        "(docs/rulebooks.md); the others get STARCAST_RULEBOOK.", "Rating", allowed="a file path"))
    clock: str = field(default="event", metadata=spec(
        "STARCAST_CLOCK", "`event`: a partition's clock is the largest event time seen. `wall`: it is also "
        "advanced by the wall clock, so idle sellers age out in production.", "Rating",
        _one_of("event", "wall"), "event or wall"))
    tick_seconds: float = field(default=60.0, metadata=spec(
        "STARCAST_TICK_SECONDS", "With STARCAST_CLOCK=wall: how often the clock is advanced.", "Rating",
        _seconds, "a number of seconds > 0"))
    web_host: str = field(default="127.0.0.1", metadata=spec(
        "STARCAST_WEB_HOST", "The HTTP API's host; a loopback name binds 127.0.0.1, anything else 0.0.0.0.",
        "HTTP API"))
    web_port: int = field(default=6066, metadata=spec(
        "STARCAST_WEB_PORT", "The HTTP API's port.", "HTTP API", _integer(1), "a port number"))
    api_token: str = field(default="", repr=False, metadata=spec(
        "STARCAST_API_TOKEN", "When set, the seller endpoints require `Authorization: Bearer <token>`.",
        "HTTP API", secret=True))
    api_jwt_secret: str = field(default="", repr=False, metadata=spec(
        "STARCAST_API_JWT_SECRET", "When set, seller tokens (JWT HS256, `sub` = seller id, with `exp`; "
        "`starcast token` mints them) open their own seller's endpoints.", "HTTP API", secret=True))
    metrics_token: str = field(default="", repr=False, metadata=spec(
        "STARCAST_METRICS_TOKEN", "When set, `/metrics` requires `Authorization: Bearer <token>`.",
        "HTTP API", secret=True))
    api_rate: float = field(default=100.0, metadata=spec(
        "STARCAST_API_RATE", "Requests a second each caller (the operator, each seller) may make to the "
        "seller endpoints; more get 429 with Retry-After. 0: no limit.", "HTTP API", _non_negative,
        "a number >= 0"))
    api_burst: int = field(default=200, metadata=spec(
        "STARCAST_API_BURST", "Requests a caller may make at once before STARCAST_API_RATE applies.",
        "HTTP API", _integer(1), "an integer >= 1"))
    api_cors_origins: tuple[str, ...] = field(default=(), metadata=spec(
        "STARCAST_API_CORS_ORIGINS", "Origins (comma-separated, e.g. https://seller.example.com) whose "
        "browsers may call the seller endpoints.", "HTTP API", _origins, "origins, comma-separated"))
    webhook_secret: str = field(default="", repr=False, metadata=spec(
        "STARCAST_WEBHOOK_SECRET", "`starcast notify`: the key of each POST's X-Starcast-Signature "
        "(HMAC-SHA256 of the body); required by that command.", "Webhooks", secret=True))
    projection: bool = field(default=True, metadata=spec(
        "STARCAST_PROJECTION", "Compute each forecast's projection and send star-warnings; 0 publishes "
        "`projection: null` and no warnings, for about 2.5 times the throughput when a month's facts are "
        "leaving the window (docs/performance.md).", "Performance", _boolean, "1 or 0"))
    forecast_interval_ms: int = field(default=5000, metadata=spec(
        "STARCAST_FORECAST_INTERVAL_MS", "At most one forecast per seller per this many milliseconds, always "
        "the latest: a seller re-rated sooner whose stars, risk and projected stars and risk are unchanged has "
        "its forecast (and its projection, the costly part) held back until the interval ends. Star changes "
        "and star-warnings are never held back. 0 sends every batch's.", "Performance", _integer(0),
        "an integer >= 0"))
    batch_max: int = field(default=4000, metadata=spec(
        "STARCAST_BATCH_MAX", "Messages handled as one batch at most (one rating and one write per seller): "
        "batches this large form only when messages wait, and then a hot seller is rated once for more of them.",
        "Performance", _integer(1), "an integer >= 1"))
    batch_seconds: float = field(default=0.02, metadata=spec(
        "STARCAST_BATCH_SECONDS", "How long a batch waits to fill: bounds the latency it adds.", "Performance",
        _seconds, "a number of seconds > 0"))
    slice_seconds: float = field(default=0.005, metadata=spec(
        "STARCAST_SLICE_SECONDS", "The longest a batch holds the event loop before it lets requests and "
        "streams run (it goes on where it stopped); 0 holds the loop for the whole batch.", "Performance",
        _non_negative, "a number of seconds >= 0"))
    fast_fetch: bool = field(default=True, metadata=spec(
        "STARCAST_FAST_FETCH", "The worker's own fetch loop and batched intake; 0 keeps Faust's loop "
        "(about 3x slower).", "Performance", _boolean, "1 or 0"))
    bulk_restore: bool = field(default=True, metadata=spec(
        "STARCAST_BULK_RESTORE", "Table recovery reads the changelogs in bulk; 0 keeps Faust's per-record "
        "recovery.", "Performance", _boolean, "1 or 0"))
    fetch_wait_ms: int | None = field(default=None, metadata=spec(
        "STARCAST_FETCH_WAIT_MS", "Embedded broker only: the consumer's fetch wait. `auto`: 20 ms with the "
        "own fetch loop, else Faust's 1,500 ms; 0 also means Faust's.", "Performance", _optional_ms,
        "auto or an integer >= 0"))
    input_topics: dict[str, str] = field(default_factory=lambda: dict(TOPICS))  # event type -> topic

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def effective_fetch_wait_ms(self) -> int:
        """The fetch wait the embedded-broker override sets (0: Faust's own)."""
        if not self.embedded_broker:
            return 0
        if self.fetch_wait_ms is not None:
            return self.fetch_wait_ms
        return 20 if self.fast_fetch else 0

    @property
    def bootstrap_servers(self) -> str:
        """STARCAST_BROKER as a plain Kafka client's bootstrap servers: `host:port,host:port`."""
        return ",".join(part.strip().split("://", 1)[-1].strip("/") for part in self.broker.replace(",", ";").split(";")
                        if part.strip())

    @property
    def web_bind(self) -> str:
        """The address the web server binds: loopback for a loopback host, every interface otherwise."""
        return "127.0.0.1" if self.web_host in ("127.0.0.1", "localhost") else "0.0.0.0"

    @property
    def tls(self) -> bool:
        """Whether the broker connection uses TLS."""
        return bool(self.broker_ssl or self.broker_ssl_cafile or self.broker_ssl_certfile)

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.broker_ssl_cafile or None)
        if self.broker_ssl_certfile:  # client certificate (mutual TLS)
            context.load_cert_chain(self.broker_ssl_certfile, self.broker_ssl_keyfile or None)
        return context

    def broker_credentials(self) -> Any:
        """Faust credentials for the broker connection, or None for plaintext."""
        import faust

        context = self.ssl_context()
        if self.broker_sasl_username:
            return faust.SASLCredentials(username=self.broker_sasl_username, password=self.broker_sasl_password,
                                         mechanism=self.broker_sasl_mechanism, ssl_context=context)
        return faust.SSLCredentials(context) if context is not None else None

    def aiokafka_options(self) -> dict[str, Any]:
        """Connection keyword arguments for a plain aiokafka client (`starcast notify`)."""
        options: dict[str, Any] = {"bootstrap_servers": self.bootstrap_servers}
        context = self.ssl_context()
        if self.broker_sasl_username:
            options.update(security_protocol="SASL_SSL" if context else "SASL_PLAINTEXT", ssl_context=context,
                           sasl_mechanism=self.broker_sasl_mechanism, sasl_plain_username=self.broker_sasl_username,
                           sasl_plain_password=self.broker_sasl_password)
        elif context is not None:
            options.update(security_protocol="SSL", ssl_context=context)
        return options

    def faust_options(self) -> dict[str, Any]:
        """The Faust app settings these settings give."""
        return dict(
            broker=self.broker,
            broker_credentials=self.broker_credentials(),
            store=self.store,
            datadir=self.data_dir,
            topic_partitions=self.partitions,
            web_port=self.web_port,
            web_host=self.web_host,
            web_bind=self.web_bind,
            table_standby_replicas=self.standby_replicas,
            # The embedded broker's first group join takes 30 s with Faust's default.
            broker_rebalance_timeout=4.0 if self.embedded_broker else 60.0,
            # The embedded broker holds a group's join for half the session timeout (10 s: 5 s
            # before a fresh worker may restore; 4 s: 2 s). Heartbeats go every second.
            broker_session_timeout=4.0 if self.embedded_broker else 10.0,
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

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        """Every declared setting from `env` (default: os.environ); raises SettingsError."""
        env = dict(os.environ if env is None else env)
        values: dict[str, Any] = {}
        for f, s in declared():
            if s.env not in env:
                continue
            try:
                values[f.name] = s.parse(env[s.env])
            except ValueError:
                shown = "(hidden)" if s.secret else repr(env[s.env])
                raise SettingsError(f"{s.env}={shown} is not allowed: expected {s.allowed}") from None
        return cls(**values)


def declared() -> list[tuple[Any, Spec]]:
    """(dataclass field, its Spec) of every setting read from the environment, in order."""
    return [(f, f.metadata["spec"]) for f in fields(Settings) if "spec" in f.metadata]


def markdown() -> str:
    """docs/configuration.md, generated from the declaration above."""
    out = ["# Configuration", "",
           "Every setting comes from the environment. This page is generated from",
           "`streams/service/settings.py` (`starcast config --markdown > docs/configuration.md`); a test keeps",
           "the two equal. An invalid value stops the worker at start with a message naming the variable.", ""]
    groups: dict[str, list[str]] = {}
    for f, s in declared():
        default = "auto" if f.default is None else int(f.default) if isinstance(f.default, bool) else f.default
        shown = f"`{default}`" if default != "" else "(unset)"
        groups.setdefault(s.group, []).append(f"| `{s.env}` | {shown} | {s.allowed} | {s.help} |")
    for group, rows in groups.items():
        out += [f"## {group}", "", "| variable | default | allowed | what it does |", "|---|---|---|---|", *rows, ""]
    return "\n".join(out)
