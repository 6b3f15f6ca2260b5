"""Durable history in SQLite (WAL): incidents, actions, healer's own writes, last activity,
the tasks healer reassigned, and the agents' waits on a human.

The daemon writes from its main thread only; the CLI reads through `open_readonly` meanwhile.
Past 300 lines: every query of the schema lives here, beside the others it must agree with.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import structlog

from healer.adapters.fsops import Identity
from healer.adapters.store_commands import PRUNABLE_RUNS, insert_command_run
from healer.adapters.store_reassign import insert_reassignment, sum_tasks_sent
from healer.adapters.store_report import history_stats
from healer.adapters.store_sqlite import (
    ACTION_OUTCOMES,
    INCIDENT_COLUMNS,
    INCIDENT_OUTCOMES,
    INCIDENT_STAGES,
    SCHEMA_VERSION,
    AgentRow,
    Database,
    IncidentRow,
)
from healer.adapters.store_waits import WaitStore
from healer.clock import SystemClock
from healer.core.commands import CommandKind, CommandResult
from healer.core.model import Pipeline, Stage
from healer.errors import StoreError
from healer.ports import Clock

__all__ = ["SCHEMA_VERSION", "AgentRow", "IncidentRow", "Store"]

log = structlog.get_logger()

PRUNE_BATCH: Final = 500


class Store:
    """The history API the daemon and the CLI use. Not thread-safe: sqlite3's `check_same_thread`
    stays on, so a call from a thread other than the opener's raises StoreError instead of racing.
    """

    def __init__(self, db: Database, *, clock: Clock | None = None) -> None:
        self._db = db
        self._clock = clock or SystemClock()
        self.waits = WaitStore(db)  # the agents' waits on a human (healer.adapters.store_waits)

    @property
    def path(self) -> Path:
        return self._db.path

    @classmethod
    def open(cls, path: Path, *, clock: Clock | None = None, timeout: float = 5.0) -> Store:
        """Open (creating, migrating) the history for writing; StoreError if it is unusable."""
        return cls(Database.open(Path(path), timeout=timeout), clock=clock)

    @classmethod
    def open_readonly(cls, path: Path, *, timeout: float = 5.0) -> Store | None:
        """A read-only view for the CLI, safe while the daemon writes.

        None when there is no history yet (no file, or a file not yet set up): the CLI then
        reports `healer.core.stats.summarize()`, the empty history. A history written by a newer
        or older healer than this one is refused with StoreError.
        """
        db = Database.open_readonly(Path(path), timeout=timeout)
        return None if db is None else cls(db)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- incidents -------------------------------------------------------------------------------

    def open_incident(
        self,
        agent: str,
        *,
        opened_at: float,
        silence_started_at: float,
        stage: str | Stage = "healing",
        detected_at: float | None = None,
    ) -> int:
        """Record a stall; `detected_at` defaults to `opened_at`. One open incident per agent."""
        stage = _check(stage, INCIDENT_STAGES, "stage")
        escalated_at = opened_at if stage == "escalated" else None
        with self._db.write(f"open an incident for {agent}") as db:
            cur = db.execute(
                "INSERT INTO incidents (agent, opened_at, silence_started_at, detected_at, stage,"
                " escalated_at) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    agent,
                    opened_at,
                    silence_started_at,
                    opened_at if detected_at is None else detected_at,
                    stage,
                    escalated_at,
                ),
            )
        return int(cur.lastrowid or 0)

    def update_incident(
        self,
        incident_id: int,
        *,
        stage: str | Stage | None = None,
        attempts: int | None = None,
        last_attempt_at: float | None = None,
        recovery_done: bool | None = None,
        at: float | None = None,
    ) -> bool:
        """Change an open incident; False if it is closed or unknown (e.g. `healer resolve` won).

        Moving to 'escalated' stamps `escalated_at` once, with `at`, else `last_attempt_at`,
        else the clock.
        """
        sets: dict[str, object] = {}
        if stage is not None:
            stage = _check(stage, INCIDENT_STAGES, "stage")
            sets["stage"] = stage
        if attempts is not None:
            sets["attempts"] = attempts
        if last_attempt_at is not None:
            sets["last_attempt_at"] = last_attempt_at
        if recovery_done is not None:
            sets["recovery_done"] = int(recovery_done)
        if not sets:
            row = self.incident(incident_id)
            return row is not None and row.closed_at is None
        clause = ", ".join(f"{column} = :{column}" for column in sets)
        if stage == "escalated":
            when = at if at is not None else last_attempt_at
            sets["escalated"] = self._clock.now() if when is None else when
            clause += ", escalated_at = COALESCE(escalated_at, :escalated)"
        with self._db.write(f"update incident {incident_id}") as db:
            cur = db.execute(
                f"UPDATE incidents SET {clause} WHERE id = :id AND closed_at IS NULL",
                {**sets, "id": incident_id},
            )
        return cur.rowcount == 1

    def close_incident(self, incident_id: int, *, closed_at: float, outcome: str) -> bool:
        """Close an open incident and settle its pending healing actions; False if not open.

        'recovered': the agent came back after the latest pending action, which becomes
        'success'; any older pending ones were overtaken by a later attempt and become 'failed'.
        'resolved' (operator ack): every pending action becomes 'failed'.
        """
        _check(outcome, INCIDENT_OUTCOMES, "incident outcome")
        with self._db.write(f"close incident {incident_id}") as db:
            cur = db.execute(
                "UPDATE incidents SET closed_at = ?, outcome = ?"
                " WHERE id = ? AND closed_at IS NULL",
                (closed_at, outcome, incident_id),
            )
            if cur.rowcount != 1:
                return False
            if outcome == "recovered":
                db.execute(
                    "UPDATE actions SET outcome = 'success' WHERE id = (SELECT id FROM actions"
                    " WHERE incident_id = ? AND outcome = 'pending'"
                    " ORDER BY attempt DESC, id DESC LIMIT 1)",
                    (incident_id,),
                )
            db.execute(
                "UPDATE actions SET outcome = 'failed'"
                " WHERE incident_id = ? AND outcome = 'pending'",
                (incident_id,),
            )
        return True

    def incident(self, incident_id: int) -> IncidentRow | None:
        with self._db.guard(f"read incident {incident_id}"):
            row = self._db.conn.execute(
                f"SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ?", (incident_id,)
            ).fetchone()
        return None if row is None else IncidentRow._from(row)

    def open_incidents(self) -> list[IncidentRow]:
        with self._db.guard("read open incidents"):
            rows = self._db.conn.execute(
                f"SELECT {INCIDENT_COLUMNS} FROM incidents WHERE closed_at IS NULL ORDER BY agent"
            ).fetchall()
        return [IncidentRow._from(row) for row in rows]

    def open_incident_for(self, agent: str) -> IncidentRow | None:
        with self._db.guard(f"read the open incident of {agent}"):
            row = self._db.conn.execute(
                f"SELECT {INCIDENT_COLUMNS} FROM incidents WHERE agent = ? AND closed_at IS NULL",
                (agent,),
            ).fetchone()
        return None if row is None else IncidentRow._from(row)

    def incident_spans(self, since: float) -> list[tuple[str, float, float | None]]:
        """(agent, opened_at, closed_at) of incidents open or closed after `since` (indexed)."""
        with self._db.guard("read recent incidents"):
            rows = self._db.conn.execute(
                "SELECT agent, opened_at, closed_at FROM incidents WHERE closed_at IS NULL"
                " OR closed_at > ? ORDER BY opened_at, id", (since,),
            ).fetchall()
        return [(str(a), float(o), None if c is None else float(c)) for a, o, c in rows]

    # -- actions ------------------------------------------------------------------------------

    def record_action(
        self,
        *,
        ts: float,
        agent: str,
        incident_id: int | None,
        pipeline: Pipeline | str,
        action: str,
        attempt: int,
        applied_ok: bool,
        error: str | None = None,
    ) -> int:
        """Append an action: a healing one starts 'pending', a recovery one has no outcome."""
        kind = _pipeline(pipeline)
        outcome = "pending" if kind is Pipeline.HEALING else None
        with self._db.write(f"record {action} for {agent}") as db:
            cur = db.execute(
                "INSERT INTO actions (ts, agent, incident_id, pipeline, action, attempt,"
                " applied_ok, error, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (ts, agent, incident_id, kind.value, action, attempt, int(applied_ok), error,
                 outcome),
            )
        return int(cur.lastrowid or 0)

    def record_command(self, result: CommandResult, *, kind: CommandKind,
                       incident_id: int | None, action_id: int | None) -> int:
        """Append what a command run did; a rung's action takes the run's `ok` as applied."""
        return insert_command_run(self._db, result, kind, incident_id, action_id)

    def settle_action(self, action_id: int, outcome: str) -> bool:
        """Settle a pending healing action; False if it was not pending (already settled)."""
        _check(outcome, ACTION_OUTCOMES, "action outcome")
        with self._db.write(f"settle action {action_id}") as db:
            cur = db.execute(
                "UPDATE actions SET outcome = ? WHERE id = ? AND outcome = 'pending'",
                (outcome, action_id),
            )
        return cur.rowcount == 1

    def last_resolved(self) -> dict[str, float]:
        """When each agent's latest incident was closed by an operator's `healer resolve`."""
        with self._db.guard("read resolved incidents"):
            rows = self._db.conn.execute(
                "SELECT agent, MAX(closed_at) FROM incidents WHERE outcome = 'resolved'"
                " GROUP BY agent"
            ).fetchall()
        return {str(agent): float(at) for agent, at in rows}

    def action_id_for(self, incident_id: int, attempt: int) -> int | None:
        """The healing action of attempt `attempt` in an incident (to settle it after a restart)."""
        with self._db.guard(f"read attempt {attempt} of incident {incident_id}"):
            row = self._db.conn.execute(
                "SELECT id FROM actions WHERE incident_id = ? AND attempt = ? AND pipeline = ?"
                " ORDER BY id DESC LIMIT 1",
                (incident_id, attempt, Pipeline.HEALING.value),
            ).fetchone()
        return None if row is None else int(row[0])

    # -- healer's own writes and last activity ------------------------------------------------

    def note_self_write(self, path: str, ino: int, mtime_ns: int, size: int, ts: float) -> None:
        with self._db.write(f"note own write of {path}") as db:
            db.execute(
                "INSERT INTO self_writes (path, ino, mtime_ns, size, ts) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (path) DO UPDATE SET ino = excluded.ino,"
                " mtime_ns = excluded.mtime_ns, size = excluded.size, ts = excluded.ts",
                (path, ino, mtime_ns, size, ts),
            )

    def self_writes(self) -> dict[str, tuple[int, int, int]]:
        """path -> (ino, mtime_ns, size) of the file as healer last wrote it."""
        with self._db.guard("read own writes"):
            rows = self._db.conn.execute(
                "SELECT path, ino, mtime_ns, size FROM self_writes"
            ).fetchall()
        return {str(p): (int(i), int(m), int(s)) for p, i, m, s in rows}

    def save_last_activity(self, activities: Mapping[str, float]) -> None:
        with self._db.write("save last activity") as db:
            db.executemany(
                "INSERT INTO agents (agent, last_activity) VALUES (?, ?) ON CONFLICT (agent)"
                " DO UPDATE SET last_activity = excluded.last_activity",
                sorted(activities.items()),
            )

    def last_activities(self) -> dict[str, float]:
        with self._db.guard("read last activity"):
            rows = self._db.conn.execute("SELECT agent, last_activity FROM agents").fetchall()
        return {str(agent): float(ts) for agent, ts in rows}

    def agent_rows(self) -> list[AgentRow]:
        """Every agent the history knows (saved activity or an open incident), by name."""
        with self._db.snapshot("read agents"):
            activities = self.last_activities()
            incidents = {row.agent: row for row in self.open_incidents()}
        return [
            AgentRow(agent, activities.get(agent), incidents.get(agent))
            for agent in sorted(activities.keys() | incidents.keys())
        ]

    # -- what healer handed to whom ----------------------------------------------------------

    def record_reassignment(
        self, *, ts: float, from_agent: str, to_agent: str, tasks: int, to_status: Identity | None
    ) -> None:
        """`tasks` tasks sent to `to_agent`, whose status.json was `to_status` (ino, mtime_ns,
        size) when they were sent: they count as its load until that file changes."""
        insert_reassignment(self._db, ts=ts, from_agent=from_agent, to_agent=to_agent,
                            tasks=tasks, to_status=to_status)

    def tasks_sent(self, to_agent: str, to_status: Identity) -> int:
        """Tasks healer sent `to_agent` while its status.json was still `to_status`."""
        return sum_tasks_sent(self._db, to_agent, to_status)

    # -- reporting and retention --------------------------------------------------------------

    def stats(self, recent: int = 20) -> dict[str, Any]:
        """The SPEC §9 report; definitions in docs/STATE.md and healer.core.stats."""
        return history_stats(self._db, recent, self._clock.now())

    def prune(self, older_than: float, *, batch: int = PRUNE_BATCH) -> int:
        """Delete incidents closed before `older_than` with their actions, and own-write records
        older than it; a transaction per `batch` rows keeps the daemon's writes waiting briefly."""
        deleted = 0
        while True:
            with self._db.write("prune incidents") as db:
                ids = [
                    row[0]
                    for row in db.execute(
                        "SELECT id FROM incidents WHERE closed_at < ? ORDER BY closed_at LIMIT ?",
                        (older_than, batch),
                    )
                ]
                marks = ", ".join("?" * len(ids))
                gone = db.execute(f"DELETE FROM actions WHERE incident_id IN ({marks})", ids)
                deleted += gone.rowcount
                deleted += db.execute(f"DELETE FROM incidents WHERE id IN ({marks})", ids).rowcount
            if len(ids) < batch:
                break
        for table, where in (
            ("actions", "incident_id IS NULL AND ts < ?"),
            ("reassignments", "ts < ?"),
            ("command_runs", PRUNABLE_RUNS),
            ("waits", "ended_at < ?"),  # an open wait is kept, however long it holds
            # A status.json healer wrote last stays recorded however old (one row per
            # agent): forgetting it would let a restart take healer's write for the agent's.
            ("self_writes", "ts < ? AND path NOT LIKE '%/status.json'"),
        ):
            while True:
                with self._db.write(f"prune {table}") as db:
                    n = db.execute(
                        f"DELETE FROM {table} WHERE rowid IN"
                        f" (SELECT rowid FROM {table} WHERE {where} LIMIT ?)",
                        (older_than, batch),
                    ).rowcount
                deleted += n
                if n < batch:
                    break
        if deleted:
            log.info("history_pruned", path=str(self.path), rows=deleted, older_than=older_than)
        return deleted


def _check(value: str | Stage, allowed: tuple[str, ...], what: str) -> str:
    text = value.value if isinstance(value, Stage) else value
    if text not in allowed:
        raise StoreError(f"unknown {what} {text!r} (expected one of {', '.join(allowed)})")
    return text


def _pipeline(value: Pipeline | str) -> Pipeline:
    try:
        return Pipeline(value)
    except ValueError as exc:
        raise StoreError(f"unknown pipeline {value!r}") from exc
