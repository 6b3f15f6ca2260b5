"""Membership over memory ports: a new agent's clock starts when its folder appears (SPEC
§1), at its files' mtimes only when healer starts."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from healer.config import Config
from healer.engine import Engine
from healer.history import History
from healer.testing import FakeClock, MemoryIncidentLog, MemoryWorkspace

HEAL, TICK = 10.0, 0.5
DAY = 86_400.0
Logs = list[dict[str, Any]]


def stalls(logs: Logs, agent: str) -> Logs:
    return [e for e in logs if e["event"] == "stall_detected" and e["agent"] == agent]


class Rig:
    def __init__(self, tmp_path: Any) -> None:
        self.clock = FakeClock(start=1_700_000_000.0, monotonic=9_000.0)
        config = Config(workspaces=tmp_path, heal_after=HEAL, recover_after=4 * HEAL,
                        tick=TICK)
        self.workspace = MemoryWorkspace()
        self.workspace.add("Agent-1", self.clock.now())
        self.engine = Engine(config, self.clock, workspace=self.workspace,
                             files=self.workspace.files,
                             history=History(MemoryIncidentLog(), self.clock))

    def run(self, seconds: float) -> None:
        end = self.clock.monotonic() + seconds
        while self.clock.monotonic() < end - 1e-9:
            self.clock.advance(TICK)
            self.engine.step()


@pytest.fixture
def rig(tmp_path: Any) -> Rig:
    return Rig(tmp_path)


class TestANewAgentsClock:
    @pytest.mark.parametrize("found_by", ["folder event", "sweep"])
    def test_a_folder_copied_in_with_day_old_files_waits_a_heal_after(
        self, rig: Rig, found_by: str
    ) -> None:
        """Moved or `cp -a`'d in with files a day old: not flagged before heal_after from
        its appearance, flagged a heal_after after it, its silence counted from there."""
        rig.engine.start()
        rig.run(3.0)
        rig.workspace.add("Agent-7", rig.clock.now() - DAY, created=rig.clock.now() - DAY)
        appeared = rig.clock.monotonic()
        with capture_logs() as logs:
            if found_by == "sweep":
                assert rig.engine.reconcile() == (1, 0)
            else:
                assert rig.engine.add_agent("Agent-7", at=appeared)
            rig.run(HEAL - TICK)
            assert stalls(logs, "Agent-7") == []
            rig.run(2 * TICK)
        (stall,) = stalls(logs, "Agent-7")
        assert stall["silent_for"] == pytest.approx(HEAL, abs=TICK + 1e-6)
        assert rig.engine.monitor.table.get("Agent-7") == appeared

    def test_the_folder_events_moment_is_the_start_not_the_moment_it_is_applied(
        self, rig: Rig
    ) -> None:
        rig.engine.start()
        rig.workspace.add("Agent-7", None, created=rig.clock.now() - DAY)
        seen = rig.clock.monotonic()
        rig.clock.advance(2.0)  # the loop applies the event a little later
        rig.engine.add_agent("Agent-7", at=seen)
        assert rig.engine.monitor.table.get("Agent-7") == seen

    def test_a_write_after_the_folder_appeared_is_activity_though_applied_late(
        self, rig: Rig
    ) -> None:
        """The folder event is stamped when read, but applied after a flood (or a stopped
        process): files the agent wrote in between are newer than the appearance, become
        the baseline, and only here can count. Its clock starts at its last write, so it
        is never flagged before heal_after from that write."""
        rig.engine.start()
        seen = rig.clock.monotonic()
        rig.clock.advance(1.5)
        rig.workspace.add("Agent-7", rig.clock.now(), created=rig.clock.now() - 1.5)
        wrote = rig.clock.monotonic()
        rig.clock.advance(0.5)  # the loop applies the folder event only now
        rig.engine.add_agent("Agent-7", at=seen)
        assert rig.engine.monitor.table.get("Agent-7") == pytest.approx(wrote)
        with capture_logs() as logs:
            rig.run(HEAL - 0.5 - TICK)
            assert stalls(logs, "Agent-7") == []
            rig.run(2 * TICK)
        (stall,) = stalls(logs, "Agent-7")
        assert stall["silent_for"] == pytest.approx(HEAL, abs=TICK + 1e-6)

    def test_at_start_up_the_files_say_how_long_an_agent_has_been_silent(
        self, rig: Rig
    ) -> None:
        """healer (re)starting finds a folder a day silent: that is a day's silence."""
        rig.workspace.add("Agent-7", rig.clock.now() - DAY)
        rig.workspace.add("Agent-8", None, created=rig.clock.now() - 2 * DAY)
        rig.engine.start()
        with capture_logs() as logs:
            rig.run(TICK)
        assert stalls(logs, "Agent-7")[0]["silent_for"] == pytest.approx(DAY + TICK)
        assert stalls(logs, "Agent-8")[0]["silent_for"] == pytest.approx(2 * DAY + TICK)

    def test_a_write_after_the_appearance_is_activity(self, rig: Rig) -> None:
        """The baseline is what the folder came with; an mtime that moves since is news,
        even with no event (a network filesystem)."""
        rig.engine.start()
        rig.workspace.add("Agent-7", rig.clock.now() - DAY)
        rig.engine.add_agent("Agent-7")
        rig.run(HEAL / 2)
        rig.workspace.touch("Agent-7", rig.clock.now())
        wrote = rig.clock.monotonic()
        with capture_logs() as logs:
            rig.run(HEAL - TICK)  # past the appearance's heal_after, short of the write's
        assert stalls(logs, "Agent-7") == []
        assert rig.engine.monitor.table.get("Agent-7") == wrote
