"""`starcast replay` as a user runs it: a real subprocess, JSON lines out, errors on stderr."""

from __future__ import annotations

import subprocess
import sys

import orjson

from tests.conftest import Events as E
from tests.conftest import at


def starcast(*args, stdin: bytes | None = None):
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], input=stdin, capture_output=True, timeout=120)


def write(tmp_path, lines):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(line if isinstance(line, bytes) else orjson.dumps(line) for line in lines) + b"\n")
    return path


def test_replay_sorted_output_and_rejections_with_line_numbers(tmp_path):
    path = write(tmp_path, [
        E.message(at(days=1), seller="zeta"),
        b"{broken",
        E.visit(at(days=2), "v", seller="alpha"),
        {**E.visit(at(days=2), "v"), "abnormal": "no"},
        E.visit(at(days=9), "v", seller="alpha"),  # more than a day after --at below
        E.product(at(days=1), "p", seller="mid"),
    ])
    result = starcast("replay", str(path), "--at", at(days=3))
    assert result.returncode == 0, result.stderr
    ratings = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [r["seller_id"] for r in ratings] == ["alpha", "mid", "zeta"]
    assert all(r["as_of"] == "2026-03-04T00:00:00Z" and r["rulebook"] == "global-2023" for r in ratings)
    assert {"seller_id", "rulebook", "as_of", "stars", "risk", "stars_if_healthy", "limiting",
            "bonus_applied_to", "indicators"} <= set(ratings[0])
    errors = result.stderr.decode().splitlines()
    assert errors[0].startswith("line 2: invalid_json:")
    assert errors[1].startswith("line 4: schema: abnormal:")
    assert errors[2].startswith("line 5: future_ts: ts:")
    assert len(errors) == 3


def test_replay_defaults_to_the_latest_ts_and_reads_stdin():
    lines = b"\n".join(orjson.dumps(e) for e in [E.message(at(days=1)), E.message(at(days=4), buyer="b2")])
    result = starcast("replay", "-", stdin=lines)
    assert result.returncode == 0, result.stderr
    rating = orjson.loads(result.stdout)
    assert rating["as_of"] == "2026-03-05T00:00:00Z"
    assert rating["indicators"]["active_buyers"]["value"] == 2


def test_unknown_rulebook_is_a_usage_error(tmp_path):
    result = starcast("replay", str(write(tmp_path, [E.message(at(days=1))])), "--rulebook", "nope")
    assert result.returncode == 2
    assert b"unknown rulebook 'nope'" in result.stderr


def test_run_replays_the_bundled_sample():
    result = starcast("run", "--replay-sample")
    assert result.returncode == 0, result.stderr
    ratings = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert len(ratings) >= 20
    assert len({r["stars"] for r in ratings}) >= 3  # the sample spans several star levels
