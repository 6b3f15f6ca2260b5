"""The SQL behind `healer stats`: the history's aggregates, gathered in one snapshot and
shaped by healer.core.stats."""

from __future__ import annotations

from typing import Any

from healer.adapters.store_sqlite import Database
from healer.adapters.store_waits import wait_tallies
from healer.core.stats import IncidentCounts, RecentAction, Tally, summarize

__all__ = ["history_stats"]


def history_stats(database: Database, recent: int = 20, now: float = 0.0) -> dict[str, Any]:
    """The SPEC §9 report; definitions in docs/STATE.md and healer.core.stats. An open wait
    counts its seconds up to `now`."""
    with database.snapshot("compute stats") as db:
        tallies = {
            str(agent): Tally(int(total), int(ok or 0), int(ko or 0))
            for agent, total, ok, ko in db.execute(
                "SELECT agent, COUNT(*), SUM(outcome = 'success'), SUM(outcome = 'failed')"
                " FROM actions WHERE pipeline = 'healing' GROUP BY agent"
            )
        }
        (recovery,) = db.execute(
            "SELECT COUNT(*) FROM actions WHERE pipeline = 'recovery'"
        ).fetchone()
        opened, recovered, resolved, escalated, mttd, mttr = db.execute(
            "SELECT SUM(closed_at IS NULL), SUM(outcome = 'recovered'),"
            " SUM(outcome = 'resolved'), SUM(escalated_at IS NOT NULL),"
            " AVG(detected_at - silence_started_at),"
            " AVG(CASE WHEN outcome = 'recovered' THEN closed_at - detected_at END)"
            " FROM incidents"
        ).fetchone()
        latest = [
            RecentAction(float(ts), str(agent), str(pipe), str(act), int(attempt), outcome)
            for ts, agent, pipe, act, attempt, outcome in db.execute(
                "SELECT ts, agent, pipeline, action, attempt, outcome FROM actions"
                " ORDER BY ts DESC, id DESC LIMIT ?",
                (max(recent, 0),),
            )
        ]
        waits = wait_tallies(db, now)
    return summarize(
        by_agent=tallies,
        recovery_actions=int(recovery),
        incidents=IncidentCounts(
            int(opened or 0), int(recovered or 0), int(resolved or 0), int(escalated or 0)
        ),
        mttd_seconds=mttd,
        mttr_seconds=mttr,
        recent=latest,
        waits=waits,
    )
