"""Judging the swarm as a whole (SPEC §14): many agents in an incident at once is one outage
(a model API down, a shared tool hung), not a hundred stalls. Pure: counts in, verdicts out."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["SwarmJudge", "SwarmPolicy", "SwarmVerdict"]


@dataclass(frozen=True, slots=True)
class SwarmPolicy:
    """An outage holds while at least `outage_fraction` of the agents, and at least
    `min_agents` of them, are in an open incident."""

    outage_fraction: float = 0.5
    min_agents: int = 3

    def is_outage(self, in_incident: int, agents: int) -> bool:
        if agents <= 0 or in_incident < self.min_agents:
            return False
        return in_incident / agents >= self.outage_fraction


class SwarmVerdict(enum.Enum):
    """A change of the swarm's state; None from `update` means no change."""

    OUTAGE = "swarm_outage"
    RECOVERED = "swarm_recovered"


class SwarmJudge:
    """Holds whether an outage is on, and says when it starts and ends.

    `agents` counts every agent healer tracks (waiting and done ones included: they are
    part of the swarm); `in_incident` only those with an open incident.
    """

    __slots__ = ("_outage", "_peak", "policy", "since")

    def __init__(self, policy: SwarmPolicy) -> None:
        self.policy = policy
        self._outage = False
        self._peak = 0
        self.since: float | None = None  # when the current outage began

    @property
    def outage(self) -> bool:
        return self._outage

    @property
    def peak(self) -> int:
        """Most agents in an incident at once during the current (or last) outage."""
        return self._peak

    def update(self, in_incident: int, agents: int, now: float) -> SwarmVerdict | None:
        """Look at the counts after a step; a verdict only when the state flips."""
        holds = self.policy.is_outage(in_incident, agents)
        if holds:
            self._peak = max(self._peak, in_incident)
        if holds == self._outage:
            return None
        self._outage = holds
        if holds:
            self.since = now
            self._peak = in_incident
            return SwarmVerdict.OUTAGE
        self.since = None
        return SwarmVerdict.RECOVERED

    def set_policy(self, policy: SwarmPolicy) -> None:
        """New thresholds (config reload); the next update decides with them."""
        self.policy = policy
