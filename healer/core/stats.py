"""The arithmetic of `healer stats`: pure functions from history aggregates to the SPEC §9 report.

The store gathers the numbers with SQL; this module only shapes them (tested without SQLite).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from healer.core.isotime import iso

__all__ = ["IncidentCounts", "RecentAction", "Tally", "WaitTally", "success_rate", "summarize"]


@dataclass(frozen=True, slots=True)
class Tally:
    """Healing actions of one agent: all of them, and those already settled either way."""

    total: int = 0
    successful: int = 0
    failed: int = 0

    @property
    def pending(self) -> int:
        """Actions whose next attempt is not yet due and whose agent has not come back yet."""
        return self.total - self.successful - self.failed


@dataclass(frozen=True, slots=True)
class IncidentCounts:
    """`open`: not closed yet; `escalated`: ever reached escalation, closed or not."""

    open: int = 0
    recovered: int = 0
    resolved: int = 0
    escalated: int = 0


@dataclass(frozen=True, slots=True)
class WaitTally:
    """Waits of one agent on a human (SPEC §12): all of them, those still open, those that
    were alerted, and the seconds spent waiting."""

    waits: int = 0
    open: int = 0
    alerted: int = 0
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class RecentAction:
    ts: float
    agent: str
    pipeline: str
    action: str
    attempt: int
    outcome: str | None  # None for recovery actions, which have no success criterion


def success_rate(successful: int, failed: int) -> float:
    """Percent of settled healing actions that succeeded; 0.0 when none is settled yet.

    Pending actions are left out of the denominator: counting them as failures would punish an
    action in the very seconds it is being given to work.
    """
    settled = successful + failed
    if settled <= 0:
        return 0.0
    return round(100.0 * successful / settled, 2)


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def summarize(
    *,
    by_agent: Mapping[str, Tally] | None = None,
    recovery_actions: int = 0,
    incidents: IncidentCounts | None = None,
    mttd_seconds: float | None = None,
    mttr_seconds: float | None = None,
    recent: Sequence[RecentAction] = (),
    waits: Mapping[str, WaitTally] | None = None,
) -> dict[str, Any]:
    """The `healer stats --json` document; called with no argument it is the empty history."""
    agents = dict(sorted((by_agent or {}).items()))
    waiting = dict(sorted((waits or {}).items()))
    counts = incidents or IncidentCounts()
    successful = sum(t.successful for t in agents.values())
    failed = sum(t.failed for t in agents.values())
    total = sum(t.total for t in agents.values())
    return {
        "total_actions": total,
        "successful": successful,
        "failed": failed,
        "pending": total - successful - failed,
        "success_rate": success_rate(successful, failed),
        "by_agent": {
            name: {"total": t.total, "successful": t.successful, "failed": t.failed}
            for name, t in agents.items()
        },
        "recovery_actions": recovery_actions,
        "incidents": {
            "open": counts.open,
            "recovered": counts.recovered,
            "resolved": counts.resolved,
            "escalated": counts.escalated,
        },
        "mttd_seconds": _seconds(mttd_seconds),
        "mttr_seconds": _seconds(mttr_seconds),
        "recent_actions": [
            {
                "timestamp": iso(a.ts, "milliseconds"),
                "agent": a.agent,
                "pipeline": a.pipeline,
                "action": a.action,
                "attempt": a.attempt,
                "outcome": a.outcome,
            }
            for a in recent
        ],
        # Waits on a human are no incident and no action: counted apart, so every figure
        # above stays the ladder's and the incidents' own.
        "waiting": {
            "waits": sum(w.waits for w in waiting.values()),
            "open": sum(w.open for w in waiting.values()),
            "alerted": sum(w.alerted for w in waiting.values()),
            "seconds": round(sum(w.seconds for w in waiting.values()), 3),
            "by_agent": {
                name: {"waits": w.waits, "alerted": w.alerted, "seconds": round(w.seconds, 3)}
                for name, w in waiting.items()
            },
        },
    }
