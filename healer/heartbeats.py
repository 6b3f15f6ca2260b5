"""Waiting and done in the engine (SPEC §12, §17): heartbeat.json read when the agent writes
it, looked at again before a stall and in the sweep; the agent's hold kept in the monitor
(no detection while it holds), its waits on record, and each wait's one alert. Times are the
engine's (monotonic); a beat the events missed is placed by the tracker's re-stat.
Past 300 lines: reading a beat, holding on it and its waits' records are one state."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Protocol

import structlog

from healer.config import Config
from healer.core.heartbeat import Heartbeat, Invalid, parse_heartbeat
from healer.core.isotime import iso
from healer.core.model import Stage, Transition
from healer.core.monitor import Monitor
from healer.core.waiting import Hold, Signal, beat_is_newest, next_hold, signal_of
from healer.history import CarriedWait, History
from healer.ports import Identity, WorkspaceReader
from healer.timeline import Timeline

__all__ = ["Announce", "Heartbeats"]

log = structlog.get_logger()

Observe = Callable[[str, float], None]
Restat = Callable[[str], bool]


class Announce(Protocol):
    """The executor's way to the operator (alerts, `on:` commands); `carried`: an alert open
    before a restart, kept open and told to nobody again."""

    def __call__(self, agent: str, transition: Transition, details: Mapping[str, Any], *,
                 carried: bool = False) -> None: ...


class Heartbeats:
    """What each agent last said in heartbeat.json, and its hold. `observe` and `restat`
    are the tracker's (the activity table, an incident closed; a write the events missed
    placed on the engine's clock): every beat is activity first."""

    def __init__(self, config: Config, timeline: Timeline, monitor: Monitor,
                 workspace: WorkspaceReader, history: History, *, observe: Observe,
                 restat: Restat, announce: Announce) -> None:
        self.config = config
        self._time = timeline
        self._monitor = monitor
        self._workspace = workspace
        self._history = history
        self._observe = observe
        self._restat = restat
        self._announce = announce
        self._known: dict[str, Identity | None] = {}  # the version of heartbeat.json read last
        self._said: dict[str, Heartbeat | None] = {}  # what it said (None: nothing readable)
        self._holds: dict[str, Hold] = {}
        self._wait_ids: dict[str, int | None] = {}
        # While held: the agent's last activity as this module saw it. Activity that reached
        # the table another way (a rescan) is newer than this, and ends the hold.
        self._seen: dict[str, float] = {}
        self._invalid: set[str] = set()  # agents whose bad heartbeat.json was logged
        self._rows: dict[str, CarriedWait] = {}  # open waits on record, until start-up ends

    # -- reading -----------------------------------------------------------------------------
    def _look(self, agent: str) -> tuple[bool, Signal, str | None, float | None]:
        """(changed since last read, its signal, its message, its mtime)."""
        known = self._known.get(agent)
        read = self._workspace.heartbeat(agent, known)
        changed = read.identity != known
        if read.identity is None:  # none (any more), or unreadable: what it said is gone
            self._known.pop(agent, None)
            self._said.pop(agent, None)
            if read.error:
                self._invalid_once(agent, read.error)
            return changed, Signal.ACTIVITY, None, read.mtime
        if read.data is None and read.error is None:  # the version already read
            said = self._said.get(agent)
        elif read.data is not None and not read.data.strip():
            # Empty: a writer that truncates first is half way through. Read it again at its
            # next event rather than take the moment for a new state.
            said = self._said.get(agent)
            return changed, signal_of(said.state if said else None), None, read.mtime
        else:
            parsed = parse_heartbeat(read.data) if read.data is not None else Invalid(
                read.error or "heartbeat.json could not be read")
            self._known[agent] = read.identity
            if isinstance(parsed, Invalid):
                self._said[agent] = None
                self._invalid_once(agent, parsed.reason)
                return changed, Signal.ACTIVITY, None, read.mtime
            self._said[agent] = said = parsed
            self._invalid.discard(agent)  # a later problem is news again
        state = said.state if said is not None else None
        return changed, signal_of(state), said.message if said else None, read.mtime

    def _invalid_once(self, agent: str, reason: str) -> None:
        if agent not in self._invalid:
            self._invalid.add(agent)
            log.warning("heartbeat_invalid", agent=agent, error=reason)

    # -- the engine's hooks ------------------------------------------------------------------
    def start(self) -> None:
        """After the start-up scan: each agent's heartbeat read once, its hold taken up when
        the beat is its newest activity; a wait open on record resumes where it was."""
        self.begin()
        self.started(list(self._monitor.table))
        self.finish()

    def begin(self) -> None:
        self._rows = self._history.open_waits()

    def started(self, agents: list[str]) -> None:
        """Agents the start-up scan took up (watch spreads it over steps)."""
        for agent in agents:
            last = self._monitor.table.get(agent)
            if last is not None:
                self._adopt(agent, last, self._rows.pop(agent, None))

    def finish(self) -> None:
        now = self._time.now()
        for row in self._rows.values():  # the agent's folder is gone
            self._history.close_wait(row.id, now)
        self._rows = {}

    def added(self, agent: str) -> None:
        """An agent found at runtime: its heartbeat is read, and holds if it is the newest."""
        last = self._monitor.table.get(agent)
        if last is not None:
            self._adopt(agent, last, None, appeared=True)

    def activity(self, agent: str, when: float, beat: bool) -> None:
        """Genuine activity of `agent` (`beat`: heartbeat.json was written): the table and an
        open incident first, then its hold."""
        if not beat and agent not in self._holds:
            self._observe(agent, when)  # the common case, at every event: nothing else
            return
        # A held agent's activity is looked at even unmarked (an event source that does not
        # tell heartbeat.json apart): another waiting beat must not end its wait.
        changed, signal, message, _ = self._look(agent)
        if not beat and not changed:
            signal, message = Signal.ACTIVITY, None
        self._observe(agent, when)
        self._apply(agent, signal, when, message)

    def recheck(self, agent: str, now: float) -> bool:
        """Before a due agent is decided (after its re-stat): a beat the events missed is
        taken up, a hold that missed activity ended is ended, a wait owed its alert gets it.
        True while it holds: nothing else is decided for it."""
        changed, signal, message, mtime = self._look(agent)
        if agent not in self._holds:
            if not changed or signal is Signal.ACTIVITY or not self._newest(agent, mtime):
                return False  # no beat the events missed, or the agent wrote after it
            # The re-stat placed the agent's newest write, this beat, on the table.
            self._apply(agent, signal, self._last(agent), message)
            return agent in self._holds
        self._catch_up(agent, changed, signal, message, mtime)
        hold = self._holds.get(agent)
        if hold is None:
            return False
        due = hold.alert_at(self.config.waiting_alert_after)
        if due is not None and now >= due:
            self._alert(agent, hold, now)
        return True

    def sweep(self) -> None:
        """The reconcile sweep (and a rescan): every held agent's heartbeat looked at again,
        and activity that reached the table without passing here ends its hold."""
        for agent in [a for a in self._known if a not in self._monitor]:
            self._forget(agent)  # its folder is gone
        for agent in list(self._holds):
            if agent not in self._monitor:
                self._forget(agent)
                continue
            changed, signal, message, mtime = self._look(agent)
            self._catch_up(agent, changed, signal, message, mtime)

    def reload(self, config: Config) -> None:
        """A new `waiting_alert_after` applies to the waits not yet alerted."""
        self.config = config
        for agent, hold in self._holds.items():
            self._monitor.park(agent, hold.stage, hold.alert_at(config.waiting_alert_after))

    # -- views -------------------------------------------------------------------------------
    def hold(self, agent: str) -> Hold | None:
        return self._holds.get(agent)

    def holds(self) -> dict[str, Hold]:
        return dict(self._holds)

    # -- the hold ----------------------------------------------------------------------------
    def _adopt(self, agent: str, last: float, row: CarriedWait | None, *,
               appeared: bool = False) -> None:
        _, signal, message, mtime = self._look(agent)
        if signal is Signal.ACTIVITY or not self._newest(agent, mtime):
            if row is not None:  # it ended while no healer ran: at the activity that ended it
                self._history.close_wait(row.id, max(last, row.started_at))
            return
        assert mtime is not None  # _newest says so
        since = self._time.wall_age(mtime)  # the beat's moment, by its age
        if appeared:  # a folder copied in with its beat: like its clock, from its appearance
            since = max(since, last)
        if signal is not Signal.WAITING or row is None:
            if row is not None:
                self._history.close_wait(row.id, since)
            self._apply(agent, signal, since, message, quiet=not appeared)
            return
        # The same wait, carried over a restart: its start and its alert are kept.
        hold = Hold(Stage.WAITING, min(row.started_at, since), message or row.message,
                    alerted=row.alerted)
        if not self._monitor.park(agent, hold.stage,
                                  hold.alert_at(self.config.waiting_alert_after)):
            self._history.close_wait(row.id, since)
            return
        self._holds[agent], self._wait_ids[agent], self._seen[agent] = hold, row.id, last
        log.debug("agent_waiting", agent=agent, message=hold.message,
                  since=self._iso(hold.since), resumed=True)
        if hold.alerted:
            self._announce(agent, Transition.WAITING, self._details(hold, self._time.now()),
                           carried=True)

    def _newest(self, agent: str, mtime: float | None) -> bool:
        """Whether a beat written at `mtime` is the agent's newest write on file. Its files'
        raw mtimes, not the table: that holds the moments healer saw the events."""
        if mtime is None:
            return False
        found = self._workspace.scan(agent, math.inf)
        return beat_is_newest(mtime, found.last_activity if found is not None else None)

    def _last(self, agent: str) -> float:
        last = self._monitor.table.get(agent)
        return self._time.now() if last is None else last

    def _catch_up(self, agent: str, changed: bool, signal: Signal, message: str | None,
                  mtime: float | None) -> None:
        """A held agent looked at again: a beat the events missed (placed by a re-stat), or
        activity that reached the table another way (a re-stat, which reads files: so it
        was another file's write only if the beat is no longer the newest on file; else
        the re-stat placed the beat itself anew)."""
        last = self._last(agent)
        if changed:
            self._restat(agent)
            self._apply(agent, signal, self._last(agent), message)
        elif last > self._seen.get(agent, math.inf):
            if self._newest(agent, mtime):
                self._seen[agent] = last
            else:
                self._apply(agent, Signal.ACTIVITY, last, None)

    def _apply(self, agent: str, signal: Signal, when: float, message: str | None, *,
               quiet: bool = False) -> None:
        change = next_hold(self._holds.get(agent), signal, when, message)
        if change.ended is not None:
            self._end(agent, change.ended, when)
        hold = change.hold
        if hold is None:
            return
        if change.started:
            due = hold.alert_at(self.config.waiting_alert_after)
            if not self._monitor.park(agent, hold.stage, due):
                return  # an incident the activity did not close (an older stamp): no hold
            self._begin(agent, hold, quiet)
        self._holds[agent] = hold
        self._seen[agent] = max(when, self._monitor.table.get(agent) or when)

    def _begin(self, agent: str, hold: Hold, quiet: bool) -> None:
        # Holds found at start-up are what the files say, as agents are not `agent_added`
        # then either: debug, so a one-shot `check` prints only its report.
        say = log.debug if quiet else log.info
        if hold.stage is Stage.WAITING:
            self._wait_ids[agent] = self._history.open_wait(agent, hold.since, hold.message)
            say("agent_waiting", agent=agent, message=hold.message, since=self._iso(hold.since))
        else:
            say("agent_done", agent=agent, message=hold.message, since=self._iso(hold.since))

    def _end(self, agent: str, hold: Hold, when: float) -> None:
        self._holds.pop(agent, None)
        self._seen.pop(agent, None)
        self._monitor.unpark(agent)
        held_for = round(max(0.0, when - hold.since), 3)
        if hold.stage is Stage.DONE:
            log.info("agent_done_over", agent=agent, done_for=held_for)
            return
        self._history.close_wait(self._wait_ids.pop(agent, None), when)
        log.info("agent_waiting_over", agent=agent, waited=held_for, alerted=hold.alerted)
        if hold.alerted:  # end the operator's open alert (Alertmanager's AgentWaiting)
            self._announce(agent, Transition.WAITING_OVER, {"waited": held_for})

    def _alert(self, agent: str, hold: Hold, now: float) -> None:
        hold = replace(hold, alerted=True)
        self._holds[agent] = hold
        self._monitor.park(agent, hold.stage, None)  # one alert per wait: no timer after it
        self._history.wait_alerted(self._wait_ids.get(agent), now)
        details = self._details(hold, now)
        log.warning("waiting_alert", agent=agent, waiting_for=details["waiting_for"],
                    message=hold.message)
        self._announce(agent, Transition.WAITING, details)

    def _forget(self, agent: str) -> None:
        """The agent's folder is gone: its hold ends without it."""
        hold = self._holds.get(agent)
        if hold is not None:
            self._end(agent, hold, self._time.now())
        for book in (self._known, self._said, self._wait_ids):
            book.pop(agent, None)
        self._invalid.discard(agent)

    def _iso(self, t: float) -> str:
        return iso(self._time.to_wall(t))

    def _details(self, hold: Hold, now: float) -> dict[str, Any]:
        return {"waiting_for": round(max(0.0, now - hold.since), 3),
                "since": self._iso(hold.since), "message": hold.message}
