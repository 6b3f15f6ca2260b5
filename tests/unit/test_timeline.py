"""The engine's monotonic clock over a stepping wall clock: conversions at the boundary, and
the daemon over memory ports (FakeClock driving both clocks) through +1 h, -1 h and -10 s
steps, with writers whose mtimes follow the stepped wall clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from healer.config import Config
from healer.core.isotime import iso
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
from healer.timeline import FileTimes, Timeline
from tests.unit.test_breakers import WINDOW, flap
from tests.unit.test_breakers import Swarm as Breakers

WALL0, MONO0 = 1_700_000_000.0, 5_000.0  # far apart: a time on the wrong clock shows
Logs = list[dict[str, Any]]


def named(logs: Logs, event: str, agent: str | None = None) -> Logs:
    return [e for e in logs if e["event"] == event and (agent is None or e.get("agent") == agent)]


class TestTimeline:
    def test_engine_times_go_out_as_wall_times_and_come_back(self) -> None:
        """to_wall keeps an engine time's age on today's wall clock; from_wall reads a wall
        time, past or future, against the wall clock now."""
        clock = FakeClock(start=WALL0, monotonic=MONO0)
        timeline = Timeline(clock)
        assert timeline.now() == MONO0
        assert timeline.to_wall(MONO0 - 30) == WALL0 - 30
        clock.step(3600)
        assert timeline.to_wall(MONO0 - 30) == WALL0 + 3570  # thirty seconds ago, still
        assert timeline.from_wall(WALL0 + 3600 + 60) == MONO0 + 60
        assert timeline.wall_age(WALL0 + 3600 + 60) == MONO0  # the future is now

    def test_a_step_is_noticed_and_logged_once(self) -> None:
        clock = FakeClock(start=WALL0, monotonic=MONO0)
        timeline = Timeline(clock)
        clock.advance(5)
        assert timeline.follow() is None
        clock.step(-3600)
        with capture_logs() as logs:
            assert timeline.follow() == -3600
            assert timeline.follow() is None
        assert [e["step"] for e in named(logs, "wall_clock_stepped")] == [-3600]


class TestFileTimes:
    def test_start_up_reads_ages_and_running_reads_changes(self) -> None:
        """At start-up an mtime is an age; afterwards only an mtime that moved is activity,
        placed where the wall clock read it, across a step."""
        clock = FakeClock(start=WALL0, monotonic=MONO0)
        times = FileTimes(Timeline(clock))
        assert times.at_start("Agent-1", WALL0 - 40) == MONO0 - 40
        clock.advance(100)
        assert times.activity("Agent-1", WALL0 - 40, MONO0 - 40) is None  # not moved
        clock.step(3600)
        clock.advance(10)
        wrote = clock.now() - 4  # a write 4 s ago, stamped by the stepped wall clock
        assert times.activity("Agent-1", wrote, MONO0 - 40) == pytest.approx(MONO0 + 106)

    def test_a_folder_that_appears_brings_no_activity(self) -> None:
        """Its files are its baseline: a day-old mtime is neither activity nor silence."""
        clock = FakeClock(start=WALL0, monotonic=MONO0)
        times = FileTimes(Timeline(clock))
        times.appeared("Agent-9", WALL0 - 86_400)
        clock.advance(50)
        assert times.activity("Agent-9", WALL0 - 86_400, MONO0) is None


    def test_a_write_heard_of_while_the_folder_was_scanned_is_not_news_later(self) -> None:
        """A new agent's first write lands while its appearance is being scanned (after the
        scan read status.json), and its event is stamped before the scan ends. The re-stat
        at its stall finds that write's mtime: the event already said it. Taken as a write
        at an unknown time ("now"), it put the stall off by heal_after (issue #16)."""
        clock = FakeClock(start=WALL0, monotonic=MONO0)
        times = FileTimes(Timeline(clock))
        looked = clock.monotonic()  # the scan begins, reads the folder's old status.json
        clock.advance(0.010)  # ... and ends; meanwhile the write, its event stamped at +5 ms
        times.appeared("Agent-1", WALL0 - 1, looked)
        clock.advance(0.6)
        assert times.activity("Agent-1", WALL0 + 0.004, MONO0 + 0.005, clock.monotonic()
                              ) is None

HEAL, RECOVER, TICK = 2.0, 6.0, 0.1
HEALTHY = ("Agent-1", "Agent-2", "Agent-3")


class Swarm:
    """A daemon over memory ports with healthy writers; the writers' events are stamped on
    the monotonic clock, their mtimes by the wall clock, stepped or not."""

    def __init__(self, root: Path, heal_after: float = HEAL, events: bool = True) -> None:
        self.clock = FakeClock(start=WALL0, monotonic=MONO0)
        self.config = Config(workspaces=root, heal_after=heal_after,
                             recover_after=heal_after * 3, tick=TICK, check_interval=1.0)
        self.workspace = MemoryWorkspace()
        self.log = MemoryIncidentLog()
        self.events = FakeEvents()
        self.send_events = events
        for agent in (*HEALTHY, "Agent-9"):
            self.workspace.add(agent, self.clock.now(), doc={"current_tasks": ["t"]})
        engine = Engine(self.config, self.clock, workspace=self.workspace,
                        files=self.workspace.files, history=History(self.log, self.clock))
        alerts = RecordingAlerts()
        self.daemon = Daemon(self.config, clock=self.clock, engine=engine, watcher=self.events,
                             notifier=RecordingNotifier(), alerter=alerts, store=self.log)
        self.daemon.start()
        self.steps = self.daemon.steps()
        self.writing = {*HEALTHY, "Agent-9"}

    def write(self, agent: str) -> None:
        self.workspace.touch(agent, self.clock.now())  # the mtime: the wall clock, as it is
        if self.send_events:
            self.events.push(agent, self.clock.monotonic())

    def run(self, seconds: float) -> None:
        end = self.clock.monotonic() + seconds
        while self.clock.monotonic() < end - 1e-9:
            self.clock.advance(TICK)
            for agent in sorted(self.writing):
                self.write(agent)
            next(self.steps)


STEPS = [3600.0, -3600.0, -10.0]


class TestDaemonUnderWallSteps:
    @pytest.mark.parametrize("step", STEPS)
    @pytest.mark.parametrize("stops", ["before", "after"])
    def test_no_false_stall_and_a_stopped_agent_on_time(
        self, tmp_path: Path, step: float, stops: str
    ) -> None:
        """Healthy agents are never flagged across the step; the one that stopped (before
        or after it) is flagged a heal_after after its last write, within a tick."""
        swarm = Swarm(tmp_path)
        with capture_logs() as logs:
            swarm.run(1.0)
            if stops == "before":
                swarm.writing.discard("Agent-9")
                stopped = swarm.clock.monotonic()
            swarm.run(0.5)
            swarm.clock.step(step)
            swarm.run(0.5)
            if stops == "after":
                swarm.writing.discard("Agent-9")
                stopped = swarm.clock.monotonic()
            swarm.run(3 * HEAL)
        stalls = named(logs, "stall_detected")
        assert {s["agent"] for s in stalls} == {"Agent-9"}
        first = stalls[0]
        assert first["pipeline"] == "healing"
        assert first["silent_for"] == pytest.approx(HEAL, abs=TICK + 1e-6)
        (row,) = swarm.log.open_incidents()
        # What is stored is wall time, the stepped wall clock's: detected a heal_after
        # after the stop, written as the wall clock read at that moment.
        detected_mono = stopped + first["silent_for"]
        wall_then = swarm.clock.now() - (swarm.clock.monotonic() - detected_mono)
        assert row.detected_at == pytest.approx(wall_then, abs=TICK + 1e-6)
        applied = swarm.workspace.files.docs["Agent-9"]["healing_applied"][0]
        assert applied["timestamp"][:16] == iso(wall_then)[:16]

    @pytest.mark.parametrize("step", STEPS)
    def test_a_writer_whose_events_are_lost_is_found_by_its_mtimes(
        self, tmp_path: Path, step: float
    ) -> None:
        """Without a single event (a network filesystem), the re-stat at each due moment
        places the moved mtime where the stepped wall clock read it: no stall."""
        swarm = Swarm(tmp_path, events=False)
        with capture_logs() as logs:
            swarm.run(1.0)
            swarm.clock.step(step)
            swarm.run(4 * HEAL)
        assert named(logs, "stall_detected") == []

    def test_a_long_threshold_is_not_stretched_by_a_small_step_back(self, tmp_path: Path
                                                                    ) -> None:
        """heal_after 120 s, the agent stops a minute before a 10 s step back: it is
        flagged 120 s after its last write, not 130 (issue #14 measured 11 s late)."""
        swarm = Swarm(tmp_path, heal_after=120.0)
        with capture_logs() as logs:
            swarm.run(1.0)
            swarm.writing = set(HEALTHY)
            stopped = swarm.clock.monotonic()
            swarm.run(60.0)
            swarm.clock.step(-10.0)
            swarm.run(70.0)
        (stall,) = [s for s in named(logs, "stall_detected") if s["pipeline"] == "healing"]
        assert stall["agent"] == "Agent-9"
        assert stall["silent_for"] == pytest.approx(120.0, abs=TICK + 1e-6)
        assert swarm.clock.monotonic() - stopped >= 120.0

    def test_activity_after_a_step_back_is_never_dropped_as_older(self, tmp_path: Path
                                                                  ) -> None:
        """After -1 h every new stamp reads an hour older on the wall clock; the table and
        the wheel, on the monotonic clock, take each one."""
        swarm = Swarm(tmp_path)
        swarm.run(1.0)
        table = swarm.daemon.engine.monitor.table
        before = table.get("Agent-9")
        swarm.clock.step(-3600)
        swarm.run(0.5)
        assert before is not None and table.get("Agent-9") == swarm.clock.monotonic()
        assert swarm.daemon.engine.monitor.wheel.deadline("Agent-9") is not None


class TestWallTimesAtTheBoundary:
    def _engine(self, tmp_path: Path, clock: FakeClock, workspace: MemoryWorkspace,
                log: MemoryIncidentLog, **config: Any) -> Engine:
        settings = Config(workspaces=tmp_path, heal_after=HEAL, recover_after=RECOVER,
                          tick=TICK, **config)
        return Engine(settings, clock, workspace=workspace, files=workspace.files,
                      history=History(log, clock))

    @pytest.mark.parametrize("step", [3600.0, -3600.0])
    def test_a_lease_is_read_against_the_wall_clock_and_capped_on_the_monotonic(
        self, tmp_path: Path, step: float
    ) -> None:
        """busy_until is the agent's wall time, read as one at each decision; its cap
        (max_busy_lease after the write) counts on the monotonic clock, whatever the step."""
        clock = FakeClock(start=WALL0, monotonic=MONO0)
        workspace = MemoryWorkspace()
        workspace.add("Agent-1", clock.now(), doc={"busy_until": iso(WALL0 + 86_400)})
        engine = self._engine(tmp_path, clock, workspace, MemoryIncidentLog(),
                              max_busy_lease=5.0)
        engine.start()
        clock.step(step)
        with capture_logs() as logs:
            while clock.monotonic() + TICK < MONO0 + 5.0 + HEAL - 1e-9:
                clock.advance(TICK)
                engine.step()
            assert named(logs, "stall_detected") == []
            clock.advance(TICK)
            engine.step()
        assert [s["agent"] for s in named(logs, "stall_detected")] == ["Agent-1"]

    def test_a_restart_after_a_step_resumes_from_the_stored_wall_times(
        self, tmp_path: Path
    ) -> None:
        """A step while healer ran, then a clean stop and a start: the saved last activity
        is written as the wall clock reads it at the save (its age kept), so the restart,
        which reads it by its age, finds the agent exactly as silent as it was."""
        clock = FakeClock(start=WALL0, monotonic=MONO0)
        workspace = MemoryWorkspace()
        # Its files are older than the step back (a newer mtime would be in the restarted
        # clock's future, which counts as now).
        workspace.add("Agent-1", WALL0 - 7200)
        log = MemoryIncidentLog()
        first = self._engine(tmp_path, clock, workspace, log)
        first.start()
        clock.advance(1.0)
        first.observe("Agent-1", clock.monotonic())  # an event the files do not show
        clock.step(-3600)
        clock.advance(0.5)
        first.save()
        assert log.last_activities() == {"Agent-1": clock.now() - 0.5}
        restarted = FakeClock(start=clock.now() + 0.25, monotonic=77.0)  # a new boot
        second = self._engine(tmp_path, restarted, workspace, log)
        second.start()
        assert second.monitor.table.get("Agent-1") == pytest.approx(77.0 - 0.75)

    def test_a_new_boot_rebuilds_the_flapping_breaker_from_the_stored_wall_times(
        self,
    ) -> None:
        """The incidents' spans are stored as wall times and read back by their age: after
        a reboot (a new monotonic clock) the agent is still flapping, and it is over a
        window after its last incident ended, as the wall clock tells it."""
        first = Breakers(3)  # its helpers speak wall time: both clocks level
        others = ["Agent-2", "Agent-3"]
        flap(first, "Agent-1", 3, others)  # the third trips it, and ends too
        assert first.engine.breakers.is_flapping("Agent-1")
        last_end = first.clock.now() - TICK  # when Agent-1 came back the last time
        rebooted = FakeClock(start=first.clock.now() + 1.0, monotonic=12.0)
        over = None
        with capture_logs() as logs:
            second = Breakers(3, log=first.log, clock=rebooted)
            while over is None and rebooted.now() < last_end + 2 * WINDOW:
                rebooted.advance(TICK)
                for agent in ("Agent-1", *others):  # writes found by their mtimes
                    second.workspace.touch(agent, rebooted.now())
                second.engine.step()
                if named(logs, "agent_flapping_over", "Agent-1"):
                    over = rebooted.now()
        assert named(logs, "agent_flapping", "Agent-1")[0]["restored"] is True
        assert over == pytest.approx(last_end + WINDOW, abs=2 * TICK)
