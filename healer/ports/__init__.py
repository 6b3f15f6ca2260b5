"""The ports: what the engine, the pipelines and the daemon need from the world, as Protocols.
Adapters (healer/adapters) implement them, healer/testing has a fake of each, healer/wiring
plugs one into each; a new kind of I/O is one more Protocol here, or in a module beside it
re-exported here (ports/commands.py, ports/heartbeats.py, ports/service.py).
Past 300 lines: a dozen small Protocols, read together as the list of what healer needs."""

from __future__ import annotations

import collections
import enum
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from threading import Event
from typing import Any, Protocol

from healer.core.model import (
    FolderEvent,
    IncidentOutcome,
    Pipeline,
    Settlement,
    Stage,
    Transition,
)
from healer.ports.commands import CommandRunLog, CommandRunner
from healer.ports.heartbeats import HeartbeatRead, WaitLog
from healer.ports.service import ServiceManager

__all__ = [
    "AlertSink",
    "Change",
    "Clock",
    "CommandRunLog",
    "CommandRunner",
    "Counters",
    "Doc",
    "EventSource",
    "HeartbeatRead",
    "Identity",
    "IncidentLog",
    "IncidentRecord",
    "MetricsSink",
    "ReadKind",
    "Readings",
    "ScanResult",
    "ServiceManager",
    "StatusSnapshot",
    "StatusStore",
    "WaitLog",
    "WorkspaceReader",
    "Written",
]

Doc = dict[str, Any]
Identity = tuple[int, int, int]  # a file version: inode, mtime (ns), size


class Clock(Protocol):
    """Time, passed in so that tests move it by hand. `now()` is wall-clock epoch seconds
    (the scale of file mtimes and of every timestamp healer writes); `monotonic()` never
    steps; `wait()` is the sleep an event (a write, a signal) cuts short."""

    def now(self) -> float: ...

    def monotonic(self) -> float: ...

    def wait(self, event: Event, timeout: float) -> bool:
        """Block until `event` is set or `timeout` seconds pass; True if it was set."""
        ...


# -- the workspace ------------------------------------------------------------------------


class ReadKind(enum.StrEnum):
    """What one read of status.json found."""

    OK = "ok"
    MISSING = "missing"
    TOO_LARGE = "too_large"
    INVALID = "invalid"  # read, but not a JSON object healer can parse
    NOT_REGULAR = "not_regular"
    IO = "io"


class StatusSnapshot(Protocol):
    """One read of an agent's status.json: bad content is a kind, never an exception."""

    @property
    def kind(self) -> ReadKind: ...
    @property
    def doc(self) -> Doc | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def identity(self) -> Identity | None:
        """The version read (None when there was no file)."""
        ...


class Written(Protocol):
    """What an update of status.json did."""

    @property
    def backup(self) -> Path | None: ...


class StatusStore(Protocol):
    """The only way into an agent's folder for the actions: every write atomic, inside the
    root, never through a symlink, never over the agent's newer write. Under `dry_run`
    nothing is written, every call says what would have been."""

    @property
    def dry_run(self) -> bool: ...

    def read_status(self, agent: str) -> StatusSnapshot: ...

    def update_status(
        self, agent: str, transform: Callable[[Doc], Doc], *, backup: bool = False
    ) -> Written: ...

    def write_unique(
        self, agent: str, folder: str, namer: Callable[[Collection[str]], str], text: str
    ) -> Path:
        """A new file in `folder`, named by `namer(the names already there)`."""
        ...

    def write_marker(self, agent: str, text: str) -> Path: ...

    def remove_marker(self, agent: str) -> bool:
        """Remove the escalation marker; False when there was none."""
        ...

    def remove_stale_temps(self, agent: str, min_age: float) -> int: ...


class _Note(Protocol):
    @property
    def value(self) -> str: ...


class ScanResult(Protocol):
    """What a look at one agent's files found; `status_link` says what healer makes of a
    status.json that is a symlink (None when it is none)."""

    @property
    def last_activity(self) -> float | None: ...
    @property
    def created(self) -> float: ...
    @property
    def status_link(self) -> _Note | None: ...


class WorkspaceReader(Protocol):
    """The workspace without events: which agents exist, their last genuine activity (from
    mtimes, leaving out healer's own writes), their busy lease and their heartbeat."""

    def agents(self) -> list[str]: ...

    def scan(self, agent: str, now: float) -> ScanResult | None:
        """None when the agent's folder is gone."""
        ...

    def lease(self, agent: str, max_lease: float, written_at: float) -> float | None: ...

    def heartbeat(self, agent: str, known: Identity | None) -> HeartbeatRead: ...

    def prefetch(self, agents: list[str]) -> None:
        """These agents are decided soon: read now what that will read (again if changed)."""


class Change(Protocol):
    """One thing the event source saw: activity of an agent (or not), or an agent folder
    that appeared or went away; `beat` when the agent's heartbeat.json was written."""

    @property
    def agent(self) -> str: ...
    @property
    def when(self) -> float: ...
    @property
    def activity(self) -> bool: ...
    @property
    def folder(self) -> FolderEvent | None: ...
    @property
    def beat(self) -> bool: ...


class _Clearable(Protocol):
    def clear(self) -> None: ...


class EventSource(Protocol):
    """Filesystem events of the root, queued for the main loop; `wake` is set when there
    is something to drain, `overflowed` when events were lost."""

    @property
    def wake(self) -> Event: ...
    @property
    def overflowed(self) -> Event: ...
    @property
    def changes(self) -> _Clearable: ...
    @property
    def poll(self) -> bool: ...
    @property
    def events_seen(self) -> int: ...
    @property
    def restarts(self) -> int: ...

    def start(self, *, defer: bool = False) -> None: ...  # defer: agents by watch_agent

    def watch_agent(self, agent: str) -> None: ...

    def alive(self) -> bool: ...

    def restart(self) -> None: ...

    def fall_back_if_full(self) -> bool: ...

    def drain(self, limit: int) -> Sequence[Change]: ...

    def close(self) -> None: ...


# -- the history --------------------------------------------------------------------------


class IncidentRecord(Protocol):
    """An incident as the history holds it."""

    @property
    def id(self) -> int: ...
    @property
    def agent(self) -> str: ...
    @property
    def opened_at(self) -> float: ...
    @property
    def silence_started_at(self) -> float: ...
    @property
    def detected_at(self) -> float: ...
    @property
    def stage(self) -> str: ...
    @property
    def attempts(self) -> int: ...
    @property
    def last_attempt_at(self) -> float | None: ...
    @property
    def recovery_done(self) -> bool: ...


class IncidentLog(CommandRunLog, Protocol):
    """The durable history: incidents, actions, commands run, healer's own writes, last
    activity, and (`waits`) the agents' waits. Every method may raise StoreError."""

    @property
    def waits(self) -> WaitLog: ...

    def open_incident(
        self, agent: str, *, opened_at: float, silence_started_at: float, stage: Stage,
        detected_at: float | None = None,
    ) -> int: ...

    def update_incident(
        self, incident_id: int, *, stage: Stage | None = None, attempts: int | None = None,
        last_attempt_at: float | None = None, recovery_done: bool | None = None,
        at: float | None = None,
    ) -> bool: ...

    def close_incident(
        self, incident_id: int, *, closed_at: float, outcome: IncidentOutcome
    ) -> bool: ...

    def open_incidents(self) -> Sequence[IncidentRecord]: ...

    def open_incident_for(self, agent: str) -> IncidentRecord | None: ...

    def incident_spans(self, since: float) -> Sequence[tuple[str, float, float | None]]:
        """(agent, opened_at, closed_at or None) of the incidents open, or closed after
        `since`, oldest first: what the flapping breaker is rebuilt from."""
        ...

    def last_resolved(self) -> dict[str, float]: ...

    def record_action(
        self, *, ts: float, agent: str, incident_id: int | None, pipeline: Pipeline, action: str,
        attempt: int, applied_ok: bool, error: str | None = None,
    ) -> int: ...

    def settle_action(self, action_id: int, outcome: Settlement) -> bool: ...

    def action_id_for(self, incident_id: int, attempt: int) -> int | None: ...

    def record_reassignment(
        self, *, ts: float, from_agent: str, to_agent: str, tasks: int,
        to_status: Identity | None,
    ) -> None: ...

    def tasks_sent(self, to_agent: str, to_status: Identity) -> int: ...

    def note_self_write(self, path: str, ino: int, mtime_ns: int, size: int, ts: float) -> None:
        ...

    def self_writes(self) -> dict[str, tuple[int, int, int]]: ...

    def save_last_activity(self, activities: Mapping[str, float]) -> None: ...

    def last_activities(self) -> dict[str, float]: ...

    def stats(self, recent: int = 20) -> dict[str, Any]: ...

    def prune(self, older_than: float) -> int: ...

    def close(self) -> None: ...


# -- the operator -------------------------------------------------------------------------


class AlertSink(Protocol):
    """Tells humans of an incident transition, off the detection path: `send` never blocks.
    The counts are deliveries, for the metrics."""

    @property
    def sent(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def dropped(self) -> int: ...

    def deliveries(self) -> list[tuple[str, int, int, int]]:
        """Per target: name, sent, failed, dropped."""
        ...

    def refreshes(self) -> list[tuple[str, int, int]]:
        """Per Alertmanager target: name, re-sends that worked, that failed."""
        ...

    def pending(self) -> int:
        """Alerts queued or being delivered right now."""
        ...

    def send(
        self, agent: str, transition: Transition, details: Mapping[str, Any] | None = None
    ) -> None: ...

    def restore(
        self, agent: str, transition: Transition, details: Mapping[str, Any] | None = None
    ) -> None:
        """An incident carried over a restart that humans heard of: its alert stays open."""
        ...

    def close(self, timeout: float) -> None: ...


@dataclass(slots=True)
class Counters:
    """What the engine has done since it started (the metrics' counters). The seconds are
    sums: MTTD and MTTR are a sum over its count."""

    heal_actions: int = 0
    recovery_actions: int = 0
    escalations: int = 0
    recoveries: int = 0
    incidents_opened: int = 0
    detection_seconds: float = 0.0  # silence at detection, per incident opened
    recovery_seconds: float = 0.0  # detection to the agent's return, per recovery
    # Actions by (pipeline, action, applied without error).
    results: collections.Counter[tuple[str, str, bool]] = field(
        default_factory=collections.Counter
    )


@dataclass(frozen=True, slots=True)
class Readings:
    """The daemon's state at one moment, as the metrics read it at scrape time."""

    now: float
    agents: tuple[tuple[str, float, Stage], ...]  # agent, last activity, stage
    counters: Counters
    events_seen: int
    sweeps: int
    observer_restarts: int
    alerts_sent: int
    alerts_failed: int
    alerts_dropped: int
    alerts_pending: int = 0
    deliveries: tuple[tuple[str, int, int, int], ...] = ()  # target, sent, failed, dropped
    refreshes: tuple[tuple[str, int, int], ...] = ()  # Alertmanager target, ok, failed
    overflows: int = 0  # kernel event-queue overflows, each answered by a rescan
    observer_up: bool = True
    history_paused: bool = False
    history_failures: int = 0


class MetricsSink(Protocol):
    """The metrics endpoint: fed one sample per batch of changes, closed at the end."""

    def observe_changes(self, changes: Sequence[Change], now: float) -> None: ...

    def close(self) -> None: ...
