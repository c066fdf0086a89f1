"""Debian's real Prometheus scraping a real worker on the embedded broker.

The worker rates 25 sellers up to one star, then a tick moves the clock past the day their
buyers leave the window and all 25 drop: Prometheus, evaluating ops/prometheus's own rules
(with `for` shortened so the test need not wait minutes), must fire StarcastStarDropSurge.
The same running worker's /metrics is the list every PromQL expression in the rules and the
Grafana dashboards is checked against.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import orjson
import yaml

from tests.conftest import Events as E
from tests.conftest import at
from tests.integration.test_streaming import BAD_INPUT, Worker, _produce, produce_events, tick_all
from tests.integration.test_ops import RULES, referenced_metrics

SELLERS = [f"drop-{i:02d}" for i in range(25)]


def one_star_month(seller: str) -> list[dict]:
    """Four buyers with replies, twelve top products, four visits: one star on March 1."""
    events = [E.message(at(days=1, hours=i), buyer=f"b{i}", seller=seller) for i in range(4)]
    events += [E.product(at(days=1), f"p{i}", tier="top", seller=seller) for i in range(12)]
    events += [E.visit(at(days=1), f"b{i}", seller=seller) for i in range(4)]
    events += [E.reply(at(days=1, hours=i + 1), f"c-b{i}", seller=seller) for i in range(4)]
    return events


def exported_names(metrics_text: str) -> set[str]:
    return {line.split("{", 1)[0].split(" ", 1)[0] for line in metrics_text.splitlines()
            if line and not line.startswith("#")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return orjson.loads(response.read())


def firing(port: int) -> set[str]:
    return {a["labels"]["alertname"] for a in api(port, "/api/v1/alerts")["data"]["alerts"] if a["state"] == "firing"}


def start_prometheus(tmp_path, target: str) -> tuple[subprocess.Popen, int]:
    binary = shutil.which("prometheus")
    assert binary, "prometheus is not installed: `make test` installs Debian's package"
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            rule["for"] = "0s"  # the expressions as shipped; only the waiting is shortened
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "rule_files": [str(tmp_path / "rules.yml")],
              "scrape_configs": [{"job_name": "starcast", "static_configs": [{"targets": [target]}]}]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = subprocess.Popen([binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                                f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                               stdout=open(tmp_path / "prometheus.log", "wb"), stderr=subprocess.STDOUT)
    return process, port


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_prometheus_fires_the_star_drop_alert_on_a_real_worker(broker, tmp_path):
    worker = Worker(broker, "prom-", tmp_path).start()
    prometheus = None
    try:
        events = [e for seller in SELLERS for e in one_star_month(seller)]
        produce_events(broker, "prom-", events)
        asyncio.run(_produce(broker.bootstrap, "prom-", [(t, k, v, None) for t, k, v in BAD_INPUT]))
        worker.wait_processed(len(events) + len(BAD_INPUT))

        text = urllib.request.urlopen(worker.base + "/metrics", timeout=5).read().decode()
        missing = referenced_metrics() - exported_names(text) - {"up"}
        assert not missing, f"rules or dashboards use metrics the worker does not export: {sorted(missing)}"

        prometheus, port = start_prometheus(tmp_path, worker.base.split("://", 1)[1])
        wait_for(lambda: api(port, "/api/v1/query?query=sum(starcast_sellers)")["data"]["result"], 60,
                 "Prometheus to scrape the worker")
        def query(expr: str) -> float:
            result = api(port, "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))["data"]["result"]
            return float(result[0]["value"][1]) if result else 0.0

        wait_for(lambda: query('sum(starcast_sellers{stars="1"})') >= len(SELLERS), 30, "25 one-star sellers")
        time.sleep(3)  # a few scrapes of the "down" counter at 0
        assert "StarcastStarDropSurge" not in firing(port)

        tick_all(broker, "prom-", "2026-04-01T00:00:00Z")  # the buyers of March 1 leave the window
        wait_for(lambda: query('sum(starcast_star_changes_total{direction="down"})') >= len(SELLERS), 60,
                 "Prometheus to see the 25 drops")
        wait_for(lambda: "StarcastStarDropSurge" in firing(port), 60, "StarcastStarDropSurge to fire")
    finally:
        if prometheus is not None:
            prometheus.terminate()
            prometheus.wait(20)
        worker.stop()
