"""The service's Prometheus metrics: base units, `_total` counters, bounded labels only.

Labels take values from closed sets (event types, outcomes, rejection reasons, directions, star
levels 0-5, partitions); seller, buyer and visitor ids never appear in metrics.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
HELD_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 3, 4, 5, 5.5, 6, 10, 30)
"""Around STARCAST_FORECAST_INTERVAL_MS's default (5 s): a wait just past it shows as such."""
LAG_BUCKETS = (1, 10, 60, 300, 900, 3600, 4 * 3600, 86400, 7 * 86400, 30 * 86400)


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.events = Counter("starcast_events_total", "Input events by type and outcome",
                              ["type", "outcome"], registry=r)
        self.dead_letters = Counter("starcast_dead_letters_total", "Rejected inputs by reason",
                                    ["reason"], registry=r)
        self.forecasts = Counter("starcast_forecasts_published_total", "Forecasts published", registry=r)
        self.star_changes = Counter("starcast_star_changes_total", "Forecast star changes by direction",
                                    ["direction"], registry=r)
        self.sellers = Gauge("starcast_sellers", "Sellers by forecast stars (this worker)", ["stars"], registry=r)
        self.lag = Histogram("starcast_event_time_lag_seconds", "Wall clock minus event ts at processing",
                             buckets=LAG_BUCKETS, registry=r)
        self.latency = Histogram("starcast_processing_latency_seconds",
                                 "From the input message's Kafka timestamp to its effects being sent",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.frozen = Counter("starcast_freeze_sellers_total", "Monthly ratings frozen and published", registry=r)
        self.freeze_month = Gauge("starcast_freeze_last_month", "Latest month frozen, as YYYYMM", registry=r)
        self.clock = Gauge("starcast_partition_clock_seconds", "Event-time clock per partition",
                           ["partition"], registry=r)
        self.rereads = Counter("starcast_partitions_reread_total",
                               "Input partitions read again from an earlier offset: records skipped "
                               "(after a rebalance) or stuck uncommitted", registry=r)
        self.input_lag = Gauge("starcast_input_lag_messages",
                                "Messages waiting in this worker's input partitions (last fetch high "
                                "watermark minus the next offset to handle)", registry=r)
        self.restored = Gauge("starcast_restored_sellers",
                              "Sellers taken over at the last table recovery (with RocksDB they load on first touch)",
                              registry=r)
        self.sellers_at_risk = Gauge("starcast_sellers_at_risk",
                                     "Sellers whose projected stars for the month are below their forecast "
                                     "(a star-warnings warning not cleared; this worker)", registry=r)
        self.star_warnings = Counter("starcast_star_warnings_total", "star-warnings records by kind",
                                     ["kind"], registry=r)
        self.projection_errors = Counter("starcast_projection_errors_total",
                                         "Projections that failed (the forecast went out with projection null), "
                                         "by exception type", ["error"], registry=r)
        self.standby_fallbacks = Counter("starcast_standby_fallbacks_total",
                                         "Changelog partitions whose local copy could not be shown to hold every "
                                         "record, restored from the changelog instead", registry=r)
        self.cache_bytes = Gauge("starcast_state_cache_bytes",
                                 "Decoded sellers held in memory, estimated (bounded by STARCAST_STATE_CACHE_MB)",
                                 registry=r)
        self.cache_sellers = Gauge("starcast_state_cache_sellers", "Sellers held decoded in memory", registry=r)
        self.cache_lookups = Counter("starcast_state_cache_lookups_total",
                                     "Seller lookups in the state cache by result (a miss reads the store)",
                                     ["result"], registry=r)
        self.sweep_waiting = Gauge("starcast_sweep_waiting_sellers",
                                   "Sellers a day roll, a month start or a takeover marked that still wait to be "
                                   "re-rated (STARCAST_SWEEP_SELLERS a batch)", registry=r)
        self.held = Gauge("starcast_forecasts_held_sellers",
                          "Sellers whose forecast is held back until their interval ends "
                          "(STARCAST_FORECAST_INTERVAL_MS)", registry=r)
        self.held_seconds = Histogram("starcast_forecast_held_seconds",
                                      "How long a held-back forecast waited before it was sent",
                                      buckets=HELD_BUCKETS, registry=r)
        self.cache_evictions = Counter("starcast_state_cache_evictions_total",
                                       "Sellers dropped from memory to stay within the cache budget", registry=r)
        self._cache_seen = (0, 0, 0)
        for level in range(6):
            self.sellers.labels(stars=str(level)).set(0)
        for direction in ("up", "down"):  # exported from the start, so rate()/increase() see the first change
            self.star_changes.labels(direction=direction)
        for kind in ("warning", "cleared"):
            self.star_warnings.labels(kind=kind)

    def froze(self, month: str) -> None:
        """The latest month frozen ("YYYY-MM"), as the YYYYMM gauge the FreezeLate alert reads."""
        self.freeze_month.set(int(month.replace("-", "")))

    def at_risk(self, count: int) -> None:
        self.sellers_at_risk.set(count)

    def star_levels(self, counts: Sequence[int]) -> None:
        for level, n in enumerate(counts):
            self.sellers.labels(stars=str(level)).set(n)

    def state_cache(self, caches: Iterable[Any]) -> None:
        """The state caches' gauges, and their counters moved on by what they counted since."""
        caches = [cache for cache in caches if cache is not None]
        self.cache_bytes.set(sum(cache.bytes for cache in caches))
        self.cache_sellers.set(sum(len(cache) for cache in caches))
        now = tuple(sum(getattr(cache, name) for cache in caches) for name in ("hits", "misses", "evictions"))
        hits, misses, evictions = (max(a - b, 0) for a, b in zip(now, self._cache_seen))
        self._cache_seen = now
        self.cache_lookups.labels(result="hit").inc(hits)
        self.cache_lookups.labels(result="miss").inc(misses)
        self.cache_evictions.inc(evictions)
