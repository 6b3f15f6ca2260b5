"""What operators read, never written through: the engine's view for `check` and the
metrics, and the per-agent rows of `status` taken from the files and the history alone
(so it answers whether or not a daemon runs)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from healer.breakers import flap_policy, lookback
from healer.config import Config
from healer.core.activity import merged_last_activity
from healer.core.flap import FlapBreaker
from healer.core.heartbeat import Heartbeat, parse_heartbeat
from healer.core.isotime import iso
from healer.core.model import Pipeline, Stage
from healer.core.monitor import Monitor
from healer.core.policy import Policy, stage_of
from healer.core.timebase import active_since
from healer.core.waiting import beat_is_newest, held_stage
from healer.ports import Counters, IncidentLog, IncidentRecord, ScanResult, WorkspaceReader
from healer.ports.heartbeats import WaitRecord

__all__ = ["EngineView", "Stalled", "status_rows"]


@dataclass(frozen=True, slots=True)
class Stalled:
    """An agent silent past a threshold, or with an open incident (`check`)."""

    agent: str
    silent_for: float
    pipeline: Pipeline


class EngineView:
    """Read-only questions about the engine's state."""

    def __init__(
        self, monitor: Monitor, policy_for: Callable[[str], Policy], counters: Counters,
        *, flapping: Callable[[str], bool] = lambda _agent: False,
    ) -> None:
        self._monitor = monitor
        self._policy_for = policy_for
        self.counters = counters
        self._flapping = flapping

    def agents(self) -> list[tuple[str, float]]:
        """Every tracked agent with its last activity, by name."""
        return sorted(self._monitor.table.items())

    def stalled(self, now: float) -> list[Stalled]:
        """Agents silent past a threshold or with an open incident, by name."""
        out = []
        for agent, last in self.agents():
            if self._monitor.parked(agent) is not None:
                continue  # waiting on a human, or done: silence is what it said it would be
            silent = now - last
            in_incident = self._monitor.incident(agent) is not None
            pipeline = self._policy_for(agent).pipeline_for(silent, in_incident)
            if pipeline is not None:
                out.append(Stalled(agent, round(silent, 3), pipeline))
        return out

    def escalated(self) -> list[str]:
        return sorted(a for a, i in self._monitor.incidents().items() if i.escalated)

    def held(self) -> list[tuple[str, Stage]]:
        """Agents waiting on a human or done, by name."""
        monitor = self._monitor
        return sorted((a, s) for a in monitor.table if (s := monitor.parked(a)) is not None)

    def held_count(self) -> int:
        """Agents waiting or done: in the swarm's size, never in an incident (SPEC §17)."""
        return self._monitor.parked_count()

    def stages(self, now: float) -> tuple[tuple[str, float, Stage], ...]:
        """Every agent with its last activity and stage at `now` (for the metrics)."""
        monitor = self._monitor
        return tuple((a, last, _flapped(monitor.stage(a, now), self._flapping(a)))
                     for a, last in monitor.table.items())


def _flapped(stage: Stage, flapping: bool) -> Stage:
    """A flapping agent's stage says so (it is not being healed), unless it is escalated,
    or waiting on a human or done: what it said of itself is what a human acts on."""
    kept = (Stage.ESCALATED, Stage.WAITING, Stage.DONE)
    return Stage.FLAPPING if flapping and stage not in kept else stage


def _iso(when: float | None) -> str | None:
    return None if when is None else iso(when)


def status_rows(
    config: Config, workspace: WorkspaceReader, history: IncidentLog | None, now: float
) -> list[dict[str, Any]]:
    """SPEC §9 `status --json` rows: every agent with last activity, silence, stage,
    attempts and lease."""
    stored: dict[str, float] = {}
    incidents: dict[str, IncidentRecord] = {}
    waits: dict[str, WaitRecord] = {}
    flapping: set[str] = set()
    if history is not None:
        stored = history.last_activities()
        incidents = {row.agent: row for row in history.open_incidents()}
        waits = {row.agent: row for row in history.waits.open_waits()}
        # The daemon's breaker, rebuilt the way a restarted daemon rebuilds it.
        spans = history.incident_spans(now - lookback(config))
        flapping = set(FlapBreaker(flap_policy(config)).replay(spans, now))
    rows = []
    for agent in workspace.agents():
        found = workspace.scan(agent, now)
        if found is None:
            continue
        row = incidents.get(agent)
        opened = row.silence_started_at if row is not None else None
        last = merged_last_activity(found.last_activity, stored.get(agent), opened, now=now)
        if row is not None and last is not None and active_since(last, row.silence_started_at):
            # The agent wrote after its silence began: the incident is over, only not yet
            # closed (healer is down, or about to see the event). Report what the files say.
            row = None
        lease = workspace.lease(agent, config.max_busy_lease, last) if last is not None else None
        busy = lease is not None and lease > now
        beat, held, since = _heartbeat(workspace, agent, found, waits.get(agent))
        # An open incident's stage is the one on record; then what the agent's newest beat
        # says (waiting, done); else the core's rule.
        stage = Stage(row.stage) if row is not None else held or stage_of(None, busy=busy)
        stage = _flapped(stage, agent in flapping)
        rows.append({
            "agent": agent,
            "last_activity": _iso(last),
            "silent_for": round(now - last, 3) if last is not None else None,
            "stage": stage.value,
            "attempts": row.attempts if row is not None else 0,
            "busy_until": _iso(lease) if busy else None,
            "waiting_since": _iso(since) if stage is Stage.WAITING else None,
            "message": beat.message if beat is not None else None,
            **({"note": found.status_link.value} if found.status_link is not None else {}),
        })
    return rows


def _heartbeat(workspace: WorkspaceReader, agent: str, found: ScanResult,
               wait: WaitRecord | None) -> tuple[Heartbeat | None, Stage | None, float | None]:
    """The agent's readable heartbeat, the stage it holds the agent in (waiting, done; only
    while it is the newest activity on file) and since when: the wait on record keeps the
    start of a wait that repeated beats go on saying."""
    read = workspace.heartbeat(agent, None)
    parsed = parse_heartbeat(read.data) if read.data is not None else None
    beat = parsed if isinstance(parsed, Heartbeat) else None
    if beat is None or not beat_is_newest(read.mtime, found.last_activity):
        return beat, None, None
    stage = held_stage(beat.state)
    since = read.mtime
    if stage is Stage.WAITING and wait is not None and since is not None:
        since = min(since, wait.started_at)
    return beat, stage, since
