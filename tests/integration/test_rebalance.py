"""Scaling 1 → 2 → 1 workers while traffic flows changes no rating (one short round of
`starcast soak --rebalance`), on the worker's own fetch loop (the default) and on Faust's
(STARCAST_FAST_FETCH=0), without and with a standby replica (the takeover path)."""

from __future__ import annotations

import pytest

from streams.lab.soak import run_rebalance


@pytest.mark.parametrize("standby", [0, 1], ids=["no-standby", "standby"])
@pytest.mark.parametrize("fast_fetch", ["1", "0"], ids=["own-fetch-loop", "faust-fetch-loop"])
def test_scaling_out_and_back_in_under_traffic_changes_nothing(tmp_path, monkeypatch, fast_fetch, standby):
    monkeypatch.setenv("STARCAST_FAST_FETCH", fast_fetch)  # the worker processes inherit it
    result = run_rebalance(seed=5, n_events=4_000, n_sellers=120, rate=800, standby=standby, workdir=tmp_path)
    assert result.rebalances >= 3  # joined, second joined, first left
    assert result.stalls == 0, f"consumption stalled; worker logs in {tmp_path}"
    assert (result.forecast_mismatches, result.freeze_mismatches) == (0, 0), f"see {tmp_path}/mismatches.txt"
    logs = "".join(path.read_text(errors="replace") for path in tmp_path.glob("w*.log"))
    assert "lacks" not in logs  # no copy had to be thrown away: every standby held every record
    if standby:  # the takeover started from the standby copies the follower kept
        assert "standby changelog partitions from their stores" in logs
