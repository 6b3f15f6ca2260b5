"""The flapping breaker (SPEC §14): an agent that stalls again and again is not healed again
and again, which would be a restart storm. Pure: incident times in, verdicts out."""

from __future__ import annotations

import enum
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["FlapBreaker", "FlapPolicy", "FlapVerdict"]


@dataclass(frozen=True, slots=True)
class FlapPolicy:
    """Flapping: at least `incidents` incidents opened within `window` seconds."""

    incidents: int = 3
    window: float = 3600.0


class FlapVerdict(enum.Enum):
    FLAPPING = "agent_flapping"
    OVER = "agent_flapping_over"


@dataclass(slots=True)
class _Agent:
    opened: deque[float] = field(default_factory=deque)  # incident starts within the window
    open_now: bool = False
    last_end: float | None = None  # when the agent's last incident ended
    flapping: bool = False


class FlapBreaker:
    """Per agent: the recent incident openings and whether it is flapping.

    The incident that trips the breaker stops its ladder at once; while the agent flaps its
    incidents are detected and recorded but run no ladder, no recovery and send no alert.
    It stops flapping once a whole window passes without an incident, counted from the end
    of the last one (SPEC §17).
    """

    __slots__ = ("_agents", "policy")

    def __init__(self, policy: FlapPolicy) -> None:
        self.policy = policy
        self._agents: dict[str, _Agent] = {}

    def opened(self, agent: str, now: float) -> FlapVerdict | None:
        """An incident of `agent` opened at `now`; FLAPPING when this one trips the breaker."""
        state = self._agents.setdefault(agent, _Agent())
        state.open_now = True
        state.opened.append(now)
        self._expire(state, now)
        if not state.flapping and len(state.opened) >= self.policy.incidents:
            state.flapping = True
            return FlapVerdict.FLAPPING
        return None

    def closed(self, agent: str, now: float) -> None:
        """The incident of `agent` ended (recovered, resolved, or the agent went away)."""
        state = self._agents.get(agent)
        if state is None:
            return
        state.open_now = False
        state.last_end = now
        if not state.flapping and not state.opened:
            del self._agents[agent]

    def would_flap(self, agent: str, now: float) -> bool:
        """Whether an incident of `agent` opening at `now` finds it flapping, or trips it:
        asked before the decision, so that the tripping incident never starts its ladder."""
        state = self._agents.get(agent)
        if state is not None and state.flapping:
            return True
        horizon = now - self.policy.window
        recent = 0 if state is None else sum(1 for t in state.opened if t > horizon)
        return recent + 1 >= self.policy.incidents

    def recent(self, agent: str) -> int:
        """How many incidents of `agent` opened within the window (as of the last look)."""
        state = self._agents.get(agent)
        return 0 if state is None else len(state.opened)

    def replay(self, spans: Iterable[tuple[str, float, float | None]], now: float) -> list[str]:
        """Rebuild from the incident history after a restart: (agent, opened, closed or None
        while open), as if the breaker had seen them; returns the agents flapping at `now`."""
        by_agent: defaultdict[str, list[tuple[float, float | None]]] = defaultdict(list)
        for agent, opened, closed in spans:
            by_agent[agent].append((opened, closed))
        for agent, times in by_agent.items():
            for opened, closed in sorted(times, key=lambda t: t[0]):
                self._end_if_quiet(agent, opened)
                self.opened(agent, opened)
                if closed is not None:
                    self.closed(agent, closed)
        self.sweep(now)
        return self.flapping()

    def is_flapping(self, agent: str) -> bool:
        state = self._agents.get(agent)
        return state is not None and state.flapping

    def flapping(self) -> list[str]:
        return sorted(a for a, s in self._agents.items() if s.flapping)

    def forget(self, agent: str) -> None:
        """The agent's folder is gone: nothing of its past applies to a new one."""
        self._agents.pop(agent, None)

    def sweep(self, now: float) -> list[str]:
        """Agents whose flapping is over at `now` (a whole quiet window since the end of
        their last incident); also drops openings that left the window."""
        over = [agent for agent in list(self._agents) if self._end_if_quiet(agent, now)]
        for agent, state in list(self._agents.items()):
            if not state.flapping and not state.open_now and not state.opened:
                del self._agents[agent]
        return sorted(over)

    def next_sweep(self) -> float | None:
        """The earliest moment `sweep` can end a flapping (None: nothing can end by time)."""
        ends = [
            s.last_end + self.policy.window
            for s in self._agents.values()
            if s.flapping and not s.open_now and s.last_end is not None
        ]
        return min(ends) if ends else None

    def set_policy(self, policy: FlapPolicy) -> None:
        self.policy = policy

    def _end_if_quiet(self, agent: str, now: float) -> bool:
        """End the agent's flapping if a whole window has passed since its last incident
        ended; True when it ended. Drops openings that left the window."""
        state = self._agents.get(agent)
        if state is None:
            return False
        self._expire(state, now)
        if state.flapping and not state.open_now and state.last_end is not None and (
            now - state.last_end >= self.policy.window
        ):
            state.flapping = False
            return True
        return False

    def _expire(self, state: _Agent, now: float) -> None:
        horizon = now - self.policy.window
        while state.opened and state.opened[0] <= horizon:
            state.opened.popleft()
