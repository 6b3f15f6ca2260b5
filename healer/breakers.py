"""The swarm judged as a whole and the flapping breaker, wired into the engine (SPEC §14): the
pure cores (healer.core.swarm, healer.core.flap) fed from the monitor, their verdicts logged
and alerted, and what they hold back (alerts, reassignments) released when they end."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import structlog

from healer.config import Config
from healer.core.flap import FlapBreaker, FlapPolicy, FlapVerdict
from healer.core.model import Transition
from healer.core.monitor import Monitor
from healer.core.swarm import SwarmJudge, SwarmPolicy, SwarmVerdict
from healer.fold import AlertFold

__all__ = ["Breakers", "flap_policy", "lookback"]

log = structlog.get_logger()

Span = tuple[str, float, float | None]  # agent, incident opened, closed (None: open)


def flap_policy(config: Config) -> FlapPolicy:
    return FlapPolicy(incidents=config.flap.incidents, window=config.flap.window)


def lookback(config: Config) -> float:
    """How far back the incident history is replayed into the breaker after a restart: two
    windows, so a flapping that tripped within the last window is rebuilt exactly."""
    return 2 * config.flap.window


def _swarm_policy(config: Config) -> SwarmPolicy:
    return SwarmPolicy(outage_fraction=config.swarm.outage_fraction,
                       min_agents=config.swarm.min_agents)


class Breakers:
    """What the engine asks at each step: is this agent flapping (its incidents then run
    no ladder), is the swarm in an outage (then no task is reassigned and the agents' alerts
    are folded), and what the end of either lets go."""

    def __init__(self, config: Config, monitor: Monitor, fold: AlertFold) -> None:
        self.config = config
        self._monitor = monitor
        self.fold = fold
        self.swarm = SwarmJudge(_swarm_policy(config))
        self.flap = FlapBreaker(flap_policy(config))
        fold.is_flapping = self.flap.is_flapping
        self._next_sweep = math.inf
        self._release_at: float | None = None  # a grace after an outage ended
        self._held_tasks: set[str] = set()  # agents whose reassignment an outage held back
        self._tasks_skipped = 0
        self._tripped: list[tuple[str, dict[str, Any]]] = []  # flapping alerts to send

    def restore(self, spans: Iterable[Span], now: float) -> list[str]:
        """Rebuild the breaker from the history at start; an agent still flapping keeps its
        Alertmanager alert open (nobody is told again)."""
        flapping = self.flap.replay(spans, now)
        for agent in flapping:
            details = self._flap_details(agent)
            log.warning("agent_flapping", agent=agent, restored=True, **details)
            if not self.config.dry_run:
                self.fold.restore(agent, Transition.FLAPPING, details)
        self._schedule_sweep(now)
        return flapping

    def reload(self, config: Config) -> None:
        self.config = config
        self.swarm.set_policy(_swarm_policy(config))
        self.flap.set_policy(flap_policy(config))

    # -- flapping ---------------------------------------------------------------------------
    def mutes(self, agent: str, now: float, *, opening: bool) -> bool:
        """True when the agent's decision at `now` must run no step: it is flapping, or the
        incident about to open trips the breaker (and so stops before its first rung)."""
        return self.flap.is_flapping(agent) or (opening and self.flap.would_flap(agent, now))

    def is_flapping(self, agent: str) -> bool:
        return self.flap.is_flapping(agent)

    def opened(self, agent: str, now: float) -> None:
        """An incident of `agent` opened: the breaker may trip."""
        if self.flap.opened(agent, now) is not FlapVerdict.FLAPPING:
            return
        details = self._flap_details(agent)
        log.warning("agent_flapping", agent=agent, **self._dry(), **details)
        # Sent once the swarm is judged: agents flapping together are a swarm outage's.
        self._tripped.append((agent, details))

    def closed(self, agent: str, when: float) -> None:
        """The agent's incident ended (its activity, a resolve, its folder gone)."""
        self.flap.closed(agent, when)
        self._held_tasks.discard(agent)
        if self.flap.is_flapping(agent):
            self._next_sweep = min(self._next_sweep, when + self.config.flap.window)

    # -- the swarm --------------------------------------------------------------------------
    def judge(self, now: float) -> None:
        """Count the agents in an open incident against the swarm (after detection, before
        the actions, so that the actions of this very step already see an outage)."""
        in_incident, agents = self._monitor.incident_count(), len(self._monitor.table)
        verdict = self.swarm.update(in_incident, agents, now)
        if verdict is not None:
            self._verdict(verdict, in_incident, agents, now)
        tripped, self._tripped = self._tripped, []
        for agent, details in tripped:
            self._send(agent, Transition.FLAPPING, details)

    def _verdict(self, verdict: SwarmVerdict, in_incident: int, agents: int, now: float) -> None:
        fraction = round(in_incident / agents, 3) if agents else 0.0
        facts = {"agents": in_incident, "fraction": fraction, "swarm_size": agents,
                 "swarm": self.config.swarm.name}
        if verdict is SwarmVerdict.OUTAGE:
            self.fold.outage = True
            self.fold.folded.clear()
            self._tasks_skipped = 0
            self._release_at = None
            log.error("swarm_outage", **self._dry(), **facts)
            self._send("", Transition.SWARM_OUTAGE, facts)
            return
        self.fold.outage = False
        folded = dict(sorted(self.fold.folded.items()))
        ended = {**facts, "peak": self.swarm.peak, "folded_alerts": sum(folded.values()),
                 "folded": folded, "reassignments_held": self._tasks_skipped}
        log.info("swarm_recovered", **self._dry(), **ended)
        self._send("", Transition.SWARM_RECOVERED, ended)
        # The agents that came back with the swarm do so within a heal_after or so; the ones
        # still silent then are stuck on their own, and are told of (and relieved of their
        # tasks) as usual. Told at once, they would be the very storm the fold avoided.
        self._release_at = now + self.config.heal_after

    def holds_tasks(self, agent: str) -> bool:
        """True when an outage holds back the agent's reassignment: there is nobody healthy
        to take its tasks. They move once the outage is over, if it is still silent then."""
        if not self.swarm.outage:
            return False
        self._held_tasks.add(agent)
        self._tasks_skipped += 1
        return True

    # -- the timer --------------------------------------------------------------------------
    def tick(self, now: float) -> list[str]:
        """Run what is due at `now`: flapping that is over, and a grace after an outage the
        alerts it folded; returns the agents whose held-back reassignment is due now."""
        if now >= self._next_sweep:
            for agent in self.flap.sweep(now):
                log.info("agent_flapping_over", agent=agent, window=self.config.flap.window,
                         **self._dry())
                self._send(agent, Transition.FLAPPING_OVER, {})
            self._schedule_sweep(now)
        if self._release_at is None or now < self._release_at or self.swarm.outage:
            return []
        self._release_at = None
        alerts = self.fold.release(lambda agent, slot, details: self._still_open(
            agent, slot, details, now))
        due = sorted(a for a in self._held_tasks if self._monitor.incident(a) is not None)
        self._held_tasks.clear()
        if alerts or due:
            log.info("swarm_outage_released", alerts=alerts, reassignments=len(due))
        return due

    # -- helpers ----------------------------------------------------------------------------
    def _still_open(self, agent: str, slot: str, details: dict[str, Any], now: float
                    ) -> dict[str, Any] | None:
        if slot != "incident":
            return details  # their closing would have dropped them from the fold
        incident = self._monitor.incident(agent)
        if incident is None:
            return None
        return {**details, "silent_for": round(max(0.0, now - incident.silence_start), 3)}

    def _schedule_sweep(self, now: float) -> None:
        # At least once a window, so the openings of agents that never flap are dropped.
        end = self.flap.next_sweep()
        self._next_sweep = min(math.inf if end is None else end, now + self.config.flap.window)

    def _flap_details(self, agent: str) -> dict[str, Any]:
        return {"incidents": self.flap.recent(agent), "window": self.config.flap.window}

    def _dry(self) -> dict[str, bool]:
        return {"dry_run": True} if self.config.dry_run else {}

    def _send(self, agent: str, transition: Transition, details: dict[str, Any]) -> None:
        if not self.config.dry_run:
            self.fold.send(agent, transition, details)
