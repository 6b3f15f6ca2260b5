"""The Clock port: the core never reads time itself, so tests can move it by hand."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol

__all__ = ["Clock", "SystemClock", "iso"]


class Clock(Protocol):
    """Wall-clock seconds since the epoch (the same scale as file mtimes)."""

    def now(self) -> float: ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()


def iso(when: float) -> str:
    """Epoch seconds as ISO 8601 UTC with a `Z`, the form healer writes everywhere."""
    return datetime.fromtimestamp(when, UTC).isoformat().replace("+00:00", "Z")
