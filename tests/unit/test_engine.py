"""The engine over the in-memory ports: the policy's steps carried out, counted and put on
record, without a file, a thread or SQLite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from healer.config import Config
from healer.core.isotime import iso
from healer.core.model import Pipeline
from healer.engine import Engine
from healer.history import History
from healer.testing import FakeClock, MemoryIncidentLog, MemoryWorkspace, RecordingAlerts

HEAL, RECOVER, TICK = 2.0, 5.0, 0.1


class Rig:
    def __init__(self, tmp_path: Path, *, record: bool = True, **overrides: Any) -> None:
        self.clock = FakeClock()
        self.workspace = MemoryWorkspace()
        self.log = MemoryIncidentLog()
        self.alerts = RecordingAlerts()
        config = Config(workspaces=tmp_path, heal_after=HEAL, recover_after=RECOVER, tick=TICK,
                        **overrides)
        self.engine = Engine(config, self.clock, workspace=self.workspace,
                             files=self.workspace.files,
                             history=History(self.log, self.clock, record=record),
                             alerts=self.alerts, keep_actions=True)

    def run(self, seconds: float) -> None:
        end = self.clock.now() + seconds
        while self.clock.now() < end - 1e-9:
            self.clock.advance(TICK)
            self.engine.step()


class TestCarryingOut:
    def test_each_rung_is_applied_recorded_and_counted(self, tmp_path: Path) -> None:
        rig = Rig(tmp_path)
        rig.workspace.add("Agent-1", rig.clock.now(), doc={"current_tasks": ["t"]})
        rig.engine.start()
        rig.run(3 * HEAL + 3 * TICK)
        doc = rig.workspace.files.docs["Agent-1"]
        assert doc is not None
        assert [h["action"] for h in doc["healing_applied"]] == [
            "force_update", "clear_stuck_tasks", "reset_status"]
        assert rig.engine.executor.counters.heal_actions == 3
        assert [r.attempts for r in rig.log.open_incidents()] == [3]
        assert [a.action for a in rig.engine.executor.actions or ()][:2] == [
            "force_update", "clear_stuck_tasks"]

    def test_a_read_only_engine_acts_but_writes_no_history(self, tmp_path: Path) -> None:
        """`check` without the right to record: steps are carried out, the log stays empty."""
        rig = Rig(tmp_path, record=False)
        rig.workspace.add("Agent-1", rig.clock.now())
        rig.engine.start()
        rig.run(HEAL + TICK)
        assert rig.engine.executor.counters.heal_actions == 1
        assert rig.log.incidents == [] and rig.log.actions == []

    def test_a_lease_holds_both_pipelines(self, tmp_path: Path) -> None:
        rig = Rig(tmp_path)
        until = rig.clock.now() + 3 * RECOVER
        rig.workspace.add("Agent-1", rig.clock.now(), doc={"busy_until": iso(until)})
        rig.engine.start()
        with capture_logs() as logs:
            rig.run(2 * RECOVER)
        assert not [e for e in logs if e["event"] == "stall_detected"]
        assert rig.engine.monitor.stage("Agent-1", rig.clock.monotonic()).value == "busy"

    def test_recovery_alerts_once_and_a_return_closes_with_recovered(self, tmp_path: Path
                                                                     ) -> None:
        rig = Rig(tmp_path)
        rig.workspace.add("Agent-1", rig.clock.now())
        rig.engine.start()
        rig.run(RECOVER + TICK)
        rig.engine.observe("Agent-1", rig.clock.monotonic())
        assert [t for _, t, _ in rig.alerts.alerts] == ["stalled", "recovered"]
        assert rig.log.stats()["incidents"] == {
            "open": 0, "recovered": 1, "resolved": 0, "escalated": 0}


class TestMassStall:
    def test_agents_due_while_actions_run_are_detected_between_them(self, tmp_path: Path
                                                                    ) -> None:
        """A slow heal (fsync under load) must not hold back the next agents' detection."""
        rig = Rig(tmp_path)
        rig.workspace.add("Agent-1", rig.clock.now())
        rig.workspace.add("Agent-2", rig.clock.now())
        rig.clock.advance(0.5)
        rig.workspace.add("Agent-3", rig.clock.now())  # due 0.5 s after the other two
        rig.engine.start()
        executor = rig.engine.executor
        plain = executor.carry_out

        def slow(agent: str, incident: Any, step: Any, now: float, last: float) -> None:
            plain(agent, incident, step, now, last)
            if type(step).__name__ == "HealAttempt":
                rig.clock.advance(0.6)  # this heal took 600 ms

        executor.carry_out = slow  # type: ignore[method-assign]
        rig.clock.advance(HEAL - 0.5 + 0.01)
        with capture_logs() as logs:
            rig.engine.step()
        order = [(e["event"], e["agent"]) for e in logs
                 if e["event"] in ("stall_detected", "heal_action")]
        assert order == [
            ("stall_detected", "Agent-1"), ("stall_detected", "Agent-2"),
            ("heal_action", "Agent-1"), ("stall_detected", "Agent-3"),
            ("heal_action", "Agent-2"), ("heal_action", "Agent-3")]
        assert executor.counters.heal_actions == 3
        assert [r.attempts for r in rig.log.open_incidents()] == [1, 1, 1]

    def _slow_heals(self, rig: Rig, seconds: float) -> None:
        executor = rig.engine.executor
        plain = executor.carry_out

        def slow(agent: str, incident: Any, step: Any, now: float, last: float) -> None:
            plain(agent, incident, step, now, last)
            if type(step).__name__ == "HealAttempt":
                rig.clock.advance(seconds)

        executor.carry_out = slow  # type: ignore[method-assign]

    def test_a_step_spends_its_budget_and_leaves_the_rest_pending(self, tmp_path: Path
                                                                  ) -> None:
        """issue #16: a mass stall's actions do not all run in one step; the loop gets back
        to its events and pings between them, and every stall is detected at once."""
        rig = Rig(tmp_path)
        for n in range(1, 6):
            rig.workspace.add(f"Agent-{n}", rig.clock.now())
        rig.engine.start()
        self._slow_heals(rig, 0.04)
        rig.clock.advance(HEAL + 0.01)
        with capture_logs() as logs:
            rig.engine.step(budget=0.1)
        assert len([e for e in logs if e["event"] == "stall_detected"]) == 5
        assert len([e for e in logs if e["event"] == "heal_action"]) == 3  # 0.04 s each
        assert rig.engine.pending() == 2
        with capture_logs() as logs:
            rig.engine.step(budget=0.1)
        assert [e["agent"] for e in logs if e["event"] == "heal_action"] == [
            "Agent-4", "Agent-5"]
        assert rig.engine.pending() == 0
        assert rig.engine.executor.counters.heal_actions == 5

    def test_an_agent_back_before_its_turn_is_spared_the_action(self, tmp_path: Path
                                                              ) -> None:
        rig = Rig(tmp_path)
        rig.workspace.add("Agent-1", rig.clock.now())
        rig.workspace.add("Agent-2", rig.clock.now())
        rig.engine.start()
        self._slow_heals(rig, 0.2)
        rig.clock.advance(HEAL + 0.01)
        rig.engine.step(budget=0.1)
        assert rig.engine.pending() == 1
        rig.engine.observe("Agent-2", rig.clock.monotonic())  # back while it waited
        with capture_logs() as logs:
            rig.engine.step(budget=0.1)
        assert not [e for e in logs if e["event"] == "heal_action"]
        assert rig.engine.pending() == 0
        assert rig.engine.executor.counters.heal_actions == 1
        assert rig.engine.monitor.incident("Agent-2") is None

    def test_the_agents_about_to_fall_due_are_read_ahead_once(self, tmp_path: Path) -> None:
        """Two to three ticks before its decision an agent is named to the workspace (which
        starts reading its status.json), and only once however many steps look ahead."""
        rig = Rig(tmp_path)
        rig.workspace.add("Agent-1", rig.clock.now())
        rig.clock.advance(1.0)
        rig.workspace.add("Agent-2", rig.clock.now())
        now = rig.clock.monotonic()
        due = {"Agent-1": now - 1.0 + HEAL, "Agent-2": now + HEAL}
        rig.engine.start()
        named: dict[str, float] = {}
        while rig.clock.monotonic() < due["Agent-2"]:
            rig.run(TICK)
            for agent in rig.workspace.prefetched:
                named.setdefault(agent, rig.clock.monotonic())
        assert sorted(rig.workspace.prefetched) == ["Agent-1", "Agent-2"]
        for agent, at in named.items():
            assert 2 * TICK - 1e-6 <= due[agent] - at <= 3 * TICK + 1e-6, agent


class TestView:
    def test_stalled_names_the_pipeline_by_the_policy(self, tmp_path: Path) -> None:
        rig = Rig(tmp_path, healing_enabled=False)
        for agent in ("Agent-1", "Agent-2"):
            rig.workspace.add(agent, rig.clock.now())
        rig.engine.start()
        rig.clock.advance(HEAL + 1)
        assert rig.engine.view.stalled(rig.clock.monotonic()) == []  # healing is off
        rig.clock.advance(RECOVER)
        stalled = rig.engine.view.stalled(rig.clock.monotonic())
        assert [(s.agent, s.pipeline) for s in stalled] == [
            ("Agent-1", Pipeline.RECOVERY), ("Agent-2", Pipeline.RECOVERY)]
        assert stalled[0].silent_for == pytest.approx(HEAL + 1 + RECOVER)
