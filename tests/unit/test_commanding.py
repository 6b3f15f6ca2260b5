"""Command rungs and `on:` commands in the engine, over the in-memory ports and a recording
runner under a FakeClock: what is submitted, what is held while it runs, what is logged and
recorded when it ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from healer.commanding import HOLD
from healer.config import Config
from healer.core.commands import CommandKind, CommandRequest, CommandResult, CommandSpec
from healer.core.model import Stage, Transition
from healer.engine import Engine
from healer.history import History
from healer.testing import (
    FakeClock,
    MemoryIncidentLog,
    MemoryWorkspace,
    RecordingAlerts,
    RecordingCommandRunner,
)

HEAL, RECOVER, TICK = 2.0, 50.0, 0.1
NUDGE = CommandSpec("nudge", ("tmux", "send-keys", "-t", "{agent}", "continue", "Enter"), 10.0)
PAGE = CommandSpec("page", ("page", "{agent}", "{transition}", "{attempt}"), 5.0)
Logs = list[dict[str, Any]]


def events(logs: Logs, name: str) -> Logs:
    return [e for e in logs if e["event"] == name]


class Rig:
    """An engine with a recording runner; one agent, Agent-1, silent from the start."""

    def __init__(self, tmp_path: Path, *, runner: bool = True, agents: int = 1,
                 respond: Any = None, **overrides: Any) -> None:
        self.clock = FakeClock(monotonic=5_000.0)  # apart: engine time is never wall time
        self.workspace = MemoryWorkspace()
        self.log = MemoryIncidentLog()
        self.alerts = RecordingAlerts()
        settings: dict[str, Any] = {
            "commands": {"nudge": NUDGE, "page": PAGE},
            "ladder": ("nudge", "force_update", "reset_status"),
            **overrides,
        }
        self.config = Config(workspaces=tmp_path / "ws", heal_after=HEAL,
                             recover_after=RECOVER, tick=TICK, **settings)
        self.runner = RecordingCommandRunner(respond, now=self.clock.now) if runner else None
        for n in range(1, agents + 1):
            self.workspace.add(f"Agent-{n}", self.clock.now())
        self.engine = Engine(
            self.config, self.clock, workspace=self.workspace, files=self.workspace.files,
            history=History(self.log, self.clock, record=not self.config.dry_run),
            alerts=self.alerts, commands=self.runner, keep_actions=True,
        )
        self.engine.start()

    def run(self, seconds: float) -> None:
        """The daemon's loop, one tick at a time: results first, then the due agents."""
        end = self.clock.now() + seconds
        while self.clock.now() < end - 1e-9:
            self.clock.advance(TICK)
            self.engine.finish_commands()
            self.engine.step()

    def come_back(self, agent: str = "Agent-1") -> None:
        self.workspace.touch(agent, self.clock.now())  # an mtime: wall time
        self.engine.observe(agent, self.clock.monotonic())  # the engine's time

    def attempts(self, logs: Logs) -> list[tuple[int, str]]:
        return [(e["attempt"], e["action"]) for e in events(logs, "heal_action")]

    @property
    def rungs(self) -> list[CommandRequest]:
        assert self.runner is not None
        return [r for r in self.runner.submitted if r.transition == "stalled"]


class TestARungThatNamesACommand:
    def test_it_is_submitted_with_the_agent_s_values(self, tmp_path: Path) -> None:
        rig = Rig(tmp_path)
        with capture_logs() as logs:
            rig.run(HEAL + TICK)
        (request,) = rig.rungs
        root = (tmp_path / "ws").absolute()
        assert request.argv() == ["tmux", "send-keys", "-t", "Agent-1", "continue", "Enter"]
        env = request.environment()
        assert env["HEALER_AGENT_DIR"] == str(root / "Agent-1")
        assert env["HEALER_WORKSPACES"] == str(root)
        assert (env["HEALER_ATTEMPT"], env["HEALER_TRANSITION"]) == ("1", "stalled")
        # The durable id of the incident, the one `healer stats` counts.
        assert env["HEALER_INCIDENT"] == str(rig.log.incidents[0].id)
        assert [e["command"] for e in events(logs, "command_started")] == ["nudge"]
        assert events(logs, "heal_action") == []  # its outcome is logged when it ends

    def test_nothing_further_is_due_while_it_runs(self, tmp_path: Path) -> None:
        rig = Rig(tmp_path)
        with capture_logs() as logs:
            rig.run(HEAL + 8 * HEAL)  # far past the next attempt's usual time
        assert len(rig.rungs) == 1
        assert events(logs, "heal_action") == [] and events(logs, "agent_escalated") == []
        assert rig.engine.monitor.stage("Agent-1", rig.clock.monotonic()) is Stage.HEALING

    def test_its_attempt_gets_heal_after_from_the_command_s_end(self, tmp_path: Path) -> None:
        rig = Rig(tmp_path)
        assert rig.runner is not None
        rig.run(HEAL + TICK)
        rig.run(3.0)
        rig.runner.finish(exit_code=0, output="sent\n", duration=3.0)
        ended, ended_engine = rig.clock.now(), rig.clock.monotonic()
        with capture_logs() as logs:
            rig.run(HEAL - 2 * TICK)
            assert rig.attempts(logs) == [(1, "nudge")]  # the outcome, at once; no attempt 2
            # On record too: a restart now would also count heal_after from the command's end.
            assert rig.log.incidents[0].last_attempt_at == pytest.approx(
                ended + TICK)
            rig.run(3 * TICK)
        assert rig.attempts(logs) == [(1, "nudge"), (2, "force_update")]
        second = rig.engine.monitor.incident("Agent-1")
        assert second is not None and second.next_attempt_at is not None
        assert second.next_attempt_at - HEAL == pytest.approx(
            ended_engine + HEAL, abs=2 * TICK)

    def test_the_outcome_is_logged_recorded_and_counted_once(self, tmp_path: Path) -> None:
        rig = Rig(tmp_path)
        assert rig.runner is not None
        rig.run(HEAL + TICK)
        with capture_logs() as logs:
            rig.runner.finish(exit_code=3, output="no such session", duration=0.25)
            rig.run(TICK)
        (line,) = events(logs, "heal_action")
        assert line["log_level"] == "warning"
        assert {k: line[k] for k in ("agent", "action", "attempt", "ok", "exit_code",
                                     "duration", "output")} == {
            "agent": "Agent-1", "action": "nudge", "attempt": 1, "ok": False, "exit_code": 3,
            "duration": 0.25, "output": "no such session"}
        (action,) = rig.log.actions
        assert (action.action, action.applied_ok, action.outcome) == ("nudge", False, "pending")
        ((result, kind, incident_id, action_id),) = rig.log.runs
        assert (kind, incident_id, action_id) == (CommandKind.RUNG, 1, action.id)
        assert result.exit_code == 3
        assert rig.engine.executor.counters.heal_actions == 1
        assert [(a.action, a.ok) for a in rig.engine.executor.actions or ()] == [
            ("nudge", False)]

    def test_activity_while_it_runs_closes_the_incident_at_once(self, tmp_path: Path) -> None:
        rig = Rig(tmp_path)
        assert rig.runner is not None
        rig.run(HEAL + TICK)
        with capture_logs() as logs:
            rig.come_back()
        assert [e["attempts"] for e in events(logs, "agent_recovered")] == [1]
        # The nudge was the last attempt before the agent came back: it succeeded.
        assert rig.log.actions[0].outcome == "success"
        with capture_logs() as logs:
            rig.runner.finish(exit_code=0)
            rig.run(HEAL - 2 * TICK)
        assert rig.attempts(logs) == [(1, "nudge")]
        assert rig.engine.monitor.incident("Agent-1") is None
        with capture_logs() as logs:  # a new silence is not held by the old command
            rig.run(3 * TICK)
        assert [e["pipeline"] for e in events(logs, "stall_detected")] == ["healing"]

    def test_a_run_that_waits_its_turn_past_the_hold_stays_held(self, tmp_path: Path) -> None:
        rig = Rig(tmp_path)
        assert rig.runner is not None
        rig.run(HEAL + TICK)
        with capture_logs() as logs:
            rig.run(NUDGE.timeout + 3 * HOLD)
        assert events(logs, "heal_action") == [] and len(rig.rungs) == 1
        rig.runner.finish(timed_out=True, exit_code=-15, error="timed out")
        with capture_logs() as logs:
            rig.run(HEAL + 2 * TICK)
        assert rig.attempts(logs) == [(1, "nudge"), (2, "force_update")]

    def test_under_dry_run_it_is_logged_not_run(self, tmp_path: Path) -> None:
        rig = Rig(tmp_path, dry_run=True)
        assert rig.runner is not None
        with capture_logs() as logs:
            rig.run(2 * HEAL + 2 * TICK)
        assert rig.runner.submitted == []
        first, second = events(logs, "heal_action")
        assert (first["action"], first["dry_run"], first["ok"]) == ("nudge", True, True)
        assert first["argv"] == ["tmux", "send-keys", "-t", "Agent-1", "continue", "Enter"]
        assert second["action"] == "force_update"  # attempts advance as without --dry-run

    def test_without_a_runner_it_fails_with_the_reason(self, tmp_path: Path) -> None:
        rig = Rig(tmp_path, runner=False)
        with capture_logs() as logs:
            rig.run(HEAL + TICK)
        (line,) = events(logs, "heal_action")
        assert (line["ok"], line["error"]) == (False, "not run: no command runner here")

    def test_a_hostile_agent_name_is_one_argument(self, tmp_path: Path) -> None:
        rig = Rig(tmp_path, agents=0)
        rig.workspace.add("Agent-x;touch PWNED", rig.clock.now())
        rig.engine.add_agent("Agent-x;touch PWNED")
        rig.run(HEAL + TICK)
        (request,) = rig.rungs
        assert request.argv()[3] == "Agent-x;touch PWNED"


class TestOnCommands:
    def test_escalated_runs_with_the_incident_s_values_and_logs_hook_ran(
        self, tmp_path: Path
    ) -> None:
        rig = Rig(tmp_path, ladder=("force_update",), max_attempts=1,
                  on={"escalated": ("page",)})
        assert rig.runner is not None
        rig.run(2 * HEAL + 2 * TICK)
        (hook,) = [r for r in rig.runner.submitted if r.transition == "escalated"]
        assert hook.argv() == ["page", "Agent-1", "escalated", "1"]
        assert hook.environment()["HEALER_INCIDENT"] == "1"
        with capture_logs() as logs:
            rig.runner.finish(hook, exit_code=0, output="paged", duration=0.5)
            rig.run(TICK)
        (line,) = events(logs, "hook_ran")
        assert {k: line[k] for k in ("agent", "transition", "command", "ok", "exit_code",
                                     "output")} == {
            "agent": "Agent-1", "transition": "escalated", "command": "page", "ok": True,
            "exit_code": 0, "output": "paged"}
        ((_, kind, incident_id, action_id),) = rig.log.runs
        assert (kind, incident_id, action_id) == (CommandKind.HOOK, 1, None)

    def test_stalled_and_recovered_follow_the_alerts(self, tmp_path: Path) -> None:
        rig = Rig(tmp_path, healing_enabled=False, on={
            "stalled": ("page",), "recovered": ("page",)})
        assert rig.runner is not None
        rig.run(RECOVER + TICK)
        rig.come_back()
        hooks = [r for r in rig.runner.submitted if r.spec.name == "page"]
        assert [r.transition for r in hooks] == ["stalled", "recovered"]
        assert [t for _, t, _ in rig.alerts.alerts] == ["stalled", "recovered"]
        # The recovered command still names the incident, closed just before it ran.
        assert [r.incident for r in hooks] == ["1", "1"]
        assert hooks[1].silent_for == pytest.approx(RECOVER + TICK, abs=2 * TICK)

    def test_a_recovery_nobody_was_told_of_runs_nothing(self, tmp_path: Path) -> None:
        rig = Rig(tmp_path, ladder=("force_update",), on={"recovered": ("page",)})
        assert rig.runner is not None
        rig.run(HEAL + TICK)
        rig.come_back()
        assert rig.runner.submitted == []

    def test_they_are_folded_while_a_swarm_outage_holds(self, tmp_path: Path) -> None:
        rig = Rig(tmp_path, ladder=("force_update",), on={
            "stalled": ("page",), "swarm_outage": ("page", "page")})
        assert rig.runner is not None
        fold = rig.engine.breakers.fold
        fold.outage = True  # as the swarm's judge sets it
        rig.run(RECOVER + TICK)
        fold.send("", Transition.SWARM_OUTAGE, {"agents": 3})
        assert [r.transition for r in rig.runner.submitted] == ["swarm_outage"] * 2
        assert fold.folded == {"escalated": 1, "stalled": 1}
        assert rig.alerts.alerts[-1][1] == "swarm_outage"
        swarm = rig.runner.submitted[0]
        assert (swarm.agent, swarm.agent_dir) == ("", "")  # runs in the workspace root
        # Once the outage is over, the held alert goes out, and its commands with it.
        fold.outage = False
        fold.release(lambda agent, slot, details: details)
        assert [r.transition for r in rig.runner.submitted][2:] == ["stalled"]

    def test_under_dry_run_they_are_logged_not_run(self, tmp_path: Path) -> None:
        rig = Rig(tmp_path, ladder=("force_update",), max_attempts=1, dry_run=True,
                  on={"escalated": ("page",)})
        assert rig.runner is not None
        with capture_logs() as logs:
            rig.run(2 * HEAL + 2 * TICK)
        assert rig.runner.submitted == []
        (line,) = events(logs, "hook_ran")
        assert (line["dry_run"], line["argv"]) == (True, ["page", "Agent-1", "escalated", "1"])


class TestOneShotAndStop:
    def test_wait_collects_every_result_for_check(self, tmp_path: Path) -> None:
        def respond(request: CommandRequest) -> CommandResult:
            return CommandResult(request, True, 0, 0.1, "ok")

        rig = Rig(tmp_path, respond=respond)
        rig.clock.advance(HEAL + TICK)
        rig.engine.step()
        assert rig.engine.finish_commands(wait=True) == 1
        assert [(a.action, a.ok) for a in rig.engine.executor.actions or ()] == [("nudge", True)]

    def test_wait_gives_up_at_its_bound(self, tmp_path: Path) -> None:
        rig = Rig(tmp_path)
        rig.run(HEAL + TICK)
        assert rig.engine.commands.wait(timeout=1.0) == []
        assert rig.engine.commands.pending == 1

    def test_close_stops_the_runner_and_reports_what_it_killed(self, tmp_path: Path) -> None:
        rig = Rig(tmp_path)
        assert rig.runner is not None
        rig.run(HEAL + TICK)
        rig.runner.finish(error="killed: healer stopped while it ran", exit_code=-15)
        with capture_logs() as logs:
            rig.engine.close_commands(0.5)
        assert rig.runner.closed
        (line,) = events(logs, "heal_action")
        assert line["error"] == "killed: healer stopped while it ran"
