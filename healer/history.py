"""The engine's bookkeeping in the durable history: the one place that calls the Store on
the detection path, pauses it when it fails (detection never waits on SQLite), and turns
a stored incident back into one the policy can resume."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import structlog

from healer.adapters.store import IncidentRow, Store
from healer.clock import Clock
from healer.core.model import Pipeline
from healer.core.policy import Incident, Policy
from healer.errors import StoreError

__all__ = ["HISTORY_PAUSE", "History", "incident_from_row"]

log = structlog.get_logger()

HISTORY_PAUSE = 30.0  # seconds without history calls after one failed


class History:
    """Records incidents and actions; with no store (check without --now, --dry-run) every
    call is a no-op."""

    def __init__(self, store: Store | None, clock: Clock) -> None:
        self.store = store
        self._clock = clock
        self._paused_until = float("-inf")
        self.failures = 0  # store calls that failed and paused the history, for metrics
        self._action_ids: dict[tuple[int, int], int] = {}  # (incident, attempt) -> action

    @property
    def enabled(self) -> bool:
        return self.store is not None

    @property
    def paused(self) -> bool:
        """True while the history is paused after a failed call."""
        return self._clock.now() < self._paused_until

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._clock.now() < self._paused_until:
            return None
        try:
            return fn(*args, **kwargs)
        except StoreError as exc:
            # The history is for operators; detection and healing go on without it. A locked
            # history makes every call wait out the busy timeout, and a loop stuck in those
            # waits misses stalls and its watchdog pings; so pause it rather than retry each.
            self._paused_until = self._clock.now() + HISTORY_PAUSE
            self.failures += 1
            log.error("history_write_failed", error=str(exc), paused_for=HISTORY_PAUSE)
            return None

    def note_self_write(self, path: str, ident: tuple[int, int, int] | None) -> None:
        if self.store is not None and ident is not None:
            self._call(self.store.note_self_write, path, *ident, self._clock.now())

    def open_incident(self, incident: Incident, now: float, stage: str) -> int | None:
        if self.store is None:
            return None
        row_id = self._call(
            self.store.open_incident, incident.agent, opened_at=incident.opened_at,
            silence_started_at=incident.silence_start, detected_at=now, stage=stage,
        )
        return int(row_id) if row_id else None

    def update(self, row_id: int | None, **fields: Any) -> None:
        if self.store is not None and row_id is not None:
            self._call(self.store.update_incident, row_id, **fields)

    def close(self, row_id: int, outcome: str, at: float | None = None) -> None:
        if self.store is not None:
            when = self._clock.now() if at is None else at
            self._call(self.store.close_incident, row_id, closed_at=when, outcome=outcome)

    def record_action(
        self, row_id: int | None, agent: str, pipeline: Pipeline, action: str, attempt: int,
        ok: bool, error: str | None, now: float,
    ) -> None:
        if self.store is None or row_id is None:
            return
        action_id = self._call(
            self.store.record_action, ts=now, agent=agent, incident_id=row_id,
            pipeline=pipeline.value, action=action, attempt=attempt, applied_ok=ok, error=error,
        )
        if action_id and pipeline is Pipeline.HEALING:
            self._action_ids[(row_id, attempt)] = action_id

    def settle(self, row_id: int | None, attempt: int, outcome: str) -> None:
        """Attempt `attempt` of the incident is over: 'failed' when the next one came due."""
        if self.store is None or row_id is None:
            return
        action_id = self._action_ids.pop((row_id, attempt), None)
        if action_id is None:  # recorded before a restart
            action_id = self._call(self.store.action_id_for, row_id, attempt)
        if action_id:
            self._call(self.store.settle_action, action_id, outcome)

    def open_ids(self) -> set[int] | None:
        """Ids of the incidents still open on record (None when it could not be read)."""
        if self.store is None:
            return None
        rows = self._call(self.store.open_incidents)
        return None if rows is None else {row.id for row in rows}

    def save_last_activity(self, activities: Mapping[str, float]) -> None:
        if self.store is not None:
            self._call(self.store.save_last_activity, dict(activities))

    def tasks_sent(self, to_agent: str, to_status: tuple[int, int, int]) -> int:
        """Tasks healer sent `to_agent` since its status.json last changed (0 when unknown)."""
        if self.store is None:
            return 0
        return int(self._call(self.store.tasks_sent, to_agent, to_status) or 0)

    def record_reassignment(
        self, *, ts: float, from_agent: str, to_agent: str, tasks: int,
        to_status: tuple[int, int, int] | None,
    ) -> None:
        if self.store is not None:
            self._call(self.store.record_reassignment, ts=ts, from_agent=from_agent,
                       to_agent=to_agent, tasks=tasks, to_status=to_status)

    def prune(self, older_than: float) -> None:
        if self.store is not None:
            self._call(self.store.prune, older_than)


def incident_from_row(row: IncidentRow, policy: Policy) -> Incident:
    """The incident a restarted healer resumes, at the attempt it had reached."""
    attempts = row.attempts
    escalated = row.stage == "escalated"
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
        id=row.id,
    )
