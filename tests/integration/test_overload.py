"""A burst far above a worker's throughput drains, and waits in Kafka rather than in memory.

The burst re-delivers a month the worker has already rated (so the state does not grow): if
the worker held the backlog in memory, its RSS would grow by at least the burst's size in
Python objects. Faust pauses fetching when a stream buffer is full, so it should not. The
worker is stopped while the burst is sent, so all of it waits at once: 72,000 events against
buffers of at most 16,000 records (the intake, where a partition's topics wait for each other
to be taken in event-time order) plus 128 KiB a partition. Bigger bursts: `starcast soak
--overload`."""

from __future__ import annotations

from streams.lab.soak import run_overload


def test_a_burst_drains_without_the_worker_holding_it_in_memory(tmp_path):
    r = run_overload(n_events=6_000, n_sellers=200, seed=11, repeats=12, workdir=tmp_path, paused=True)
    assert r.events == 72_012  # 12 x the simulated month (6,001 events), re-delivered as one burst
    assert r.rss_peak_bytes - r.rss_start_bytes < r.events * 300, (r.rss_start_bytes, r.rss_peak_bytes)
