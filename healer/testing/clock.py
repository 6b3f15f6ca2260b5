"""A Clock for tests, after trio's MockClock: time moves only when the test says so."""

from __future__ import annotations

from threading import Event

__all__ = ["MONOTONIC_START", "FakeClock"]

MONOTONIC_START = 10_000.0


class FakeClock:
    """A Clock for tests: time moves only through advance(), set() or step().

    `advance` moves wall and monotonic time together, never backwards; `step` moves the
    wall clock alone, either way (NTP, a resumed VM); `wait` never blocks nor moves time.
    The monotonic clock starts at `monotonic` (default MONOTONIC_START, an uptime, far
    from any wall time): code that mixes the two clocks up fails its tests at once.
    """

    def __init__(self, start: float = 1_700_000_000.0, monotonic: float | None = None) -> None:
        # Whole nanoseconds: a float near 1.7e9 that takes a thousand steps of 0.1 drifts by
        # microseconds, enough to put a test's deadline on the wrong side of a tick.
        self._now_ns = _ns(start)
        self._mono_ns = _ns(MONOTONIC_START if monotonic is None else monotonic)

    def now(self) -> float:
        return self._now_ns / 1e9

    def monotonic(self) -> float:
        return self._mono_ns / 1e9

    def wait(self, event: Event, timeout: float) -> bool:
        return event.is_set()

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a FakeClock never moves backwards")
        step = _ns(seconds)
        self._now_ns += step
        self._mono_ns += step
        return self.now()

    def set(self, when: float) -> float:
        """Advance both clocks to wall time `when`."""
        target = _ns(when)
        if target < self._now_ns:
            raise ValueError("a FakeClock never moves backwards")
        self._mono_ns += target - self._now_ns
        self._now_ns = target
        return self.now()

    def step(self, seconds: float) -> float:
        """Step the wall clock alone by `seconds` (negative: back); monotonic time stays."""
        self._now_ns += _ns(seconds)
        return self.now()


def _ns(seconds: float) -> int:
    return round(seconds * 1_000_000_000)
