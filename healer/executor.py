"""Carrying out the policy's Steps: one `match` on the Step types, each case writing the
history first, then the workspace, the log and the alerts; plus an incident's end when the
agent comes back. Times are the engine's (monotonic); what the actions write is wall time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from healer.breakers import Breakers
from healer.commanding import Commanding, RungDone
from healer.config import Config
from healer.core.isotime import iso
from healer.core.model import (
    IncidentOutcome,
    Pipeline,
    RecoveryAction,
    Settlement,
    Stage,
    Transition,
)
from healer.core.monitor import Monitor
from healer.core.policy import (
    Escalate,
    HealAttempt,
    Incident,
    RunRecovery,
    SettleAttempt,
    StallDetected,
    Step,
)
from healer.errors import ActionError
from healer.history import History
from healer.pipelines import recovery
from healer.pipelines.healing import ActionOutcome, Context, apply_rung
from healer.pipelines.messages import escalation_marker
from healer.pipelines.recovery import MAX_CANDIDATES
from healer.ports import Clock, Counters, StatusStore
from healer.timeline import to_wall

__all__ = ["ActionReport", "Executor"]

log = structlog.get_logger()

# A reassignment a swarm outage holds back: failed (nothing moved), said why, and recorded
# like any failed action; `skipped` tells it apart from a reassignment that went wrong.
_HELD_BACK = ActionOutcome(
    RecoveryAction.REASSIGN_TASKS, False,
    "held back: the swarm is in an outage, no healthy agent to take the tasks",
    {"skipped": "swarm_outage"},
)
# What an action's log line says it did: a reassignment's tasks and receiver, a command's
# exit code, duration and output (and the argv a dry run did not run).
_LOGGED_DETAIL = ("tasks", "to", "skipped", "exit_code", "duration", "timed_out", "output",
                  "argv")


@dataclass(frozen=True, slots=True)
class ActionReport:
    """One action the engine carried out (for `check --json`)."""

    agent: str
    action: str
    ok: bool
    pipeline: Pipeline


class Executor:
    """Carries out Steps for the engine and counts what it did."""

    def __init__(
        self,
        config: Config,
        clock: Clock,
        monitor: Monitor,
        files: StatusStore,
        history: History,
        breakers: Breakers,
        *,
        commands: Commanding,
        keep_actions: bool = False,
    ) -> None:
        self.config = config
        self._clock = clock
        self._monitor = monitor
        self._files = files
        self._history = history
        self._breakers = breakers
        self._commands = commands
        self.counters = Counters()
        self._counted: dict[str, float] = {}  # agent -> opened_at of the incident counted
        self._ranked: tuple[float, list[str] | None] = (0.0, None)  # see _active_agents
        # `check` reports what it did; a daemon must not keep every action of its lifetime.
        self.actions: list[ActionReport] | None = [] if keep_actions else None

    def carry_out(self, agent: str, incident: Incident, step: Step, now: float, last: float
                  ) -> None:
        match step:
            case StallDetected(pipeline=pipeline, silent_for=silent_for, threshold=threshold):
                opened = self._ensure_row(incident, now)
                log.warning(
                    "stall_detected", agent=agent, pipeline=pipeline.value,
                    silent_for=round(silent_for, 3), threshold=threshold,
                )
                if opened:
                    self._breakers.opened(agent, incident.opened_at)
            case SettleAttempt(attempt=attempt):
                self._history.settle(agent, attempt, Settlement.FAILED)
            case HealAttempt(attempt=attempt, action=action) if self._commands.is_rung(action):
                ctx = Context(agent, now, attempt, now - last, last, incident.actions[:-1])
                done = self._commands.start_rung(incident, ctx, action)
                if done is not None:  # not run (--dry-run): reported at once
                    self.report_rung(done)
            case HealAttempt(attempt=attempt, action=action):
                ctx = self._context(agent, now, attempt, last, incident.actions[:-1])
                outcome = apply_rung(self._files, action, ctx)
                # History first, log second: a crash right after the log line must find the
                # attempt on record, or a restart would redo it and detect the stall again.
                self._history.update(agent, attempts=attempt, last_attempt_at=now)
                self._record(agent, Pipeline.HEALING, outcome, attempt, now)
            case RunRecovery():
                self._recover(agent, incident, now, last)
            case Escalate(attempts=attempts, actions=actions):
                self._escalate(agent, attempts, actions, now)

    def _recover(self, agent: str, incident: Incident, now: float, last: float) -> None:
        ctx = self._context(agent, now, 0, last, incident.actions)
        outcomes: list[ActionOutcome] = []
        if self.config.agent_rescue:
            outcomes.append(recovery.rescue(self._files, ctx))
        if self.config.auto_recovery:
            held = self._breakers.holds_tasks(agent)
            outcomes.append(_HELD_BACK if held else self._reassign(ctx))
        for outcome in outcomes:
            self._record(agent, Pipeline.RECOVERY, outcome, 0, now)
        self._alert(agent, Transition.STALLED, silent_for=round(now - last, 3),
                    pipeline=Pipeline.RECOVERY.value)
        self._record(agent, Pipeline.RECOVERY, ActionOutcome(RecoveryAction.ALERT, True), 0, now)
        stage = Stage.ESCALATED if incident.escalated else Stage.RECOVERING
        self._history.update(agent, recovery_done=True, stage=stage)

    def _escalate(self, agent: str, attempts: int, actions: tuple[str, ...], now: float) -> None:
        tried = [f"- attempt {k}: {a}" for k, a in enumerate(actions, start=1)]
        text = escalation_marker(agent, iso(to_wall(self._clock, now)), attempts, tried)
        try:
            self._files.write_marker(agent, text)
            marker_error = None
        except (ActionError, OSError) as exc:
            marker_error = str(exc)
        self._history.update(agent, stage=Stage.ESCALATED, at=now)
        log.error("agent_escalated", agent=agent, attempts=attempts,
                  **({"error": marker_error} if marker_error else {}))
        self.counters.escalations += 1
        self._alert(agent, Transition.ESCALATED, attempts=attempts, actions=list(actions))

    def reassign(self, agent: str, now: float) -> None:
        """The reassignment a swarm outage held back, now that healthy agents are back."""
        incident, last = self._monitor.incident(agent), self._monitor.table.get(agent)
        if incident is None or last is None or not self.config.auto_recovery:
            return
        ctx = Context(agent, now, 0, now - last, last, incident.actions)
        self._record(agent, Pipeline.RECOVERY, self._reassign(ctx), 0, now)

    def recovered(self, agent: str, incident: Incident, when: float) -> None:
        """The agent showed genuine activity: its incident ends as recovered."""
        silent_for = max(0.0, when - incident.silence_start)
        self._commands.remember(agent, incident)
        log.info("agent_recovered", agent=agent, silent_for=round(silent_for, 3),
                 attempts=incident.attempts)
        self.counters.recoveries += 1
        self.counters.recovery_seconds += max(0.0, when - incident.opened_at)
        if incident.escalated and not self.config.dry_run:
            try:
                self._files.remove_marker(agent)
            except (ActionError, OSError) as exc:
                log.warning("marker_not_removed", agent=agent, error=str(exc))
        self._history.close(agent, IncidentOutcome.RECOVERED, when)
        if incident.recovery_done or incident.escalated:
            # Humans heard of this incident (the recovery alert or the escalation): close it.
            self._alert(agent, Transition.RECOVERED, silent_for=round(silent_for, 3),
                        attempts=incident.attempts)
        self._breakers.closed(agent, when)
        self._history.save_last_activity({agent: when})

    def resumed(self, agent: str, incident: Incident, now: float) -> None:
        """A carried incident that humans heard of keeps its alert open after a restart."""
        if self.config.dry_run:
            return
        silent_for = round(max(0.0, now - incident.silence_start), 3)
        fold = self._breakers.fold
        if incident.escalated:
            fold.restore(agent, Transition.ESCALATED, {
                "attempts": incident.attempts, "actions": list(incident.actions),
                "silent_for": silent_for,
            })
        elif incident.recovery_done and not self._breakers.is_flapping(agent):
            fold.restore(agent, Transition.STALLED, {"silent_for": silent_for})

    def resolved(self, agent: str) -> None:
        """The incident ended without the agent (a resolve, its folder gone): end its alert."""
        self._alert(agent, Transition.RESOLVED)
        self._breakers.closed(agent, self._clock.monotonic())

    def announce(self, agent: str, transition: Transition, details: Mapping[str, Any], *,
                 carried: bool = False) -> None:
        """A transition decided beside the ladder (a wait, healer.heartbeats), told like the
        executor's own; `carried`: an alert open before a restart, kept open, sent anew to
        nobody."""
        if not carried:
            self._alert(agent, transition, **details)
        elif not self.config.dry_run:
            self._breakers.fold.restore(agent, transition, details)

    # -- helpers --------------------------------------------------------------------------
    def _context(
        self, agent: str, now: float, attempt: int, last: float, tried: tuple[str, ...]
    ) -> Context:
        """What an action is told, in wall time: it writes timestamps and names files."""
        return Context(agent, to_wall(self._clock, now), attempt, now - last,
                       to_wall(self._clock, last), tried)

    def _ensure_row(self, incident: Incident, now: float) -> bool:
        """Record the incident if it is not yet; True the first time it is seen."""
        agent = incident.agent
        if self._history.id_of(agent) is not None:
            return False
        first = self._counted.get(agent) != incident.opened_at
        if first:  # once, with or without a history
            self._counted[agent] = incident.opened_at
            self.counters.incidents_opened += 1
            self.counters.detection_seconds += max(0.0, now - incident.silence_start)
        stage = Stage.HEALING if self.config.healing_enabled else Stage.RECOVERING
        self._history.open_incident(incident, now, stage)
        return first

    def _record(
        self, agent: str, pipeline: Pipeline, outcome: ActionOutcome, attempt: int, now: float
    ) -> None:
        self._history.record_action(
            agent, pipeline, outcome.action, attempt, outcome.ok, outcome.error, now
        )
        self._report(agent, pipeline, outcome, attempt)

    def report_rung(self, done: RungDone) -> None:
        """A command rung ended (its action was recorded when it started): log and count it."""
        self._report(done.agent, Pipeline.HEALING, done.outcome, done.attempt)

    def _report(self, agent: str, pipeline: Pipeline, outcome: ActionOutcome, attempt: int
                ) -> None:
        fields: dict[str, Any] = {"agent": agent, "action": outcome.action, "ok": outcome.ok}
        if outcome.error:
            fields["error"] = outcome.error
        fields.update({k: outcome.detail[k] for k in _LOGGED_DETAIL if k in outcome.detail})
        if self.config.dry_run:
            fields["dry_run"] = True  # decided and logged, not written: no one may think so
        self.counters.results[(pipeline.value, outcome.action, outcome.ok)] += 1
        level = 30 if not outcome.ok else 20
        if pipeline is Pipeline.HEALING:
            self.counters.heal_actions += 1
            log.log(level, "heal_action", attempt=attempt, **fields)
        else:
            self.counters.recovery_actions += 1
            log.log(level, "recovery_action", **fields)
        if self.actions is not None:
            self.actions.append(ActionReport(agent, outcome.action, outcome.ok, pipeline))

    def _active_agents(self, exclude: str) -> list[str]:
        """Agents without an incident, most recently active first. Ranked once a tick: a
        stall of thousands reassigns thousands of times, and ranking 10,000 agents for each
        made that quadratic (a candidate a tick stale is still read before it is picked)."""
        now = self._clock.monotonic()
        at, ranked = self._ranked
        if ranked is None or not 0 <= now - at < self.config.tick:
            monitor = self._monitor
            rows = [(t, a) for a, t in monitor.table.items()
                    if monitor.stage(a, now) is Stage.ACTIVE]
            ranked = [a for _, a in sorted(rows, reverse=True)]
            self._ranked = (now, ranked)
        return [a for a in ranked[:MAX_CANDIDATES + 1] if a != exclude][:MAX_CANDIDATES]

    def _reassign(self, ctx: Context) -> ActionOutcome:
        return recovery.reassign_tasks(
            self._files, ctx, self._active_agents(ctx.agent), sent=self._history
        )

    def _alert(self, agent: str, transition: Transition, **details: Any) -> None:
        # Also under --dry-run: the fold decides as without it, then sends nothing.
        self._breakers.fold.send(agent, transition, details)
