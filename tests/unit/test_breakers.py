"""The swarm's judge and the flapping breaker inside the engine, stepped under a FakeClock over
the memory ports: one outage alert for fifty stalls, no reassignment while nobody is healthy,
a flapping agent left alone until a quiet window has passed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from healer.config import Config, FlapConfig, SwarmConfig
from healer.core.model import Stage
from healer.daemon import Daemon
from healer.engine import Engine
from healer.history import History
from healer.testing import (
    FakeClock,
    FakeEvents,
    MemoryIncidentLog,
    MemoryWorkspace,
    RecordingAlerts,
    RecordingNotifier,
)
from healer.view import status_rows

HEAL, RECOVER, TICK, WINDOW = 2.0, 5.0, 0.1, 60.0
HUMAN = {"stalled", "escalated", "recovered", "waiting", "flapping"}  # of one agent
Logs = list[dict[str, Any]]


def events(logs: Logs, name: str, agent: str | None = None) -> Logs:
    return [e for e in logs if e["event"] == name and (agent is None or e.get("agent") == agent)]


def names(n: int) -> list[str]:
    return [f"Agent-{k}" for k in range(1, n + 1)]


class Swarm:
    """An engine over memory ports with `n` agents, each holding a task."""

    def __init__(self, n: int, *, log: MemoryIncidentLog | None = None,
                 clock: FakeClock | None = None, **overrides: Any) -> None:
        self.clock = clock or FakeClock()
        settings: dict[str, Any] = {
            "heal_after": HEAL, "recover_after": RECOVER, "tick": TICK, "max_attempts": 3,
            "flap": FlapConfig(incidents=3, window=WINDOW),
            "swarm": SwarmConfig(name="ws", outage_fraction=0.5, min_agents=3), **overrides,
        }
        self.config = Config(workspaces=Path("/nonexistent/ws"), **settings)
        self.workspace = MemoryWorkspace()
        self.log = log if log is not None else MemoryIncidentLog()
        self.alerts = RecordingAlerts()
        for agent in names(n):
            self.workspace.add(agent, self.clock.now(), doc={"agent_id": agent,
                                                             "current_tasks": [f"{agent} task"]})
        self.engine = Engine(self.config, self.clock, workspace=self.workspace,
                             files=self.workspace.files, history=History(self.log, self.clock),
                             alerts=self.alerts)
        self.engine.start()

    def run(self, seconds: float, active: list[str] | tuple[str, ...] = ()) -> None:
        end = self.clock.now() + seconds
        while self.clock.now() < end - 1e-9:
            self.clock.advance(TICK)
            for agent in active:
                self.back(agent)
            self.engine.step()

    def back(self, agent: str) -> None:
        """The agent writes something of its own."""
        now = self.clock.now()
        self.workspace.touch(agent, now)
        self.engine.observe(agent, now)

    def sent(self, *transitions: str) -> list[tuple[str, str]]:
        return [(a, t) for a, t, _ in self.alerts.alerts if not transitions or t in transitions]

    def told(self) -> list[tuple[str, str]]:
        """What reached a human about one agent (chat, webhook)."""
        return [(a, t) for a, t in self.sent() if a and t in HUMAN]

    def reassigned(self) -> list[str]:
        files = self.workspace.files.files
        return [f"{agent}/{key}" for agent in files for key in files[agent]
                if "HEALER_REASSIGN" in key]

    def swarm_details(self, transition: str) -> dict[str, Any]:
        (details,) = [d for a, t, d in self.alerts.alerts if a == "" and t == transition]
        return details


class TestSwarmOutage:
    def test_fifty_agents_stopping_at_once_are_one_outage(self) -> None:
        """50 of 60 fall silent together: their stalls are detected and the ladder runs to
        escalation, but one swarm_outage alert stands for them all, and nothing is reassigned
        (there is nobody healthy to take it); when they come back, one swarm_recovered."""
        swarm = Swarm(60)
        healthy = names(60)[50:]
        with capture_logs() as logs:
            swarm.run(5 * HEAL + RECOVER, active=healthy)
        (outage,) = events(logs, "swarm_outage")
        assert outage["agents"] == 50 and outage["fraction"] == pytest.approx(50 / 60, abs=1e-3)
        assert len(events(logs, "stall_detected")) == 100  # both pipelines, every agent
        assert len(events(logs, "heal_action")) == 150
        assert len(events(logs, "agent_escalated")) == 50
        skipped = [e for e in events(logs, "recovery_action") if e["action"] == "reassign_tasks"]
        assert len(skipped) == 50
        assert all(e["ok"] is False and e["skipped"] == "swarm_outage" for e in skipped)
        assert swarm.reassigned() == []
        assert swarm.sent() == [("", "swarm_outage")]
        for agent in names(50):
            swarm.back(agent)
        with capture_logs() as logs:
            swarm.run(TICK, active=healthy)
        (recovered,) = events(logs, "swarm_recovered")
        assert recovered["agents"] == 0 and recovered["peak"] == 50
        assert swarm.sent("swarm_outage", "swarm_recovered") == [
            ("", "swarm_outage"), ("", "swarm_recovered")]
        assert swarm.told() == []
        details = swarm.swarm_details("swarm_recovered")
        assert details["folded"] == {"escalated": 50, "recovered": 50, "stalled": 50}
        assert details["folded_alerts"] == 150 and details["reassignments_held"] == 50

    def test_three_stalled_of_ten_stay_ordinary_incidents(self) -> None:
        swarm = Swarm(10)
        with capture_logs() as logs:
            swarm.run(RECOVER + TICK, active=names(10)[3:])
        assert not events(logs, "swarm_outage")
        assert sorted(swarm.told()) == [(a, "stalled") for a in names(3)]
        assert len(swarm.reassigned()) == 3

    def test_the_outage_is_judged_before_the_actions_of_the_same_step(self) -> None:
        """With both thresholds equal, detection and recovery fall in one step: the
        reassignments of that very step are already held back."""
        swarm = Swarm(4, heal_after=RECOVER)
        swarm.run(RECOVER + TICK, active=["Agent-4"])
        assert swarm.reassigned() == [] and swarm.told() == []
        assert swarm.sent() == [("", "swarm_outage")]

    def test_agents_still_stuck_after_the_outage_are_told_of_and_relieved(self) -> None:
        """Four of six stall; three come back and end the outage. A heal_after later the one
        still silent gets its own (held) alert and its tasks go to a healthy agent."""
        swarm = Swarm(6, max_attempts=10)
        swarm.run(RECOVER + TICK, active=["Agent-5", "Agent-6"])
        assert swarm.sent() == [("", "swarm_outage")] and swarm.reassigned() == []
        for agent in ("Agent-1", "Agent-2", "Agent-3"):
            swarm.back(agent)
        healthy = ["Agent-1", "Agent-2", "Agent-3", "Agent-5", "Agent-6"]
        swarm.run(TICK, active=healthy)
        assert swarm.sent()[-1] == ("", "swarm_recovered")
        with capture_logs() as logs:
            swarm.run(HEAL, active=healthy)
        assert swarm.told() == [("Agent-4", "stalled")]
        (stalled,) = [d for a, t, d in swarm.alerts.alerts if a == "Agent-4"]
        assert stalled["silent_for"] >= RECOVER + HEAL  # as of now, not of the fold
        assert len(swarm.reassigned()) == 1
        assert events(logs, "swarm_outage_released")[0]["reassignments"] == 1
        swarm.back("Agent-4")
        swarm.run(TICK)
        assert swarm.told()[-1] == ("Agent-4", "recovered")  # it was told of: so is its end

    def test_an_agent_back_within_the_grace_is_never_told_of(self) -> None:
        swarm = Swarm(6, max_attempts=10)
        swarm.run(RECOVER + TICK, active=["Agent-5", "Agent-6"])
        for agent in ("Agent-1", "Agent-2", "Agent-3"):
            swarm.back(agent)
        swarm.run(HEAL / 2, active=["Agent-1", "Agent-2", "Agent-3", "Agent-5", "Agent-6"])
        swarm.back("Agent-4")
        swarm.run(HEAL, active=names(6))
        assert swarm.told() == [] and swarm.reassigned() == []
        # Its end reaches only Alertmanager (`resolved`), where nothing of it was open.
        assert ("Agent-4", "resolved") in swarm.sent()

    def test_an_alert_open_before_the_outage_is_ended_quietly(self) -> None:
        """Agent-1 was stalled and alerted before the others fell silent; coming back during
        the outage it sends `resolved` (Alertmanager's end), not a chat message."""
        swarm = Swarm(6)
        swarm.run(RECOVER + TICK, active=names(6)[1:])
        assert swarm.told() == [("Agent-1", "stalled")]
        swarm.run(HEAL + TICK, active=["Agent-5", "Agent-6"])
        assert swarm.sent()[-1] == ("", "swarm_outage")
        swarm.back("Agent-1")
        swarm.run(TICK, active=["Agent-5", "Agent-6"])
        assert swarm.told() == [("Agent-1", "stalled")]
        assert swarm.sent()[-1] == ("Agent-1", "resolved")

    def test_waiting_and_busy_agents_count_in_the_size_not_in_an_incident(self) -> None:
        """Three of seven stalled is no outage, even while three more hold a busy lease."""
        swarm = Swarm(7)
        far = "2100-01-01T00:00:00Z"
        for agent in ("Agent-4", "Agent-5", "Agent-6"):
            swarm.workspace.files.docs[agent]["busy_until"] = far
        swarm.run(HEAL + TICK, active=["Agent-7"])
        assert swarm.engine.monitor.incident_count() == 3
        assert not swarm.engine.breakers.swarm.outage


def flap(swarm: Swarm, agent: str, times: int, others: list[str]) -> None:
    """`agent` stalls past heal_after and comes back, `times` times."""
    for _ in range(times):
        swarm.run(HEAL + TICK, active=others)
        swarm.back(agent)
        swarm.run(TICK, active=others)


class TestFlapping:
    def test_a_flapping_agent_stops_being_healed_until_a_quiet_window_passes(self) -> None:
        swarm = Swarm(3)
        others = ["Agent-2", "Agent-3"]
        with capture_logs() as logs:
            flap(swarm, "Agent-1", 2, others)
            swarm.run(HEAL + TICK, active=others)  # the third incident trips the breaker
        assert len(events(logs, "stall_detected", "Agent-1")) == 3
        assert len(events(logs, "heal_action", "Agent-1")) == 2  # not the third
        (flapping,) = events(logs, "agent_flapping", "Agent-1")
        assert flapping["incidents"] == 3 and flapping["window"] == WINDOW
        assert swarm.sent("flapping") == [("Agent-1", "flapping")]
        assert swarm.engine.view.stages(swarm.clock.now())[0][2] is Stage.FLAPPING
        with capture_logs() as logs:
            swarm.run(RECOVER, active=others)  # past recover_after: no recovery either
            swarm.back("Agent-1")
            swarm.run(TICK, active=others)
            flap(swarm, "Agent-1", 2, others)  # still flapping: detected, not healed
        assert [e["pipeline"] for e in events(logs, "stall_detected", "Agent-1")] == [
            "recovery", "healing", "healing"]
        assert not events(logs, "heal_action", "Agent-1")
        assert not events(logs, "recovery_action", "Agent-1")
        assert swarm.told() == [("Agent-1", "flapping")]
        assert swarm.log.stats()["incidents"]["recovered"] == 5  # all recorded
        last_end = swarm.clock.now() - TICK  # its last incident ended then
        over_at = None
        with capture_logs() as logs:
            while over_at is None and swarm.clock.now() < last_end + 2 * WINDOW:
                swarm.run(TICK, active=names(3))
                if events(logs, "agent_flapping_over", "Agent-1"):
                    over_at = swarm.clock.now()
        assert over_at == pytest.approx(last_end + WINDOW, abs=TICK + 1e-6)
        assert len(events(logs, "agent_flapping_over")) == 1
        assert swarm.sent()[-1] == ("Agent-1", "flapping_over")
        with capture_logs() as logs:
            swarm.run(HEAL + TICK, active=others)
        assert [e["action"] for e in events(logs, "heal_action", "Agent-1")] == ["force_update"]

    def test_the_breaker_survives_a_restart(self) -> None:
        """A second engine on the same history finds the agent flapping: its carried incident
        runs no ladder, its Alertmanager alert stays open, `status` says `flapping`."""
        first = Swarm(3)
        others = ["Agent-2", "Agent-3"]
        flap(first, "Agent-1", 2, others)
        first.run(HEAL + TICK, active=others)
        assert first.engine.breakers.is_flapping("Agent-1")
        first.clock.advance(1.0)
        with capture_logs() as logs:
            second = Swarm(3, log=first.log, clock=first.clock)
        assert events(logs, "agent_flapping", "Agent-1")[0]["restored"] is True
        assert second.alerts.restored == [("Agent-1", "flapping", {"incidents": 3,
                                                                    "window": WINDOW})]
        second.workspace.touch("Agent-1", first.clock.now() - 1.0 - HEAL - TICK)
        with capture_logs() as logs:
            second.run(RECOVER, active=others)
        assert not events(logs, "heal_action", "Agent-1")
        assert not events(logs, "recovery_action", "Agent-1")
        rows = {r["agent"]: r for r in status_rows(second.config, second.workspace, second.log,
                                                    second.clock.now())}
        assert rows["Agent-1"]["stage"] == "flapping" and rows["Agent-2"]["stage"] == "active"

    def test_status_shows_a_flapping_agent_between_its_incidents(self) -> None:
        swarm = Swarm(3)
        flap(swarm, "Agent-1", 3, ["Agent-2", "Agent-3"])
        now = swarm.clock.now()
        rows = {r["agent"]: r for r in status_rows(swarm.config, swarm.workspace, swarm.log, now)}
        assert rows["Agent-1"]["stage"] == "flapping"
        later = {r["agent"]: r for r in status_rows(swarm.config, swarm.workspace, swarm.log,
                                                     now + WINDOW)}
        assert later["Agent-1"]["stage"] != "flapping"

    def test_flapping_during_an_outage_is_folded_too(self) -> None:
        """Agent-1 trips the breaker while the swarm is out: its flapping alert is held with
        the rest, and goes out after the outage if it still flaps."""
        swarm = Swarm(4)
        flap(swarm, "Agent-1", 2, ["Agent-2", "Agent-3", "Agent-4"])
        swarm.back("Agent-1")  # falls silent with the others this time
        swarm.run(HEAL + TICK, active=["Agent-4"])
        assert swarm.engine.breakers.is_flapping("Agent-1")
        assert swarm.sent() == [("", "swarm_outage")]
        for agent in ("Agent-1", "Agent-2", "Agent-3"):
            swarm.back(agent)
        swarm.run(HEAL + 2 * TICK, active=names(4))
        assert swarm.told() == [("Agent-1", "flapping")]


class TestInTheDaemon:
    def test_the_daemons_loop_ends_a_flapping_on_its_timer(self) -> None:
        """Stepped through Daemon.steps(), the agents' writes as events: the breaker's sweep
        runs on the loop's own ticks."""
        swarm = Swarm(3)
        events_ = FakeEvents()
        daemon = Daemon(swarm.config, clock=swarm.clock, engine=swarm.engine, watcher=events_,
                        notifier=RecordingNotifier(), alerter=swarm.alerts, store=swarm.log)
        steps = daemon.steps()

        def run(seconds: float, active: tuple[str, ...]) -> None:
            end = swarm.clock.now() + seconds
            while swarm.clock.now() < end - 1e-9:
                swarm.clock.advance(TICK)
                for agent in active:
                    swarm.workspace.touch(agent, swarm.clock.now())
                    events_.push(agent, swarm.clock.now())
                next(steps)

        daemon.start()
        for _ in range(3):
            run(HEAL + TICK, ("Agent-2", "Agent-3"))
            run(TICK, ("Agent-1", "Agent-2", "Agent-3"))
        assert swarm.engine.breakers.is_flapping("Agent-1")
        with capture_logs() as logs:
            run(WINDOW + 2 * TICK, ("Agent-1", "Agent-2", "Agent-3"))
        assert len(events(logs, "agent_flapping_over", "Agent-1")) == 1
        assert swarm.sent()[-1] == ("Agent-1", "flapping_over")
        with capture_logs() as logs:
            run(HEAL + TICK, ("Agent-2", "Agent-3"))  # its next stall is healed again
        assert [e["action"] for e in events(logs, "heal_action", "Agent-1")] == ["force_update"]


class TestDryRun:
    def test_an_outage_is_logged_and_sends_nothing(self) -> None:
        swarm = Swarm(4, dry_run=True)
        with capture_logs() as logs:
            swarm.run(HEAL + TICK, active=["Agent-4"])
        (outage,) = events(logs, "swarm_outage")
        assert outage["dry_run"] is True
        assert swarm.sent() == []
