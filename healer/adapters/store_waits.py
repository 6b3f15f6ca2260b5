"""The history's record of waits (SPEC §12): one `waits` row per time an agent said it waits
on a human, open while the wait holds, with the moment its one alert went out."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from healer.adapters.store_sqlite import Database
from healer.core.stats import WaitTally

__all__ = ["WaitRow", "WaitStore", "wait_tallies"]

_COLUMNS = "id, agent, started_at, ended_at, alerted_at, message"


@dataclass(frozen=True, slots=True)
class WaitRow:
    id: int
    agent: str
    started_at: float
    ended_at: float | None  # None while the wait holds
    alerted_at: float | None
    message: str | None


class WaitStore:
    """The `waits` table, for the daemon (writes) and the CLI (reads)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def open_wait(self, agent: str, *, started_at: float, message: str | None = None) -> int:
        """Record a wait that began; a wait of the agent's still open (a crash) ends there."""
        with self._db.write(f"record a wait of {agent}") as conn:
            conn.execute("UPDATE waits SET ended_at = ? WHERE agent = ? AND ended_at IS NULL",
                         (started_at, agent))
            cur = conn.execute(
                "INSERT INTO waits (agent, started_at, message) VALUES (?, ?, ?)",
                (agent, started_at, message),
            )
        return int(cur.lastrowid or 0)

    def wait_alerted(self, wait_id: int, *, at: float) -> bool:
        """The wait's one alert went out at `at`; False when it is not open."""
        with self._db.write(f"record wait {wait_id}'s alert") as conn:
            cur = conn.execute(
                "UPDATE waits SET alerted_at = ? WHERE id = ? AND ended_at IS NULL",
                (at, wait_id),
            )
        return cur.rowcount == 1

    def close_wait(self, wait_id: int, *, ended_at: float) -> bool:
        """The wait ended at `ended_at`; False when it was not open."""
        with self._db.write(f"end wait {wait_id}") as conn:
            cur = conn.execute(
                "UPDATE waits SET ended_at = ? WHERE id = ? AND ended_at IS NULL",
                (ended_at, wait_id),
            )
        return cur.rowcount == 1

    def open_waits(self) -> list[WaitRow]:
        with self._db.guard("read open waits"):
            rows = self._db.conn.execute(
                f"SELECT {_COLUMNS} FROM waits WHERE ended_at IS NULL ORDER BY agent"
            ).fetchall()
        return [WaitRow(int(i), str(a), float(s), e, al, m) for i, a, s, e, al, m in rows]


def wait_tallies(conn: sqlite3.Connection, now: float) -> dict[str, WaitTally]:
    """Per agent: its waits, how many are open and were alerted, and the seconds spent in
    them (an open one up to `now`). Inside the caller's snapshot."""
    return {
        str(agent): WaitTally(int(n), int(open_ or 0), int(alerted or 0), float(secs or 0.0))
        for agent, n, open_, alerted, secs in conn.execute(
            "SELECT agent, COUNT(*), SUM(ended_at IS NULL), SUM(alerted_at IS NOT NULL),"
            " SUM(MAX(0.0, COALESCE(ended_at, ?) - started_at)) FROM waits GROUP BY agent",
            (now,),
        )
    }
