"""The real clock: the one implementation of the Clock port outside the tests."""

from __future__ import annotations

import time
from threading import Event

__all__ = ["SystemClock"]


class SystemClock:
    """Wall-clock time for what is written and logged, the monotonic clock for intervals,
    and `Event.wait` as the sleep that a signal or an event interrupts."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, event: Event, timeout: float) -> bool:
        return event.wait(timeout)
