"""A burst far above a worker's throughput drains, and waits in Kafka rather than in memory.

The burst re-delivers a month the worker has already rated (so the state does not grow): if
the worker held the backlog in memory, its RSS would grow by at least the burst's size in
Python objects. Faust pauses fetching when a stream buffer is full, so it should not. Bigger
bursts: `starcast soak --overload`."""

from __future__ import annotations

from streams.service.soak import run_overload


def test_a_burst_drains_without_the_worker_holding_it_in_memory(tmp_path):
    r = run_overload(n_events=6_000, n_sellers=200, seed=11, repeats=4, workdir=tmp_path)
    assert r.offered_per_second > 3 * r.handled_per_second  # it was an overload
    assert r.rss_peak_bytes - r.rss_start_bytes < r.events * 300, (r.rss_start_bytes, r.rss_peak_bytes)
