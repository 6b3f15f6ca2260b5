"""The shipped fakes behave as their ports promise: the clock moves only when told, and
the memory history keeps the SQLite store's rules."""

from __future__ import annotations

from threading import Event

import pytest

from healer.core.model import IncidentOutcome, Pipeline, Settlement, Stage
from healer.testing import FakeClock, MemoryIncidentLog, MemoryStatusStore


class TestFakeClock:
    def test_advance_moves_wall_and_monotonic_time_together(self) -> None:
        clock = FakeClock(start=100.0, monotonic=5.0)
        clock.advance(2.5)
        assert (clock.now(), clock.monotonic()) == (102.5, 7.5)

    def test_advance_and_set_never_go_back(self) -> None:
        clock = FakeClock(start=100.0)
        with pytest.raises(ValueError):
            clock.advance(-1)
        with pytest.raises(ValueError):
            clock.set(99.0)
        clock.set(110.0)
        assert (clock.now(), clock.monotonic()) == (110.0, 110.0)

    def test_the_monotonic_clock_starts_level_with_the_wall_unless_told(self) -> None:
        """Level by default, so a test that never steps may use either as engine time."""
        assert FakeClock(start=100.0).monotonic() == 100.0
        assert FakeClock(start=100.0, monotonic=7.0).monotonic() == 7.0

    @pytest.mark.parametrize("jump", [3600.0, -3600.0])
    def test_step_moves_only_the_wall_clock_either_way(self, jump: float) -> None:
        """An NTP step or a resumed VM: the wall clock jumps, monotonic time does not."""
        clock = FakeClock(start=1000.0, monotonic=50.0)
        clock.step(jump)
        assert (clock.now(), clock.monotonic()) == (1000.0 + jump, 50.0)

    def test_wait_never_blocks_nor_moves_time(self) -> None:
        clock = FakeClock()
        event = Event()
        before = clock.now()
        assert clock.wait(event, 3600.0) is False
        event.set()
        assert clock.wait(event, 3600.0) is True
        assert clock.now() == before


class TestMemoryIncidentLog:
    def test_closing_as_recovered_settles_the_latest_attempt_a_success(self) -> None:
        log = MemoryIncidentLog()
        row = log.open_incident("Agent-1", opened_at=10.0, silence_started_at=0.0,
                                stage=Stage.HEALING)
        for attempt in (1, 2):
            log.record_action(ts=10.0 * attempt, agent="Agent-1", incident_id=row,
                              pipeline=Pipeline.HEALING, action="force_update",
                              attempt=attempt, applied_ok=True)
        assert log.close_incident(row, closed_at=30.0, outcome=IncidentOutcome.RECOVERED)
        assert not log.close_incident(row, closed_at=31.0, outcome=IncidentOutcome.RESOLVED)
        stats = log.stats()
        assert stats["by_agent"]["Agent-1"] == {"total": 2, "successful": 1, "failed": 1}
        assert stats["incidents"]["recovered"] == 1 and stats["mttr_seconds"] == 20.0

    def test_one_open_incident_per_agent_and_settling_once(self) -> None:
        log = MemoryIncidentLog()
        row = log.open_incident("Agent-1", opened_at=1.0, silence_started_at=0.0,
                                stage=Stage.HEALING)
        with pytest.raises(ValueError):
            log.open_incident("Agent-1", opened_at=2.0, silence_started_at=0.0,
                              stage=Stage.HEALING)
        action = log.record_action(ts=1.0, agent="Agent-1", incident_id=row,
                                   pipeline=Pipeline.HEALING, action="force_update",
                                   attempt=1, applied_ok=True)
        assert log.settle_action(action, Settlement.FAILED)
        assert not log.settle_action(action, Settlement.SUCCESS)


class TestMemoryStatusStore:
    def test_updates_back_up_and_unique_names_do_not_collide(self) -> None:
        store = MemoryStatusStore()
        store.docs["Agent-1"] = {"n": 1}
        written = store.update_status("Agent-1", lambda d: {**d, "n": 2}, backup=True)
        assert written.backup is not None and store.backups["Agent-1"] == [{"n": 1}]
        assert store.read_status("Agent-1").doc == {"n": 2}
        names = [store.write_unique("Agent-1", "inbox", lambda taken: f"m{len(taken)}.md", "x")
                 for _ in range(2)]
        assert [p.name for p in names] == ["m0.md", "m1.md"]
        assert store.read_status("Agent-2").kind == "missing"
