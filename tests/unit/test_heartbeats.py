"""Waiting and done in the engine (SPEC §12, §17), stepped under a FakeClock over the memory
ports: a wait is never healed, alerted once, ended by the next genuine activity; a done
agent is never detected; a missed beat is found before a stall and in the sweep."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from healer.config import Config
from healer.core.model import Stage
from healer.engine import Engine
from healer.history import History
from healer.testing import FakeClock, MemoryIncidentLog, MemoryWorkspace, RecordingAlerts

HEAL, RECOVER, TICK, ALERT_AFTER = 2.0, 5.0, 0.1, 8.0
Logs = list[dict[str, Any]]


def beat(state: str | None, message: str | None = None) -> str:
    doc: dict[str, str] = {"at": "2026-12-01T10:00:00Z"}
    if state is not None:
        doc["state"] = state
    if message is not None:
        doc["message"] = message
    return json.dumps(doc)


def named(logs: Logs, event: str, agent: str = "Agent-1") -> Logs:
    return [e for e in logs if e["event"] == event and e.get("agent") == agent]


class Rig:
    def __init__(self, tmp_path: Path, log: MemoryIncidentLog | None = None,
                 clock: FakeClock | None = None, **overrides: Any) -> None:
        # Monotonic and wall time apart, as on a real host: the engine runs on the first,
        # files and the history speak the second.
        self.clock = clock or FakeClock(monotonic=5_000.0)
        self.workspace = MemoryWorkspace()
        self.log = log or MemoryIncidentLog()
        self.log.waits.clock = self.clock
        self.alerts = RecordingAlerts()
        self.config = Config(workspaces=tmp_path, heal_after=HEAL, recover_after=RECOVER,
                             tick=TICK, waiting_alert_after=ALERT_AFTER, **overrides)
        self.engine = self.build()

    def build(self) -> Engine:
        return Engine(self.config, self.clock, workspace=self.workspace,
                      files=self.workspace.files, history=History(self.log, self.clock),
                      alerts=self.alerts)

    def beat(self, agent: str, state: str | None, message: str | None = None, *,
             seen: bool = True) -> None:
        """The agent writes heartbeat.json now; `seen`: its event reaches the engine."""
        self.workspace.write_beat(agent, beat(state, message), self.clock.now())
        if seen:
            self.engine.observe(agent, self.clock.monotonic(), beat=True)

    def write(self, agent: str, *, seen: bool = True) -> None:
        """The agent writes a file of its own other than heartbeat.json."""
        self.workspace.touch(agent, self.clock.now())
        if seen:
            self.engine.observe(agent, self.clock.monotonic())

    def run(self, seconds: float) -> None:
        end = self.clock.now() + seconds
        while self.clock.now() < end - 1e-9:
            self.clock.advance(TICK)
            self.engine.step()

    def transitions(self, agent: str = "Agent-1") -> list[tuple[str, str]]:
        return [(a, t) for a, t, _ in self.alerts.alerts if a == agent]

    def stage(self, agent: str = "Agent-1") -> Stage:
        return self.engine.monitor.stage(agent, self.clock.monotonic())


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    rig = Rig(tmp_path)
    for agent in ("Agent-1", "Agent-2"):
        rig.workspace.add(agent, rig.clock.now(), doc={"agent_id": agent,
                                                       "current_tasks": ["a task"]})
    rig.engine.start()
    return rig


class TestWaiting:
    def test_a_wait_is_never_healed_alerts_once_and_ends_with_work(self, rig: Rig) -> None:
        rig.beat("Agent-1", "waiting", "permission requested for Bash")
        started = rig.clock.now()
        assert rig.stage() is Stage.WAITING
        with capture_logs() as logs:
            rig.run(ALERT_AFTER + 5 * RECOVER)  # far past every threshold and the alert
        assert not named(logs, "stall_detected") and not named(logs, "heal_action")
        assert rig.transitions() == [("Agent-1", "waiting")]
        (alert,) = named(logs, "waiting_alert")
        assert alert["waiting_for"] == pytest.approx(ALERT_AFTER, abs=TICK + 1e-6)
        (details,) = [d for a, t, d in rig.alerts.alerts if (a, t) == ("Agent-1", "waiting")]
        assert details["message"] == "permission requested for Bash"
        assert details["waiting_for"] == pytest.approx(ALERT_AFTER, abs=TICK + 1e-6)
        (row,) = rig.log.waits.open_waits()
        assert row.started_at == started and row.alerted_at is not None
        with capture_logs() as logs:
            rig.beat("Agent-1", "working")
        assert rig.stage() is Stage.ACTIVE
        assert rig.transitions()[-1] == ("Agent-1", "waiting_over")
        (over,) = named(logs, "agent_waiting_over")
        assert over["alerted"] is True and over["waited"] > ALERT_AFTER
        assert rig.log.waits.open_waits() == []
        with capture_logs() as logs:  # from here on it is an agent like any other
            rig.run(HEAL + TICK)
        assert [e["pipeline"] for e in named(logs, "stall_detected")] == ["healing"]

    def test_a_repeated_waiting_beat_keeps_the_wait_and_its_start(self, rig: Rig) -> None:
        rig.beat("Agent-1", "waiting", "first")
        started = rig.clock.now()
        rig.run(ALERT_AFTER / 2)
        rig.beat("Agent-1", "waiting", "still asking")
        with capture_logs() as logs:
            rig.run(ALERT_AFTER / 2 + 2 * TICK)
        (alert,) = named(logs, "waiting_alert")  # counted from the first beat
        assert alert["waiting_for"] == pytest.approx(ALERT_AFTER, abs=2 * TICK)
        assert alert["message"] == "still asking"
        assert [r.started_at for r in rig.log.waits.rows] == [started]
        rig.beat("Agent-1", "waiting")  # a reminder after the alert: no second alert
        rig.run(3 * ALERT_AFTER)
        assert rig.transitions() == [("Agent-1", "waiting")]

    def test_the_same_beat_seen_twice_is_one_beat(self, rig: Rig) -> None:
        """A writer's several events for one write (created, modified, closed) are one beat:
        the version already read is not read again and does not end the wait."""
        rig.beat("Agent-1", "waiting")
        reads = rig.workspace.beat_reads
        rig.engine.observe("Agent-1", rig.clock.monotonic(), beat=True)
        assert rig.workspace.beat_reads == reads and rig.stage() is Stage.WAITING

    def test_a_held_agents_unmarked_beat_is_still_read(self, rig: Rig) -> None:
        """An event source that does not mark heartbeat.json's events: while the agent
        holds, its activity is checked against the heartbeat, so a reminder keeps the wait
        and a working beat ends it."""
        rig.beat("Agent-1", "waiting")
        started = rig.engine.beats.holds()["Agent-1"].since
        rig.clock.advance(1.0)
        rig.workspace.write_beat("Agent-1", beat("waiting", "again"), rig.clock.now())
        rig.engine.observe("Agent-1", rig.clock.monotonic())  # not marked
        hold = rig.engine.beats.holds()["Agent-1"]
        assert (hold.since, hold.message) == (started, "again")
        rig.clock.advance(1.0)
        rig.workspace.write_beat("Agent-1", beat("working"), rig.clock.now())
        rig.engine.observe("Agent-1", rig.clock.monotonic())
        assert rig.stage() is Stage.ACTIVE

    def test_other_activity_ends_a_wait_not_yet_alerted_without_telling_anyone(
        self, rig: Rig
    ) -> None:
        rig.beat("Agent-1", "waiting")
        rig.run(ALERT_AFTER / 2)
        with capture_logs() as logs:
            rig.write("Agent-1")
        assert named(logs, "agent_waiting_over")[0]["alerted"] is False
        assert rig.transitions() == [] and rig.stage() is Stage.ACTIVE

    def test_a_waiting_beat_during_an_incident_is_the_agents_return(self, rig: Rig) -> None:
        """SPEC §17: the incident closes as recovered (and, alerted, says so), then the wait
        begins."""
        rig.run(RECOVER + TICK)  # both agents stalled past the recovery: alerted
        with capture_logs() as logs:
            rig.beat("Agent-1", "waiting", "which branch?")
        assert [e["attempts"] for e in named(logs, "agent_recovered")] == [2]
        assert named(logs, "agent_waiting")
        assert ("Agent-1", "recovered") in rig.transitions()
        assert rig.stage() is Stage.WAITING
        assert rig.log.stats()["incidents"]["recovered"] == 1
        assert "Agent-1" not in rig.engine.monitor.incidents()

    def test_a_waiting_agent_is_counted_but_in_no_incident_and_takes_no_tasks(
        self, rig: Rig
    ) -> None:
        """Reassignment goes to an active agent, never to one waiting on a human; the
        swarm's judge sees it in the swarm's size, never as in an incident."""
        rig.workspace.add("Agent-3", rig.clock.now())
        rig.engine.add_agent("Agent-3")
        rig.beat("Agent-2", "waiting")
        for _ in range(int(RECOVER / TICK) + 1):
            rig.clock.advance(TICK)
            rig.write("Agent-3")
            rig.engine.step()
        files = rig.workspace.files.files
        assert not [k for k in files["Agent-2"] if "REASSIGN" in k]
        assert [k for k in files["Agent-3"] if "HEALER_REASSIGN_Agent-1" in k]
        view = rig.engine.view
        assert view.held_count() == 1 and view.held() == [("Agent-2", Stage.WAITING)]
        assert [s.agent for s in view.stalled(rig.clock.monotonic())] == ["Agent-1"]
        assert dict((a, s) for a, _, s in view.stages(rig.clock.monotonic()))["Agent-2"] is (
            Stage.WAITING)


class TestDone:
    def test_a_done_agent_is_never_detected_until_it_works_again(self, rig: Rig) -> None:
        rig.beat("Agent-1", "done", "SessionEnd: logout")
        with capture_logs() as logs:
            rig.run(10 * RECOVER)
        assert not named(logs, "stall_detected") and rig.transitions() == []
        assert rig.stage() is Stage.DONE
        with capture_logs() as logs:
            rig.write("Agent-1")
        assert named(logs, "agent_done_over")
        with capture_logs() as logs:
            rig.run(HEAL + TICK)
        assert [e["pipeline"] for e in named(logs, "stall_detected")] == ["healing"]

    def test_a_waiting_beat_after_done_starts_a_wait(self, rig: Rig) -> None:
        rig.beat("Agent-1", "done")
        rig.run(HEAL)
        with capture_logs() as logs:
            rig.beat("Agent-1", "waiting")
        assert named(logs, "agent_done_over") and named(logs, "agent_waiting")
        assert rig.stage() is Stage.WAITING and len(rig.log.waits.open_waits()) == 1

    def test_a_done_beat_ends_a_wait(self, rig: Rig) -> None:
        rig.beat("Agent-1", "waiting")
        rig.run(ALERT_AFTER + TICK)
        rig.beat("Agent-1", "done")
        assert rig.stage() is Stage.DONE and rig.log.waits.open_waits() == []
        assert rig.transitions() == [("Agent-1", "waiting"), ("Agent-1", "waiting_over")]


class TestMissedBeats:
    def test_a_waiting_beat_the_events_missed_is_found_before_the_stall(self, rig: Rig
                                                                         ) -> None:
        rig.run(HEAL / 2)
        rig.beat("Agent-1", "waiting", seen=False)
        with capture_logs() as logs:
            rig.run(3 * RECOVER)
        assert not named(logs, "stall_detected")
        assert rig.stage() is Stage.WAITING and named(logs, "agent_waiting")

    def test_a_missed_beat_older_than_other_writes_holds_nothing(self, rig: Rig) -> None:
        rig.beat("Agent-1", "done", seen=False)
        rig.clock.advance(0.5)
        rig.write("Agent-1", seen=False)  # the agent went on after it
        with capture_logs() as logs:
            rig.run(HEAL + TICK)
        assert [e["pipeline"] for e in named(logs, "stall_detected")] == ["healing"]

    def test_the_sweep_ends_a_hold_whose_end_the_events_missed(self, rig: Rig) -> None:
        """A working beat the events missed ends the wait at the next sweep."""
        rig.beat("Agent-1", "waiting")
        rig.run(1.0)
        rig.beat("Agent-1", "working", seen=False)
        rig.engine.reconcile()
        assert rig.stage() is Stage.ACTIVE and rig.log.waits.open_waits() == []

    def test_activity_a_rescan_found_ends_a_hold(self, rig: Rig) -> None:
        rig.beat("Agent-1", "done")
        rig.run(1.0)
        rig.write("Agent-1", seen=False)
        rig.engine.rescan()
        assert rig.stage() is Stage.ACTIVE

    def test_a_held_agent_whose_folder_is_gone_is_forgotten(self, rig: Rig) -> None:
        rig.beat("Agent-1", "waiting")
        rig.workspace.remove("Agent-1")
        rig.engine.reconcile()
        assert rig.engine.beats.holds() == {} and rig.log.waits.open_waits() == []


class TestInvalid:
    def test_a_bad_heartbeat_is_activity_and_logged_once(self, rig: Rig) -> None:
        rig.beat("Agent-1", "waiting")
        with capture_logs() as logs:
            for text in ("{not json", '{"state": "sleeping"}', "[1, 2]"):
                rig.workspace.write_beat("Agent-1", text, rig.clock.now())
                rig.engine.observe("Agent-1", rig.clock.monotonic(), beat=True)
                rig.clock.advance(TICK)
        (bad,) = named(logs, "heartbeat_invalid")
        assert "not valid JSON" in bad["error"]
        assert rig.stage() is Stage.ACTIVE  # activity: it ended the wait
        assert rig.engine.monitor.table.get("Agent-1") == pytest.approx(
            rig.clock.monotonic() - TICK)
        rig.beat("Agent-1", "working")  # readable again: a later problem is news again
        with capture_logs() as logs:
            rig.workspace.write_beat("Agent-1", "{", rig.clock.now())
            rig.engine.observe("Agent-1", rig.clock.monotonic(), beat=True)
        assert len(named(logs, "heartbeat_invalid")) == 1

    def test_a_truncated_write_in_progress_is_read_again_later(self, rig: Rig) -> None:
        """An empty heartbeat.json (a writer that truncates first) keeps what it said."""
        rig.beat("Agent-1", "waiting")
        rig.workspace.write_beat("Agent-1", "", rig.clock.now())
        rig.engine.observe("Agent-1", rig.clock.monotonic(), beat=True)
        assert rig.stage() is Stage.WAITING
        rig.clock.advance(TICK)
        rig.beat("Agent-1", "working")
        assert rig.stage() is Stage.ACTIVE


class TestRestartAndConfig:
    def test_a_wait_survives_a_restart_with_its_start_and_its_alert(self, tmp_path: Path
                                                                      ) -> None:
        """After a restart the wait is the same one: not alerted again, its Alertmanager
        alert restored; the next genuine activity ends it (and the alert)."""
        first = Rig(tmp_path)
        first.workspace.add("Agent-1", first.clock.now())
        first.engine.start()
        first.beat("Agent-1", "waiting", "approve?")
        first.run(ALERT_AFTER + TICK)
        assert first.transitions() == [("Agent-1", "waiting")]
        first.engine.save()
        second = Rig(tmp_path, log=first.log, clock=first.clock)
        second.workspace = first.workspace
        second.engine = second.build()
        with capture_logs() as logs:
            second.engine.start()
            second.run(ALERT_AFTER * 2)
        assert named(logs, "agent_waiting")[0]["resumed"] is True
        assert second.transitions() == []
        assert [(a, t) for a, t, _ in second.alerts.restored] == [("Agent-1", "waiting")]
        second.beat("Agent-1", "working")
        assert second.transitions() == [("Agent-1", "waiting_over")]
        assert first.log.stats()["waiting"]["waits"] == 1

    def test_a_wait_that_ended_while_healer_was_down_is_closed(self, tmp_path: Path) -> None:
        first = Rig(tmp_path)
        first.workspace.add("Agent-1", first.clock.now())
        first.engine.start()
        first.beat("Agent-1", "waiting")
        first.clock.advance(3.0)
        first.workspace.touch("Agent-1", first.clock.now())  # while no healer runs
        second = Rig(tmp_path, log=first.log, clock=first.clock)
        second.workspace = first.workspace
        second.engine = second.build()
        second.engine.start()
        assert second.stage() is Stage.ACTIVE and first.log.waits.open_waits() == []

    def test_a_new_waiting_alert_after_applies_at_a_reload(self, rig: Rig) -> None:
        rig.beat("Agent-1", "waiting")
        rig.engine.reload(Config(workspaces=rig.config.workspaces, heal_after=HEAL,
                                 recover_after=RECOVER, tick=TICK, waiting_alert_after=1.0))
        rig.run(1.0 + 2 * TICK)
        assert rig.transitions() == [("Agent-1", "waiting")]

    def test_dry_run_decides_and_logs_but_tells_nobody(self, tmp_path: Path) -> None:
        rig = Rig(tmp_path, dry_run=True)
        rig.workspace.add("Agent-1", rig.clock.now())
        rig.engine.start()
        rig.beat("Agent-1", "waiting")
        with capture_logs() as logs:
            rig.run(ALERT_AFTER + TICK)
        assert named(logs, "waiting_alert") and rig.alerts.alerts == []


class TestTheSwarm:
    def test_waiting_agents_count_in_the_size_but_never_in_an_incident(self, tmp_path: Path
                                                                       ) -> None:
        """3 of 7 stalled is no outage while 3 more wait on a human (3/7 < 0.5); were the
        waiting left out of the size, 3 of 4 would be one."""
        rig = Rig(tmp_path)
        agents = [f"Agent-{n}" for n in range(1, 8)]
        for agent in agents:
            rig.workspace.add(agent, rig.clock.now())
        rig.engine.start()
        for agent in agents[3:6]:
            rig.beat(agent, "waiting")
        with capture_logs() as logs:
            for _ in range(int((HEAL + TICK) / TICK) + 1):
                rig.clock.advance(TICK)
                rig.write("Agent-7")
                rig.engine.step()
        assert rig.engine.monitor.incident_count() == 3
        assert rig.engine.view.held_count() == 3
        assert not rig.engine.breakers.swarm.outage
        assert not [e for e in logs if e["event"] == "swarm_outage"]


class TestClockSteps:
    @pytest.mark.parametrize("step", [3600.0, -3600.0, -10.0])
    def test_a_wall_clock_step_neither_hastens_nor_delays_the_alert(
        self, rig: Rig, step: float
    ) -> None:
        """The wait is measured on the monotonic clock: a step of the wall clock (NTP, a
        resumed VM) moves neither its alert nor its end; the record keeps wall times."""
        rig.beat("Agent-1", "waiting")
        began, began_wall = rig.clock.monotonic(), rig.clock.now()

        def run_to(mono: float) -> Logs:
            with capture_logs() as logs:
                while rig.clock.monotonic() < mono - 1e-9:
                    rig.clock.advance(TICK)
                    rig.engine.step()
            return logs

        run_to(began + ALERT_AFTER / 2)
        rig.clock.step(step)
        rig.engine.timeline.follow()
        assert not named(run_to(began + ALERT_AFTER - 2 * TICK), "waiting_alert")
        (alert,) = named(run_to(began + ALERT_AFTER + 2 * TICK), "waiting_alert")
        assert alert["waiting_for"] == pytest.approx(ALERT_AFTER, abs=TICK + 1e-6)
        (row,) = rig.log.waits.open_waits()
        assert row.started_at == pytest.approx(began_wall, abs=1e-6)
        rig.write("Agent-1")
        assert rig.stage() is Stage.ACTIVE
