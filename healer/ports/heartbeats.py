"""What waiting and done (SPEC §12) need from the world: one look at an agent's heartbeat.json,
and the record of its waits on a human in the durable history."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

__all__ = ["HeartbeatRead", "Identity", "WaitLog", "WaitRecord"]

Identity = tuple[int, int, int]  # a file version: inode, mtime (ns), size


class HeartbeatRead(Protocol):
    """One look at an agent's heartbeat.json (WorkspaceReader.heartbeat, which never raises):
    `identity` None when there is none; `data` None when its version is the one the caller
    already knew, or when it could not be read (`error` says why)."""

    @property
    def identity(self) -> Identity | None: ...
    @property
    def mtime(self) -> float | None: ...
    @property
    def data(self) -> bytes | None: ...
    @property
    def error(self) -> str | None: ...


class WaitRecord(Protocol):
    """A wait on a human as the history holds it (open: no end yet)."""

    @property
    def id(self) -> int: ...
    @property
    def agent(self) -> str: ...
    @property
    def started_at(self) -> float: ...
    @property
    def alerted_at(self) -> float | None: ...
    @property
    def message(self) -> str | None: ...


class WaitLog(Protocol):
    """The agents' waits on a human in the durable history; every method may raise
    StoreError."""

    def open_wait(self, agent: str, *, started_at: float, message: str | None = None
                  ) -> int: ...

    def wait_alerted(self, wait_id: int, *, at: float) -> bool: ...

    def close_wait(self, wait_id: int, *, ended_at: float) -> bool: ...

    def open_waits(self) -> Sequence[WaitRecord]: ...
