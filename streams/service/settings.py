"""Worker settings, all from the environment (SPEC §4), with the defaults a laptop needs."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field
from typing import Any

from streams.core.contract import TOPICS


@dataclass(frozen=True)
class Settings:
    broker: str = "kafka://localhost:9092"
    store: str = "rocksdb://"  # memory:// for tests
    partitions: int = 4
    rulebook: str = "global-2023"
    rulebook_groups: str = ""  # a seller-groups file: a rulebook per group (default: `rulebook`)
    topic_prefix: str = ""  # prepended to every topic and the consumer group
    web_port: int = 6066
    web_host: str = "127.0.0.1"
    clock: str = "event"  # "event": event time only; "wall": also advanced by the wall clock
    tick_seconds: float = 60.0  # wall mode: how often the clock is advanced
    data_dir: str = "./starcast-data"
    app_id: str = "starcast"
    embedded_broker: bool = False  # tansu quirks (see NOTES): end offsets read from fetches
    standby_replicas: int = 0
    batch_max: int = 1000  # messages handled as one batch: one rating and write per seller
    batch_seconds: float = 0.02  # how long a batch waits to fill (bounds the added latency)
    fetch_wait_ms: int = -1  # embedded broker only: the consumer's fetch wait (0: Faust's 1,500 ms;
    # -1: 20 ms with fast_fetch, else Faust's)
    fast_fetch: bool = True  # the worker's own fetch loop (eager_drain.py); 0: Faust's loop, see README
    api_token: str = ""  # when set, the HTTP API requires `Authorization: Bearer <token>`
    # Broker security: TLS when `broker_ssl` or any TLS file is set; SASL when a user is set.
    broker_ssl: bool = False
    broker_ssl_cafile: str = ""
    broker_ssl_certfile: str = ""
    broker_ssl_keyfile: str = ""
    broker_sasl_mechanism: str = "PLAIN"  # PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
    broker_sasl_username: str = ""
    broker_sasl_password: str = field(default="", repr=False)
    input_topics: dict[str, str] = field(default_factory=lambda: dict(TOPICS))

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def ssl_context(self) -> ssl.SSLContext | None:
        if not (self.broker_ssl or self.broker_ssl_cafile or self.broker_ssl_certfile):
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

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        get = env.get
        return cls(
            broker=get("STARCAST_BROKER", cls.broker),
            store=get("STARCAST_STORE", cls.store),
            partitions=int(get("STARCAST_PARTITIONS", cls.partitions)),
            rulebook=get("STARCAST_RULEBOOK", cls.rulebook),
            rulebook_groups=get("STARCAST_RULEBOOK_GROUPS", cls.rulebook_groups),
            topic_prefix=get("STARCAST_TOPIC_PREFIX", cls.topic_prefix),
            web_port=int(get("STARCAST_WEB_PORT", cls.web_port)),
            web_host=get("STARCAST_WEB_HOST", cls.web_host),
            clock=get("STARCAST_CLOCK", cls.clock),
            tick_seconds=float(get("STARCAST_TICK_SECONDS", cls.tick_seconds)),
            data_dir=get("STARCAST_DATA_DIR", cls.data_dir),
            app_id=get("STARCAST_APP_ID", cls.app_id),
            embedded_broker=get("STARCAST_EMBEDDED_BROKER", "") == "1",
            standby_replicas=int(get("STARCAST_STANDBY_REPLICAS", cls.standby_replicas)),
            batch_max=int(get("STARCAST_BATCH_MAX", cls.batch_max)),
            batch_seconds=float(get("STARCAST_BATCH_SECONDS", cls.batch_seconds)),
            fetch_wait_ms=int(get("STARCAST_FETCH_WAIT_MS", cls.fetch_wait_ms)),
            fast_fetch=get("STARCAST_FAST_FETCH", "1") != "0",
            api_token=get("STARCAST_API_TOKEN", cls.api_token),
            broker_ssl=get("STARCAST_BROKER_SSL", "") == "1",
            broker_ssl_cafile=get("STARCAST_BROKER_SSL_CAFILE", ""),
            broker_ssl_certfile=get("STARCAST_BROKER_SSL_CERTFILE", ""),
            broker_ssl_keyfile=get("STARCAST_BROKER_SSL_KEYFILE", ""),
            broker_sasl_mechanism=get("STARCAST_BROKER_SASL_MECHANISM", cls.broker_sasl_mechanism),
            broker_sasl_username=get("STARCAST_BROKER_SASL_USERNAME", ""),
            broker_sasl_password=get("STARCAST_BROKER_SASL_PASSWORD", ""),
        )
