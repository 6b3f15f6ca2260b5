"""The agents' waits in memory: a WaitLog with the SQLite store's rules."""

from __future__ import annotations

from dataclasses import dataclass, field

from healer.core.stats import WaitTally
from healer.ports import Clock

__all__ = ["MemoryWaitLog"]


@dataclass(slots=True)
class _Wait:
    id: int
    agent: str
    started_at: float
    ended_at: float | None = None
    alerted_at: float | None = None
    message: str | None = None


@dataclass
class MemoryWaitLog:
    """A WaitLog in memory: at most one open wait per agent (opening one ends the last);
    `clock`, when given, counts an open wait's seconds up to now in `tallies()`."""

    rows: list[_Wait] = field(default_factory=list)
    clock: Clock | None = None

    def open_wait(self, agent: str, *, started_at: float, message: str | None = None) -> int:
        for row in self.rows:
            if row.agent == agent and row.ended_at is None:
                row.ended_at = started_at
        row = _Wait(len(self.rows) + 1, agent, started_at, message=message)
        self.rows.append(row)
        return row.id

    def _open(self, wait_id: int) -> _Wait | None:
        return next((r for r in self.rows if r.id == wait_id and r.ended_at is None), None)

    def wait_alerted(self, wait_id: int, *, at: float) -> bool:
        row = self._open(wait_id)
        if row is not None:
            row.alerted_at = at
        return row is not None

    def close_wait(self, wait_id: int, *, ended_at: float) -> bool:
        row = self._open(wait_id)
        if row is not None:
            row.ended_at = ended_at
        return row is not None

    def open_waits(self) -> list[_Wait]:
        return sorted((r for r in self.rows if r.ended_at is None), key=lambda r: r.agent)

    def tallies(self) -> dict[str, WaitTally]:
        now = self.clock.now() if self.clock is not None else None
        out: dict[str, WaitTally] = {}
        for r in self.rows:
            end = r.ended_at if r.ended_at is not None else (now or r.started_at)
            t = out.get(r.agent, WaitTally())
            out[r.agent] = WaitTally(t.waits + 1, t.open + (r.ended_at is None),
                                     t.alerted + (r.alerted_at is not None),
                                     t.seconds + max(0.0, end - r.started_at))
        return out

    def prune(self, older_than: float) -> int:
        before = len(self.rows)
        self.rows = [r for r in self.rows if r.ended_at is None or r.ended_at >= older_than]
        return before - len(self.rows)
