"""SQLite plumbing of the history: file modes, pragmas, schema migrations, transactions, and
sqlite3 errors turned into one-line StoreErrors. Past 300 lines: the migrations list grows
by appending (never editing), and it belongs beside the plumbing that applies it."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import structlog

from healer.errors import StoreError

__all__ = [
    "ACTION_OUTCOMES",
    "INCIDENT_COLUMNS",
    "INCIDENT_OUTCOMES",
    "INCIDENT_STAGES",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "AgentRow",
    "Database",
    "IncidentRow",
    "schema_version",
]

log = structlog.get_logger()

INCIDENT_STAGES: Final = ("healing", "recovering", "escalated")
INCIDENT_OUTCOMES: Final = ("recovered", "resolved")
ACTION_OUTCOMES: Final = ("success", "failed")


def _v1(db: sqlite3.Connection) -> None:
    for sql in (
        "CREATE TABLE schema_version (version INTEGER NOT NULL)",
        "INSERT INTO schema_version VALUES (0)",
        """CREATE TABLE incidents (
            id INTEGER PRIMARY KEY, agent TEXT NOT NULL, opened_at REAL NOT NULL,
            silence_started_at REAL NOT NULL, detected_at REAL NOT NULL,
            stage TEXT NOT NULL CHECK (stage IN ('healing', 'recovering', 'escalated')),
            attempts INTEGER NOT NULL DEFAULT 0, last_attempt_at REAL,
            recovery_done INTEGER NOT NULL DEFAULT 0, closed_at REAL,
            outcome TEXT CHECK (outcome IN ('recovered', 'resolved')),
            CHECK ((closed_at IS NULL) = (outcome IS NULL)))""",
        # At most one open incident per agent: the daemon's invariant, enforced where it lives.
        "CREATE UNIQUE INDEX incidents_open ON incidents(agent) WHERE closed_at IS NULL",
        "CREATE INDEX incidents_closed ON incidents(closed_at) WHERE closed_at IS NOT NULL",
        """CREATE TABLE actions (
            id INTEGER PRIMARY KEY, ts REAL NOT NULL, agent TEXT NOT NULL,
            incident_id INTEGER REFERENCES incidents(id),
            pipeline TEXT NOT NULL CHECK (pipeline IN ('healing', 'recovery')),
            action TEXT NOT NULL, attempt INTEGER NOT NULL, applied_ok INTEGER NOT NULL,
            error TEXT, outcome TEXT,
            CHECK ((pipeline = 'healing' AND outcome IN ('pending', 'success', 'failed'))
                OR (pipeline = 'recovery' AND outcome IS NULL)))""",
        "CREATE INDEX actions_incident ON actions(incident_id, outcome)",
        "CREATE INDEX actions_ts ON actions(ts)",
        # Covers the per-agent tally of `stats`, so it never reads the table itself.
        "CREATE INDEX actions_tally ON actions(pipeline, agent, outcome)",
        """CREATE TABLE self_writes (path TEXT PRIMARY KEY, ino INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL, size INTEGER NOT NULL, ts REAL NOT NULL)""",
        "CREATE INDEX self_writes_ts ON self_writes(ts)",
        "CREATE TABLE agents (agent TEXT PRIMARY KEY, last_activity REAL NOT NULL)",
    ):
        db.execute(sql)


def _v2(db: sqlite3.Connection) -> None:
    # `incidents.escalated` counts incidents that ever escalated, also after they closed.
    db.execute("ALTER TABLE incidents ADD COLUMN escalated_at REAL")
    db.execute(
        "UPDATE incidents SET escalated_at = COALESCE(last_attempt_at, detected_at)"
        " WHERE stage = 'escalated'"
    )


def _v3(db: sqlite3.Connection) -> None:
    # The tasks healer itself sent each agent: its status.json shows them only once the agent
    # takes them up, and a reassignment picking by that file alone sends everything to one.
    # `to_*` is the identity of the receiver's status.json at the time.
    db.execute(
        """CREATE TABLE reassignments (
            id INTEGER PRIMARY KEY, ts REAL NOT NULL, from_agent TEXT NOT NULL,
            to_agent TEXT NOT NULL, tasks INTEGER NOT NULL CHECK (tasks > 0),
            to_ino INTEGER, to_mtime_ns INTEGER, to_size INTEGER)"""
    )
    db.execute("CREATE INDEX reassignments_to ON reassignments(to_agent, to_ino)")
    db.execute("CREATE INDEX reassignments_ts ON reassignments(ts)")


def _v4(db: sqlite3.Connection) -> None:
    # What each operator command did (SPEC §13): a ladder rung (linked to its action) or an
    # `on:` hook. Its own table, so the ladder's counts in `stats` stay the ladder's.
    db.execute(
        """CREATE TABLE command_runs (
            id INTEGER PRIMARY KEY, ts REAL NOT NULL, agent TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('rung', 'hook')), command TEXT NOT NULL,
            transition TEXT NOT NULL, attempt INTEGER NOT NULL, incident_id INTEGER,
            action_id INTEGER, ok INTEGER NOT NULL, exit_code INTEGER, duration REAL NOT NULL,
            timed_out INTEGER NOT NULL, output TEXT NOT NULL, error TEXT)"""
    )
    db.execute("CREATE INDEX command_runs_ts ON command_runs(ts)")
    db.execute("CREATE INDEX command_runs_incident ON command_runs(incident_id)")


def _v5(db: sqlite3.Connection) -> None:
    # The waits of agents that said they wait on a human (SPEC §12): one row per wait, open
    # (ended_at NULL) while it holds; alerted_at when its one alert went out.
    db.execute(
        """CREATE TABLE waits (
            id INTEGER PRIMARY KEY, agent TEXT NOT NULL, started_at REAL NOT NULL,
            ended_at REAL, alerted_at REAL, message TEXT)"""
    )
    db.execute("CREATE UNIQUE INDEX waits_open ON waits(agent) WHERE ended_at IS NULL")
    db.execute("CREATE INDEX waits_ended ON waits(ended_at) WHERE ended_at IS NOT NULL")


# Migration k (1-based) takes the schema from version k-1 to k. Append, never edit.
MIGRATIONS: Final[tuple[Callable[[sqlite3.Connection], None], ...]] = (
    _v1, _v2, _v3, _v4, _v5,
)
SCHEMA_VERSION: Final = len(MIGRATIONS)

INCIDENT_COLUMNS: Final = (
    "id, agent, opened_at, silence_started_at, detected_at, stage, attempts,"
    " last_attempt_at, recovery_done, closed_at, outcome, escalated_at"
)


@dataclass(frozen=True, slots=True)
class IncidentRow:
    id: int
    agent: str
    opened_at: float
    silence_started_at: float
    detected_at: float
    stage: str  # 'healing' | 'recovering' | 'escalated'
    attempts: int
    last_attempt_at: float | None
    recovery_done: bool
    closed_at: float | None
    outcome: str | None  # None while open, then 'recovered' | 'resolved'
    escalated_at: float | None

    @classmethod
    def _from(cls, row: tuple[Any, ...]) -> IncidentRow:
        values = list(row)
        values[8] = bool(values[8])
        return cls(*values)


@dataclass(frozen=True, slots=True)
class AgentRow:
    """What `healer status` needs from the history: last known activity and the open incident."""

    agent: str
    last_activity: float | None
    incident: IncidentRow | None


def schema_version(db: sqlite3.Connection) -> int:
    """0 for a database healer never set up."""
    found = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if found is None:
        return 0
    row = db.execute("SELECT version FROM schema_version").fetchone()
    return int(row[0]) if row else 0


def _prepare_files(path: Path) -> None:
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.parent.chmod(0o700)  # mkdir's mode is filtered by the umask
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    os.close(fd)
    # SQLite gives -wal and -shm the mode of the database file, so this covers them too.
    path.chmod(0o600)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class Database:
    """One sqlite3 connection in autocommit mode; transactions are explicit (write, snapshot)."""

    def __init__(self, conn: sqlite3.Connection, path: Path, *, timeout: float) -> None:
        self.conn = conn
        self.path = path
        self.timeout = timeout

    @classmethod
    def open(cls, path: Path, *, timeout: float) -> Database:
        try:
            _prepare_files(path)
            conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open history {path}: {_reason(exc)}") from exc
        db = cls(conn, path, timeout=timeout)
        try:
            with db.guard("set up"):
                conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
                conn.execute("PRAGMA journal_mode = WAL")
                # In WAL, NORMAL loses nothing a process crash could take: a commit is in the
                # WAL file before COMMIT returns; only a power cut may drop the last ones.
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA foreign_keys = ON")
            db._migrate()
        except BaseException:
            conn.close()
            raise
        return db

    @classmethod
    def open_readonly(cls, path: Path, *, timeout: float) -> Database | None:
        """None when there is no history yet: no file, or one not set up yet."""
        if not path.exists():
            return None
        try:
            uri = f"{path.resolve().as_uri()}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open history {path}: {_reason(exc)}") from exc
        db = cls(conn, path, timeout=timeout)
        try:
            with db.guard("read the schema version"):
                conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
                version = schema_version(conn)
            if version == 0:
                conn.close()
                return None
            db._check_version(version, upgradable=False)
        except BaseException:
            conn.close()
            raise
        return db

    def close(self) -> None:
        with self.guard("close"):
            self.conn.close()

    @contextlib.contextmanager
    def guard(self, what: str) -> Iterator[None]:
        """Turn sqlite3's exceptions into one-line StoreErrors naming the file and the step."""
        try:
            yield
        except sqlite3.Error as exc:
            code = getattr(exc, "sqlite_errorname", "")
            if code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
                msg = f"history {self.path} stayed locked for {self.timeout:g}s ({what})"
            else:
                msg = f"history {self.path}: cannot {what}: {_reason(exc)}"
            raise StoreError(msg) from exc

    @contextlib.contextmanager
    def write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction, committed on exit, rolled back on any exception."""
        # IMMEDIATE takes the write lock up front, where busy_timeout applies; a deferred
        # transaction that upgrades later can fail with SQLITE_BUSY at once instead of waiting.
        with self.guard(what):
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                if self.conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    @contextlib.contextmanager
    def snapshot(self, what: str) -> Iterator[sqlite3.Connection]:
        """Several reads that see one committed state (a WAL reader never blocks the writer)."""
        with self.guard(what):
            self.conn.execute("BEGIN")
            try:
                yield self.conn
            finally:
                if self.conn.in_transaction:
                    self.conn.execute("COMMIT")

    def _check_version(self, version: int, *, upgradable: bool) -> None:
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"history {self.path} is at schema version {version}, newer than this healer"
                f" understands ({SCHEMA_VERSION}); upgrade healer"
            )
        if version < SCHEMA_VERSION and not upgradable:
            raise StoreError(
                f"history {self.path} is at schema version {version}, older than this healer's"
                f" ({SCHEMA_VERSION}); start `healer watch` once to upgrade it"
            )

    def _migrate(self) -> None:
        with self.write("migrate the schema") as conn:
            # Read inside the write lock: two healers opening at once must not both migrate.
            before = schema_version(conn)
            self._check_version(before, upgradable=True)
            for step in MIGRATIONS[before:]:
                step(conn)
            conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
        if before != SCHEMA_VERSION:
            log.info("history_migrated", path=str(self.path), before=before, after=SCHEMA_VERSION)
