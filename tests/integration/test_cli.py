"""The operator's commands as separate processes: `status` and `resolve` next to a running
daemon, `/metrics`, `check --json` over the real fixtures, and usage errors (exit 2)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from healer.adapters.store import Store
from healer.config import parse_addr
from healer.core.model import ESCALATION_MARKER
from healer.errors import ConfigError
from tests.conftest import STATUS_FIXTURES, make_agent
from tests.integration.daemon import poll_until, run_healer, running_daemon, watch_args

AGE = 30.0  # how long ago the silent agents' files were last touched


def _touch(folder: Path, when: float) -> None:
    for path in [*folder.rglob("*"), folder]:
        os.utime(path, (when, when), follow_symlinks=False)


def _agent(root: Path, name: str, age: float = 0.0, **status: object) -> float:
    when = time.time() - age
    doc: dict[str, object] = {"agent_id": name, "status": "ACTIVE_AGENT_MODE",
                              "current_tasks": ["task"], **status}
    _touch(make_agent(root, name, doc), when)
    return when


def _config(tmp_path: Path, text: str = "") -> Path:
    path = tmp_path / "healer-test.yml"
    path.write_text(text)
    return path


def _json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _usage_error(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    line = done.stderr.strip()
    assert "\n" not in line and "Traceback" not in line, line
    assert line.startswith("healer: "), line
    for word in words:
        assert word in line, line


# Four agents in four stages: Agent-1 escalates fast, Agent-2 gets attempt 1 and then waits
# 8 s for the next, Agent-3 is active, Agent-4 is silent but holds a busy lease.
STAGES = {"Agent-1": "escalated", "Agent-2": "healing", "Agent-3": "active", "Agent-4": "busy"}
STAGES_YAML = """\
healer:
  agents:
    Agent-1: {heal_after: 0.3}
    Agent-2: {heal_after: 8}
    Agent-4: {heal_after: 0.3}
"""


def _four_stages(tmp_path: Path) -> tuple[Path, dict[str, float]]:
    root = tmp_path / "ws"
    lease = datetime.fromtimestamp(time.time() + 3600).astimezone().isoformat()
    last = {
        "Agent-1": _agent(root, "Agent-1", AGE),
        "Agent-2": _agent(root, "Agent-2", AGE),
        "Agent-3": _agent(root, "Agent-3"),
        "Agent-4": _agent(root, "Agent-4", AGE, busy_until=lease),
    }
    _config(tmp_path, STAGES_YAML)
    return root, last


def _daemon_settled(d: Any) -> None:
    d.wait_event("agent_escalated", timeout=10, agent="Agent-1")
    d.wait_event("heal_action", timeout=10, agent="Agent-2", attempt=1)


class TestStatus:
    def test_status_agrees_with_the_running_daemon(self, tmp_path: Path) -> None:
        """`status --json`, a separate process, reports the stage the daemon acted on for each
        agent, with attempts, silence, ISO last activity (healer's own writes left out) and the
        busy agent's lease end; exit 1 because an agent is escalated."""
        root, last = _four_stages(tmp_path)
        args = watch_args(60, 120, 0.05)
        seen: dict[str, Any] = {}
        with running_daemon(root, tmp_path, args, config=tmp_path / "healer-test.yml") as d:
            _daemon_settled(d)

            def consistent() -> bool:
                done = run_healer(tmp_path, "status", "--json", root=root)
                seen["done"] = done
                data = _json(done)
                seen["rows"] = {row["agent"]: row for row in data["agents"]}
                return {a: r["stage"] for a, r in seen["rows"].items()} == STAGES

            assert poll_until(consistent, timeout=10, interval=0.1), seen
            for agent in ("Agent-3", "Agent-4"):
                assert not d.events("stall_detected", agent=agent)
            assert not d.events("agent_escalated", agent="Agent-2")
        rows = seen["rows"]
        assert seen["done"].returncode == 1
        assert {a: r["attempts"] for a, r in rows.items()} == {
            "Agent-1": 3, "Agent-2": 1, "Agent-3": 0, "Agent-4": 0}
        for agent, row in rows.items():
            assert set(row) == {"agent", "last_activity", "silent_for", "stage", "attempts",
                                "busy_until", "waiting_since", "message"}
            assert _epoch(row["last_activity"]) == pytest.approx(last[agent], abs=0.01)
            assert row["silent_for"] >= (AGE if agent != "Agent-3" else 0)
        assert rows["Agent-3"]["silent_for"] < AGE
        assert _epoch(rows["Agent-4"]["busy_until"]) == pytest.approx(last["Agent-4"] + 1800,
                                                                       abs=0.01)
        assert [a for a, r in rows.items() if r["busy_until"] is not None] == ["Agent-4"]
        # The daemon is gone: the history still says who is escalated.
        after = run_healer(tmp_path, "status", "--json", root=root)
        assert after.returncode == 1
        assert {r["agent"]: r["stage"] for r in _json(after)["agents"]}["Agent-1"] == "escalated"

    def test_status_without_history_reads_the_files_only(self, tmp_path: Path) -> None:
        """With no history yet, `status --json` lists every agent as active or busy from the
        files alone, exits 0, and creates no history folder."""
        root = tmp_path / "ws"
        when = _agent(root, "Agent-1", 50)
        _agent(root, "Agent-2", busy_until="2999-01-01T00:00:00Z")
        done = run_healer(tmp_path, "status", "--json", root=root)
        assert done.returncode == 0, done.stderr
        rows = {r["agent"]: r for r in _json(done)["agents"]}
        assert rows["Agent-1"]["stage"] == "active" and rows["Agent-1"]["attempts"] == 0
        assert _epoch(rows["Agent-1"]["last_activity"]) == pytest.approx(when, abs=0.01)
        assert rows["Agent-1"]["silent_for"] >= 50
        assert rows["Agent-2"]["stage"] == "busy"
        assert not (root / ".healer").exists()
        human = run_healer(tmp_path, "status", root=root)
        assert human.returncode == 0 and "Agent-1" in human.stdout


class TestMetrics:
    def test_metrics_on_port_zero(self, tmp_path: Path) -> None:
        """`--metrics-addr 127.0.0.1:0` logs the bound port in `metrics_started`; /metrics
        there has every family with values that match the four agents' stages."""
        root, _ = _four_stages(tmp_path)
        args = watch_args(60, 120, 0.05, "--metrics-addr", "127.0.0.1:0")
        with running_daemon(root, tmp_path, args, config=tmp_path / "healer-test.yml") as d:
            started = d.wait_event("metrics_started", timeout=5)
            assert started["host"] == "127.0.0.1" and started["port"] > 0
            assert started["addr"] == f"127.0.0.1:{started['port']}"
            _daemon_settled(d)
            (root / "Agent-3" / "devlogs" / "more.md").write_text("progress\n")
            url = f"http://127.0.0.1:{started['port']}/metrics"

            def scrape() -> dict[str, Any]:
                with urllib.request.urlopen(url, timeout=5) as response:
                    text = response.read().decode()
                return {f.name: f for f in text_string_to_metric_families(text)}

            families: dict[str, Any] = {}

            def settled() -> bool:
                families.update(scrape())
                stages = {s.labels["stage"]: s.value for s in families["healer_agents"].samples}
                return stages == {"active": 1, "busy": 1, "healing": 1, "recovering": 0,
                                  "escalated": 1, "flapping": 0, "waiting": 0, "done": 0}

            assert poll_until(settled, timeout=10, interval=0.1)
        silence = {s.labels["agent"]: s.value
                   for s in families["healer_agent_silence_seconds"].samples}
        assert set(silence) == set(STAGES)
        assert silence["Agent-1"] >= AGE and silence["Agent-3"] < AGE

        def value(name: str, **labels: str) -> float:
            return sum(s.value for s in families[name].samples
                       if s.name.endswith("_total") and all(s.labels.get(k) == v
                                                            for k, v in labels.items()))

        assert value("healer_actions", pipeline="healing") == len(d.events("heal_action"))
        assert value("healer_escalations") == 1
        assert value("healer_events_ingested") >= 1
        assert value("healer_reconcile_sweeps") >= 0
        assert value("healer_observer_restarts") == 0
        lag = families["healer_event_lag_seconds"]
        assert lag.type == "histogram"
        count = [s.value for s in lag.samples if s.name.endswith("_count")]
        assert count and count[0] >= 1


class TestResolve:
    def _escalated(self, tmp_path: Path, heal_after: float = 0.3) -> Path:
        root = tmp_path / "ws"
        _agent(root, "Agent-1", AGE)
        _agent(root, "Agent-2")
        _config(tmp_path, "overnight:\n  self_healing:\n    max_attempts: 1\n"
                          "    check_interval: 0.3\n"
                          f"healer:\n  agents:\n    Agent-1: {{heal_after: {heal_after}}}\n")
        return root

    def test_resolve_clears_the_escalation_in_files_and_history(self, tmp_path: Path) -> None:
        """`resolve Agent-1` on a stopped daemon's escalation removes the marker, closes the
        incident as resolved (stats count it) and status shows attempts 0, stage active."""
        root = self._escalated(tmp_path)
        with running_daemon(root, tmp_path, watch_args(60, 120, 0.05),
                            config=tmp_path / "healer-test.yml") as d:
            d.wait_event("agent_escalated", timeout=10, agent="Agent-1")
        assert (root / "Agent-1" / ESCALATION_MARKER).exists()
        before = _json(run_healer(tmp_path, "stats", "--json", root=root))
        assert before["incidents"]["open"] == 1
        done = run_healer(tmp_path, "resolve", "Agent-1", root=root)
        assert done.returncode == 0, done.stderr
        assert "Agent-1" in done.stdout
        assert not (root / "Agent-1" / ESCALATION_MARKER).exists()
        stats = _json(run_healer(tmp_path, "stats", "--json", root=root))
        assert stats["incidents"]["open"] == 0
        assert stats["incidents"]["resolved"] == 1
        assert stats["incidents"]["escalated"] == 1
        status = run_healer(tmp_path, "status", "--json", root=root)
        assert status.returncode == 0
        row = {r["agent"]: r for r in _json(status)["agents"]}["Agent-1"]
        assert (row["stage"], row["attempts"]) == ("active", 0)
        again = run_healer(tmp_path, "resolve", "Agent-1", root=root)
        assert again.returncode == 0 and "nothing to resolve" in again.stdout

    def test_a_running_daemon_follows_a_resolve(self, tmp_path: Path) -> None:
        """A resolve while the daemon runs is picked up at its next reconcile sweep
        (`incident_resolved`), without the agent being counted as recovered."""
        root = self._escalated(tmp_path, heal_after=1.0)
        with running_daemon(root, tmp_path, watch_args(60, 120, 0.05),
                            config=tmp_path / "healer-test.yml") as d:
            d.wait_event("agent_escalated", timeout=10, agent="Agent-1")
            done = run_healer(tmp_path, "resolve", "Agent-1", root=root)
            assert done.returncode == 0, done.stderr
            assert not (root / "Agent-1" / ESCALATION_MARKER).exists()
            d.wait_event("incident_resolved", timeout=5, agent="Agent-1")
            assert not d.events("agent_recovered")
        stats = _json(run_healer(tmp_path, "stats", "--json", root=root))
        assert stats["incidents"]["resolved"] == 1

    @pytest.mark.parametrize(("name", "words"), [
        ("../etc", ["'../etc'", "not an agent name"]),
        ("Agent-404", ["'Agent-404'", "no agent folder"]),
        ("", ["''", "not an agent name"]),
        ("Agent-1/../Agent-2", ["not an agent name"]),
        ("Agent-9", ["Agent-9", "symlink"]),
        ("notes", ["'notes'", "agent_pattern"]),
    ])
    def test_resolve_refuses_what_is_not_an_agent_folder(
        self, tmp_path: Path, name: str, words: list[str]
    ) -> None:
        """A name that is not an existing agent folder directly under the root (a path, a
        missing agent, a symlink to one) exits 2 with one line naming it; nothing changes."""
        root = tmp_path / "ws"
        _agent(root, "Agent-1")
        _agent(root, "Agent-2")
        (root / "Agent-1" / ESCALATION_MARKER).write_text("Agent-1 requires manual intervention.")
        (root / "Agent-9").symlink_to(root / "Agent-1", target_is_directory=True)
        (root / "notes").mkdir()
        _config(tmp_path)
        with Store.open(root / ".healer" / "healer.db") as store:
            row = store.open_incident("Agent-1", opened_at=1.0, silence_started_at=0.5,
                                      stage="escalated")
            store.update_incident(row, attempts=3)
        before = _tree(tmp_path)
        _usage_error(run_healer(tmp_path, "resolve", name, root=root), *words)
        assert _tree(tmp_path) == before
        with Store.open_readonly(root / ".healer" / "healer.db") as view:  # type: ignore[union-attr]
            assert [(r.agent, r.attempts) for r in view.open_incidents()] == [("Agent-1", 3)]


def _tree(top: Path) -> dict[str, tuple[int, bytes]]:
    out = {}
    for path in sorted(top.rglob("*")):
        st = path.lstat()
        data = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
        out[str(path.relative_to(top))] = (st.st_mtime_ns, data)
    return out


class TestCommandLine:
    @pytest.mark.parametrize("args", [
        ["--help"], ["watch", "--help"], ["check", "--help"], ["status", "--help"],
        ["stats", "--help"], ["resolve", "--help"],
    ])
    def test_help_exits_zero(self, tmp_path: Path, args: list[str]) -> None:
        """`--help` of the group and of each command prints usage and exits 0."""
        done = run_healer(tmp_path, *args)
        assert done.returncode == 0, done.stderr
        assert "Usage:" in done.stdout

    @pytest.mark.parametrize("args", [["--bogus", "check"], ["check", "--bogus"],
                                      ["watch", "--tick"], ["frobnicate"]])
    def test_bad_usage_exits_two(self, tmp_path: Path, args: list[str]) -> None:
        """An unknown flag, a flag without its value or an unknown command exits 2."""
        done = run_healer(tmp_path, *args, root=tmp_path)
        assert done.returncode == 2
        assert "Traceback" not in done.stderr

    @pytest.mark.parametrize(("yaml", "key"), [
        ("healer:\n  tick: -1\n", "healer.tick"),
        ("healer:\n  bogus: 1\n", "healer.bogus"),
        ("overnight:\n  self_healing:\n    max_attempts: many\n",
         "overnight.self_healing.max_attempts"),
    ])
    def test_bad_config_exits_two_naming_the_key(
        self, tmp_path: Path, yaml: str, key: str
    ) -> None:
        """A bad config file stops every command with exit 2 and one line naming the key."""
        _config(tmp_path, yaml)
        for command in ("check", "status", "stats"):
            _usage_error(run_healer(tmp_path, command, root=tmp_path), f"healer: {key}: ")

    def test_missing_workspace_exits_two(self, tmp_path: Path) -> None:
        """`--workspaces` naming no directory exits 2 and names it."""
        for command in ("check", "status", "stats", "watch"):
            _usage_error(run_healer(tmp_path, command, root=Path("/nonexistent")), "/nonexistent")

    @pytest.mark.parametrize("addr", ["foo", "127.0.0.1:http", "127.0.0.1:70000"])
    def test_bad_metrics_address_exits_two(self, tmp_path: Path, addr: str) -> None:
        """A metrics address that is not HOST:PORT is a usage error, before anything runs."""
        _usage_error(run_healer(tmp_path, "watch", "--metrics-addr", addr, root=tmp_path),
                     "metrics-addr")


class TestCheckOnRealFixtures:
    @pytest.fixture
    def fixtures_root(self, tmp_path: Path) -> Path:
        """One agent folder per real status file, named after the file."""
        root = tmp_path / "ws"
        for path in STATUS_FIXTURES:
            make_agent(root, path.stem, b"{}")
            shutil.copyfile(path, root / path.stem / "status.json")
        return root

    def test_fresh_fixtures_report_nothing_stalled(self, fixtures_root: Path,
                                                    tmp_path: Path) -> None:
        """`check --json` reads every fixture, the malformed one too, and exits 0 when all are
        fresh; the report has the SPEC §7 shape and nothing is written."""
        done = run_healer(tmp_path, "check", "--json", root=fixtures_root)
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report == {"checked": len(STATUS_FIXTURES), "stalled": [], "actions": [],
                          "waiting": [], "done": []}
        assert not (fixtures_root / ".healer").exists()

    def test_old_fixtures_are_reported_stalled(self, fixtures_root: Path,
                                               tmp_path: Path) -> None:
        """Agents whose files are older than the thresholds are listed with their silence and
        pipeline, and `check` exits 1."""
        now = time.time()
        ages = {STATUS_FIXTURES[0].stem: 1000.0, STATUS_FIXTURES[1].stem: 200.0}
        malformed = next(p.stem for p in STATUS_FIXTURES if p.name.startswith("Agent-1_9b3d"))
        ages[malformed] = 1000.0
        for agent, age in ages.items():
            _touch(fixtures_root / agent, now - age)
        done = run_healer(tmp_path, "check", "--json", root=fixtures_root)
        assert done.returncode == 1, done.stderr
        report = json.loads(done.stdout)
        assert report["checked"] == len(STATUS_FIXTURES)
        assert report["actions"] == []
        stalled = {s["agent"]: s for s in report["stalled"]}
        assert set(stalled) == set(ages)
        for agent, row in stalled.items():
            assert set(row) == {"agent", "silent_for", "pipeline"}
            assert isinstance(row["silent_for"], float)
            assert row["silent_for"] == pytest.approx(ages[agent], abs=5)
            assert row["pipeline"] == ("recovery" if ages[agent] >= 300 else "healing")

    def test_check_now_heals_the_malformed_fixture_without_losing_it(
        self, fixtures_root: Path, tmp_path: Path
    ) -> None:
        """`check --now --json` acts on the malformed status.json too: the actions list has the
        SPEC keys and types, and the original bytes survive in a backup."""
        malformed = next(p for p in STATUS_FIXTURES if p.name.startswith("Agent-1_9b3d"))
        _touch(fixtures_root / malformed.stem, time.time() - 200)
        done = run_healer(tmp_path, "check", "--now", "--json", root=fixtures_root)
        assert done.returncode == 1, done.stderr
        report = json.loads(done.stdout)
        assert [s["agent"] for s in report["stalled"]] == [malformed.stem]
        assert report["actions"]
        for action in report["actions"]:
            assert set(action) == {"agent", "action", "ok"}
            assert action["agent"] == malformed.stem and isinstance(action["ok"], bool)
        backups = list((fixtures_root / malformed.stem).glob("status.json.bak*"))
        assert [b.read_bytes() for b in backups] == [malformed.read_bytes()]


class TestMetricsAddress:
    @pytest.mark.parametrize(("addr", "parsed"), [
        (":9464", ("127.0.0.1", 9464)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("0.0.0.0:9464", ("0.0.0.0", 9464)),
        ("[::1]:9464", ("::1", 9464)),
        ("localhost:80", ("localhost", 80)),
    ])
    def test_parse(self, addr: str, parsed: tuple[str, int]) -> None:
        """An empty host means loopback, never every interface; IPv6 hosts lose brackets."""
        assert parse_addr(addr) == parsed

    @pytest.mark.parametrize("addr", ["9464", "host:9464", "127.0.0.1:", "127.0.0.1:99999",
                                      ":-1"])
    def test_refuse(self, addr: str) -> None:
        """Anything else is a ConfigError naming the key, not a crash."""
        with pytest.raises(ConfigError, match=r"healer\.metrics_addr"):
            parse_addr(addr)


class _Failing:
    """A webhook that answers 500 to its first POST and 200 after, noting when each came."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        times: list[float] = []
        self.times = times

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                times.append(time.monotonic())
                self.send_response(500 if len(times) == 1 else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class TestCheckSettings:
    def test_check_now_retries_alerts_with_the_configured_backoff(self, tmp_path: Path) -> None:
        """`check --now` builds its alerter from every `healer.alerts` setting, as `watch`
        does: with backoff 2 s the retry comes at least 1 s after the failed POST (equal
        jitter), where the class default of 0.5 s would retry within half a second."""
        root = tmp_path / "ws"
        _agent(root, "Agent-1", age=AGE)
        hook = _Failing()
        try:
            _config(tmp_path, "overnight:\n  self_healing: {stall_threshold: 1}\n"
                    "  monitoring: {stall_timeout: 2}\n"
                    f"healer:\n  alerts: {{webhook_url: '{hook.url}', backoff: 2, "
                    "max_tries: 2, timeout: 5}\n")
            done = run_healer(tmp_path, "check", "--now", "--json", root=root)
        finally:
            hook.close()
        assert done.returncode == 1, done.stderr
        assert len(hook.times) == 2, hook.times
        assert hook.times[1] - hook.times[0] >= 0.95

    def test_check_is_not_refused_over_a_tick_only_watch_needs(self, tmp_path: Path) -> None:
        """stall_threshold 0.05 with the default 1 s tick: `check` has no tick and runs,
        `watch` refuses it with exit 2 naming healer.tick."""
        root = tmp_path / "ws"
        _agent(root, "Agent-1", age=AGE)
        _config(tmp_path, "overnight:\n  self_healing: {stall_threshold: 0.05}\n")
        done = run_healer(tmp_path, "check", "--json", root=root)
        assert done.returncode == 1, done.stderr
        assert _json(done)["stalled"][0]["agent"] == "Agent-1"
        _usage_error(run_healer(tmp_path, "watch", root=root), "healer.tick")
