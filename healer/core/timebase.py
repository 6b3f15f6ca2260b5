"""Time while healer runs: silence is measured on the monotonic clock; a file's mtime, a
reading of the wall clock, is placed on it through the wall clock's offset at the time,
which changes only when the wall clock steps (NTP, a resumed VM). Pure: readings come in."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "JITTER",
    "MAX_SEGMENTS",
    "SAME_WRITE_SLACK",
    "STEP_TOLERANCE",
    "Offsets",
    "Sighting",
    "active_since",
    "by_age",
    "placed",
]

# NTP slews the wall clock by at most 0.5 ms a second; a jump of the offset bigger than
# this between two readings is a step (a settime, a resumed laptop), not a slew.
STEP_TOLERANCE = 1.0
# How far apart two placements of one write may be: the watcher stamps an event on receipt,
# a few ms (one poll interval when polling) after the write whose mtime the coarse kernel
# clock took; a stored time went to the wall clock and back through offsets since slewed.
SAME_WRITE_SLACK = 2.0
# An mtime placed through an offset measured a little before or after it was taken: by
# this much at most can a write's place follow the stamp of its own event.
JITTER = 0.05
# A host stepping its clock over and over keeps only its recent offsets: older mtimes are
# then placed through the oldest one kept, wrong by the steps forgotten.
MAX_SEGMENTS = 32


def active_since(last: float, silence_start: float) -> bool:
    """Whether activity at `last` came after an incident's silence began. A stored silence
    start went from an mtime to the engine's clock and back to the wall clock, each time
    through the offset of that moment (slewed since, rounded): the agent's own last write
    read again at a restart may land a little past it, and is still no return."""
    return last > silence_start + SAME_WRITE_SLACK


def by_age(mtime: float, *, wall_now: float, mono_now: float) -> float:
    """A wall time read as an age at this moment (how healer starts): the future is now."""
    return mono_now - max(0.0, wall_now - mtime)


@dataclass(frozen=True, slots=True)
class Sighting:
    """An agent's newest activity mtime (a raw wall reading) as healer last saw it, and
    when (monotonic)."""

    mtime: float | None
    at: float


class Offsets:
    """The wall clock's offset from the monotonic clock over time, one segment per step.
    A step is noticed at a reading; it happened after the reading before, so segment k
    holds from that earlier reading to the reading that noticed the next step."""

    def __init__(self, mono: float, wall: float) -> None:
        self._starts: list[float] = [-math.inf]  # before healer started: the offset then
        self._ends: list[float] = []  # of every segment but the last
        self._offsets: list[float] = [wall - mono]
        self._read_at = mono

    @property
    def segments(self) -> int:
        return len(self._offsets)

    def read(self, mono: float, wall: float) -> float | None:
        """Note one reading of both clocks; returns the step if the wall clock stepped."""
        offset = wall - mono
        step = offset - self._offsets[-1]
        since, self._read_at = self._read_at, mono
        if abs(step) <= STEP_TOLERANCE:
            self._offsets[-1] = offset  # a slew: follow it
            return None
        self._starts.append(since)
        self._ends.append(mono)
        self._offsets.append(offset)
        if len(self._offsets) > MAX_SEGMENTS:
            del self._starts[0], self._ends[0], self._offsets[0]
            self._starts[0] = -math.inf
        return step

    def places(self, wall: float, mono_now: float) -> list[float]:
        """Every monotonic moment at which the wall clock read `wall`, newest first: one
        as a rule, several after a step back (the wall clock read it twice), none for a
        reading still to come."""
        out = []
        ends = [*self._ends, mono_now]
        for start, end, offset in zip(self._starts, ends, self._offsets, strict=True):
            t = wall - offset
            if start - JITTER <= t <= end + JITTER:
                out.append(min(t, mono_now))
        return sorted(out, reverse=True)


def placed(
    seen: Sighting | None,
    mtime: float | None,
    known: float | None,
    places: Sequence[float],
    now: float,
) -> float | None:
    """Where a re-stat puts an agent's activity (monotonic), or None when its files say
    nothing new. `mtime` is its newest activity mtime now, `known` its last activity as
    healer has it, `places` where the wall clock read `mtime` (Offsets.places)."""
    if mtime is None or (seen is not None and mtime == seen.mtime):
        return None  # an mtime that did not move says nothing, whatever the clock did
    last = -math.inf if known is None else known
    if len(places) > 1 and any(last - SAME_WRITE_SLACK <= p <= last + JITTER for p in places):
        return None  # read twice after a step back, once at the write healer knows of
    later = [p for p in places if p > last]
    if later:
        return later[0]  # a write the events missed; of two readings the later is safe
    moved_back = seen is not None and seen.mtime is not None and mtime < seen.mtime
    if places and (moved_back or (seen is not None and last > seen.at)):
        # An older file now the newest (a newer one deleted, healer's own write left out),
        # or a write stamped before activity healer learnt of since it last looked.
        return None
    # Written since healer last looked, at an mtime that says nothing of when (a `cp -a`,
    # another host's clock): now is the only answer that cannot make a false stall.
    return now
