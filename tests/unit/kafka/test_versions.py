"""The overrides run only on the releases they were written against (kafka/versions.py)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from streams.service.kafka.versions import PINNED, VersionMismatch, check_versions

ROOT = Path(__file__).resolve().parents[3]


def test_the_installed_libraries_are_the_pinned_ones():
    check_versions()


def test_another_release_is_refused_naming_both_versions():
    with pytest.raises(VersionMismatch, match=r"faust-streaming 0\.15\.3 is installed, 0\.16\.0 is required"):
        check_versions({**PINNED, "faust-streaming": "0.16.0"})


def test_pyproject_pins_exactly_what_the_check_expects():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = dict(re.fullmatch(r"([\w-]+)==([\w.]+)", d).groups() for d in deps if "==" in d)
    assert {name: pins.get(name) for name in PINNED} == PINNED


def test_the_worker_exits_2_with_the_message(monkeypatch, capsys):
    from streams.service import worker

    def refuse():
        raise VersionMismatch("aiokafka 0.15.0 is installed, 0.14.0 is required")

    monkeypatch.setattr("streams.service.app.kafka.check_versions", refuse)
    assert worker.run_worker() == 2
    assert "aiokafka 0.15.0 is installed, 0.14.0 is required" in capsys.readouterr().err
