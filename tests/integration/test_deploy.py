"""deploy/: the rules pass `promtool check rules` and their own `promtool test rules`, the
example configs pass promtool and amtool, the daemon's real exposition passes `promtool check
metrics`, and every metric the dashboard and the rules ask for is one the daemon serves."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import make_agent
from tests.integration.daemon import running_daemon, watch_args

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
RULE_FILES = sorted((DEPLOY / "prometheus").glob("*-rules.yml"))
RULE_TESTS = sorted((DEPLOY / "prometheus").glob("*.test.yml"))
DASHBOARD = DEPLOY / "grafana" / "healer-dashboard.json"
PROMTOOL = shutil.which("promtool")
AMTOOL = shutil.which("amtool")
requires_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (Debian: apt-get install prometheus)")
requires_amtool = pytest.mark.skipif(
    AMTOOL is None,
    reason="amtool is not installed (Debian: apt-get install prometheus-alertmanager)")
# Series Prometheus makes itself for every scrape target, not served by healer.
SCRAPE_SERIES = {"up"}
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (functions, labels and keywords left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    found = set()
    # Not after a digit or a dot: the `m` of `5m`, the `e` of `1e3`.
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", text):
        if text[match.end():].lstrip().startswith("(") or match.group(0) in _KEYWORDS:
            continue
        found.add(match.group(0))
    return found


def run(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60,
                          check=False, cwd=REPO)


class _Ok(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def exposition(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """/metrics of a real `healer watch` that has healed a silent agent and alerted to an
    Alertmanager endpoint (a local server that accepts every post)."""
    tmp = tmp_path_factory.mktemp("exposition")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    root = tmp / "ws"
    make_agent(root, "Agent-1")
    config = f"healer:\n  alerts:\n    alertmanager_url: http://127.0.0.1:{server.server_port}\n"
    args = watch_args(0.6, 1.0, 0.05, "--metrics-addr", "127.0.0.1:0")
    try:
        with running_daemon(root, tmp, args, config_text=config) as d:
            port = d.wait_event("metrics_started")["port"]
            d.wait_event("alert_sent", timeout=10, transition="stalled", ok=True)
            d.wait_event("heal_action", timeout=10, attempt=1)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
                yield reply.read().decode()
    finally:
        server.shutdown()
        server.server_close()


def served(text: str) -> set[str]:
    """Every sample name the exposition declares: its samples, and for a family without
    samples yet the names its type gives it."""
    suffixes = {"counter": ("_total",), "summary": ("_sum", "_count"),
                "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names |= {sample.name for sample in family.samples}
        names |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
    return names


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())

    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    exprs = [t["expr"] for p in panels(dash["panels"]) for t in p.get("targets", [])]
    for var in dash["templating"]["list"]:
        query = var.get("query")
        if var["type"] == "query":
            exprs.append(re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", query["query"]))
    return exprs


def rules() -> list[dict[str, Any]]:
    found = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            found += group["rules"]
    return found


class TestRules:
    def test_there_are_rules_and_tests_for_them(self):
        assert RULE_FILES and RULE_TESTS

    @requires_promtool
    @pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
    def test_promtool_check_rules(self, path):
        done = run(str(PROMTOOL), "check", "rules", str(path))
        assert done.returncode == 0, done.stdout + done.stderr

    @requires_promtool
    @pytest.mark.parametrize("path", RULE_TESTS, ids=lambda p: p.name)
    def test_promtool_test_rules(self, path):
        """Each rule fires on the series that should fire it, and not before its `for:`."""
        done = run(str(PROMTOOL), "test", "rules", str(path))
        assert done.returncode == 0, done.stdout + done.stderr

    def test_every_rule_waits_and_says_what_to_do(self):
        """Each alert has a `for:`, a severity, a summary and a runbook line."""
        for rule in rules():
            assert rule.get("for"), rule["alert"]
            assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
            assert rule["annotations"]["summary"] and rule["annotations"]["runbook"]

    def test_every_rule_is_tested(self):
        tested = set()
        for path in RULE_TESTS:
            for case in yaml.safe_load(path.read_text())["tests"]:
                tested |= {t["alertname"] for t in case.get("alert_rule_test", [])
                           if t.get("exp_alerts")}
        assert {rule["alert"] for rule in rules()} <= tested


class TestExampleConfigs:
    @requires_promtool
    def test_the_prometheus_example_passes_promtool(self):
        """It loads the rules file too, so promtool checks both together."""
        done = run(str(PROMTOOL), "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
        assert done.returncode == 0, done.stdout + done.stderr
        assert "1 rule files found" in done.stdout

    @requires_amtool
    def test_the_alertmanager_example_passes_amtool(self):
        """(promtool checks Prometheus configs only; amtool is Alertmanager's checker.)"""
        done = run(str(AMTOOL), "check-config", str(DEPLOY / "alertmanager" / "alertmanager.yml"))
        assert done.returncode == 0, done.stdout + done.stderr
        assert "2 inhibit rules" in done.stdout

    def test_it_groups_by_swarm_and_a_swarm_outage_inhibits_its_agents(self):
        config = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
        assert config["route"]["group_by"] == ["swarm"]
        assert {
            "source_matchers": ['alertname="SwarmOutage"'],
            "target_matchers": ['alertname=~"Agent.+"'],
            "equal": ["swarm", "host"],
        } in config["inhibit_rules"]


class TestMetricNames:
    def test_the_name_finder_reads_promql(self):
        """It finds names inside functions, aggregations and binary operators, and nothing
        of labels, ranges, functions, strings or keywords."""
        expr = ('histogram_quantile(0.99, sum by (le) (rate(a_bucket{x="y"}[$__rate_interval])))'
                ' / on (job) b_total and bool c offset 5m or up{job="$job"}')
        assert metric_names(expr) == {"a_bucket", "b_total", "c", "up"}

    @requires_promtool
    def test_the_exposition_passes_promtool_check_metrics(self, exposition):
        done = run(str(PROMTOOL), "check", "metrics", stdin=exposition)
        assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr

    def test_the_exposition_has_the_new_families_with_samples(self, exposition):
        """The daemon healed and alerted, so these are real values, not empty families."""
        samples = {s.name: s for f in text_string_to_metric_families(exposition)
                   for s in f.samples}
        assert samples["healer_incidents_opened_total"].value >= 1
        assert samples["healer_detection_seconds_count"].value >= 1
        assert samples["healer_detection_seconds_sum"].value >= 0.6
        assert samples["healer_observer_up"].value == 1
        assert samples["healer_history_paused"].value == 0
        assert "healer_action_results_total" in samples
        assert "healer_alertmanager_refreshes_total" in samples
        deliveries = [s for f in text_string_to_metric_families(exposition) for s in f.samples
                      if s.name == "healer_alert_deliveries_total"]
        assert {(s.labels["target"], s.labels["outcome"]) for s in deliveries if s.value} >= {
            ("alertmanager", "sent")}

    def test_the_dashboard_loads_and_asks_only_for_served_metrics(self, exposition):
        exprs = dashboard_exprs()
        assert len(exprs) >= 10
        asked = set().union(*(metric_names(e) for e in exprs))
        assert {"healer_agents", "healer_incidents_opened_total",
                "healer_detection_seconds_sum", "healer_alert_deliveries_total"} <= asked
        assert asked - SCRAPE_SERIES <= served(exposition), sorted(
            asked - SCRAPE_SERIES - served(exposition))

    def test_the_rules_ask_only_for_served_metrics(self, exposition):
        asked = set().union(*(metric_names(rule["expr"]) for rule in rules()))
        assert asked - SCRAPE_SERIES <= served(exposition), sorted(
            asked - SCRAPE_SERIES - served(exposition))
