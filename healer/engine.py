"""The engine: the pure monitor wired to the world (scanner, writer, history, alerts, log).
Both `healer check` and `healer watch` drive it; only the source of activity differs."""

from __future__ import annotations

import collections
from dataclasses import dataclass, replace
from typing import Any

import structlog

from healer.adapters.alerts import Alerter
from healer.adapters.scan import Scanner
from healer.adapters.store import IncidentRow, Store
from healer.adapters.writer import SafeWriter, SelfWriteLedger
from healer.clock import Clock, iso
from healer.config import Config
from healer.core.model import Pipeline, Stage
from healer.core.monitor import Monitor
from healer.core.policy import (
    Escalate,
    HealAttempt,
    Incident,
    Policy,
    RunRecovery,
    SettleAttempt,
    StallDetected,
    Step,
)
from healer.errors import ActionError
from healer.history import HISTORY_PAUSE, History, incident_from_row
from healer.pipelines import recovery
from healer.pipelines.healing import ActionOutcome, Context, apply_rung
from healer.pipelines.messages import escalation_marker

__all__ = ["HISTORY_PAUSE", "STALE_TEMP_AGE", "ActionReport", "Engine"]

log = structlog.get_logger()

# A temp file of healer's older than this is a crash's leftover, not a write in progress
# (of the daemon, say, while `check --now` starts beside it): writes take milliseconds.
STALE_TEMP_AGE = 60.0
# An agent whose step raised (a bug meeting some input no test foresaw) is looked at again
# after this long instead of at every tick: one bad folder must neither kill the daemon
# nor spin it.
FAILED_STEP_BACKOFF = 30.0


@dataclass(frozen=True, slots=True)
class ActionReport:
    """One action the engine carried out (for `check --json` and the metrics)."""

    agent: str
    action: str
    ok: bool
    pipeline: str


class Engine:
    def __init__(
        self,
        config: Config,
        clock: Clock,
        *,
        store: Store | None = None,
        alerter: Alerter | None = None,
        ledger: SelfWriteLedger | None = None,
        record: bool = True,
        keep_actions: bool = False,
    ) -> None:
        self.config = config
        self.clock = clock
        self.store = store
        # `check` without --now and `--dry-run` read the history but never write it.
        self.history = History(store if record and not config.dry_run else None, clock)
        # Only an engine that may write cleans up after a crashed one (a read-only check not).
        self.cleans_temps = record and not config.dry_run
        self.alerter = alerter
        self.ledger = ledger or SelfWriteLedger()
        if self.history.enabled:
            self.ledger.on_note = self.history.note_self_write
        self.writer = SafeWriter(
            config.workspaces, self.ledger, config.max_status_bytes, config.dry_run, clock=clock
        )
        self.scanner = Scanner(
            config.workspaces,
            config.is_agent_name,
            inbox_mode=config.inbox_mode,
            is_self=self.ledger.is_self,
            max_status_bytes=config.max_status_bytes,
        )
        self.monitor = Monitor(self.policy_for, config.tick, clock.now())
        # `check` reports what it did; a daemon must not keep every action of its lifetime.
        self.actions: list[ActionReport] | None = [] if keep_actions else None
        self.counters: dict[str, int] = {
            "heal_actions": 0, "recovery_actions": 0, "escalations": 0, "recoveries": 0,
            "incidents_opened": 0,
        }
        # For the metrics: seconds of silence at detection and from detection to recovery
        # (summed; MTTD and MTTR are sum over count), and actions by (pipeline, action, ok).
        self.seconds: dict[str, float] = {"detection": 0.0, "recovery": 0.0}
        self.results: collections.Counter[tuple[str, str, bool]] = collections.Counter()
        self._counted: dict[str, float] = {}  # agent -> opened_at of the incident counted

    # -- configuration --------------------------------------------------------------------
    def policy_for(self, agent: str) -> Policy:
        c = self.config
        return Policy(
            heal_after=c.heal_after_for(agent),
            recover_after=c.recover_after_for(agent),
            max_attempts=c.max_attempts,
            ladder=c.ladder,
            healing_enabled=c.healing_enabled,
        )

    def reload(self, config: Config) -> None:
        """New config, same state: incidents, attempts and counters carry over."""
        self.config = config
        self.writer.dry_run = config.dry_run
        self.scanner.inbox_mode = config.inbox_mode
        self.scanner.is_agent = config.is_agent_name
        self.monitor.set_policy(self.policy_for)

    # -- membership -----------------------------------------------------------------------
    def start(self) -> int:
        """Initial scan: every agent's last activity from its files and the history."""
        stored: dict[str, float] = {}
        carried: dict[str, IncidentRow] = {}
        resolved: dict[str, float] = {}
        if self.store is not None:
            self.ledger.load(self.store.self_writes())
            stored = self.store.last_activities()
            carried = {row.agent: row for row in self.store.open_incidents()}
            resolved = self.store.last_resolved()
        for agent in self.scanner.agents():
            if self.cleans_temps:
                self.writer.remove_stale_temps(agent, STALE_TEMP_AGE)
            self.add_agent(agent, stored.get(agent), carried.pop(agent, None), announce=False)
            self._honour_resolve(agent, resolved.get(agent))
        for row in carried.values():  # the agent's folder is gone
            self.history.close(row.id, "resolved")
        return len(self.monitor.table)

    def _honour_resolve(self, agent: str, resolved_at: float | None) -> None:
        """An operator resolved this agent while no daemon ran: like a running daemon, wait
        a fresh `heal_after` from the resolve before healing a silence that goes on."""
        last = self.monitor.table.get(agent)
        if resolved_at is None or last is None or self.monitor.incident(agent) is not None:
            return
        if resolved_at > last:
            self.monitor.resolve(agent, resolved_at)

    def add_agent(
        self,
        agent: str,
        stored: float | None = None,
        row: IncidentRow | None = None,
        *,
        announce: bool = True,
    ) -> bool:
        now = self.clock.now()
        found = self.scanner.scan(agent, now)
        if found is None or agent in self.monitor:
            return False
        # An open incident's silence start is the agent's last activity as healer knew it
        # (its status.json may since hold healer's own write, which the scan leaves out).
        opened = row.silence_started_at if row is not None else None
        candidates = [t for t in (found.last_activity, stored, opened) if t is not None]
        # A new agent's clock starts when its folder appears (SPEC §1).
        last = min(max(candidates) if candidates else found.created, now)
        incident = incident_from_row(row, self.policy_for(agent)) if row is not None else None
        if not self.monitor.add(agent, last, incident) and incident is not None:
            self._recovered(agent, incident, last)
        elif incident is not None and self.alerter is not None and not self.config.dry_run:
            self._restore_alert(agent, incident, now)
        if announce:
            log.info("agent_added", agent=agent)
        return True

    def remove_agent(self, agent: str) -> None:
        incident = self.monitor.remove(agent)
        if incident is not None and incident.id is not None:
            self.history.close(incident.id, "resolved")
        if incident is not None:
            self._alert(agent, "resolved")
        log.info("agent_removed", agent=agent)

    def reconcile(self) -> tuple[int, int]:
        """List the root for agents whose creation or removal was missed; cheap by design:
        one directory listing, no per-agent I/O for the agents already known."""
        present = set(self.scanner.agents())
        known = set(self.monitor.table)
        added = removed = 0
        for agent in sorted(present - known):
            added += self.add_agent(agent)
        for agent in sorted(known - present):
            self.remove_agent(agent)
            removed += 1
        if self.history.enabled and self.monitor.incidents():
            self._pick_up_resolves()
        return added, removed

    def rescan(self) -> None:
        """After lost events (queue overflow): re-stat every agent; time only moves forward."""
        self.reconcile()
        now = self.clock.now()
        for agent in list(self.monitor.table):
            found = self.scanner.scan(agent, now)
            if found is not None and found.last_activity is not None:
                self.observe(agent, found.last_activity)

    # -- activity -------------------------------------------------------------------------
    def observe(self, agent: str, when: float) -> None:
        closed = self.monitor.observe(agent, when)
        if closed is not None:
            self._recovered(agent, closed, when)

    # -- time -----------------------------------------------------------------------------
    def step(self, now: float | None = None) -> int:
        """Handle every decision due now; returns how many agents were looked at."""
        now = self.clock.now() if now is None else now
        due = self.monitor.due(now)
        # Detection first, for every due agent, then the actions: when a thousand agents
        # stall together (an API outage), the last one's stall is not reported only after
        # the writes and fsyncs of all the others.
        acting: list[tuple[str, Incident, list[Step], float]] = []
        for agent in due:
            try:
                decided = self._decide(agent, now)
            except Exception:
                self._step_failed(agent, now)
                continue
            if decided is not None:
                acting.append(decided)
        for agent, incident, steps, last in acting:
            try:
                for step in steps:
                    incident = self._carry_out(agent, incident, step, now, last)
            except Exception:
                self._step_failed(agent, now)
        return len(due)

    def _step_failed(self, agent: str, now: float) -> None:
        log.exception("agent_step_failed", agent=agent, retry_in=FAILED_STEP_BACKOFF)
        self.monitor.defer(agent, now + FAILED_STEP_BACKOFF)

    def _decide(self, agent: str, now: float) -> tuple[str, Incident, list[Step], float] | None:
        """Re-check the agent's files, run the policy and report its stalls; returns the
        steps left to carry out."""
        # A missed event can only make an agent look older: look at its files before acting.
        found = self.scanner.scan(agent, now)
        if found is None:
            self.remove_agent(agent)
            return None
        if found.last_activity is not None:
            self.observe(agent, found.last_activity)
        last = self.monitor.table.get(agent)
        if last is None:
            return None
        if self.monitor.incident(agent) is None and self.monitor.due_target(agent) > now:
            # The re-stat found activity the events missed; its timer fired, so re-arm it.
            self.monitor.rearm(agent)
            return None
        lease = self.scanner.lease(agent, self.config.max_busy_lease, last)
        decision = self.monitor.evaluate(agent, now, lease)
        if decision.incident is None or not decision.steps:
            return None
        incident = decision.incident
        rest: list[Step] = []
        for step in decision.steps:
            if isinstance(step, StallDetected):
                incident = self._carry_out(agent, incident, step, now, last)
            else:
                rest.append(step)
        return agent, incident, rest, last

    # -- steps ----------------------------------------------------------------------------
    def _carry_out(
        self, agent: str, incident: Incident, step: Step, now: float, last: float
    ) -> Incident:
        if isinstance(step, StallDetected):
            incident = self._ensure_row(agent, incident, now)
            log.warning(
                "stall_detected", agent=agent, pipeline=step.pipeline.value,
                silent_for=round(step.silent_for, 3), threshold=step.threshold,
            )
        elif isinstance(step, SettleAttempt):
            self.history.settle(self._current_id(incident), step.attempt, "failed")
        elif isinstance(step, HealAttempt):
            ctx = Context(agent, now, step.attempt, now - last, last, incident.actions[:-1])
            outcome = apply_rung(self.writer, step.action, ctx)
            # History first, log second: a crash right after the log line must find the
            # attempt on record, or a restart would redo it and detect the stall again.
            self.history.update(
                self._current_id(incident), attempts=step.attempt, last_attempt_at=now
            )
            self._record(incident, Pipeline.HEALING, outcome, step.attempt, now)
        elif isinstance(step, RunRecovery):
            self._recover(agent, incident, now, last)
        elif isinstance(step, Escalate):
            self._escalate(agent, incident, step, now)
        return incident

    def _recover(self, agent: str, incident: Incident, now: float, last: float) -> None:
        ctx = Context(agent, now, 0, now - last, last, incident.actions)
        outcomes: list[ActionOutcome] = []
        if self.config.agent_rescue:
            outcomes.append(recovery.rescue(self.writer, ctx))
        if self.config.auto_recovery:
            candidates = self._active_agents(agent)
            outcomes.append(recovery.reassign_tasks(self.writer, ctx, candidates, self.history))
        for outcome in outcomes:
            self._record(incident, Pipeline.RECOVERY, outcome, 0, now)
        self._alert(agent, "stalled", silent_for=round(now - last, 3), pipeline="recovery")
        self._record(incident, Pipeline.RECOVERY, ActionOutcome("alert", True), 0, now)
        stage = Stage.ESCALATED if incident.escalated else Stage.RECOVERING
        self.history.update(self._current_id(incident), recovery_done=True, stage=stage.value)

    def _escalate(self, agent: str, incident: Incident, step: Escalate, now: float) -> None:
        tried = [f"- attempt {k}: {a}" for k, a in enumerate(step.actions, start=1)]
        text = escalation_marker(agent, iso(now), step.attempts, tried)
        try:
            self.writer.write_marker(agent, text)
            marker_error = None
        except (ActionError, OSError) as exc:
            marker_error = str(exc)
        self.history.update(self._current_id(incident), stage=Stage.ESCALATED.value, at=now)
        log.error("agent_escalated", agent=agent, attempts=step.attempts,
                  **({"error": marker_error} if marker_error else {}))
        self.counters["escalations"] += 1
        self._alert(agent, "escalated", attempts=step.attempts, actions=list(step.actions))

    def _recovered(self, agent: str, incident: Incident, when: float) -> None:
        silent_for = max(0.0, when - incident.silence_start)
        log.info("agent_recovered", agent=agent, silent_for=round(silent_for, 3),
                 attempts=incident.attempts)
        self.counters["recoveries"] += 1
        self.seconds["recovery"] += max(0.0, when - incident.opened_at)
        if incident.escalated and not self.config.dry_run:
            try:
                self.writer.remove_marker(agent)
            except (ActionError, OSError) as exc:
                log.warning("marker_not_removed", agent=agent, error=str(exc))
        if incident.id is not None:
            self.history.close(incident.id, "recovered", when)
        if incident.recovery_done or incident.escalated:
            # Humans heard of this incident (the recovery alert or the escalation): close it.
            self._alert(agent, "recovered", silent_for=round(silent_for, 3),
                        attempts=incident.attempts)
        self.history.save_last_activity({agent: when})

    # -- history --------------------------------------------------------------------------
    def _ensure_row(self, agent: str, incident: Incident, now: float) -> Incident:
        if incident.id is not None:
            return incident
        if self._counted.get(agent) != incident.opened_at:  # once, with or without a store
            self._counted[agent] = incident.opened_at
            self.counters["incidents_opened"] += 1
            self.seconds["detection"] += max(0.0, now - incident.silence_start)
        stage = "healing" if self.config.healing_enabled else "recovering"
        row_id = self.history.open_incident(incident, now, stage)
        if row_id is None:
            return incident
        self.monitor.attach_id(agent, row_id)
        return replace(incident, id=row_id)

    def _current_id(self, incident: Incident) -> int | None:
        if incident.id is not None:
            return incident.id
        live = self.monitor.incident(incident.agent)
        return live.id if live is not None else None

    def _record(
        self, incident: Incident, pipeline: Pipeline, outcome: ActionOutcome, attempt: int,
        now: float,
    ) -> None:
        agent = incident.agent
        self.history.record_action(
            self._current_id(incident), agent, pipeline, outcome.action, attempt, outcome.ok,
            outcome.error, now,
        )
        fields: dict[str, Any] = {"agent": agent, "action": outcome.action, "ok": outcome.ok}
        if outcome.error:
            fields["error"] = outcome.error
        if outcome.action == "reassign_tasks" and outcome.ok:
            # "ok, 0 tasks" and a real hand-over must not read the same in the log.
            fields.update({k: outcome.detail[k] for k in ("tasks", "to") if k in outcome.detail})
        if self.config.dry_run:
            fields["dry_run"] = True  # decided and logged, not written: no one may think so
        self.results[(pipeline.value, outcome.action, outcome.ok)] += 1
        if pipeline is Pipeline.HEALING:
            self.counters["heal_actions"] += 1
            log.log(30 if not outcome.ok else 20, "heal_action", attempt=attempt, **fields)
        else:
            self.counters["recovery_actions"] += 1
            log.log(30 if not outcome.ok else 20, "recovery_action", **fields)
        if self.actions is not None:
            self.actions.append(ActionReport(agent, outcome.action, outcome.ok, pipeline.value))

    def _pick_up_resolves(self) -> None:
        """`healer resolve` closes incidents in the history; the daemon follows it here."""
        still_open = self.history.open_ids()
        if still_open is None:
            return
        for agent, incident in self.monitor.incidents().items():
            if incident.id is not None and incident.id not in still_open:
                self.monitor.resolve(agent, self.clock.now())
                log.info("incident_resolved", agent=agent, incident=incident.id)
                self._alert(agent, "resolved")

    # -- helpers --------------------------------------------------------------------------
    def _active_agents(self, exclude: str) -> list[str]:
        """Agents without an incident, most recently active first."""
        now = self.clock.now()
        rows = [
            (t, a) for a, t in self.monitor.table.items()
            if a != exclude and self.monitor.stage(a, now) is Stage.ACTIVE
        ]
        return [a for _, a in sorted(rows, reverse=True)]

    def _restore_alert(self, agent: str, incident: Incident, now: float) -> None:
        """A carried incident that humans heard of keeps its Alertmanager alert open."""
        assert self.alerter is not None
        silent_for = round(max(0.0, now - incident.silence_start), 3)
        if incident.escalated:
            self.alerter.restore(agent, "escalated", {"attempts": incident.attempts,
                                                      "actions": list(incident.actions),
                                                      "silent_for": silent_for})
        elif incident.recovery_done:
            self.alerter.restore(agent, "stalled", {"silent_for": silent_for})

    def _alert(self, agent: str, transition: str, **details: Any) -> None:
        if self.config.dry_run:
            return
        if self.alerter is not None:
            self.alerter.send(agent, transition, details)

    def save(self) -> None:
        """Persist what a restart needs (called on a clean stop)."""
        self.history.save_last_activity(dict(self.monitor.table.items()))

    def stalled(self, now: float) -> list[dict[str, Any]]:
        """Agents silent past a threshold or with an open incident, for `check`."""
        out = []
        for agent, last in sorted(self.monitor.table.items()):
            policy = self.policy_for(agent)
            silent = now - last
            incident = self.monitor.incident(agent)
            if silent >= policy.recover_after:
                pipeline = "recovery"
            elif (policy.healing_enabled and silent >= policy.heal_after) or incident is not None:
                pipeline = "healing"
            else:
                continue
            out.append({"agent": agent, "silent_for": round(silent, 3), "pipeline": pipeline})
        return out
