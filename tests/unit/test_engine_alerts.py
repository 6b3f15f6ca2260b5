"""What the engine tells its alerter beyond stalled/escalated/recovered, and the counts the
metrics read: an operator's resolve and a removed folder end the incident's alert, a restart
re-opens the alert of an incident humans heard of, and an incident is counted once."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from healer.adapters.store import Store
from healer.config import Config
from healer.engine import Engine
from healer.testing import FakeClock
from healer.wiring import build_engine
from tests.conftest import agents_at

TICK = 0.1


class RecordingAlerter:
    """The alerter's two calls, recorded: (call, agent, transition, details)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, dict[str, Any]]] = []

    def send(self, agent: str, transition: str, details: Any = None) -> None:
        self.calls.append(("send", agent, transition, dict(details or {})))

    def restore(self, agent: str, transition: str, details: Any = None) -> None:
        self.calls.append(("restore", agent, transition, dict(details or {})))

    def transitions(self, agent: str) -> list[tuple[str, str]]:
        return [(call, t) for call, a, t, _ in self.calls if a == agent]


@pytest.fixture
def root(tmp_path: Path, clock: FakeClock) -> Path:
    return agents_at(tmp_path / "ws", clock.now(), "Agent-1", "Agent-2")


def engine_for(root: Path, clock: FakeClock, alerter: RecordingAlerter, *, store: bool = True,
               **overrides: Any) -> Engine:
    settings: dict[str, Any] = {"heal_after": 2.0, "recover_after": 3.0, "max_attempts": 2,
                                "tick": TICK, **overrides}
    config = Config(workspaces=root, **settings)
    history = Store.open(config.state_path / "healer.db", clock=clock) if store else None
    engine = build_engine(config, clock, store=history, alerter=alerter)  # type: ignore[arg-type]
    engine.start()
    return engine


def drive(engine: Engine, clock: FakeClock, seconds: float) -> None:
    end = clock.now() + seconds
    while clock.now() < end:
        clock.advance(TICK)
        engine.step()
        engine.reconcile()


class TestIncidentEnds:
    def test_an_operators_resolve_ends_the_alert(self, root, clock):
        """`healer resolve` closes the incident in the history; the daemon follows it and
        sends `resolved`, which ends the Alertmanager alert."""
        alerter = RecordingAlerter()
        engine = engine_for(root, clock, alerter)
        drive(engine, clock, 3.5)
        assert ("send", "stalled") in alerter.transitions("Agent-1")
        store = engine.history.log
        assert store is not None
        row = store.open_incident_for("Agent-1")
        assert row is not None
        store.close_incident(row.id, closed_at=clock.now(), outcome="resolved")
        drive(engine, clock, TICK * 2)
        assert alerter.transitions("Agent-1")[-1] == ("send", "resolved")

    def test_a_removed_folder_ends_the_alert(self, root, clock):
        alerter = RecordingAlerter()
        engine = engine_for(root, clock, alerter)
        drive(engine, clock, 3.5)
        shutil.rmtree(root / "Agent-2")
        drive(engine, clock, TICK * 2)
        assert alerter.transitions("Agent-2")[-1] == ("send", "resolved")

    def test_an_agent_never_in_an_incident_ends_nothing(self, root, clock):
        alerter = RecordingAlerter()
        engine = engine_for(root, clock, alerter)
        shutil.rmtree(root / "Agent-2")
        drive(engine, clock, TICK * 2)
        assert alerter.transitions("Agent-2") == []


class TestRestart:
    @pytest.mark.parametrize(("seconds", "transition"), [(3.5, "stalled"), (6.5, "escalated")])
    def test_a_carried_incident_humans_heard_of_is_restored(
        self, root, clock, seconds, transition
    ):
        """A second engine on the same history re-opens the alert (Alertmanager only) with
        the silence so far, and sends nothing to the chat again."""
        first = RecordingAlerter()
        engine = engine_for(root, clock, first)
        drive(engine, clock, seconds)
        assert ("send", transition) in first.transitions("Agent-1")
        assert engine.history.log is not None
        engine.history.log.close()
        clock.advance(10)
        second = RecordingAlerter()
        engine_for(root, clock, second)
        restored = [c for c in second.calls if c[1] == "Agent-1"]
        assert [(c[0], c[2]) for c in restored] == [("restore", transition)]
        assert restored[0][3]["silent_for"] == pytest.approx(seconds + 10, abs=TICK * 2)

    def test_an_incident_nobody_was_told_of_is_not_restored(self, root, clock):
        alerter = RecordingAlerter()
        engine = engine_for(root, clock, alerter, recover_after=100.0)
        drive(engine, clock, 2.5)  # healing only: no alert yet
        assert engine.history.log is not None
        engine.history.log.close()
        second = RecordingAlerter()
        engine_for(root, clock, second, recover_after=100.0)
        assert second.calls == []


class TestCounts:
    @pytest.mark.parametrize("store", [True, False])
    def test_an_incident_is_counted_once_with_its_detection_time(self, root, clock, store):
        """Both pipelines detect it, with or without a history to give it an id: one
        incident opened, its silence at detection summed once; the recovery timed."""
        engine = engine_for(root, clock, RecordingAlerter(), store=store)
        drive(engine, clock, 3.5)
        assert engine.executor.counters.incidents_opened == 2  # Agent-1 and Agent-2
        assert engine.executor.counters.detection_seconds == pytest.approx(2 * 2.0, abs=2 * TICK)
        (root / "Agent-1" / "devlogs" / "x.md").write_text("back")
        os.utime(root / "Agent-1" / "devlogs" / "x.md", (clock.now(), clock.now()))
        engine.rescan()  # no watcher here: the re-stat finds the write
        assert engine.executor.counters.recoveries == 1
        assert engine.executor.counters.recovery_seconds == pytest.approx(3.5 - 2.0, abs=2 * TICK)

    def test_actions_are_counted_by_pipeline_action_and_result(self, root, clock):
        engine = engine_for(root, clock, RecordingAlerter())
        drive(engine, clock, 3.5)
        results = dict(engine.executor.counters.results)
        assert results[("healing", "force_update", True)] == 2
        assert results[("recovery", "alert", True)] == 2
        assert sum(results.values()) == (
            engine.executor.counters.heal_actions + engine.executor.counters.recovery_actions)
