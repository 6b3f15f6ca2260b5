"""The engine over a real SQLite history and a fake clock: a crash between two engines loses
neither the attempt count nor the counters, and activity during the outage closes the incident."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import structlog
from structlog.testing import capture_logs

from healer.adapters.store import Store
from healer.config import Config
from healer.engine import Engine
from healer.testing import FakeClock
from healer.timeline import to_wall
from healer.wiring import build_engine
from tests.conftest import agents_at

TICK = 0.1


def _config(root: Path) -> Config:
    return Config(workspaces=root, heal_after=2.0, recover_after=1000.0, tick=TICK)


def _engine(config: Config, clock: FakeClock) -> tuple[Engine, Store]:
    store = Store.open(config.state_path / "healer.db", clock=clock)
    engine = build_engine(config, clock, store=store)
    engine.start()
    return engine, store


def _drive(engine: Engine, clock: FakeClock, until: float, logs: list[dict[str, object]],
           stop: object = None) -> None:
    """Advance tick by tick until `until`, or until a log entry equal to `stop` appears."""
    while clock.now() < until:
        clock.advance(TICK)
        engine.step()
        if stop is not None and any(_matches(e, stop) for e in logs):
            return


def _matches(entry: dict[str, object], want: object) -> bool:
    assert isinstance(want, dict)
    return all(entry.get(k) == v for k, v in want.items())


def _heals(logs: list[dict[str, object]], agent: str) -> list[tuple[object, object]]:
    return [(e["attempt"], e["action"]) for e in logs
            if e["event"] == "heal_action" and e["agent"] == agent]


@pytest.fixture
def root(tmp_path: Path, clock: FakeClock) -> Path:
    return agents_at(tmp_path / "ws", clock.now(), "Agent-1", "Agent-2")


class TestRestartContinuity:
    def _crash_after_attempt_two(
        self, root: Path, clock: FakeClock
    ) -> tuple[Config, list[dict[str, object]]]:
        config = _config(root)
        engine, store = _engine(config, clock)
        with capture_logs() as logs:
            _drive(engine, clock, clock.now() + 30, logs,
                   stop={"event": "heal_action", "agent": "Agent-1", "attempt": 2})
        assert _heals(logs, "Agent-1") == [(1, "force_update"), (2, "clear_stuck_tasks")]
        # A crash: no save(), no close() of the engine; the connection just goes away.
        store.close()
        del engine
        return config, logs

    def test_attempts_continue_at_three_after_a_crash(self, root: Path, clock: FakeClock) -> None:
        """After a crash at attempt 2 the restarted engine's next action is attempt 3
        (reset_status), not attempt 1, and stall_detected is not logged again."""
        config, _ = self._crash_after_attempt_two(root, clock)
        engine, store = _engine(config, clock)
        with capture_logs() as logs:
            _drive(engine, clock, clock.now() + 30, logs,
                   stop={"event": "heal_action", "agent": "Agent-1", "attempt": 3})
        assert _heals(logs, "Agent-1") == [(3, "reset_status")]
        assert not [e for e in logs if e["event"] == "stall_detected" and e["agent"] == "Agent-1"]
        assert not [e for e in logs if e["event"] == "agent_recovered"]
        store.close()

    def test_counters_continue_with_one_incident_per_silence(
        self, root: Path, clock: FakeClock
    ) -> None:
        """The history after the restart holds one incident per silent agent and every action
        of both runs; attempts 1 and 2 were settled 'failed' when their successor came due."""
        config, before = self._crash_after_attempt_two(root, clock)
        with Store.open_readonly(config.state_path / "healer.db") as view:  # type: ignore[union-attr]
            first = view.stats()
        engine, store = _engine(config, clock)
        with capture_logs() as logs:
            _drive(engine, clock, clock.now() + 30, logs,
                   stop={"event": "heal_action", "agent": "Agent-1", "attempt": 3})
        stats = store.stats()
        heal_lines = [e for e in before + logs if e["event"] == "heal_action"]
        assert stats["total_actions"] == len(heal_lines) > first["total_actions"]
        assert stats["by_agent"]["Agent-1"]["total"] == 3
        assert stats["by_agent"]["Agent-1"]["failed"] == 2
        assert stats["incidents"]["open"] == 2
        rows = store.open_incidents()
        assert [r.agent for r in rows] == ["Agent-1", "Agent-2"]
        assert rows[0].attempts == 3
        (count,) = store._db.conn.execute(
            "SELECT COUNT(*) FROM incidents WHERE agent = 'Agent-1'"
        ).fetchone()
        assert count == 1
        store.close()

    def test_activity_during_the_outage_closes_the_incident(
        self, root: Path, clock: FakeClock
    ) -> None:
        """An agent that wrote its status.json while healer was down is recovered at start-up:
        its incident closes as 'recovered' and the pending attempt 2 is settled 'success'."""
        config, _ = self._crash_after_attempt_two(root, clock)
        clock.advance(0.5)
        status = root / "Agent-1" / "status.json"
        status.write_text(json.dumps({"agent_id": "Agent-1", "status": "back"}))
        os.utime(status, (clock.now(), clock.now()))
        clock.advance(0.5)
        with capture_logs() as logs:
            engine, store = _engine(config, clock)
            _drive(engine, clock, clock.now() + 1.0, logs)
        recovered = [e for e in logs if e["event"] == "agent_recovered"]
        assert [(e["agent"], e["attempts"]) for e in recovered] == [("Agent-1", 2)]
        assert not _heals(logs, "Agent-1")
        assert store.open_incident_for("Agent-1") is None
        stats = store.stats()
        assert stats["incidents"]["recovered"] == 1
        assert stats["by_agent"]["Agent-1"] == {"total": 2, "successful": 1, "failed": 1}
        outcomes = [(a["attempt"], a["outcome"]) for a in stats["recent_actions"]
                    if a["agent"] == "Agent-1"]
        assert sorted(outcomes) == [(1, "failed"), (2, "success")]
        store.close()

    def test_own_writes_are_not_activity_after_a_restart(
        self, root: Path, clock: FakeClock
    ) -> None:
        """The restarted scan does not take healer's own status.json rewrites for the agent's:
        Agent-2, healed but silent, is still silent and its incident is resumed."""
        config, _ = self._crash_after_attempt_two(root, clock)
        engine, store = _engine(config, clock)
        assert engine.monitor.incident("Agent-2") is not None
        last = engine.monitor.table.get("Agent-2")
        assert last is not None
        assert to_wall(clock, last) == pytest.approx(
            store.open_incident_for("Agent-2").silence_started_at  # type: ignore[union-attr]
        )
        store.close()


def teardown_module() -> None:
    structlog.reset_defaults()


class TestResumeEdges:
    def test_a_crash_between_detection_and_attempt_one(self, root: Path, clock: FakeClock) -> None:
        """An incident on record with no attempt yet (healer died right after logging the
        stall) resumes with attempt 1 and does not log stall_detected again."""
        config = _config(root)
        start = clock.now()
        clock.advance(2.5)
        with Store.open(config.state_path / "healer.db", clock=clock) as store:
            store.open_incident("Agent-1", opened_at=clock.now(), silence_started_at=start,
                                detected_at=clock.now())
        engine, store = _engine(config, clock)
        with capture_logs() as logs:
            _drive(engine, clock, clock.now() + 1.0, logs,
                   stop={"event": "heal_action", "agent": "Agent-1"})
        assert _heals(logs, "Agent-1") == [(1, "force_update")]
        stalls = [e["agent"] for e in logs if e["event"] == "stall_detected"]
        assert stalls == ["Agent-2"]
        assert [r.agent for r in store.open_incidents()] == ["Agent-1", "Agent-2"]
        store.close()

    def test_a_recovery_first_incident_still_logs_its_healing_stall(
        self, root: Path, clock: FakeClock
    ) -> None:
        """An incident opened by the recovery threshold before heal_after (an agent with a
        longer heal_after) has not logged its healing stall: resuming it logs it once."""
        config = _config(root)
        start = clock.now()
        clock.advance(1.0)
        with Store.open(config.state_path / "healer.db", clock=clock) as store:
            store.open_incident("Agent-1", opened_at=clock.now(), silence_started_at=start,
                                detected_at=clock.now())
        engine, store = _engine(config, clock)
        with capture_logs() as logs:
            _drive(engine, clock, clock.now() + 2.0, logs,
                   stop={"event": "heal_action", "agent": "Agent-1"})
        stalls = [(e["agent"], e["pipeline"]) for e in logs if e["event"] == "stall_detected"]
        assert ("Agent-1", "healing") in stalls
        assert _heals(logs, "Agent-1") == [(1, "force_update")]
        store.close()

    def test_an_escalated_incident_still_gets_its_recovery_after_a_crash(
        self, root: Path, clock: FakeClock
    ) -> None:
        """Escalated before recover_after, then a crash: the restarted engine still runs the
        standard recovery once at recover_after, and does not escalate again."""
        config = Config(workspaces=root, heal_after=2.0, recover_after=10.0, tick=TICK)
        engine, store = _engine(config, clock)
        with capture_logs() as logs:
            _drive(engine, clock, clock.now() + 9.0, logs,
                   stop={"event": "agent_escalated", "agent": "Agent-1"})
        assert [e["agent"] for e in logs if e["event"] == "agent_escalated"] == [
            "Agent-1", "Agent-2"]
        assert not [e for e in logs if e["event"] == "recovery_action"]
        store.close()
        engine, store = _engine(config, clock)
        with capture_logs() as logs:
            _drive(engine, clock, clock.now() + 3.0, logs)
        stalls = [(e["agent"], e["pipeline"]) for e in logs if e["event"] == "stall_detected"]
        assert sorted(stalls) == [("Agent-1", "recovery"), ("Agent-2", "recovery")]
        rescued = [e["agent"] for e in logs
                   if e["event"] == "recovery_action" and e["action"] == "rescue_message"]
        assert sorted(rescued) == ["Agent-1", "Agent-2"]
        assert not [e for e in logs if e["event"] in ("agent_escalated", "heal_action")]
        # Nothing is left to do without activity: no timer keeps waking for them.
        assert engine.monitor.due_target("Agent-1") == float("inf")
        assert engine.monitor.due_target("Agent-2") == float("inf")
        store.close()


class TestOfflineResolve:
    def test_a_resolve_while_no_daemon_ran_waits_a_fresh_heal_after(
        self, root: Path, clock: FakeClock
    ) -> None:
        """`healer resolve` with the daemon stopped, then a start: a still-silent agent is not
        healed again at once, but `heal_after` after the resolve, as a running daemon does."""
        config = _config(root)
        engine, store = _engine(config, clock)
        with capture_logs() as logs:
            _drive(engine, clock, clock.now() + 30, logs,
                   stop={"event": "agent_escalated", "agent": "Agent-1"})
        row = store.open_incident_for("Agent-1")
        assert row is not None
        store.close_incident(row.id, closed_at=clock.now(), outcome="resolved")
        resolved_at = clock.now()
        store.close()
        clock.advance(0.5)
        engine, store = _engine(config, clock)
        with capture_logs() as logs:
            _drive(engine, clock, resolved_at + config.heal_after - TICK, logs)
            assert _heals(logs, "Agent-1") == []
            _drive(engine, clock, resolved_at + config.heal_after + 2 * TICK, logs)
        assert _heals(logs, "Agent-1") == [(1, "force_update")]
        store.close()


class TestPruneKeepsOwnStatusWrites:
    def test_the_record_of_healers_last_status_write_survives_pruning(
        self, tmp_path: Path, clock: FakeClock
    ) -> None:
        """Without it a restart long after healer's last write would take that write for the
        agent's; a rescue message's record may go."""
        with Store.open(tmp_path / "healer.db", clock=clock) as store:
            store.note_self_write("/ws/Agent-1/status.json", 1, 2, 3, ts=clock.now())
            store.note_self_write("/ws/Agent-1/inbox/HEALER_RESCUE_1.md", 4, 5, 6, ts=clock.now())
            store.prune(clock.now() + 1)
            assert list(store.self_writes()) == ["/ws/Agent-1/status.json"]
