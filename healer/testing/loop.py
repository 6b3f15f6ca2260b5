"""The daemon's other ports for tests: a recording alert sink, a queue of events the test
feeds, and a service manager that records what it was told."""

from __future__ import annotations

import collections
from collections.abc import Mapping
from dataclasses import dataclass, field
from threading import Event
from typing import Any

from healer.core.model import FolderEvent

__all__ = ["FakeChange", "FakeEvents", "RecordingAlerts", "RecordingNotifier"]


@dataclass
class RecordingAlerts:
    """An AlertSink that keeps every alert: `alerts` holds (agent, transition, details)."""

    alerts: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    restored: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    failed: int = 0
    dropped: int = 0
    closed: bool = False

    @property
    def sent(self) -> int:
        return len(self.alerts)

    def send(self, agent: str, transition: str, details: Mapping[str, Any] | None = None
             ) -> None:
        self.alerts.append((agent, str(transition), dict(details or {})))

    def deliveries(self) -> list[tuple[str, int, int, int]]:
        return [("memory", self.sent, self.failed, self.dropped)]

    def refreshes(self) -> list[tuple[str, int, int]]:
        return []

    def pending(self) -> int:
        return 0

    def restore(self, agent: str, transition: str, details: Mapping[str, Any] | None = None
                ) -> None:
        self.restored.append((agent, str(transition), dict(details or {})))

    def close(self, timeout: float = 0.0) -> None:
        self.closed = True


@dataclass(frozen=True, slots=True)
class FakeChange:
    agent: str
    when: float
    activity: bool = True
    folder: FolderEvent | None = None
    beat: bool = False


class FakeEvents:
    """An EventSource fed by the test: `push()` queues a change and sets `wake`."""

    def __init__(self) -> None:
        self.wake = Event()
        self.overflowed = Event()
        self.changes: collections.deque[FakeChange] = collections.deque()
        self.poll = False
        self.events_seen = 0
        self.restarts = 0
        self.dead = False
        self.started = self.closed = self.deferred = False
        self.watched: list[str] = []  # watch_agent's agents, in order

    def push(self, agent: str, when: float, activity: bool = True,
             folder: FolderEvent | None = None, *, beat: bool = False) -> None:
        self.events_seen += 1
        self.changes.append(FakeChange(agent, when, activity, folder, beat))
        self.wake.set()

    def start(self, *, defer: bool = False) -> None:
        self.started = True
        self.deferred = defer

    def watch_agent(self, agent: str) -> None:
        self.watched.append(agent)

    def alive(self) -> bool:
        return not self.dead

    def restart(self) -> None:
        self.restarts += 1
        self.dead = False

    def fall_back_if_full(self) -> bool:
        return False

    def drain(self, limit: int) -> list[FakeChange]:
        out: list[FakeChange] = []
        while self.changes and len(out) < limit:
            out.append(self.changes.popleft())
        return out

    def close(self) -> None:
        self.closed = True


@dataclass
class RecordingNotifier:
    """A ServiceManager that records each message; `watchdog` is the armed interval."""

    messages: list[str] = field(default_factory=list)
    watchdog: float | None = None

    def _note(self, message: str) -> bool:
        self.messages.append(message)
        return True

    def ready(self) -> bool:
        return self._note("READY=1")

    def ping(self) -> bool:
        return self._note("WATCHDOG=1")

    def stopping(self) -> bool:
        return self._note("STOPPING=1")

    def reloading(self) -> bool:
        return self._note("RELOADING=1")

    def status(self, text: str) -> bool:
        return self._note(f"STATUS={text}")

    def watchdog_interval(self) -> float | None:
        return self.watchdog
