"""The history's record of what healer handed to whom (issue #14's spreading rule): the
tasks sent to an agent count as its load while its status.json is the version they found."""

from __future__ import annotations

from healer.adapters.store_sqlite import Database
from healer.ports import Identity

__all__ = ["insert_reassignment", "sum_tasks_sent"]


def insert_reassignment(db: Database, *, ts: float, from_agent: str, to_agent: str,
                        tasks: int, to_status: Identity | None) -> None:
    ino, mtime_ns, size = to_status if to_status is not None else (None, None, None)
    with db.write(f"record a reassignment to {to_agent}") as conn:
        conn.execute(
            "INSERT INTO reassignments (ts, from_agent, to_agent, tasks, to_ino,"
            " to_mtime_ns, to_size) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (ts, from_agent, to_agent, tasks, ino, mtime_ns, size),
        )


def sum_tasks_sent(db: Database, to_agent: str, to_status: Identity) -> int:
    with db.guard(f"read the tasks sent to {to_agent}"):
        (total,) = db.conn.execute(
            "SELECT SUM(tasks) FROM reassignments WHERE to_agent = ? AND to_ino = ?"
            " AND to_mtime_ns = ? AND to_size = ?",
            (to_agent, *to_status),
        ).fetchone()
    return int(total or 0)
