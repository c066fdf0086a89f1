"""The operations files, checked by the tools that will run them: Debian's docker-compose,
promtool and amtool (installed by `make test`). The live half — a real Prometheus scraping a
real worker — is tests/integration/test_prometheus.py."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from streams.core.contract import TOPICS

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "ops"
RULES = OPS / "prometheus" / "rules" / "starcast.yml"
DASHBOARDS = sorted((OPS / "grafana" / "dashboards").glob("*.json"))


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed: `make test` installs it (Debian package), or apt-get install it"
    return path


def run(*args: str, cwd: Path = ROOT) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    return [target["expr"] for path in DASHBOARDS for panel in json.loads(path.read_text())["panels"]
            for target in panel["targets"]]


def test_compose_file_is_valid_and_has_the_whole_stack():
    config = yaml.safe_load(run(tool("docker-compose"), "-f", "docker-compose.yml", "config"))
    services = config["services"]
    assert set(services) == {"kafka", "kafka-init", "worker-1", "worker-2", "simulator", "prometheus",
                             "alertmanager", "grafana"}
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert "EXTERNAL://localhost:9092" in kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"]  # host clients
    assert "INTERNAL://kafka:19092" in kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"]  # containers
    for worker in ("worker-1", "worker-2"):
        env = services[worker]["environment"]
        assert env["STARCAST_BROKER"] == "kafka://kafka:19092" and env["STARCAST_WEB_HOST"] == worker
        assert services[worker]["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
    assert services["simulator"]["profiles"] == ["simulate"]  # opt-in
    init = (OPS / "kafka" / "create-topics.sh").read_text()
    for topic in set(TOPICS.values()) | {"starcast-ticks", "star-changes", "star-ratings-monthly",
                                         "starcast-dead-letters", "star-forecasts"}:
        assert re.search(rf"\b{topic}\b", init), f"create-topics.sh does not create {topic}"
    assert re.search(r"for topic in star-forecasts[^\n]*\n\s+create \"\$topic\" --config cleanup.policy=compact", init)


def test_prometheus_config_and_rules_pass_promtool():
    promtool = tool("promtool")
    assert "SUCCESS" in run(promtool, "check", "config", "prometheus.yml", cwd=OPS / "prometheus")
    assert "SUCCESS: 8 rules found" in run(promtool, "check", "rules", str(RULES))


def test_every_alert_has_promtool_unit_tests_that_pass():
    tests_file = OPS / "prometheus" / "tests" / "starcast_test.yml"
    cases = [case for test in yaml.safe_load(tests_file.read_text())["tests"] for case in test["alert_rule_test"]]
    for rule in alert_rules():
        mine = [case for case in cases if case["alertname"] == rule["alert"]]
        assert any(case["exp_alerts"] for case in mine), f"{rule['alert']}: no case where it fires"
        assert any(not case["exp_alerts"] for case in mine), f"{rule['alert']}: no case where it stays quiet"
    assert "SUCCESS" in run(tool("promtool"), "test", "rules", str(tests_file))


def test_alertmanager_config_passes_amtool():
    assert "SUCCESS" in run(tool("amtool"), "check-config", str(OPS / "alertmanager" / "alertmanager.yml"))


def test_dashboards_use_the_provisioned_datasource_and_cover_the_fleet():
    provisioned = yaml.safe_load((OPS / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = provisioned["datasources"][0]["uid"]
    titles = {}
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        titles[board["uid"]] = [panel["title"] for panel in board["panels"]]
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == uid
            assert all(target["datasource"]["uid"] == uid for target in panel["targets"])
    assert set(titles) == {"starcast-fleet", "starcast-health"}
    fleet = " ".join(titles["starcast-fleet"]).lower()
    for topic in ("by type", "dead letters", "lag", "latency", "star level", "star changes"):
        assert topic in fleet, topic


PROMQL_WORDS = {"and", "or", "unless", "bool", "by", "without", "on", "ignoring", "group_left", "group_right",
                "offset", "le", "inf"}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords,
    label names (inside braces or grouping clauses), strings or durations."""
    expr = re.sub(r'"[^"]*"', "", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", expr))
    return {n for n in names if n.lower() not in PROMQL_WORDS and not re.fullmatch(r"\d+\w*", n)}


def test_metric_name_extraction():
    assert metric_names('sum by (type) (rate(starcast_events_total{outcome="applied"}[5m])) > 0.05 * sum(x_y)') \
        == {"starcast_events_total", "x_y"}
    assert metric_names("histogram_quantile(0.99, sum by (le) (rate(a_bucket[10m]))) and on() day_of_month() >= 5") \
        == {"a_bucket"}


def referenced_metrics() -> set[str]:
    exprs = [rule["expr"] for rule in alert_rules()] + dashboard_exprs()
    return set().union(*(metric_names(e) for e in exprs))
