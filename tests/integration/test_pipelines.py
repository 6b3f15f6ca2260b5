"""The healing and recovery pipelines on real files, with time moved by a fake clock."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from structlog.testing import capture_logs

from healer.adapters.alerts import Alerter
from healer.adapters.store import Store
from healer.config import AgentOverride, Config, SwarmConfig
from healer.core.model import ESCALATION_MARKER
from healer.testing import FakeClock
from healer.wiring import build_engine
from tests.conftest import MALFORMED_FIXTURE, STATUS_FIXTURES, make_agent

HEAL, RECOVER, TICK = 10.0, 25.0, 0.5


def events(logs: list[dict[str, Any]], name: str, agent: str | None = None) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == name and (agent is None or e.get("agent") == agent)]


def set_age(path: Path, when: float) -> None:
    for p in [path, *path.rglob("*")]:
        os.utime(p, (when, when), follow_symlinks=False)


def touch(path: Path, when: float) -> None:
    os.utime(path, (when, when))


class Rig:
    """An engine over a real workspace whose clock only moves when the test says so."""

    def __init__(self, root: Path, config: Config, *, store: bool = True,
                 alerter: Alerter | None = None) -> None:
        self.root = root
        self.clock = FakeClock(start=time.time())
        self.store = Store.open(root / ".healer" / "healer.db", clock=self.clock) if store else None
        self.engine = build_engine(config, self.clock, store=self.store, alerter=alerter)

    def start(self) -> None:
        self.engine.start()

    def run(self, seconds: float) -> None:
        end = self.clock.now() + seconds
        while self.clock.now() < end - 1e-9:
            self.clock.advance(TICK)
            self.engine.step()

    def write(self, agent: str, doc: dict[str, Any] | None = None) -> None:
        """The agent itself writes its status.json (genuine activity), as the watcher sees it."""
        path = self.root / agent / "status.json"
        current = json.loads(path.read_text()) if doc is None else doc
        tmp = path.with_name(".status.json.agent-tmp")
        tmp.write_text(json.dumps(current))
        os.replace(tmp, path)
        touch(path, self.clock.now())
        self.engine.observe(agent, self.clock.now())

    def status(self, agent: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.root / agent / "status.json").read_text())
        return data


@pytest.fixture
def swarm(tmp_path: Path) -> Iterator[tuple[Path, Config]]:
    root = tmp_path / "ws"
    for n, tasks in ((1, ["fix the parser", "✅ COMPLETED: write docs"]), (2, ["review"]),
                     (3, ["a", "b", "c"])):
        make_agent(root, f"Agent-{n}", {
            "agent_id": f"Agent-{n}", "agent_name": f"Agent {n}", "status": "ACTIVE_AGENT_MODE",
            "current_mission": "mission", "last_updated": "2025-11-28 12:45:00",
            "current_tasks": tasks, "custom_field": {"keep": [1, 2, 3]},
        })
    # The three agents' own pipelines, not the swarm's judgement (tests/unit/test_breakers.py):
    # all three silent at once would be a swarm outage.
    config = Config(workspaces=root, heal_after=HEAL, recover_after=RECOVER, tick=TICK,
                    swarm=SwarmConfig(min_agents=4))
    yield root, config


class TestHealingTimeline:
    def test_the_whole_timeline_heals_recovers_and_escalates_once(
        self, swarm: tuple[Path, Config]
    ) -> None:
        root, config = swarm
        rig = Rig(root, config)
        now = rig.clock.now()
        set_age(root / "Agent-1", now)
        for other in ("Agent-2", "Agent-3"):
            set_age(root / other, now)
        rig.start()
        with capture_logs() as logs:
            for _ in range(int(60 / TICK)):
                rig.clock.advance(TICK)
                for other in ("Agent-2", "Agent-3"):
                    touch(root / other / "status.json", rig.clock.now())
                    rig.engine.observe(other, rig.clock.now())
                rig.engine.step()
        heals = events(logs, "heal_action", "Agent-1")
        assert [(h["attempt"], h["action"], h["ok"]) for h in heals] == [
            (1, "force_update", True), (2, "clear_stuck_tasks", True), (3, "reset_status", True),
        ]
        detected = events(logs, "stall_detected", "Agent-1")
        assert [d["pipeline"] for d in detected] == ["healing", "recovery"]
        assert detected[0]["silent_for"] == pytest.approx(HEAL, abs=TICK)
        assert detected[1]["silent_for"] == pytest.approx(RECOVER, abs=TICK)
        recovery = events(logs, "recovery_action", "Agent-1")
        assert [r["action"] for r in recovery] == ["rescue_message", "reassign_tasks", "alert"]
        assert all(r["ok"] for r in recovery)
        assert len(events(logs, "agent_escalated", "Agent-1")) == 1
        assert events(logs, "agent_recovered") == []
        assert events(logs, "stall_detected", "Agent-2") == []

        status = rig.status("Agent-1")
        assert [h["action"] for h in status["healing_applied"]] == [
            "force_update", "clear_stuck_tasks", "reset_status",
        ]
        assert status["status"] == "ACTIVE_AGENT_MODE" and status["current_tasks"] == []
        assert "custom_field" not in status  # the reset keeps identity only; the backup has it
        backups = sorted(root.glob("Agent-1/status.json.bak.*"))
        assert len(backups) == 1
        saved = json.loads(backups[0].read_text())
        assert saved["custom_field"] == {"keep": [1, 2, 3]}
        assert saved["last_updated"] == "2025-11-28 12:45:00"  # never forged by the heals
        cleared = [e["task"] if isinstance(e, dict) else e
                   for e in status["healer"]["cleared_tasks"]]
        assert "fix the parser" in cleared
        moved = status["healer"]["reassigned_tasks"]
        assert [m["task"] for m in moved] == ["fix the parser"]
        target = moved[0]["to"]
        assert target == "Agent-2"  # the active agent with the fewest open tasks
        assert any("fix the parser" in p.read_text()
                   for p in (root / target / "inbox").glob("HEALER_REASSIGN_*.md"))
        rescues = sorted((root / "Agent-1" / "inbox").glob("HEALER_RESCUE_*.md"))
        assert len(rescues) == 3  # clear_stuck_tasks, the recovery pipeline, reset_status
        assert rescues[0].read_text().startswith("# 🚨 INBOX MESSAGE - RESCUE\n**From**: healer\n")
        marker = (root / "Agent-1" / ESCALATION_MARKER).read_text().splitlines()
        assert marker[0] == "Agent-1 requires manual intervention."
        assert marker[1].startswith("Timestamp: ") and marker[2] == "Recovery attempts: 3"

    @pytest.mark.parametrize("wake_at", [3.0, 12.0, 22.0, 27.0, 33.0, 45.0, 200.0])
    def test_activity_at_any_point_closes_the_incident_as_recovered(
        self, swarm: tuple[Path, Config], wake_at: float
    ) -> None:
        root, config = swarm
        rig = Rig(root, config)
        set_age(root, rig.clock.now())
        rig.start()
        with capture_logs() as logs:
            rig.run(wake_at)
            rig.write("Agent-3")
            rig.run(2 * TICK)
        recovered = events(logs, "agent_recovered", "Agent-3")
        heals = events(logs, "heal_action", "Agent-3")
        if wake_at < HEAL:
            assert recovered == [] and heals == []
            return
        assert len(recovered) == 1
        assert recovered[0]["attempts"] == len(heals)
        assert recovered[0]["silent_for"] == pytest.approx(wake_at, abs=TICK)
        assert not (root / "Agent-3" / ESCALATION_MARKER).exists()
        stats = rig.store.stats() if rig.store else {}
        assert stats["incidents"]["recovered"] >= 1
        # Only the last action counts as a success, and only if the agent came back before the
        # next attempt was due; after the escalation (at 4 x HEAL) every action had failed.
        came_back_in_time = wake_at < 4 * HEAL
        assert stats["by_agent"]["Agent-3"]["successful"] == int(came_back_in_time)
        assert stats["by_agent"]["Agent-3"]["failed"] == len(heals) - int(came_back_in_time)

    def test_nothing_more_happens_to_an_escalated_agent(self, swarm: tuple[Path, Config]) -> None:
        root, config = swarm
        rig = Rig(root, config)
        set_age(root, rig.clock.now())
        rig.start()
        rig.run(50)
        before = sorted(p.name for p in (root / "Agent-1").rglob("*"))
        with capture_logs() as logs:
            rig.run(600)
        assert [e for e in logs if e["event"] in ("heal_action", "recovery_action")] == []
        assert sorted(p.name for p in (root / "Agent-1").rglob("*")) == before

    def test_a_busy_lease_holds_both_pipelines_and_is_capped(
        self, swarm: tuple[Path, Config]
    ) -> None:
        root, config = swarm
        config = replace(config, max_busy_lease=100.0)
        rig = Rig(root, config)
        set_age(root, rig.clock.now())
        rig.start()
        far = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(rig.clock.now() + 10_000))
        rig.write("Agent-1", {**rig.status("Agent-1"), "busy_until": far})
        leased_at = rig.clock.now()
        with capture_logs() as logs:
            rig.run(100 + HEAL - 1)  # the lease is capped at 100 s, then heal_after of grace
            assert events(logs, "stall_detected", "Agent-1") == []
            rig.run(2)
        first = events(logs, "stall_detected", "Agent-1")
        assert first and first[0]["pipeline"] == "healing"
        assert first[0]["silent_for"] == pytest.approx(100.0 + HEAL, abs=2 * TICK)
        assert rig.clock.now() - leased_at >= 100.0 + HEAL

    def test_per_agent_overrides_change_only_that_agent(self, swarm: tuple[Path, Config]) -> None:
        root, config = swarm
        config = replace(config, agents={"Agent-2": AgentOverride(heal_after=40, recover_after=80)})
        rig = Rig(root, config)
        set_age(root, rig.clock.now())
        rig.start()
        with capture_logs() as logs:
            rig.run(30)
        assert events(logs, "stall_detected", "Agent-1")
        assert events(logs, "stall_detected", "Agent-2") == []

    def test_dry_run_detects_but_writes_nothing(self, swarm: tuple[Path, Config]) -> None:
        root, config = swarm
        rig = Rig(root, replace(config, dry_run=True), store=False)
        set_age(root, rig.clock.now())
        before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
        rig.start()
        with capture_logs() as logs:
            rig.run(60)
        assert events(logs, "stall_detected") and events(logs, "agent_escalated")
        acted = events(logs, "heal_action") + events(logs, "recovery_action")
        assert acted and all(e.get("dry_run") is True for e in acted)
        after = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
        assert after == before


def _all_tasks(doc: dict[str, Any]) -> list[Any]:
    tasks = list(doc.get("current_tasks") or [])
    section = doc.get("healer") or {}
    for key in ("cleared_tasks", "reassigned_tasks"):
        tasks += [e["task"] if isinstance(e, dict) and "task" in e else e
                  for e in section.get(key, [])]
    return tasks


class TestRealFixtures:
    @pytest.mark.parametrize(
        "fixture", [p for p in STATUS_FIXTURES if p != MALFORMED_FIXTURE], ids=lambda p: p.name
    )
    def test_every_action_keeps_unknown_fields_and_loses_no_task(
        self, tmp_path: Path, fixture: Path
    ) -> None:
        root = tmp_path / "ws"
        original = json.loads(fixture.read_text())
        make_agent(root, "Agent-1", fixture.read_bytes())
        make_agent(root, "Agent-2", {"agent_id": "Agent-2", "current_tasks": []})
        config = Config(workspaces=root, heal_after=HEAL, recover_after=HEAL * 2.5, tick=TICK)
        rig = Rig(root, config)
        set_age(root, rig.clock.now())
        rig.start()
        for _ in range(int(31 / TICK)):
            rig.clock.advance(TICK)
            touch(root / "Agent-2" / "status.json", rig.clock.now())
            rig.engine.observe("Agent-2", rig.clock.now())
            rig.engine.step()
            incident = rig.engine.monitor.incident("Agent-1")
            if incident is not None and incident.attempts == 2:
                after_two = rig.status("Agent-1")
        # After force_update and clear_stuck_tasks every unknown field is intact.
        for key, value in original.items():
            if key == "healing_applied" and isinstance(value, list):
                assert after_two[key][: len(value)] == value  # the swarm's own entries stay
            elif key != "current_tasks":
                assert after_two[key] == value, key
        # No task is lost: each is in status.json, a backup, or another agent's inbox.
        final = rig.status("Agent-1")
        backups = [json.loads(p.read_text()) for p in root.glob("Agent-1/status.json.bak.*")]
        handed = " ".join(p.read_text() for p in (root / "Agent-2" / "inbox").glob("*.md"))
        known = _all_tasks(final) + [t for b in backups for t in _all_tasks(b)]
        for task in original.get("current_tasks") or []:
            text = task if isinstance(task, str) else json.dumps(task, ensure_ascii=False)
            assert task in known or " ".join(text.split()) in handed

    def test_the_malformed_fixture_is_backed_up_once_and_only_reset_replaces_it(
        self, tmp_path: Path
    ) -> None:
        """force_update and clear_stuck_tasks fail naming the problem and leave the file as
        the agent wrote it (they used to replace it with a salvage that dropped its fields);
        reassignment from it fails; reset_status, whose job is replacing it, resets it. One
        byte-exact backup for all of it."""
        root = tmp_path / "ws"
        raw = MALFORMED_FIXTURE.read_bytes()
        make_agent(root, "Agent-1", raw)
        make_agent(root, "Agent-2", {"current_tasks": []})
        config = Config(workspaces=root, heal_after=HEAL, recover_after=HEAL * 2.5, tick=TICK)
        rig = Rig(root, config)
        set_age(root, rig.clock.now())
        rig.start()
        with capture_logs() as logs:
            for _ in range(int(2.2 * HEAL / TICK)):
                rig.clock.advance(TICK)
                rig.write("Agent-2")
                rig.engine.step()
            assert (root / "Agent-1" / "status.json").read_bytes() == raw
            for _ in range(int(1.2 * HEAL / TICK)):
                rig.clock.advance(TICK)
                rig.write("Agent-2")
                rig.engine.step()
        heals = events(logs, "heal_action", "Agent-1")
        assert [(h["action"], h["ok"]) for h in heals] == [
            ("force_update", False), ("clear_stuck_tasks", False), ("reset_status", True)]
        assert all("cannot be parsed" in h["error"] for h in heals[:2])
        reassign = [e for e in events(logs, "recovery_action", "Agent-1")
                    if e["action"] == "reassign_tasks"]
        assert [e["ok"] for e in reassign] == [False]
        backups = list(root.glob("Agent-1/status.json.bak.*"))
        assert [b.read_bytes() for b in backups] == [raw]
        reset = rig.status("Agent-1")
        assert reset["agent_id"] == "Agent-1" and reset["status"] == "ACTIVE_AGENT_MODE"


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []
    hang = threading.Event()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.hang.is_set():
            time.sleep(1.0)
        type(self).received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


class TestAlerts:
    @pytest.fixture
    def server(self) -> Iterator[ThreadingHTTPServer]:
        _Hook.received = []
        _Hook.hang.clear()
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield server
        _Hook.hang.clear()
        server.shutdown()
        server.server_close()

    def test_each_incident_transition_reaches_the_webhook_once(
        self, swarm: tuple[Path, Config], server: ThreadingHTTPServer
    ) -> None:
        root, config = swarm
        url = f"http://127.0.0.1:{server.server_port}/hook/secret-token"
        alerter = Alerter(None, url, timeout=1.0, max_tries=2, backoff=0.01)
        rig = Rig(root, config, alerter=alerter)
        set_age(root, rig.clock.now())
        rig.start()
        rig.run(50)
        rig.write("Agent-1")
        rig.run(TICK)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(
            [r for r in _Hook.received if r["agent"] == "Agent-1"]
        ) < 3:
            time.sleep(0.02)
        alerter.close(2.0)
        mine = [r["transition"] for r in _Hook.received if r["agent"] == "Agent-1"]
        assert mine == ["stalled", "escalated", "recovered"]

    def test_a_hanging_endpoint_never_delays_detection(
        self, swarm: tuple[Path, Config], server: ThreadingHTTPServer
    ) -> None:
        root, config = swarm
        _Hook.hang.set()
        url = f"http://127.0.0.1:{server.server_port}/hook"
        alerter = Alerter(None, url, timeout=0.5, max_tries=3, backoff=0.05)
        rig = Rig(root, config, alerter=alerter)
        set_age(root, rig.clock.now())
        rig.start()
        slowest = 0.0
        with capture_logs() as logs:
            for _ in range(int(60 / TICK)):
                rig.clock.advance(TICK)
                started = time.perf_counter()
                rig.engine.step()
                slowest = max(slowest, time.perf_counter() - started)
        assert len(events(logs, "agent_escalated")) == 3
        assert slowest < 0.5  # a step never waits on the endpoint (it hangs 1 s per post)
        alerter.close(0.2)


class TestMassStall:
    def test_every_stall_is_reported_before_any_action_is_carried_out(
        self, tmp_path: Path
    ) -> None:
        """When many agents stall in the same tick, detection is not queued behind the
        writes of the others' heals."""
        root = tmp_path / "ws"
        for n in range(20):
            make_agent(root, f"Agent-{n}")
        rig = Rig(root, Config(workspaces=root, heal_after=HEAL, recover_after=1e6, tick=TICK))
        set_age(root, rig.clock.now())
        rig.start()
        rig.run(HEAL - TICK)
        with capture_logs() as logs:
            rig.run(TICK)
        names = [e["event"] for e in logs if e["event"] in ("stall_detected", "heal_action")]
        assert names == ["stall_detected"] * 20 + ["heal_action"] * 20


class TestSpreading:
    def test_three_stalled_agents_tasks_land_on_three_healthy_agents(
        self, tmp_path: Path
    ) -> None:
        """Through the engine: each healthy agent gets one stalled agent's tasks."""
        root = tmp_path / "ws"
        for n in range(1, 4):
            make_agent(root, f"Agent-S{n}", {"current_tasks": [f"S{n} a", f"S{n} b"]})
            make_agent(root, f"Agent-H{n}", {"current_tasks": []})
        # Three of six stalled is a swarm outage by default (half of them), which holds the
        # tasks back; here the spreading is under test.
        config = Config(workspaces=root, heal_after=HEAL, recover_after=RECOVER, tick=TICK,
                        swarm=SwarmConfig(outage_fraction=0.6))
        rig = Rig(root, config)
        set_age(root, rig.clock.now())
        rig.start()
        for _ in range(int((RECOVER + 1) / TICK)):
            rig.clock.advance(TICK)
            for n in range(1, 4):
                touch(root / f"Agent-H{n}" / "devlogs", rig.clock.now())
                rig.engine.observe(f"Agent-H{n}", rig.clock.now())
            rig.engine.step()
        received = [len(list((root / f"Agent-H{n}" / "inbox").glob("HEALER_REASSIGN_*")))
                    for n in range(1, 4)]
        assert received == [1, 1, 1]


class TestCrashLoopGuard:
    def test_an_agent_whose_step_raises_is_deferred_and_the_others_go_on(
        self, swarm: tuple[Path, Config], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A bug meeting one agent's input must neither stop the engine nor make it retry
        that agent at every tick."""
        from healer.core import statusdoc
        from healer.engine import FAILED_STEP_BACKOFF

        real = statusdoc.apply_force_update
        calls: list[str] = []

        def explode(doc: dict[str, Any], now: Any, attempt: int) -> dict[str, Any]:
            calls.append(str(doc.get("agent_id")))
            if doc.get("agent_id") == "Agent-1":
                raise RuntimeError("unforeseen input")
            return real(doc, now, attempt)

        monkeypatch.setattr(statusdoc, "apply_force_update", explode)
        root, config = swarm
        rig = Rig(root, config)
        set_age(root, rig.clock.now())
        rig.start()
        with capture_logs() as logs:
            rig.run(HEAL + 5 * TICK)
        failed = events(logs, "agent_step_failed", "Agent-1")
        assert len(failed) == 1 and failed[0]["retry_in"] == FAILED_STEP_BACKOFF
        assert [h["agent"] for h in events(logs, "heal_action")] == ["Agent-2", "Agent-3"]
        assert calls.count("Agent-1") == 1  # not retried at every tick
