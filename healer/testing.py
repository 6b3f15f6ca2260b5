"""Test helpers shipped with the package: a clock that only moves when told."""

from __future__ import annotations

__all__ = ["FakeClock"]


class FakeClock:
    """A Clock for tests: time moves only through advance() or set(), never backwards."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a FakeClock never moves backwards")
        self._now += seconds
        return self._now

    def set(self, when: float) -> float:
        if when < self._now:
            raise ValueError("a FakeClock never moves backwards")
        self._now = float(when)
        return self._now
