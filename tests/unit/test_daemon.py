"""The daemon's loop stepped by hand under a FakeClock, over the in-memory fakes of every
port: no thread, no inotify, no sleep."""

from __future__ import annotations

import math
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from healer import daemon as daemon_module
from healer.config import Config
from healer.core.commands import CommandSpec
from healer.core.model import FolderEvent, Stage
from healer.daemon import Daemon
from healer.engine import Engine
from healer.history import History
from healer.ports import MetricsSink, Readings
from healer.testing import (
    FakeClock,
    FakeEvents,
    MemoryIncidentLog,
    MemoryWorkspace,
    RecordingAlerts,
    RecordingCommandRunner,
    RecordingNotifier,
)

HEAL, RECOVER, TICK = 2.0, 5.0, 0.1
NUDGE = CommandSpec("nudge", ("tmux", "send-keys", "-t", "{agent}", "Enter"), 10.0)
Logs = list[dict[str, Any]]


def events(logs: Logs, name: str, agent: str | None = None) -> Logs:
    return [e for e in logs if e["event"] == name and (agent is None or e.get("agent") == agent)]


class Metrics:
    """A MetricsSink that keeps the readings source and the batches it was fed."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.batches: list[int] = []
        self.closed = False

    def observe_changes(self, changes: Any, now: float) -> None:
        self.batches.append(len(changes))

    def close(self) -> None:
        self.closed = True


class Rig:
    """A daemon over memory ports; `steps` is its loop, stepped with next()."""

    def __init__(self, root: Path, **overrides: Any) -> None:
        self.clock = FakeClock()
        self.config = Config(workspaces=root, heal_after=HEAL, recover_after=RECOVER,
                             tick=TICK, check_interval=1.0, **overrides)
        self.workspace = MemoryWorkspace()
        self.log = MemoryIncidentLog()
        self.alerts = RecordingAlerts()
        self.events = FakeEvents()
        self.notifier = RecordingNotifier(watchdog=1.0)
        self.metrics: Metrics | None = None
        self.reloaded: list[Config] = []
        # The runner shares the event source's wake-up, as healer.wiring has it.
        self.runner = RecordingCommandRunner(wake=self.events.wake, now=self.clock.now)
        for agent in ("Agent-1", "Agent-2"):
            self.workspace.add(agent, self.clock.now(), doc={"agent_id": agent,
                                                             "current_tasks": ["a task"]})
        engine = Engine(
            self.config, self.clock, workspace=self.workspace, files=self.workspace.files,
            history=History(self.log, self.clock), alerts=self.alerts, commands=self.runner,
        )
        self.daemon = Daemon(
            self.config, clock=self.clock, engine=engine, watcher=self.events,
            notifier=self.notifier, alerter=self.alerts, store=self.log,
            metrics=self._metrics, reload=self._reload,
        )
        self.steps: Iterator[bool] = self.daemon.steps()

    def _metrics(self, source: Any) -> MetricsSink:
        self.metrics = Metrics(source)
        return self.metrics

    def _reload(self) -> Config:
        new = Config(workspaces=self.config.workspaces, heal_after=HEAL * 10,
                     recover_after=RECOVER * 10, tick=TICK)
        self.reloaded.append(new)
        return new

    def tick(self, seconds: float = TICK) -> bool:
        self.clock.advance(seconds)
        return next(self.steps)

    def run(self, seconds: float, active: tuple[str, ...] = ()) -> None:
        end = self.clock.now() + seconds
        while self.clock.now() < end - 1e-9:
            self.clock.advance(TICK)
            for agent in active:
                self.workspace.touch(agent, self.clock.now())
                self.events.push(agent, self.clock.monotonic())
            next(self.steps)


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


class TestStepping:
    def test_start_announces_and_is_ready(self, rig: Rig) -> None:
        """start() starts the event source, scans the agents, logs watch_started and tells
        the service manager it is ready."""
        with capture_logs() as logs:
            rig.daemon.start()
        assert rig.events.started
        assert events(logs, "watch_started")[0]["agents"] == 2
        assert rig.notifier.messages[:2] == ["READY=1", "STATUS=watching 2 agents"]

    def test_a_step_without_work_says_so(self, rig: Rig) -> None:
        """A step with nothing queued and nothing due yields False (the first one scans)."""
        rig.daemon.start()
        assert rig.tick() is True
        assert rig.tick() is False

    def test_a_timer_due_within_the_tick_wakes_the_loop_before_its_boundary(
            self, rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
        """issue #16: woken only on tick boundaries, a tick's worth of stalls waited for
        the next one, and a mass stall ran a tick behind from its first agent on."""
        waits: list[float] = []
        real = rig.clock.wait
        monkeypatch.setattr(rig.clock, "wait", lambda event, timeout: (
            waits.append(timeout), real(event, timeout))[1])
        rig.daemon.start()
        rig.tick()  # the scan
        deadline = rig.daemon.engine.monitor.wheel.deadline("Agent-1")
        assert deadline is not None
        grain = TICK / daemon_module.WAKES_PER_TICK
        boundary = math.ceil(deadline / TICK) * TICK
        # Just past the grain mark before the deadline, a whole grain before the boundary.
        rig.clock.advance(math.floor(deadline / grain) * grain + grain / 4
                          - rig.clock.monotonic())
        assert boundary - rig.clock.monotonic() > grain
        waits.clear()
        next(rig.steps)
        mark = math.ceil(deadline / grain) * grain - rig.clock.monotonic()
        assert waits[0] == pytest.approx(mark)  # not at the boundary a tick may be away
        assert waits[0] < boundary - rig.clock.monotonic()

    def test_the_agents_are_scanned_by_the_first_steps_not_before_ready(self, rig: Rig
                                                                        ) -> None:
        """issue #16: READY and watch_started come once the events are watched; the scan
        follows in the loop (spread over steps by its budget), then scan_finished."""
        with capture_logs() as logs:
            rig.daemon.start()
            assert rig.notifier.messages[0] == "READY=1"
            assert len(rig.daemon.engine.monitor.table) == 0
            rig.tick()
        assert set(rig.daemon.engine.monitor.table) == {"Agent-1", "Agent-2"}
        assert events(logs, "scan_finished")[0]["agents"] == 2
        # The root was watched at start; each agent's folders just before its scan.
        assert rig.events.deferred and rig.events.watched == ["Agent-1", "Agent-2"]
        assert not rig.daemon.engine.starting()

    def test_a_silent_agent_is_healed_and_recovers_on_its_own_write(self, rig: Rig) -> None:
        """Time moves only when the test says: the stall lands within a tick of heal_after,
        attempt 1 runs, and the agent's next event closes the incident."""
        rig.daemon.start()
        with capture_logs() as logs:
            rig.run(HEAL + TICK, active=("Agent-2",))
        stall = events(logs, "stall_detected", "Agent-1")
        assert [s["pipeline"] for s in stall] == ["healing"]
        assert stall[0]["silent_for"] == pytest.approx(HEAL, abs=TICK + 1e-6)
        assert [h["action"] for h in events(logs, "heal_action", "Agent-1")] == ["force_update"]
        assert not events(logs, "stall_detected", "Agent-2")
        rig.workspace.touch("Agent-1", rig.clock.now())
        rig.events.push("Agent-1", rig.clock.monotonic())
        with capture_logs() as logs:
            assert rig.tick() is True
        assert [e["attempts"] for e in events(logs, "agent_recovered", "Agent-1")] == [1]
        assert rig.log.stats()["incidents"]["recovered"] == 1

    def test_the_whole_ladder_escalates_and_alerts_once(self, rig: Rig) -> None:
        """Silence past recover_after runs the recovery once (stalled alert) and escalates
        after the ladder (escalated alert); the marker is in the status store."""
        rig.daemon.start()
        rig.run(5 * HEAL, active=("Agent-2",))
        transitions = [(a, t) for a, t, _ in rig.alerts.alerts]
        assert transitions == [("Agent-1", "stalled"), ("Agent-1", "escalated")]
        assert "Agent-1 requires manual intervention." in rig.workspace.files.markers["Agent-1"]
        reassigned = rig.workspace.files.files["Agent-2"]
        assert [k for k in reassigned if "HEALER_REASSIGN_Agent-1" in k]

    def test_a_command_rung_s_end_wakes_the_loop_which_reports_it(self, tmp_path: Path) -> None:
        rig = Rig(tmp_path, commands={"nudge": NUDGE}, ladder=("nudge", "force_update"))
        rig.daemon.start()
        rig.run(HEAL + TICK, active=("Agent-2",))
        assert [r.agent for r in rig.runner.unfinished] == ["Agent-1"]
        rig.events.wake.clear()
        rig.runner.finish(exit_code=0, output="sent")
        assert rig.events.wake.is_set()  # the sleep the loop is in ends at once
        with capture_logs() as logs:
            assert rig.tick(0.0) is True
        [line] = events(logs, "heal_action", "Agent-1")
        assert (line["action"], line["exit_code"], line["output"]) == ("nudge", 0, "sent")

    def test_close_stops_the_runner_and_logs_what_was_killed(self, tmp_path: Path) -> None:
        rig = Rig(tmp_path, commands={"nudge": NUDGE}, ladder=("nudge",))
        rig.daemon.start()
        rig.run(HEAL + TICK, active=("Agent-2",))
        rig.runner.finish(exit_code=-15, error="killed: healer stopped while it ran")
        with capture_logs() as logs:
            rig.daemon.close()
        assert rig.runner.closed
        names = [e["event"] for e in logs]
        # Logged and on record before the history is closed and the daemon says it stopped.
        assert names.index("heal_action") < names.index("watch_stopped")
        assert rig.log.runs and rig.log.runs[0][0].error == "killed: healer stopped while it ran"

    def test_the_watchdog_is_pinged_at_half_its_interval(self, rig: Rig) -> None:
        """With a 1 s watchdog, stepping 2 s of ticks pings it about four times."""
        rig.daemon.start()
        rig.run(2.0)
        assert 3 <= rig.notifier.messages.count("WATCHDOG=1") <= 5

    def test_stop_ends_the_loop_and_close_closes_what_it_was_given(self, rig: Rig) -> None:
        """After stop() the iterator is exhausted; close() closes the source, the alerts,
        the metrics and the history, saves the table and logs watch_stopped."""
        rig.daemon.start()
        rig.tick()
        rig.daemon.stop("test")
        with pytest.raises(StopIteration):
            next(rig.steps)
        with capture_logs() as logs:
            rig.daemon.close()
        assert rig.events.closed and rig.alerts.closed and rig.log.closed
        assert rig.metrics is not None and rig.metrics.closed
        assert set(rig.log.last_activities()) == {"Agent-1", "Agent-2"}
        assert events(logs, "watch_stopped")[0]["reason"] == "test"


class TestBeats:
    def test_a_waiting_beat_from_the_event_source_holds_the_agent(self, rig: Rig) -> None:
        """A change marked `beat` makes the daemon read heartbeat.json: a waiting agent is
        not healed and is counted as waiting in the metrics' readings."""
        rig.daemon.start()
        rig.workspace.write_beat("Agent-1", '{"state": "waiting"}', rig.clock.now())
        rig.events.push("Agent-1", rig.clock.monotonic(), beat=True)
        with capture_logs() as logs:
            rig.run(2 * RECOVER, active=("Agent-2",))
        assert events(logs, "agent_waiting", "Agent-1")
        assert not events(logs, "stall_detected", "Agent-1")
        stages = {a: s for a, _, s in rig.daemon.readings().agents}
        assert stages == {"Agent-1": Stage.WAITING, "Agent-2": Stage.ACTIVE}

    def test_the_same_write_without_the_mark_is_plain_activity(self, rig: Rig) -> None:
        """Unmarked, the change is activity of another file: nothing reads the beat until
        the agent's silence comes due, and then the beat is found and holds."""
        rig.daemon.start()
        rig.tick()  # the start-up scan: the beat below is written after it
        rig.workspace.write_beat("Agent-1", '{"state": "waiting"}', rig.clock.now())
        rig.events.push("Agent-1", rig.clock.monotonic())
        rig.tick()
        assert rig.daemon.engine.monitor.stage("Agent-1", rig.clock.monotonic()) is Stage.ACTIVE
        with capture_logs() as logs:
            rig.run(HEAL + 2 * TICK, active=("Agent-2",))
        assert events(logs, "agent_waiting", "Agent-1")
        assert not events(logs, "stall_detected", "Agent-1")


class TestChanges:
    def test_folders_that_appear_and_go_are_followed(self, rig: Rig, tmp_path: Path) -> None:
        """An added folder is tracked at once; a removed one only once it is really gone."""
        rig.daemon.start()
        rig.workspace.add("Agent-3", rig.clock.now())
        rig.events.push("Agent-3", rig.clock.monotonic(), activity=False, folder=FolderEvent.ADDED)
        with capture_logs() as logs:
            rig.tick()
        assert events(logs, "agent_added", "Agent-3")
        (tmp_path / "Agent-3").mkdir()
        rig.events.push("Agent-3", rig.clock.monotonic(), activity=False,
                        folder=FolderEvent.REMOVED)
        rig.tick()
        assert "Agent-3" in rig.daemon.engine.monitor  # its folder is still there
        (tmp_path / "Agent-3").rmdir()
        rig.workspace.remove("Agent-3")
        rig.events.push("Agent-3", rig.clock.monotonic(), activity=False,
                        folder=FolderEvent.REMOVED)
        with capture_logs() as logs:
            rig.tick()
        assert events(logs, "agent_removed", "Agent-3")

    def test_an_overflow_rescans_and_a_dead_source_is_restarted(self, rig: Rig) -> None:
        """Lost events: activity the queue missed is found by the rescan; a dead source is
        restarted and the workspace rescanned."""
        rig.daemon.start()
        rig.clock.advance(HEAL - 4 * TICK)
        rig.workspace.touch("Agent-1", rig.clock.now())
        rig.events.overflowed.set()
        with capture_logs() as logs:
            assert rig.tick() is True
        assert events(logs, "event_queue_overflow")
        assert rig.daemon.engine.monitor.table.get("Agent-1") == pytest.approx(
            rig.clock.monotonic() - TICK)
        rig.events.dead = True
        assert rig.tick() is True
        assert rig.events.restarts == 1

    def test_each_batch_feeds_the_metrics_and_readings_describe_the_state(
        self, rig: Rig
    ) -> None:
        """The metrics get one sample per batch and read the daemon through `readings`,
        never through its insides."""
        rig.daemon.start()
        for _ in range(3):
            rig.events.push("Agent-1", rig.clock.monotonic())
        rig.tick()
        assert rig.metrics is not None and rig.metrics.batches == [3]
        rig.run(HEAL + TICK)
        readings: Readings = rig.metrics.source()
        assert {a: s for a, _, s in readings.agents} == {
            "Agent-1": Stage.HEALING, "Agent-2": Stage.HEALING}
        assert readings.counters.heal_actions == 2
        assert readings.events_seen == 3 and readings.alerts_sent == 0


class TestReload:
    def test_sighup_reloads_thresholds_and_keeps_state(self, rig: Rig) -> None:
        """A reload (SIGHUP's flag) applies the new thresholds at the next step, announces
        RELOADING then READY, and keeps the open incident."""
        rig.daemon.start()
        rig.run(HEAL + TICK)
        rig.daemon._on_hup(signal.SIGHUP)
        with capture_logs() as logs:
            assert rig.tick() is True
        assert events(logs, "config_reloaded")[0]["heal_after"] == HEAL * 10
        told = rig.notifier.messages
        assert told[told.index("RELOADING=1") + 1] == "READY=1"
        assert rig.daemon.engine.monitor.incident("Agent-1") is not None
