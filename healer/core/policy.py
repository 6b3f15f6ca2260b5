"""The decision: from (incident state, now, thresholds) to the next steps and the next
deadline. A pure function, so every timeline is a table-driven test."""

from __future__ import annotations

from dataclasses import dataclass, replace

from healer.core.model import Pipeline, Stage

__all__ = [
    "Decision",
    "Escalate",
    "HealAttempt",
    "Incident",
    "Policy",
    "RunRecovery",
    "SettleAttempt",
    "StallDetected",
    "Step",
    "decide",
    "stage_of",
]


@dataclass(frozen=True, slots=True)
class Policy:
    """The thresholds and ladder that apply to one agent."""

    heal_after: float
    recover_after: float
    max_attempts: int
    ladder: tuple[str, ...]
    healing_enabled: bool = True
    # False: the stalls are detected and reported, nothing is done (a flapping agent, whose
    # healing again and again would be a restart storm; SPEC §14).
    acting: bool = True

    def first_deadline(self, last_activity: float) -> float:
        threshold = min(self.heal_after, self.recover_after) if self.healing_enabled else (
            self.recover_after
        )
        return last_activity + threshold

    def pipeline_for(self, silent: float, in_incident: bool) -> Pipeline | None:
        """Which pipeline a silence this long belongs to (what `check` reports); None for
        an agent that is fine."""
        if silent >= self.recover_after:
            return Pipeline.RECOVERY
        if (self.healing_enabled and silent >= self.heal_after) or in_incident:
            return Pipeline.HEALING
        return None

    def rung(self, attempt: int) -> str:
        """The action of attempt k; past the ladder's end the last rung is repeated."""
        return self.ladder[min(attempt, len(self.ladder)) - 1]


@dataclass(frozen=True, slots=True)
class Incident:
    """One silence of one agent, from detection until activity or an operator's resolve."""

    agent: str
    silence_start: float
    opened_at: float
    attempts: int = 0
    next_attempt_at: float | None = None
    healing_detected: bool = False
    recovery_done: bool = False
    escalated: bool = False
    actions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StallDetected:
    pipeline: Pipeline
    silent_for: float
    threshold: float


@dataclass(frozen=True, slots=True)
class SettleAttempt:
    """Attempt k did not bring the agent back before the next one was due."""

    attempt: int


@dataclass(frozen=True, slots=True)
class HealAttempt:
    attempt: int
    action: str


@dataclass(frozen=True, slots=True)
class RunRecovery:
    silent_for: float


@dataclass(frozen=True, slots=True)
class Escalate:
    attempts: int
    actions: tuple[str, ...]


Step = StallDetected | SettleAttempt | HealAttempt | RunRecovery | Escalate


@dataclass(frozen=True, slots=True)
class Decision:
    incident: Incident | None
    steps: tuple[Step, ...]
    next_at: float | None  # when to decide again; None: only activity or resolve can change it
    busy: bool = False


def stage_of(incident: Incident | None, busy: bool = False) -> Stage:
    if busy:
        return Stage.BUSY
    if incident is None:
        return Stage.ACTIVE
    if incident.escalated:
        return Stage.ESCALATED
    if incident.recovery_done:
        return Stage.RECOVERING
    return Stage.HEALING


def _heal(inc: Incident, now: float, silent: float, p: Policy, steps: list[Step]) -> Incident:
    # Detected from here on: each return sets it in its one replace() (at 10,000 agents
    # stalling at once, a copy per change showed).
    if not inc.healing_detected:
        steps.append(StallDetected(Pipeline.HEALING, silent, p.heal_after))
    if not p.acting:
        # No attempt is due any more: a pending one would keep the agent due at every tick.
        return replace(inc, healing_detected=True, next_attempt_at=None)
    if inc.escalated or (inc.next_attempt_at is not None and now < inc.next_attempt_at):
        return inc if inc.healing_detected else replace(inc, healing_detected=True)
    if inc.attempts > 0:
        steps.append(SettleAttempt(inc.attempts))
    if inc.attempts >= p.max_attempts or not p.ladder:
        steps.append(Escalate(inc.attempts, inc.actions))
        return replace(inc, healing_detected=True, escalated=True, next_attempt_at=None)
    attempt = inc.attempts + 1
    action = p.rung(attempt)
    steps.append(HealAttempt(attempt, action))
    # The next attempt is measured from this one, so a late wake-up (a restart, a slow
    # tick) never fires a burst of attempts back to back.
    return replace(inc, healing_detected=True, attempts=attempt,
                   next_attempt_at=now + p.heal_after, actions=(*inc.actions, action))


def decide(
    agent: str,
    last_activity: float,
    incident: Incident | None,
    now: float,
    policy: Policy,
    lease_until: float | None = None,
) -> Decision:
    """What to do for `agent` at `now`. Activity after the incident opened is handled by
    the caller (it closes the incident) before it asks again."""
    if lease_until is not None and now < lease_until:
        return Decision(incident, (), lease_until, busy=True)
    silent = max(0.0, now - last_activity)
    # A lease is a promise of silence until its end: the thresholds count from there, so an
    # agent finishing its long job a moment late is not healed and robbed of its tasks in
    # the same instant. What is reported (silent_for) stays the true silence.
    base = last_activity if lease_until is None else max(last_activity, lease_until)
    heal_due = policy.healing_enabled and now - base >= policy.heal_after
    recover_due = now - base >= policy.recover_after
    if incident is None:
        if not (heal_due or recover_due):
            return Decision(None, (), policy.first_deadline(base))
        incident = Incident(agent, silence_start=last_activity, opened_at=now)
    steps: list[Step] = []
    if heal_due:
        incident = _heal(incident, now, silent, policy, steps)
    if recover_due and not incident.recovery_done:
        steps.append(StallDetected(Pipeline.RECOVERY, silent, policy.recover_after))
        if policy.acting:
            steps.append(RunRecovery(silent))
        incident = replace(incident, recovery_done=True)
    pending = [incident.next_attempt_at] if incident.next_attempt_at is not None else []
    if not incident.recovery_done:
        pending.append(base + policy.recover_after)
    if policy.healing_enabled and not incident.healing_detected:
        pending.append(base + policy.heal_after)
    return Decision(incident, tuple(steps), min(pending) if pending else None)
