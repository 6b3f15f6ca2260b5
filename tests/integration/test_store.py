"""The durable history on real SQLite files: modes, migrations, life cycle, crashes, concurrency."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from healer.adapters.store import SCHEMA_VERSION, Store
from healer.adapters.store_sqlite import MIGRATIONS
from healer.core.commands import CommandKind, CommandRequest, CommandResult, CommandSpec
from healer.core.model import Stage
from healer.errors import StoreError
from healer.testing import FakeClock

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000.0


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "healer.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    with Store.open(db_path, clock=FakeClock(T0)) as opened:
        yield opened


def heal(store: Store, incident: int, agent: str, action: str, attempt: int, ts: float) -> int:
    return store.record_action(
        ts=ts,
        agent=agent,
        incident_id=incident,
        pipeline="healing",
        action=action,
        attempt=attempt,
        applied_ok=True,
    )


def recover(store: Store, incident: int, agent: str, action: str, ts: float) -> int:
    return store.record_action(
        ts=ts,
        agent=agent,
        incident_id=incident,
        pipeline="recovery",
        action=action,
        attempt=1,
        applied_ok=True,
    )


def python(code: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )


class TestOpening:
    def test_creates_the_folder_0700_and_the_files_0600_whatever_the_umask(
        self, db_path: Path
    ) -> None:
        old = os.umask(0o277)  # would leave the folder 0500 and the file 0400 without chmod
        try:
            store = Store.open(db_path)
            heal(
                store,
                store.open_incident("Agent-1", opened_at=T0, silence_started_at=T0),
                "Agent-1",
                "force_update",
                1,
                T0,
            )
        finally:
            os.umask(old)
        try:
            assert stat.S_IMODE(db_path.parent.stat().st_mode) == 0o700
            assert stat.S_IMODE(db_path.stat().st_mode) == 0o600
            wal = db_path.with_name("healer.db-wal")
            assert wal.exists()  # still open: proves WAL mode, and its mode is the db's
            assert stat.S_IMODE(wal.stat().st_mode) == 0o600
        finally:
            store.close()

    def test_uses_wal_and_records_the_current_schema_version(
        self, store: Store, db_path: Path
    ) -> None:
        with sqlite3.connect(db_path) as raw:
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert raw.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION

    def test_reopening_keeps_the_history(self, db_path: Path) -> None:
        with Store.open(db_path) as first:
            incident = first.open_incident("Agent-1", opened_at=T0, silence_started_at=T0 - 120)
        with Store.open(db_path) as second:
            row = second.open_incident_for("Agent-1")
        assert row is not None and row.id == incident and row.silence_started_at == T0 - 120

    def test_a_v1_history_is_migrated_and_its_escalations_kept(self, db_path: Path) -> None:
        db_path.parent.mkdir()
        raw = sqlite3.connect(db_path, isolation_level=None)
        MIGRATIONS[0](raw)
        raw.execute("UPDATE schema_version SET version = 1")
        raw.execute(
            "INSERT INTO incidents (agent, opened_at, silence_started_at, detected_at, stage,"
            " attempts, last_attempt_at) VALUES ('Agent-3', ?, ?, ?, 'escalated', 3, ?)",
            (T0, T0 - 120, T0, T0 + 240),
        )
        raw.close()
        with Store.open(db_path) as store:
            (row,) = store.open_incidents()
            assert row.escalated_at == T0 + 240
            assert store.stats()["incidents"]["escalated"] == 1
        with sqlite3.connect(db_path) as raw:
            assert raw.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION

    def test_a_v2_history_is_migrated_and_counts_reassignments_from_then_on(
        self, db_path: Path
    ) -> None:
        """Migration v3 adds the record of tasks healer sent; the rest is kept."""
        db_path.parent.mkdir()
        raw = sqlite3.connect(db_path, isolation_level=None)
        for step in MIGRATIONS[:2]:
            step(raw)
        raw.execute("UPDATE schema_version SET version = 2")
        raw.execute("INSERT INTO agents VALUES ('Agent-1', ?)", (T0,))
        raw.close()
        with Store.open(db_path) as store:
            assert store.last_activities() == {"Agent-1": T0}
            assert store.tasks_sent("Agent-2", (1, 2, 3)) == 0
            store.record_reassignment(ts=T0, from_agent="Agent-1", to_agent="Agent-2", tasks=2,
                                      to_status=(1, 2, 3))
            assert store.tasks_sent("Agent-2", (1, 2, 3)) == 2
        with sqlite3.connect(db_path) as raw:
            assert raw.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION

    def test_a_v3_history_is_migrated_and_records_command_runs(self, db_path: Path) -> None:
        """Migration v4 adds the record of operator commands; the rest is kept."""
        db_path.parent.mkdir()
        raw = sqlite3.connect(db_path, isolation_level=None)
        for step in MIGRATIONS[:3]:
            step(raw)
        raw.execute("UPDATE schema_version SET version = 3")
        raw.execute("INSERT INTO agents VALUES ('Agent-1', ?)", (T0,))
        raw.close()
        with Store.open(db_path) as store:
            assert store.last_activities() == {"Agent-1": T0}
            store.record_command(run("page", ok=True), kind=CommandKind.HOOK, incident_id=None,
                                 action_id=None)
        with sqlite3.connect(db_path) as raw:
            assert raw.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
            assert raw.execute("SELECT kind, command FROM command_runs").fetchall() == [
                ("hook", "page")]

    def test_a_history_from_a_newer_healer_is_refused(self, store: Store, db_path: Path) -> None:
        store.close()
        with sqlite3.connect(db_path) as raw:
            raw.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
        for opener in (Store.open, Store.open_readonly):
            with pytest.raises(StoreError, match="newer than this healer"):
                opener(db_path)

    def test_a_corrupt_file_is_a_one_line_store_error(self, db_path: Path) -> None:
        db_path.parent.mkdir()
        db_path.write_bytes(os.urandom(8192))
        for opener in (Store.open, Store.open_readonly):
            with pytest.raises(StoreError) as caught:
                opener(db_path)
            message = str(caught.value)
            assert str(db_path) in message and "\n" not in message
            assert "not a database" in message

    def test_a_lock_held_past_the_timeout_is_a_store_error(self, db_path: Path) -> None:
        impatient = Store.open(db_path, timeout=0.2)
        holder = sqlite3.connect(db_path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreError, match=r"stayed locked for 0\.2s"):
                Store.open(db_path, timeout=0.2)
            with pytest.raises(StoreError, match=r"stayed locked for 0\.2s \(save last activity\)"):
                impatient.save_last_activity({"Agent-1": T0})
            reader = Store.open_readonly(db_path)
            assert reader is not None
            assert reader.stats()["total_actions"] == 0  # WAL readers go past the writer's lock
            reader.close()
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        impatient.save_last_activity({"Agent-1": T0})  # the store is usable once the lock goes
        assert impatient.last_activities() == {"Agent-1": T0}
        impatient.close()

    def test_readonly_is_none_without_a_history(self, db_path: Path) -> None:
        assert Store.open_readonly(db_path) is None
        db_path.parent.mkdir()
        db_path.touch()
        assert Store.open_readonly(db_path) is None  # created but never set up

    def test_readonly_refuses_to_write(self, store: Store, db_path: Path) -> None:
        reader = Store.open_readonly(db_path)
        assert reader is not None
        with pytest.raises(StoreError, match="readonly"):
            reader.save_last_activity({"Agent-1": T0})
        reader.close()

    def test_a_call_from_another_thread_is_a_store_error(self, store: Store) -> None:
        caught: list[BaseException] = []

        def call() -> None:
            try:
                store.open_incidents()
            except BaseException as exc:
                caught.append(exc)

        worker = threading.Thread(target=call)
        worker.start()
        worker.join()
        assert len(caught) == 1 and isinstance(caught[0], StoreError)


class TestIncidents:
    def test_one_open_incident_per_agent(self, store: Store) -> None:
        store.open_incident("Agent-1", opened_at=T0, silence_started_at=T0 - 120)
        with pytest.raises(StoreError, match="open an incident for Agent-1"):
            store.open_incident("Agent-1", opened_at=T0 + 1, silence_started_at=T0 - 120)

    def test_updates_show_in_the_row_and_escalation_is_stamped_once(self, store: Store) -> None:
        incident = store.open_incident("Agent-1", opened_at=T0, silence_started_at=T0 - 120)
        assert store.update_incident(incident, attempts=3, last_attempt_at=T0 + 240)
        assert store.update_incident(incident, stage=Stage.ESCALATED, at=T0 + 360)
        assert store.update_incident(incident, stage="escalated", recovery_done=True, at=T0 + 999)
        row = store.open_incident_for("Agent-1")
        assert row is not None
        assert (row.stage, row.attempts, row.last_attempt_at) == ("escalated", 3, T0 + 240)
        assert row.recovery_done is True and row.escalated_at == T0 + 360

    def test_escalation_without_a_time_takes_the_clock(self, store: Store) -> None:
        incident = store.open_incident("Agent-1", opened_at=T0, silence_started_at=T0 - 120)
        store.update_incident(incident, stage="escalated")
        row = store.incident(incident)
        assert row is not None and row.escalated_at == T0

    def test_a_closed_incident_is_neither_updated_nor_closed_again(self, store: Store) -> None:
        incident = store.open_incident("Agent-1", opened_at=T0, silence_started_at=T0 - 120)
        assert store.close_incident(incident, closed_at=T0 + 10, outcome="resolved")
        assert not store.update_incident(incident, attempts=2)
        assert not store.close_incident(incident, closed_at=T0 + 20, outcome="recovered")
        assert store.open_incident_for("Agent-1") is None
        row = store.incident(incident)
        assert row is not None and row.outcome == "resolved" and row.closed_at == T0 + 10

    def test_unknown_stage_or_outcome_is_a_store_error(self, store: Store) -> None:
        with pytest.raises(StoreError, match="unknown stage 'asleep'"):
            store.open_incident("Agent-1", opened_at=T0, silence_started_at=T0, stage="asleep")
        incident = store.open_incident("Agent-1", opened_at=T0, silence_started_at=T0)
        with pytest.raises(StoreError, match="unknown incident outcome"):
            store.close_incident(incident, closed_at=T0, outcome="success")
        with pytest.raises(StoreError, match="unknown pipeline"):
            store.record_action(
                ts=T0,
                agent="Agent-1",
                incident_id=incident,
                pipeline="magic",
                action="x",
                attempt=1,
                applied_ok=True,
            )

    def test_agent_rows_join_saved_activity_and_open_incidents(self, store: Store) -> None:
        store.save_last_activity({"Agent-1": T0 - 5, "Agent-2": T0 - 500})
        store.save_last_activity({"Agent-2": T0 - 400})
        store.open_incident("Agent-3", opened_at=T0, silence_started_at=T0 - 120)
        rows = store.agent_rows()
        assert [(r.agent, r.last_activity) for r in rows] == [
            ("Agent-1", T0 - 5),
            ("Agent-2", T0 - 400),
            ("Agent-3", None),
        ]
        assert rows[2].incident is not None and rows[2].incident.stage == "healing"
        assert store.last_activities() == {"Agent-1": T0 - 5, "Agent-2": T0 - 400}

    def test_own_writes_are_remembered_by_path(self, store: Store) -> None:
        store.note_self_write("/ws/Agent-1/status.json", 11, 1_000, 50, T0)
        store.note_self_write("/ws/Agent-1/status.json", 12, 2_000, 60, T0 + 1)
        store.note_self_write("/ws/Agent-2/inbox/HEALER_RESCUE_1.md", 13, 3_000, 70, T0 + 2)
        assert store.self_writes() == {
            "/ws/Agent-1/status.json": (12, 2_000, 60),
            "/ws/Agent-2/inbox/HEALER_RESCUE_1.md": (13, 3_000, 70),
        }


class TestStats:
    def test_a_full_life_cycle_gives_the_hand_computed_numbers(self, store: Store) -> None:
        # A: Agent-1 silent at T0, detected at +120, attempt 1 fails, back after attempt 2.
        a = store.open_incident("Agent-1", opened_at=T0 + 120, silence_started_at=T0)
        a1 = heal(store, a, "Agent-1", "force_update", 1, T0 + 120)
        assert store.settle_action(a1, "failed")
        heal(store, a, "Agent-1", "clear_stuck_tasks", 2, T0 + 240)
        store.update_incident(a, attempts=2, last_attempt_at=T0 + 240)
        store.close_incident(a, closed_at=T0 + 300, outcome="recovered")
        # B: Agent-2 silent at +1000, detected at +1130, three failed rungs, escalated,
        # standard recovery at +1300, resolved by the operator.
        b = store.open_incident("Agent-2", opened_at=T0 + 1130, silence_started_at=T0 + 1000)
        for attempt, action in enumerate(("force_update", "clear_stuck_tasks"), start=1):
            done = heal(store, b, "Agent-2", action, attempt, T0 + 1010 + 120 * attempt)
            store.settle_action(done, "failed")
        recover(store, b, "Agent-2", "rescue_message", T0 + 1300)
        recover(store, b, "Agent-2", "alert", T0 + 1300)
        heal(store, b, "Agent-2", "reset_status", 3, T0 + 1370)
        store.update_incident(b, stage="escalated", attempts=3, at=T0 + 1490)
        store.close_incident(b, closed_at=T0 + 2000, outcome="resolved")
        # C: Agent-1 again, detected at +5120, attempt 1 still being given its time.
        c = store.open_incident("Agent-1", opened_at=T0 + 5120, silence_started_at=T0 + 5000)
        heal(store, c, "Agent-1", "force_update", 1, T0 + 5120)

        report = store.stats(recent=4)

        assert (report["total_actions"], report["successful"], report["failed"]) == (6, 1, 4)
        assert report["pending"] == 1
        assert report["success_rate"] == 20.0  # 1 of the 5 settled
        assert report["by_agent"] == {
            "Agent-1": {"total": 3, "successful": 1, "failed": 1},
            "Agent-2": {"total": 3, "successful": 0, "failed": 3},
        }
        assert report["recovery_actions"] == 2
        assert report["incidents"] == {"open": 1, "recovered": 1, "resolved": 1, "escalated": 1}
        assert report["mttd_seconds"] == 123.333  # (120 + 130 + 120) / 3
        assert report["mttr_seconds"] == 180.0  # A only: closed +300, detected +120
        assert [(r["agent"], r["action"], r["outcome"]) for r in report["recent_actions"]] == [
            ("Agent-1", "force_update", "pending"),
            ("Agent-2", "reset_status", "failed"),
            ("Agent-2", "alert", None),
            ("Agent-2", "rescue_message", None),
        ]
        assert report["recent_actions"][0]["timestamp"] == "2023-11-14T23:38:40.000Z"

    def test_applying_is_not_success_only_coming_back_is(self, store: Store) -> None:
        resolved = store.open_incident("Agent-1", opened_at=T0, silence_started_at=T0 - 120)
        heal(store, resolved, "Agent-1", "force_update", 1, T0)
        store.close_incident(resolved, closed_at=T0 + 60, outcome="resolved")
        assert (store.stats()["successful"], store.stats()["failed"]) == (0, 1)
        back = store.open_incident("Agent-1", opened_at=T0 + 100, silence_started_at=T0 - 20)
        heal(store, back, "Agent-1", "force_update", 1, T0 + 100)
        heal(store, back, "Agent-1", "clear_stuck_tasks", 2, T0 + 220)  # attempt 1 never settled
        store.close_incident(back, closed_at=T0 + 230, outcome="recovered")
        outcomes = [r["outcome"] for r in store.stats()["recent_actions"]]
        assert outcomes == ["success", "failed", "failed"]  # only the last before the return
        assert store.stats()["success_rate"] == pytest.approx(33.33)

    def test_a_settled_action_is_not_settled_again(self, store: Store) -> None:
        incident = store.open_incident("Agent-1", opened_at=T0, silence_started_at=T0 - 120)
        first = heal(store, incident, "Agent-1", "force_update", 1, T0)
        assert store.settle_action(first, "failed")
        assert not store.settle_action(first, "success")
        store.close_incident(incident, closed_at=T0 + 5, outcome="recovered")
        assert store.stats()["failed"] == 1 and store.stats()["successful"] == 0

    def test_an_empty_history_reports_zeros_and_nulls(self, store: Store) -> None:
        report = store.stats()
        assert report["total_actions"] == 0 and report["success_rate"] == 0.0
        assert report["mttd_seconds"] is None and report["mttr_seconds"] is None


class TestReassignments:
    def test_tasks_sent_count_only_while_the_status_is_the_one_sent_to(self, store: Store) -> None:
        """Sends to the same version of the receiver's status.json add up; a send to an
        older version (the agent rewrote its file since) and sends to others do not count."""
        for to, status, tasks in (("Agent-2", (5, 100, 40), 2), ("Agent-2", (5, 100, 40), 3),
                                  ("Agent-2", (5, 90, 40), 7), ("Agent-3", (5, 100, 40), 1)):
            store.record_reassignment(ts=T0, from_agent="Agent-1", to_agent=to, tasks=tasks,
                                      to_status=status)
        assert store.tasks_sent("Agent-2", (5, 100, 40)) == 5
        assert store.tasks_sent("Agent-2", (5, 100, 41)) == 0
        assert store.tasks_sent("Agent-3", (5, 100, 40)) == 1

    def test_a_send_to_an_agent_without_a_status_is_kept_but_never_counted(
        self, store: Store
    ) -> None:
        store.record_reassignment(ts=T0, from_agent="Agent-1", to_agent="Agent-2", tasks=1,
                                  to_status=None)
        assert store.tasks_sent("Agent-2", (0, 0, 0)) == 0

    def test_zero_tasks_are_refused(self, store: Store) -> None:
        with pytest.raises(StoreError, match="CHECK constraint"):
            store.record_reassignment(ts=T0, from_agent="Agent-1", to_agent="Agent-2", tasks=0,
                                      to_status=(1, 1, 1))

    def test_pruned_with_the_rest_of_the_history(self, store: Store) -> None:
        for ts in (T0, T0 + 100):
            store.record_reassignment(ts=ts, from_agent="Agent-1", to_agent="Agent-2", tasks=1,
                                      to_status=(1, 1, 1))
        assert store.prune(T0 + 50) == 1
        assert store.tasks_sent("Agent-2", (1, 1, 1)) == 1


def run(name: str, *, ok: bool, ts: float = T0, agent: str = "Agent-1") -> CommandResult:
    request = CommandRequest(CommandSpec(name, ("true",)), agent, f"/ws/{agent}", "/ws",
                             "stalled", 1, 130.0, "1")
    return CommandResult(request, ok, 0 if ok else 1, 0.5, "out", error=None if ok else "exit 1",
                         ended_at=ts)


class TestCommandRuns:
    def test_a_rung_s_run_is_kept_and_its_action_takes_its_outcome(self, store: Store) -> None:
        incident = store.open_incident("Agent-1", opened_at=T0, silence_started_at=T0 - 120)
        action = heal(store, incident, "Agent-1", "nudge", 1, T0)
        store.record_command(run("nudge", ok=False), kind=CommandKind.RUNG,
                             incident_id=incident, action_id=action)
        with sqlite3.connect(store.path) as raw:
            assert raw.execute(
                "SELECT agent, kind, command, transition, attempt, incident_id, action_id, ok,"
                " exit_code, duration, timed_out, output, error FROM command_runs"
            ).fetchall() == [("Agent-1", "rung", "nudge", "stalled", 1, incident, action, 0, 1,
                              0.5, 0, "out", "exit 1")]
            assert raw.execute("SELECT applied_ok, error, outcome FROM actions").fetchall() == [
                (0, "exit 1", "pending")]
        # Applying is still not success: the ladder's counts are the settled outcomes.
        assert store.stats()["total_actions"] == 1 and store.stats()["failed"] == 0

    def test_pruned_by_age_but_kept_with_an_open_incident(self, store: Store) -> None:
        still_open = store.open_incident("Agent-3", opened_at=T0, silence_started_at=T0)
        for ts, incident in ((T0, None), (T0, still_open), (T0 + 100, None)):
            store.record_command(run("page", ok=True, ts=ts), kind=CommandKind.HOOK,
                                 incident_id=incident, action_id=None)
        assert store.prune(T0 + 50) == 1
        with sqlite3.connect(store.path) as raw:
            assert raw.execute("SELECT ts, incident_id FROM command_runs ORDER BY id").fetchall(
            ) == [(T0, still_open), (T0 + 100, None)]
class TestWaits:
    """Migration v4's `waits`: one row per wait on a human, open while it holds."""

    def test_a_wait_opens_is_alerted_and_ends(self, store: Store) -> None:
        wait = store.waits.open_wait("Agent-1", started_at=T0, message="approve Bash?")
        (row,) = store.waits.open_waits()
        assert (row.id, row.agent, row.started_at, row.alerted_at, row.message) == (
            wait, "Agent-1", T0, None, "approve Bash?")
        assert store.waits.wait_alerted(wait, at=T0 + 300)
        assert store.waits.open_waits()[0].alerted_at == T0 + 300
        assert store.waits.close_wait(wait, ended_at=T0 + 400)
        assert store.waits.open_waits() == []
        assert not store.waits.close_wait(wait, ended_at=T0 + 500)  # closed once
        assert not store.waits.wait_alerted(wait, at=T0 + 500)

    def test_a_new_wait_ends_one_a_crash_left_open(self, store: Store) -> None:
        store.waits.open_wait("Agent-1", started_at=T0)
        store.waits.open_wait("Agent-1", started_at=T0 + 60)
        assert [r.started_at for r in store.waits.open_waits()] == [T0 + 60]
        assert store.stats()["waiting"]["by_agent"]["Agent-1"]["waits"] == 2

    def test_stats_count_waits_and_time_spent_waiting(self, store: Store) -> None:
        """Closed waits count their length, an open one up to now (the store's clock: T0);
        the ladder's figures are untouched."""
        first = store.waits.open_wait("Agent-1", started_at=T0 - 1000)
        store.waits.wait_alerted(first, at=T0 - 700)
        store.waits.close_wait(first, ended_at=T0 - 600)
        store.waits.open_wait("Agent-1", started_at=T0 - 50)
        store.waits.open_wait("Agent-2", started_at=T0 - 30)
        report = store.stats()
        assert report["waiting"] == {
            "waits": 3, "open": 2, "alerted": 1, "seconds": 480.0,
            "by_agent": {"Agent-1": {"waits": 2, "alerted": 1, "seconds": 450.0},
                         "Agent-2": {"waits": 1, "alerted": 0, "seconds": 30.0}}}
        assert report["total_actions"] == 0 and report["incidents"]["open"] == 0

    def test_pruned_once_ended_and_old_but_an_open_one_kept(self, store: Store) -> None:
        old = store.waits.open_wait("Agent-1", started_at=T0 - 500)
        store.waits.close_wait(old, ended_at=T0 - 400)
        store.waits.open_wait("Agent-2", started_at=T0 - 5000)  # still waiting
        assert store.prune(T0 - 100) == 1
        assert [r.agent for r in store.waits.open_waits()] == ["Agent-2"]

    def test_a_v3_history_is_migrated_and_records_waits(self, db_path: Path) -> None:
        db_path.parent.mkdir()
        raw = sqlite3.connect(db_path, isolation_level=None)
        for step in MIGRATIONS[:3]:
            step(raw)
        raw.execute("UPDATE schema_version SET version = 3")
        raw.close()
        with Store.open(db_path) as store:
            store.waits.open_wait("Agent-1", started_at=T0)
            assert len(store.waits.open_waits()) == 1
        with sqlite3.connect(db_path) as raw:
            assert raw.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION


class TestPrune:
    def test_removes_only_closed_incidents_and_own_writes_older_than_the_cutoff(
        self, store: Store
    ) -> None:
        old = store.open_incident("Agent-1", opened_at=T0, silence_started_at=T0 - 120)
        heal(store, old, "Agent-1", "force_update", 1, T0)
        recover(store, old, "Agent-1", "alert", T0)
        store.close_incident(old, closed_at=T0 + 10, outcome="recovered")
        recent = store.open_incident("Agent-2", opened_at=T0, silence_started_at=T0 - 120)
        heal(store, recent, "Agent-2", "force_update", 1, T0)
        store.close_incident(recent, closed_at=T0 + 100, outcome="resolved")
        still_open = store.open_incident("Agent-3", opened_at=T0 - 999, silence_started_at=T0 - 999)
        heal(store, still_open, "Agent-3", "force_update", 1, T0 - 999)
        store.note_self_write("/old", 1, 1, 1, T0)
        store.note_self_write("/new", 2, 2, 2, T0 + 200)
        store.save_last_activity({"Agent-1": T0 - 999})

        assert store.prune(T0 + 50) == 4  # incident, its two actions, one own write

        assert store.incident(old) is None
        assert store.incident(recent) is not None and store.incident(still_open) is not None
        assert store.stats()["total_actions"] == 2 and store.stats()["recovery_actions"] == 0
        assert store.self_writes() == {"/new": (2, 2, 2)}
        assert store.last_activities() == {"Agent-1": T0 - 999}
        assert store.prune(T0 + 50) == 0

    def test_works_through_more_rows_than_one_batch(self, store: Store) -> None:
        for n in range(7):
            incident = store.open_incident(f"Agent-{n}", opened_at=T0, silence_started_at=T0)
            heal(store, incident, f"Agent-{n}", "force_update", 1, T0)
            store.close_incident(incident, closed_at=T0 + n, outcome="recovered")
            store.note_self_write(f"/w{n}", n, n, n, T0)
        assert store.prune(T0 + 100, batch=2) == 7 * 3
        assert store.stats()["incidents"]["recovered"] == 0 and store.self_writes() == {}


WRITER = """
import sys
from pathlib import Path
from healer.adapters.store import Store
store = Store.open(Path(sys.argv[1]))
incident = store.open_incident("Agent-1", opened_at=1.0, silence_started_at=0.0)
n = 0
while True:
    n += 1
    action = store.record_action(ts=float(n), agent="Agent-1", incident_id=incident,
        pipeline="recovery", action="alert", attempt=n, applied_ok=True)
    print("committed", action, flush=True)
"""

READER = """
import json, sys
from pathlib import Path
from healer.adapters.store import Store
from healer.errors import StoreError
store = Store.open_readonly(Path(sys.argv[1]))
stop = Path(sys.argv[2])
reads, errors, totals = 0, [], []
print("ready", flush=True)
while True:
    done = stop.exists()
    try:
        report = store.stats()
        reads += 1
        totals.append(report["total_actions"])
    except StoreError as exc:
        errors.append(str(exc))
    if done:
        break
print("result", json.dumps({"reads": reads, "errors": errors[:5], "totals": totals}))
"""


class TestDurability:
    def test_every_commit_reported_before_a_sigkill_survives(self, db_path: Path) -> None:
        child = python(WRITER, str(db_path))
        assert child.stdout is not None
        reported: list[int] = []
        try:
            while len(reported) < 300:
                line = child.stdout.readline()
                assert line, child.stderr.read() if child.stderr else "writer died"
                if line.startswith("committed "):  # the store's own log lines go to stdout too
                    reported.append(int(line.split()[1]))
            child.send_signal(signal.SIGKILL)
            rest, _ = child.communicate(timeout=10)
        finally:
            if child.poll() is None:
                child.kill()
        # Only whole lines are reports: the kill can cut the last one mid-write.
        whole = rest.split("\n")[:-1]
        reported += [int(line.split()[1]) for line in whole if line.startswith("committed ")]
        assert child.returncode == -signal.SIGKILL
        with Store.open(db_path) as store:
            assert store.stats(recent=0)["recovery_actions"] >= len(reported)
        with sqlite3.connect(db_path) as raw:
            assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            stored = {row[0] for row in raw.execute("SELECT id FROM actions")}
        assert set(reported) <= stored

    def test_a_reader_process_never_sees_a_lock_while_1000_actions_are_written(
        self, store: Store, db_path: Path, tmp_path: Path
    ) -> None:
        stop = tmp_path / "stop"
        reader = python(READER, str(db_path), str(stop))
        assert reader.stdout is not None
        try:
            assert reader.stdout.readline().strip() == "ready"
            incident = store.open_incident("Agent-1", opened_at=T0, silence_started_at=T0)
            for n in range(1000):
                heal(store, incident, f"Agent-{n % 8}", "force_update", n, T0 + n)
            stop.touch()
            out, err = reader.communicate(timeout=30)
        finally:
            if reader.poll() is None:
                reader.kill()
        assert reader.returncode == 0, err
        (line,) = [line for line in out.splitlines() if line.startswith("result ")]
        result = json.loads(line.removeprefix("result "))
        assert result["errors"] == []
        assert result["reads"] >= 2
        assert result["totals"] == sorted(result["totals"])  # each read is one committed state
        assert result["totals"][-1] == 1000

    def test_two_writers_wait_for_each_other_instead_of_failing(self, db_path: Path) -> None:
        Store.open(db_path).close()
        errors: list[BaseException] = []

        def write(agent: str) -> None:
            try:
                with Store.open(db_path) as mine:
                    incident = mine.open_incident(agent, opened_at=T0, silence_started_at=T0)
                    for n in range(300):
                        heal(mine, incident, agent, "force_update", n, T0 + n)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(f"Agent-{i}",)) for i in (1, 2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        with Store.open(db_path) as store:
            assert store.stats()["total_actions"] == 600
