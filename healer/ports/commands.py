"""The ports of operator commands (SPEC §13): the runner that executes them off the caller's
thread, and the history's record of what each run did."""

from __future__ import annotations

from threading import Event
from typing import Protocol

from healer.core.commands import CommandKind, CommandRequest, CommandResult

__all__ = ["CommandRunLog", "CommandRunner"]


class CommandRunner(Protocol):
    """Runs commands without ever blocking the caller; `wake` is set when a result is ready.
    Every submitted run gets exactly one result, carrying the very request submitted, also
    when it could not start or was killed."""

    wake: Event

    def submit(self, request: CommandRequest) -> None: ...

    def drain(self) -> list[CommandResult]: ...

    def close(self, timeout: float = 5.0) -> None: ...


class CommandRunLog(Protocol):
    """The history's side: one row per finished run; a rung's run is linked to its action,
    whose `applied_ok` becomes the run's `ok`. May raise StoreError."""

    def record_command(
        self, result: CommandResult, *, kind: CommandKind, incident_id: int | None,
        action_id: int | None,
    ) -> int: ...
