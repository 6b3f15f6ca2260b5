"""The in-memory last-activity table: one float per agent, updated in O(1) per event."""

from __future__ import annotations

from collections.abc import Iterator, KeysView

__all__ = ["ActivityTable", "merged_last_activity"]


class ActivityTable:
    """Last genuine activity per agent. Times only move forward, so a late or replayed
    event can never undo newer activity already seen."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def record(self, agent: str, when: float) -> bool:
        """Note activity at `when`; True if it moved the agent's clock forward."""
        last = self._last.get(agent)
        if last is not None and when <= last:
            return False
        self._last[agent] = when
        return True

    def advance(self, agent: str, when: float) -> bool:
        """record() for an agent already in the table only (the loop's call per event)."""
        last = self._last.get(agent)
        if last is None or when <= last:
            return False
        self._last[agent] = when
        return True

    @property
    def agents(self) -> KeysView[str]:
        """The agents, as a live view: `in` on it costs no call (the loop asks per event)."""
        return self._last.keys()

    def get(self, agent: str) -> float | None:
        return self._last.get(agent)

    def remove(self, agent: str) -> float | None:
        return self._last.pop(agent, None)

    def __contains__(self, agent: object) -> bool:
        return agent in self._last

    def __len__(self) -> int:
        return len(self._last)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._last))

    def items(self) -> list[tuple[str, float]]:
        return list(self._last.items())


def merged_last_activity(*known: float | None, now: float) -> float | None:
    """An agent's last activity from everything that knows of it (its files, the saved
    table, an open incident's silence start): the newest, never in the future; None when
    nothing knows. The rule for the daemon's start, `check` and `status` alike."""
    times = [t for t in known if t is not None]
    return min(max(times), now) if times else None
