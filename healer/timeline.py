"""The engine's clock: monotonic while healer runs, so that a wall-clock step neither fires
a stall nor delays one. Wall-clock times (mtimes, leases, the history) are mapped to it
where they come in, and engine times back to the wall clock where they go out."""

from __future__ import annotations

import structlog

from healer.core.timebase import Offsets, Sighting, by_age, placed
from healer.ports import Clock

__all__ = ["FileTimes", "Timeline", "to_wall", "wall_age"]

log = structlog.get_logger()


def to_wall(clock: Clock, t: float) -> float:
    """An engine time as the wall clock reads it now: its age kept, so a time written and
    read back after a restart (which places it by its age) lands where it was."""
    return clock.now() - (clock.monotonic() - t)


def wall_age(clock: Clock, wall: float) -> float:
    """A wall time from before (a stored one, a file's mtime at start-up) as an engine time
    by its age at this moment; the future counts as now."""
    return by_age(wall, wall_now=clock.now(), mono_now=clock.monotonic())


class Timeline:
    """The engine's time and the wall clock's offset from it; `follow()` (once a loop)
    notices the steps, so that an mtime is placed by the offset in force when written."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._offsets = Offsets(clock.monotonic(), clock.now())

    def now(self) -> float:
        return self._clock.monotonic()

    def follow(self) -> float | None:
        """Read both clocks; the size of the wall clock's step if it stepped since."""
        step = self._offsets.read(self._clock.monotonic(), self._clock.now())
        if step is not None:
            log.warning("wall_clock_stepped", step=round(step, 3))
        return step

    def to_wall(self, t: float) -> float:
        return to_wall(self._clock, t)

    def from_wall(self, wall: float) -> float:
        """A wall time read now, past or future (a busy lease's end), as an engine time."""
        return self._clock.monotonic() + (wall - self._clock.now())

    def wall_age(self, wall: float) -> float:
        return wall_age(self._clock, wall)

    def places(self, wall: float) -> list[float]:
        """The engine times at which the wall clock read `wall` (see Offsets.places)."""
        self.follow()
        return self._offsets.places(wall, self._clock.monotonic())


class FileTimes:
    """Where an agent's file mtimes put its activity on the engine's clock: at start-up by
    their age; while healer runs by change, since only an mtime that moved is news."""

    def __init__(self, timeline: Timeline) -> None:
        self._timeline = timeline
        self._seen: dict[str, Sighting] = {}

    # `looked`: when the scan that read `mtime` began (default now). A write healer hears
    # of after that moment may be one the scan missed; taken as "since it looked", its
    # newer mtime at the next re-stat is not news (see `placed`) rather than a write at
    # an unknown time, counted as now, which put off a new agent's stall by heal_after.
    def at_start(self, agent: str, mtime: float | None, looked: float | None = None
                 ) -> float | None:
        """The agent's last activity from its files when healer starts (None: none)."""
        self._sight(agent, mtime, looked)
        return None if mtime is None else self._timeline.wall_age(mtime)

    def appeared(self, agent: str, mtime: float | None, looked: float | None = None) -> None:
        """A folder found while running: its files are what it came with, not activity."""
        self._sight(agent, mtime, looked)

    def activity(self, agent: str, mtime: float | None, known: float | None,
                 looked: float | None = None) -> float | None:
        """New activity a re-stat found (the moment to record), or None (see `placed`)."""
        seen = self._seen.get(agent)
        now = self._timeline.now()
        if mtime is None or (seen is not None and mtime == seen.mtime):
            when = None  # placed's first rule, before the places it needs no more of
        else:
            when = placed(seen, mtime, known, self._timeline.places(mtime), now)
        self._sight(agent, mtime, now if looked is None else looked)
        return when

    def forget(self, agent: str) -> None:
        self._seen.pop(agent, None)

    def _sight(self, agent: str, mtime: float | None, looked: float | None) -> None:
        self._seen[agent] = Sighting(mtime, self._timeline.now() if looked is None else looked)
