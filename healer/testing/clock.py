"""A Clock for tests, after trio's MockClock: time moves only when the test says so."""

from __future__ import annotations

from threading import Event

__all__ = ["FakeClock"]


class FakeClock:
    """A Clock for tests: time moves only through advance(), set() or step().

    `advance` moves wall and monotonic time together, never backwards; `step` moves the
    wall clock alone, either way (NTP, a resumed VM); `wait` never blocks nor moves time.
    The monotonic clock starts level with the wall clock unless `monotonic` says where.
    """

    def __init__(self, start: float = 1_700_000_000.0, monotonic: float | None = None) -> None:
        self._now = float(start)
        self._mono = float(start if monotonic is None else monotonic)

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def wait(self, event: Event, timeout: float) -> bool:
        return event.is_set()

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a FakeClock never moves backwards")
        self._now += seconds
        self._mono += seconds
        return self._now

    def set(self, when: float) -> float:
        """Advance both clocks to wall time `when`."""
        return self.advance(self._check_forward(when))

    def step(self, seconds: float) -> float:
        """Step the wall clock alone by `seconds` (negative: back); monotonic time stays."""
        self._now += seconds
        return self._now

    def _check_forward(self, when: float) -> float:
        if when < self._now:
            raise ValueError("a FakeClock never moves backwards")
        return float(when) - self._now
