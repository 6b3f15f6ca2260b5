"""The engine's bookkeeping in the durable history: the one place that calls the incident
log on the detection path, pauses it when it fails (detection never waits on SQLite), keeps
each open incident's durable id, turns a stored incident back into one the policy can
resume, and converts between the engine's monotonic times and the wall-clock ones stored.
Past 300 lines: every history call of the detection path goes through this one guard."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from healer.core.commands import CommandKind, CommandResult
from healer.core.model import IncidentOutcome, Pipeline, Settlement, Stage
from healer.core.policy import Incident, Policy
from healer.errors import StoreError
from healer.ports import Clock, Identity, IncidentLog, IncidentRecord
from healer.ports.heartbeats import WaitRecord
from healer.timeline import to_wall, wall_age

__all__ = ["HISTORY_PAUSE", "Carried", "CarriedWait", "History", "Loaded", "incident_from_row"]

log = structlog.get_logger()

HISTORY_PAUSE = 30.0  # seconds without history calls after one failed


@dataclass(frozen=True, slots=True)
class Loaded:
    """What a start needs from the history, on the engine's clock: saved activity, open
    incidents, resolves."""

    last_activities: dict[str, float]
    open_incidents: dict[str, IncidentRecord]
    resolved: dict[str, float]


@dataclass(frozen=True, slots=True)
class Carried:
    """An open incident from the record, its times placed on the engine's clock by age."""

    id: int
    agent: str
    opened_at: float
    silence_started_at: float
    detected_at: float
    stage: str
    attempts: int
    last_attempt_at: float | None
    recovery_done: bool


_TIME_FIELDS = ("at", "last_attempt_at")  # of update(): engine times, stored as wall times


class History:
    """Records incidents and actions. Without a log, or when it may not `record` (`check`
    without --now, --dry-run), every write is a no-op; reads still go to the log.

    Times in and out are the engine's (monotonic); the log holds wall-clock UTC. Only
    `tasks_sent`/`record_reassignment`, the pipelines' port, speak wall time as they do.
    """

    def __init__(self, incidents: IncidentLog | None, clock: Clock, *, record: bool = True
                 ) -> None:
        self.log = incidents
        self._clock = clock
        self.recording = incidents is not None and record
        self._paused_until = float("-inf")
        self.failures = 0  # log calls that failed and paused the history, for metrics
        self._ids: dict[str, int] = {}  # agent -> durable id of its open incident
        self._action_ids: dict[tuple[int, int], int] = {}  # (incident, attempt) -> action

    @property
    def paused(self) -> bool:
        """True while the history is paused after a failed call."""
        return self._clock.monotonic() < self._paused_until

    def _wall(self, t: float) -> float:
        return to_wall(self._clock, t)

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self.recording or self._clock.monotonic() < self._paused_until:
            return None
        try:
            return fn(*args, **kwargs)
        except StoreError as exc:
            # The history is for operators; detection and healing go on without it. A locked
            # history makes every call wait out the busy timeout, and a loop stuck in those
            # waits misses stalls and its watchdog pings; so pause it rather than retry each.
            self._paused_until = self._clock.monotonic() + HISTORY_PAUSE
            self.failures += 1
            log.error("history_write_failed", error=str(exc), paused_for=HISTORY_PAUSE)
            return None

    # -- reads (errors propagate: a history unusable at start-up stops healer) -------------
    def load(self) -> Loaded:
        if self.log is None:
            return Loaded({}, {}, {})

        def age(stored: dict[str, float]) -> dict[str, float]:
            return {agent: wall_age(self._clock, t) for agent, t in stored.items()}

        return Loaded(
            age(self.log.last_activities()),
            {row.agent: self._carried(row) for row in self.log.open_incidents()},
            age(self.log.last_resolved()),
        )

    def _carried(self, row: IncidentRecord) -> Carried:
        def age(t: float) -> float:
            return wall_age(self._clock, t)

        return Carried(
            id=row.id, agent=row.agent, opened_at=age(row.opened_at),
            silence_started_at=age(row.silence_started_at), detected_at=age(row.detected_at),
            stage=row.stage, attempts=row.attempts, recovery_done=row.recovery_done,
            last_attempt_at=None if row.last_attempt_at is None else age(row.last_attempt_at),
        )

    def incident_spans(self, since: float) -> list[tuple[str, float, float | None]]:
        """(agent, opened, closed or None) of the incidents open or closed after `since`."""
        if self.log is None:
            return []

        def age(t: float) -> float:
            return wall_age(self._clock, t)

        return [(agent, age(opened), None if closed is None else age(closed))
                for agent, opened, closed in self.log.incident_spans(self._wall(since))]

    def open_ids(self) -> set[int] | None:
        """Ids of the incidents still open on record (None when it could not be read)."""
        if self.log is None:
            return None
        rows = self._call(self.log.open_incidents)
        return None if rows is None else {row.id for row in rows}

    # -- incidents ---------------------------------------------------------------------------
    def id_of(self, agent: str) -> int | None:
        """The durable id of the agent's open incident, if it is on record."""
        return self._ids.get(agent)

    def adopt(self, agent: str, row_id: int) -> None:
        """An incident resumed from the record keeps its id."""
        self._ids[agent] = row_id

    def forget(self, agent: str) -> None:
        """The incident ended elsewhere (an operator's resolve closed it on record)."""
        self._ids.pop(agent, None)

    def open_incident(self, incident: Incident, now: float, stage: Stage) -> int | None:
        if self.log is None:
            return None
        row_id = self._call(
            self.log.open_incident, incident.agent, opened_at=self._wall(incident.opened_at),
            silence_started_at=self._wall(incident.silence_start), detected_at=self._wall(now),
            stage=stage,
        )
        if not row_id:
            return None
        self._ids[incident.agent] = int(row_id)
        return int(row_id)

    def update(self, agent: str, **fields: Any) -> None:
        row_id = self._ids.get(agent)
        if self.log is not None and row_id is not None:
            for key in _TIME_FIELDS:
                if fields.get(key) is not None:
                    fields[key] = self._wall(fields[key])
            self._call(self.log.update_incident, row_id, **fields)

    def close(self, agent: str, outcome: IncidentOutcome, at: float | None = None) -> None:
        """Close the agent's open incident, if it is on record."""
        row_id = self._ids.pop(agent, None)
        if row_id is not None:
            self.close_row(row_id, outcome, at)

    def close_row(self, row_id: int, outcome: IncidentOutcome, at: float | None = None) -> None:
        if self.log is not None:
            when = self._clock.now() if at is None else self._wall(at)
            self._call(self.log.close_incident, row_id, closed_at=when, outcome=outcome)

    # -- actions -----------------------------------------------------------------------------
    def record_action(
        self, agent: str, pipeline: Pipeline, action: str, attempt: int, ok: bool,
        error: str | None, now: float,
    ) -> int | None:
        """The action's durable id (None when it is not on record)."""
        row_id = self._ids.get(agent)
        if self.log is None or row_id is None:
            return None
        action_id = self._call(
            self.log.record_action, ts=self._wall(now), agent=agent, incident_id=row_id,
            pipeline=pipeline, action=action, attempt=attempt, applied_ok=ok, error=error,
        )
        if action_id and pipeline is Pipeline.HEALING:
            self._action_ids[(row_id, attempt)] = action_id
        return int(action_id) if action_id else None

    def record_command(
        self, result: CommandResult, kind: CommandKind, incident_id: int | None,
        action_id: int | None,
    ) -> None:
        if self.log is not None:
            self._call(self.log.record_command, result, kind=kind, incident_id=incident_id,
                       action_id=action_id)

    def settle(self, agent: str, attempt: int, outcome: Settlement) -> None:
        """Attempt `attempt` of the incident is over: failed when the next one came due."""
        row_id = self._ids.get(agent)
        if self.log is None or row_id is None:
            return
        action_id = self._action_ids.pop((row_id, attempt), None)
        if action_id is None:  # recorded before a restart
            action_id = self._call(self.log.action_id_for, row_id, attempt)
        if action_id:
            self._call(self.log.settle_action, action_id, outcome)

    # -- the rest ----------------------------------------------------------------------------
    def note_self_write(self, path: str, ident: tuple[int, int, int] | None) -> None:
        if self.log is not None and ident is not None:
            self._call(self.log.note_self_write, path, *ident, self._clock.now())

    def save_last_activity(self, activities: Mapping[str, float]) -> None:
        if self.log is not None:
            self._call(self.log.save_last_activity,
                       {agent: self._wall(t) for agent, t in activities.items()})

    def tasks_sent(self, to_agent: str, to_status: Identity) -> int:
        """Tasks healer sent `to_agent` since its status.json last changed (0 when unknown)."""
        if self.log is None:
            return 0
        return int(self._call(self.log.tasks_sent, to_agent, to_status) or 0)

    def record_reassignment(
        self, *, ts: float, from_agent: str, to_agent: str, tasks: int,
        to_status: Identity | None,
    ) -> None:
        if self.log is not None:
            self._call(self.log.record_reassignment, ts=ts, from_agent=from_agent,
                       to_agent=to_agent, tasks=tasks, to_status=to_status)

    # -- waits on a human (the caller keeps each open wait's id) ---------------------------
    def open_waits(self) -> dict[str, CarriedWait]:
        """The waits open on record, for a start to resume (errors propagate, as load()'s)."""
        if self.log is None:
            return {}
        return {row.agent: _carried_wait(row, wall_age(self._clock, row.started_at))
                for row in self.log.waits.open_waits()}

    def open_wait(self, agent: str, started_at: float, message: str | None) -> int | None:
        if self.log is None:
            return None
        wait_id = self._call(self.log.waits.open_wait, agent,
                             started_at=self._wall(started_at), message=message)
        return int(wait_id) if wait_id else None

    def wait_alerted(self, wait_id: int | None, at: float) -> None:
        if self.log is not None and wait_id is not None:
            self._call(self.log.waits.wait_alerted, wait_id, at=self._wall(at))

    def close_wait(self, wait_id: int | None, ended_at: float) -> None:
        if self.log is not None and wait_id is not None:
            self._call(self.log.waits.close_wait, wait_id, ended_at=self._wall(ended_at))

    def prune(self, older_than: float) -> None:
        if self.log is not None:
            self._call(self.log.prune, self._wall(older_than))


@dataclass(frozen=True, slots=True)
class CarriedWait:
    """A wait open on record, its start placed on the engine's clock by its age."""

    id: int
    agent: str
    started_at: float
    alerted: bool
    message: str | None


def _carried_wait(row: WaitRecord, started_at: float) -> CarriedWait:
    return CarriedWait(row.id, row.agent, started_at, row.alerted_at is not None, row.message)


def incident_from_row(row: IncidentRecord, policy: Policy) -> Incident:
    """The incident a restarted healer resumes, at the attempt it had reached."""
    attempts = row.attempts
    escalated = row.stage == Stage.ESCALATED.value
    # An escalated incident has no attempt left: a next-attempt time would keep it due.
    next_at = (
        row.last_attempt_at + policy.heal_after
        if row.last_attempt_at is not None and not escalated else None
    )
    return Incident(
        agent=row.agent,
        silence_start=row.silence_started_at,
        opened_at=row.opened_at,
        attempts=attempts,
        next_attempt_at=next_at,
        # Detected at or past heal_after means the healing stall was logged then, even if
        # healer died before attempt 1 was on record: resuming must not log it again.
        healing_detected=(
            attempts > 0 or escalated or (
                policy.healing_enabled
                and row.detected_at - row.silence_started_at >= policy.heal_after
            )
        ),
        recovery_done=row.recovery_done,
        escalated=escalated,
        actions=tuple(policy.rung(k) for k in range(1, attempts + 1)) if policy.ladder else (),
    )
