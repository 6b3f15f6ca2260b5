"""The detection engine: last-activity table + timer wheel + incidents, driven by the
policy. Pure: time comes in as arguments, I/O happens in the caller."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from healer.core.activity import ActivityTable
from healer.core.model import Stage
from healer.core.policy import Decision, Incident, Policy, decide, stage_of
from healer.core.timebase import active_since
from healer.core.wheel import TimerWheel

__all__ = ["Monitor"]


class Monitor:
    """Activity is O(1) and never touches the wheel: the wheel holds one timer per agent at
    the earliest moment anything could be due, and when it fires the entry is re-checked
    against the table and re-armed if the agent was active meanwhile (lazy revalidation)."""

    def __init__(self, policy_for: Callable[[str], Policy], tick: float, start: float) -> None:
        self.table = ActivityTable()
        self.wheel: TimerWheel[str] = TimerWheel(tick, start)
        self._policy_for = policy_for
        self._incidents: dict[str, Incident] = {}
        self._next: dict[str, float | None] = {}  # next decision of agents with an incident
        self._hold: dict[str, float] = {}  # nothing fires before this (busy lease, resolve)
        self._parked: dict[str, tuple[Stage, float | None]] = {}  # waiting or done: stage, due

    # -- membership -----------------------------------------------------------------
    def add(self, agent: str, last_activity: float, incident: Incident | None = None) -> bool:
        """Start tracking `agent`. An incident carried over from before a restart is resumed
        unless the agent was active after it opened (then False: the caller closes it)."""
        self.table.record(agent, last_activity)
        resumed = incident is not None and not active_since(last_activity,
                                                             incident.silence_start)
        if incident is not None and resumed:
            self._incidents[agent] = incident
            # Decide at once: the policy works out from the restored state what is pending
            # (attempt 1 if none was on record, the recovery of an escalated incident).
            self._next[agent] = last_activity  # in the past: due at the next step
        self._arm(agent)
        return resumed or incident is None

    def remove(self, agent: str) -> Incident | None:
        self.table.remove(agent)
        self.wheel.cancel(agent)
        self._hold.pop(agent, None)
        self._parked.pop(agent, None)
        self._next.pop(agent, None)
        return self._incidents.pop(agent, None)

    def __contains__(self, agent: object) -> bool:
        return agent in self.table

    def set_policy(self, policy_for: Callable[[str], Policy]) -> None:
        """New thresholds (config reload): every timer is re-armed, state is kept."""
        self._policy_for = policy_for
        for agent in self.table:
            self._arm(agent)

    # -- events -------------------------------------------------------------------
    def observe(self, agent: str, when: float) -> Incident | None:
        """Genuine activity. Returns the incident this activity closed, if any."""
        if not self.table.advance(agent, when):
            return None
        self._hold.pop(agent, None)
        incident = self._incidents.pop(agent, None)
        if incident is None:
            return None
        self._next.pop(agent, None)
        self._arm(agent)  # an escalated incident had no timer left
        return incident

    def resolve(self, agent: str, now: float) -> Incident | None:
        """Operator acknowledgement: drop the incident; a silence that goes on opens a new
        one only after a fresh `heal_after` from now."""
        incident = self._incidents.pop(agent, None)
        self._next.pop(agent, None)
        if agent in self.table:
            self._hold[agent] = now + self._policy_for(agent).heal_after
            self._arm(agent)
        return incident

    # -- time ---------------------------------------------------------------------
    def due(self, now: float) -> list[str]:
        """Agents for which a decision is due at `now`, earliest first."""
        out = []
        for agent in self.wheel.advance(now):
            target = self._target(agent)
            if target is None:
                continue
            if target > now:
                self.wheel.schedule(agent, target)
            else:
                out.append(agent)
        return out

    def soonest(self, now: float) -> float | None:
        """When the next timer fires, if before the end of `now`'s tick (TimerWheel.soonest)."""
        return self.wheel.soonest(now)

    def upcoming(self, after: float, until: float) -> list[str]:
        """Agents whose timer fires in (after, until]: read ahead of their decision."""
        return self.wheel.upcoming(after, until)

    def evaluate(
        self, agent: str, now: float, lease_until: float | None = None, *, acting: bool = True
    ) -> Decision:
        """Run the policy for a due agent and keep its result; `acting=False` detects and
        reports the stall but runs no step of either pipeline (a flapping agent)."""
        last = self.table.get(agent)
        if last is None:
            return Decision(None, (), None)
        policy = self._policy_for(agent)
        if not acting:
            policy = replace(policy, acting=False)
        decision = decide(agent, last, self._incidents.get(agent), now, policy, lease_until)
        if decision.busy and lease_until is not None:
            self._hold[agent] = lease_until
        elif decision.incident is None and decision.next_at is not None:
            # Nothing is due before next_at (it is later than the plain threshold after a
            # lease); without the hold the timer would fire again at every tick.
            self._hold[agent] = decision.next_at
        else:
            self._hold.pop(agent, None)
        if decision.incident is None:
            self._incidents.pop(agent, None)
            self._next.pop(agent, None)
        else:
            self._incidents[agent] = decision.incident
            self._next[agent] = decision.next_at
        self._arm(agent)
        return decision

    def defer(self, agent: str, until: float) -> None:
        """Nothing is due for `agent` before `until` (unless it shows activity first)."""
        if agent in self.table:
            self._hold[agent] = max(until, self._hold.get(agent, until))
            self._arm(agent)

    def attempt_ended(self, agent: str, opened_at: float, attempt: int, at: float) -> bool:
        """Attempt `attempt` of the incident opened at `opened_at` ended at `at` (a command
        rung, held back by defer() while it ran): its `heal_after` counts from then, and the
        agent is decided again at once. False when that incident or attempt is over."""
        incident = self._incidents.get(agent)
        if incident is None or incident.opened_at != opened_at or incident.attempts != attempt:
            return False
        next_at = at + self._policy_for(agent).heal_after
        self._incidents[agent] = replace(incident, next_attempt_at=next_at)
        self._hold.pop(agent, None)
        # In the past or now: the policy works out what else came due while it ran.
        self._next[agent] = at
        self._arm(agent)
        return True

    def rearm(self, agent: str) -> None:
        """Arm `agent`'s timer again. For a caller that took a due agent (its timer is
        spent) and then recorded activity the table had missed: observe() alone leaves no
        timer, and the agent would never be looked at again."""
        if agent in self.table:
            self._arm(agent)

    def park(self, agent: str, stage: Stage, due: float | None = None) -> bool:
        """The agent said it waits on a human, or is done: no stall is detected for it while
        it is parked, its only timer is `due` (a wait's alert). Never an agent in an incident
        (its activity closes that first); False when it was not parked."""
        if agent not in self.table or agent in self._incidents:
            return False
        self._parked[agent] = (stage, due)
        self._arm(agent)
        return True

    def unpark(self, agent: str) -> None:
        """Detection resumes, its thresholds counted from the agent's last activity."""
        if self._parked.pop(agent, None) is not None and agent in self.table:
            self._arm(agent)

    def parked(self, agent: str) -> Stage | None:
        held = self._parked.get(agent)
        return None if held is None else held[0]

    def parked_count(self) -> int:
        """Agents waiting or done: in the swarm's size, never in an incident."""
        return len(self._parked)

    # -- views --------------------------------------------------------------------
    def incident(self, agent: str) -> Incident | None:
        return self._incidents.get(agent)

    def incidents(self) -> dict[str, Incident]:
        return dict(self._incidents)

    def incident_count(self) -> int:
        """How many agents are in an open incident (asked at every step: no copy)."""
        return len(self._incidents)

    def stage(self, agent: str, now: float) -> Stage:
        if agent in self._parked:
            return self._parked[agent][0]
        hold = self._hold.get(agent)
        return stage_of(self._incidents.get(agent), busy=hold is not None and now < hold
                        and agent not in self._incidents)

    def due_target(self, agent: str) -> float:
        """When `agent` is next due (infinity when nothing can come due without activity)."""
        target = self._target(agent)
        return float("inf") if target is None else target

    def _target(self, agent: str) -> float | None:
        last = self.table.get(agent)
        if last is None:
            return None
        if agent in self._parked:
            target = self._parked[agent][1]
            if target is None:
                return None
        elif agent in self._incidents:
            target = self._next.get(agent)
            if target is None:
                return None
        else:
            target = self._policy_for(agent).first_deadline(last)
        hold = self._hold.get(agent)
        return target if hold is None else max(target, hold)

    def _arm(self, agent: str) -> None:
        target = self._target(agent)
        if target is None:
            self.wheel.cancel(agent)
        else:
            self.wheel.schedule(agent, target)
