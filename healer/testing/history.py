"""The durable history in memory: an IncidentLog with the SQLite store's rules."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from healer.core.commands import CommandKind, CommandResult
from healer.core.model import IncidentOutcome, Pipeline, Settlement, Stage
from healer.core.stats import IncidentCounts, RecentAction, Tally, summarize
from healer.ports import Identity
from healer.testing.waits import MemoryWaitLog

__all__ = ["MemoryIncidentLog"]


@dataclass(slots=True)
class _Incident:
    id: int
    agent: str
    opened_at: float
    silence_started_at: float
    detected_at: float
    stage: str
    attempts: int = 0
    last_attempt_at: float | None = None
    recovery_done: bool = False
    closed_at: float | None = None
    outcome: str | None = None
    escalated_at: float | None = None


@dataclass(slots=True)
class _Action:
    id: int
    ts: float
    agent: str
    incident_id: int | None
    pipeline: Pipeline
    action: str
    attempt: int
    applied_ok: bool
    error: str | None
    outcome: str | None


@dataclass
class MemoryIncidentLog:
    """An IncidentLog in memory, with the SQLite store's rules: one open incident per agent,
    closing settles pending actions, `stats()` has the same shape."""

    incidents: list[_Incident] = field(default_factory=list)
    actions: list[_Action] = field(default_factory=list)
    writes: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    activity: dict[str, float] = field(default_factory=dict)
    sent: list[tuple[str, int, Identity | None]] = field(default_factory=list)
    # Finished command runs: (the result, its kind, incident id, action id).
    runs: list[tuple[CommandResult, CommandKind, int | None, int | None]] = field(
        default_factory=list
    )
    waits: MemoryWaitLog = field(default_factory=MemoryWaitLog)
    closed: bool = False

    def open_incident(self, agent: str, *, opened_at: float, silence_started_at: float,
                      stage: Stage, detected_at: float | None = None) -> int:
        if self.open_incident_for(agent) is not None:
            raise ValueError(f"{agent} already has an open incident")
        escalated = opened_at if stage is Stage.ESCALATED else None
        row = _Incident(len(self.incidents) + 1, agent, opened_at, silence_started_at,
                        opened_at if detected_at is None else detected_at, stage.value,
                        escalated_at=escalated)
        self.incidents.append(row)
        return row.id

    def _open(self, incident_id: int) -> _Incident | None:
        for row in self.incidents:
            if row.id == incident_id and row.closed_at is None:
                return row
        return None

    def update_incident(self, incident_id: int, *, stage: Stage | None = None,
                        attempts: int | None = None, last_attempt_at: float | None = None,
                        recovery_done: bool | None = None, at: float | None = None) -> bool:
        row = self._open(incident_id)
        if row is None:
            return False
        if attempts is not None:
            row.attempts = attempts
        if last_attempt_at is not None:
            row.last_attempt_at = last_attempt_at
        if recovery_done is not None:
            row.recovery_done = recovery_done
        if stage is not None:
            row.stage = stage.value
            if stage is Stage.ESCALATED and row.escalated_at is None:
                row.escalated_at = at if at is not None else last_attempt_at
        return True

    def close_incident(self, incident_id: int, *, closed_at: float,
                       outcome: IncidentOutcome) -> bool:
        row = self._open(incident_id)
        if row is None:
            return False
        row.closed_at, row.outcome = closed_at, outcome.value
        pending = [a for a in self.actions
                   if a.incident_id == incident_id and a.outcome == "pending"]
        if outcome is IncidentOutcome.RECOVERED and pending:
            latest = max(pending, key=lambda a: (a.attempt, a.id))
            latest.outcome = Settlement.SUCCESS.value
        for action in pending:
            if action.outcome == "pending":
                action.outcome = Settlement.FAILED.value
        return True

    def open_incidents(self) -> list[_Incident]:
        return sorted((r for r in self.incidents if r.closed_at is None), key=lambda r: r.agent)

    def open_incident_for(self, agent: str) -> _Incident | None:
        return next((r for r in self.open_incidents() if r.agent == agent), None)

    def incident_spans(self, since: float) -> list[tuple[str, float, float | None]]:
        rows = [r for r in self.incidents if r.closed_at is None or r.closed_at > since]
        return [(r.agent, r.opened_at, r.closed_at)
                for r in sorted(rows, key=lambda r: (r.opened_at, r.id))]

    def last_resolved(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for row in self.incidents:
            if row.outcome == IncidentOutcome.RESOLVED and row.closed_at is not None:
                out[row.agent] = max(out.get(row.agent, row.closed_at), row.closed_at)
        return out

    def record_action(self, *, ts: float, agent: str, incident_id: int | None,
                      pipeline: Pipeline, action: str, attempt: int, applied_ok: bool,
                      error: str | None = None) -> int:
        outcome = "pending" if pipeline is Pipeline.HEALING else None
        self.actions.append(_Action(len(self.actions) + 1, ts, agent, incident_id, pipeline,
                                    action, attempt, applied_ok, error, outcome))
        return len(self.actions)

    def settle_action(self, action_id: int, outcome: Settlement) -> bool:
        action = self.actions[action_id - 1]
        if action.outcome != "pending":
            return False
        action.outcome = outcome.value
        return True

    def action_id_for(self, incident_id: int, attempt: int) -> int | None:
        ids = [a.id for a in self.actions if a.incident_id == incident_id
               and a.attempt == attempt and a.pipeline is Pipeline.HEALING]
        return max(ids) if ids else None

    def record_reassignment(self, *, ts: float, from_agent: str, to_agent: str, tasks: int,
                            to_status: Identity | None) -> None:
        self.sent.append((to_agent, tasks, to_status))

    def tasks_sent(self, to_agent: str, to_status: Identity) -> int:
        return sum(n for agent, n, at in self.sent if agent == to_agent and at == to_status)

    def record_command(self, result: CommandResult, *, kind: CommandKind,
                       incident_id: int | None, action_id: int | None) -> int:
        self.runs.append((result, kind, incident_id, action_id))
        if action_id is not None:
            action = self.actions[action_id - 1]
            action.applied_ok, action.error = result.ok, result.error
        return len(self.runs)

    def note_self_write(self, path: str, ino: int, mtime_ns: int, size: int, ts: float) -> None:
        self.writes[path] = (ino, mtime_ns, size)

    def self_writes(self) -> dict[str, tuple[int, int, int]]:
        return dict(self.writes)

    def save_last_activity(self, activities: Mapping[str, float]) -> None:
        self.activity.update(activities)

    def last_activities(self) -> dict[str, float]:
        return dict(self.activity)

    def stats(self, recent: int = 20) -> dict[str, Any]:
        tallies: dict[str, Tally] = {}
        for a in self.actions:
            if a.pipeline is Pipeline.HEALING:
                t = tallies.get(a.agent, Tally())
                tallies[a.agent] = Tally(t.total + 1, t.successful + (a.outcome == "success"),
                                         t.failed + (a.outcome == "failed"))
        rows = self.incidents
        counts = IncidentCounts(
            sum(r.closed_at is None for r in rows),
            sum(r.outcome == "recovered" for r in rows),
            sum(r.outcome == "resolved" for r in rows),
            sum(r.escalated_at is not None for r in rows),
        )
        latest = sorted(self.actions, key=lambda a: (a.ts, a.id), reverse=True)[:recent]
        return summarize(
            by_agent=tallies,
            recovery_actions=sum(a.pipeline is Pipeline.RECOVERY for a in self.actions),
            incidents=counts,
            mttd_seconds=_mean([r.detected_at - r.silence_started_at for r in rows]),
            mttr_seconds=_mean([r.closed_at - r.detected_at for r in rows
                                if r.outcome == "recovered" and r.closed_at is not None]),
            recent=[RecentAction(a.ts, a.agent, a.pipeline.value, a.action, a.attempt,
                                 a.outcome) for a in latest],
            waits=self.waits.tallies(),
        )

    def prune(self, older_than: float) -> int:
        gone = {r.id for r in self.incidents
                if r.closed_at is not None and r.closed_at < older_than}
        before = len(self.incidents) + len(self.actions)
        self.incidents = [r for r in self.incidents if r.id not in gone]
        self.actions = [a for a in self.actions if a.incident_id not in gone]
        return before - len(self.incidents) - len(self.actions) + self.waits.prune(older_than)

    def close(self) -> None:
        self.closed = True


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None
