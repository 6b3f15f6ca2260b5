"""Waiting on a human and off duty (SPEC §12, §17): what an agent's beats and its other
activity do to its hold, and when a wait is owed its one alert. Pure: times in, values out."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from healer.core.heartbeat import HeartbeatState
from healer.core.model import Stage

__all__ = [
    "HELD_STAGES",
    "MTIME_SLACK",
    "Hold",
    "HoldChange",
    "Signal",
    "beat_is_newest",
    "held_stage",
    "next_hold",
    "signal_of",
]

HELD_STAGES = frozenset({Stage.WAITING, Stage.DONE})
# A beat's mtime and the newest activity a scan found are the same stat of the same file
# when the beat is the newest; this much apart still counts as the same moment.
MTIME_SLACK = 1e-3


class Signal(enum.Enum):
    """What one piece of the agent's genuine activity says about its hold."""

    WAITING = "waiting"  # a waiting beat
    DONE = "done"  # a done beat
    ACTIVITY = "activity"  # anything else: a working beat, an unreadable one, another file


def signal_of(state: HeartbeatState | None) -> Signal:
    """The signal of a beat in `state`; None (no beat, or one that says nothing) is activity."""
    if state is HeartbeatState.WAITING:
        return Signal.WAITING
    if state is HeartbeatState.DONE:
        return Signal.DONE
    return Signal.ACTIVITY


def held_stage(state: HeartbeatState | None) -> Stage | None:
    """The stage a beat in `state` holds its agent in (while it is its newest activity)."""
    return {HeartbeatState.WAITING: Stage.WAITING, HeartbeatState.DONE: Stage.DONE}.get(
        state) if state is not None else None


def beat_is_newest(beat_at: float | None, newest: float | None) -> bool:
    """Whether a beat written at `beat_at` is the agent's newest activity on file (`newest`,
    the newest mtime among its activity files, the beat's own included). A beat followed by
    any other write is over: the agent went on."""
    return beat_at is not None and (newest is None or beat_at >= newest - MTIME_SLACK)


@dataclass(frozen=True, slots=True)
class Hold:
    """An agent out of detection: waiting on a human since `since`, or done since then."""

    stage: Stage  # WAITING or DONE
    since: float
    message: str | None = None
    alerted: bool = False  # a wait's one alert went out

    def alert_at(self, after: float) -> float | None:
        """When the wait is owed its alert; None for a done agent or an alerted wait."""
        if self.stage is not Stage.WAITING or self.alerted:
            return None
        return self.since + after


@dataclass(frozen=True, slots=True)
class HoldChange:
    """The agent's hold after one signal, the hold that signal ended, and whether the
    hold after it is a new one."""

    hold: Hold | None
    ended: Hold | None = None
    started: bool = False


def next_hold(hold: Hold | None, signal: Signal, when: float,
              message: str | None = None) -> HoldChange:
    """The hold after `signal` at `when`. Activity ends any hold; a beat of the hold's own
    kind keeps its start and its alert (a wait does not start over with each reminder);
    a beat of the other kind ends it and starts its own."""
    if signal is Signal.ACTIVITY:
        return HoldChange(None, hold)
    stage = Stage.WAITING if signal is Signal.WAITING else Stage.DONE
    if hold is not None and hold.stage is stage:
        return HoldChange(replace(hold, message=message or hold.message))
    return HoldChange(Hold(stage, when, message), hold, started=True)
