"""Test fakes shipped with the package (as structlog ships `capture_logs`), one per port: a
clock that moves only when told, a memory workspace, status store and incident log, a queue
of events, and recording alerts, service manager and command runner."""

from __future__ import annotations

from typing import TYPE_CHECKING

from healer.testing.clock import FakeClock
from healer.testing.commands import RecordingCommandRunner
from healer.testing.history import MemoryIncidentLog
from healer.testing.loop import FakeChange, FakeEvents, RecordingAlerts, RecordingNotifier
from healer.testing.waits import MemoryWaitLog
from healer.testing.workspace import MemoryStatusStore, MemoryWorkspace

__all__ = [
    "FakeChange",
    "FakeClock",
    "FakeEvents",
    "MemoryIncidentLog",
    "MemoryStatusStore",
    "MemoryWaitLog",
    "MemoryWorkspace",
    "RecordingAlerts",
    "RecordingCommandRunner",
    "RecordingNotifier",
]

if TYPE_CHECKING:  # mypy checks here that each fake fits its port
    from healer import ports

    _clock: ports.Clock = FakeClock()
    _files: ports.StatusStore = MemoryStatusStore()
    _workspace: ports.WorkspaceReader = MemoryWorkspace()
    _log: ports.IncidentLog = MemoryIncidentLog()
    _waits: ports.WaitLog = MemoryWaitLog()
    _alerts: ports.AlertSink = RecordingAlerts()
    _events: ports.EventSource = FakeEvents()
    _manager: ports.ServiceManager = RecordingNotifier()
    _runner: ports.CommandRunner = RecordingCommandRunner()
