"""The service manager the daemon reports to (systemd's notify protocol, SPEC §10)."""

from __future__ import annotations

from typing import Protocol

__all__ = ["ServiceManager"]


class ServiceManager(Protocol):
    """systemd's notify protocol; every call is a no-op when no manager listens."""

    def ready(self) -> bool: ...

    def ping(self) -> bool: ...

    def stopping(self) -> bool: ...

    def reloading(self) -> bool: ...

    def status(self, text: str) -> bool: ...

    def watchdog_interval(self) -> float | None: ...
