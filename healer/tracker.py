"""Membership and activity: which agents exist and when each was last genuinely active,
from the start-up scan, the events, the reconcile sweep and the history, on the engine's
(monotonic) clock."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Protocol

import structlog

from healer.core.activity import merged_last_activity
from healer.core.model import IncidentOutcome
from healer.core.monitor import Monitor
from healer.core.policy import Incident, Policy
from healer.history import History, Loaded, incident_from_row
from healer.ports import IncidentRecord, StatusStore, WorkspaceReader
from healer.timeline import FileTimes, Timeline

__all__ = ["STALE_TEMP_AGE", "IncidentEnds", "Tracker"]

log = structlog.get_logger()

# A temp file of healer's older than this is a crash's leftover, not a write in progress
# (of the daemon, say, while `check --now` starts beside it): writes take milliseconds.
STALE_TEMP_AGE = 60.0
# A scan's times uncapped: the mtimes go to FileTimes raw, which places the future itself.
RAW = math.inf

class IncidentEnds(Protocol):
    """What the tracker hands on (the executor): an incident ended by the agent's
    activity, one resumed over a restart, one ended without the agent."""

    def recovered(self, agent: str, incident: Incident, when: float) -> None: ...

    def resumed(self, agent: str, incident: Incident, now: float) -> None: ...

    def resolved(self, agent: str) -> None: ...


class Tracker:
    """Keeps the monitor's table in step with the workspace; what ends or resumes an
    incident is handed to `ends`."""

    def __init__(
        self,
        timeline: Timeline,
        monitor: Monitor,
        workspace: WorkspaceReader,
        files: StatusStore,
        history: History,
        policy_for: Callable[[str], Policy],
        ends: IncidentEnds,
        *,
        cleans_temps: bool,
    ) -> None:
        self._time = timeline
        self._file_times = FileTimes(timeline)
        self._monitor = monitor
        self._workspace = workspace
        self._files = files
        self._history = history
        self._policy_for = policy_for
        self._ends = ends
        # Only an engine that may write cleans up after a crashed one (a read-only check not).
        self._cleans_temps = cleans_temps
        # The start-up scan, which `watch` spreads over its first steps (begin, start_some).
        self._loaded: Loaded | None = None
        self._carried: dict[str, IncidentRecord] = {}
        self._pending: deque[str] = deque()

    def start(self) -> int:
        """Initial scan: every agent's last activity from its files and the history."""
        self.begin()
        self.start_some()
        return len(self._monitor.table)

    def begin(self) -> int:
        """The history and the list of agents; start_some scans them. Returns how many."""
        self._loaded = self._history.load()
        self._carried = dict(self._loaded.open_incidents)
        self._pending = deque(self._workspace.agents())
        return len(self._pending)

    def starting(self) -> bool:
        return self._loaded is not None  # set by begin(), cleared once _pending is done

    def start_some(
        self, budget: float | None = None, before: Callable[[str], None] | None = None
    ) -> list[str]:
        """Scan the agents begin() listed, until `budget` seconds are spent (None: all),
        each after `before(agent)` (watch its folders); returns the ones taken up. The
        last call closes the incidents of folders gone."""
        loaded = self._loaded
        if loaded is None:
            return []
        began = self._time.now()
        added: list[str] = []
        while self._pending:
            agent = self._pending.popleft()
            if before is not None:
                before(agent)
            if self._cleans_temps:
                self._files.remove_stale_temps(agent, STALE_TEMP_AGE)
            if self.add_agent(agent, loaded.last_activities.get(agent),
                              self._carried.pop(agent, None), starting=True):
                added.append(agent)
            self._honour_resolve(agent, loaded.resolved.get(agent))
            if budget is not None and self._time.now() - began >= budget:
                return added
        for row in self._carried.values():  # the agent's folder is gone
            self._history.close_row(row.id, IncidentOutcome.RESOLVED)
        self._loaded = None
        self._carried = {}
        return added

    def _honour_resolve(self, agent: str, resolved_at: float | None) -> None:
        """An operator resolved this agent while no daemon ran: like a running daemon, wait
        a fresh `heal_after` from the resolve before healing a silence that goes on."""
        last = self._monitor.table.get(agent)
        if resolved_at is None or last is None or self._monitor.incident(agent) is not None:
            return
        if resolved_at > last:
            self._monitor.resolve(agent, resolved_at)

    def add_agent(
        self,
        agent: str,
        stored: float | None = None,
        row: IncidentRecord | None = None,
        *,
        starting: bool = False,
        at: float | None = None,
    ) -> bool:
        """Track `agent`: at start-up from its files (`stored` and `row` from the history),
        while running from its folder's appearance (`at`, else now)."""
        now = self._time.now()
        found = self._workspace.scan(agent, RAW)
        if found is None or agent in self._monitor:
            return False
        if starting:
            times = self._file_times
            # An open incident's silence start is the agent's last activity as healer knew
            # it (its status.json may since hold healer's own write, which the scan leaves out).
            opened = row.silence_started_at if row is not None else None
            last = merged_last_activity(
                times.at_start(agent, found.last_activity, now), stored, opened, now=now
            )
            if last is None:
                last = self._time.wall_age(found.created)  # no files: the folder's own time
        else:
            # A new agent's clock starts when its folder appears, never at its files' mtimes:
            # a folder moved or copied in with day-old files is not a day silent.
            self._file_times.appeared(agent, found.last_activity, now)
            last = now if at is None else min(at, now)
            if found.last_activity is not None:
                # But a write after it is the agent's own work: the folder event may be taken
                # up late (a flood, a stopped process), its files already newer; those files
                # are the baseline from here on, so this is the only time they can count.
                last = max(last, min(self._time.wall_age(found.last_activity), now))
        incident = None
        if row is not None:
            incident = incident_from_row(row, self._policy_for(agent))
            self._history.adopt(agent, row.id)
        if not self._monitor.add(agent, last, incident) and incident is not None:
            self._ends.recovered(agent, incident, last)
        elif incident is not None:
            self._ends.resumed(agent, incident, now)
        if not starting:
            log.info("agent_added", agent=agent)
        return True

    def remove_agent(self, agent: str) -> None:
        self._file_times.forget(agent)
        if self._monitor.remove(agent) is not None:
            self._history.close(agent, IncidentOutcome.RESOLVED)
            self._ends.resolved(agent)
        log.info("agent_removed", agent=agent)

    def reconcile(self) -> tuple[int, int]:
        """List the root for agents whose creation or removal was missed; cheap by design:
        one directory listing, no per-agent I/O for the agents already known."""
        present = set(self._workspace.agents()).difference(self._pending)  # not yet scanned
        known = set(self._monitor.table)
        added = removed = 0
        for agent in sorted(present - known):
            added += self.add_agent(agent)
        for agent in sorted(known - present):
            self.remove_agent(agent)
            removed += 1
        if self._history.recording and self._monitor.incidents():
            self._pick_up_resolves()
        return added, removed

    def rescan(self) -> None:
        """After lost events (queue overflow): re-stat every agent; time only moves forward."""
        self.reconcile()
        for agent in list(self._monitor.table):
            self.restat(agent)

    def restat(self, agent: str) -> bool:
        """Look at the agent's files for activity the events missed; False if it is gone."""
        looked = self._time.now()
        found = self._workspace.scan(agent, RAW)
        if found is None:
            return False
        when = self._file_times.activity(
            agent, found.last_activity, self._monitor.table.get(agent), looked
        )
        if when is not None:
            self.observe(agent, when)
        return True

    def observe(self, agent: str, when: float) -> None:
        """Genuine activity of `agent` at `when`."""
        closed = self._monitor.observe(agent, when)
        if closed is not None:
            self._ends.recovered(agent, closed, when)

    def _pick_up_resolves(self) -> None:
        """`healer resolve` closes incidents in the history; the daemon follows it here."""
        still_open = self._history.open_ids()
        if still_open is None:
            return
        for agent in self._monitor.incidents():
            row_id = self._history.id_of(agent)
            if row_id is not None and row_id not in still_open:
                self._monitor.resolve(agent, self._time.now())
                self._history.forget(agent)
                log.info("incident_resolved", agent=agent, incident=row_id)
                self._ends.resolved(agent)
