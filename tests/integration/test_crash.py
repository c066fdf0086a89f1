"""The crash test in its CI form: one short `starcast soak` round.

Two workers (RocksDB) on the embedded broker; a simulated month streams in while workers are
killed with -9 at random points (mid-batch, right after the month-end tick so mid-freeze, and
sometimes again while recovering) and restarted. At the end every seller's latest forecast
equals `starcast replay`, and every seller has exactly one monthly record, equal to replay at
the month's last instant. The long form is `starcast soak --rounds N`.
"""

from __future__ import annotations

from streams.lab.soak import run_round


def test_kills_at_random_points_change_no_forecast_and_no_freeze(tmp_path):
    result = run_round(seed=3, n_events=4_000, n_sellers=120, kills=3, rate=1_500, workdir=tmp_path, n_workers=2)
    assert result.kills >= 3
    assert result.stalls == 0, f"consumption stalled; worker logs in {tmp_path}"
    assert (result.forecast_mismatches, result.freeze_mismatches) == (0, 0), f"see {tmp_path}/mismatches.txt"


def test_kills_with_a_one_mib_state_cache_change_nothing_either(tmp_path, monkeypatch):
    """The same round with sellers evicted all the time: every seller loads from the store,
    with its writes not yet acknowledged on top, and still nothing differs from replay."""
    monkeypatch.setenv("STARCAST_STATE_CACHE_MB", "1")  # the workers inherit it
    result = run_round(seed=5, n_events=4_000, n_sellers=120, kills=3, rate=1_500, workdir=tmp_path, n_workers=2)
    assert result.kills >= 3
    assert result.stalls == 0, f"consumption stalled; worker logs in {tmp_path}"
    assert (result.forecast_mismatches, result.freeze_mismatches) == (0, 0), f"see {tmp_path}/mismatches.txt"
