"""The pure hold of waiting and done agents: every transition a table row."""

from __future__ import annotations

import pytest

from healer.core.heartbeat import HeartbeatState
from healer.core.model import Stage
from healer.core.waiting import (
    Hold,
    Signal,
    beat_is_newest,
    held_stage,
    next_hold,
    signal_of,
)

W, D, A = Signal.WAITING, Signal.DONE, Signal.ACTIVITY
WAIT = Hold(Stage.WAITING, 10.0, "approve Bash?")
ALERTED = Hold(Stage.WAITING, 10.0, "approve Bash?", alerted=True)
DONE = Hold(Stage.DONE, 10.0, "SessionEnd")


class TestNextHold:
    @pytest.mark.parametrize(
        ("before", "signal", "after", "ended", "started"),
        [
            (None, A, None, None, False),  # plain activity of an agent that holds nothing
            (None, W, Hold(Stage.WAITING, 50.0, "m"), None, True),
            (None, D, Hold(Stage.DONE, 50.0, "m"), None, True),
            (WAIT, A, None, WAIT, False),  # any other activity ends the wait
            (ALERTED, A, None, ALERTED, False),
            (DONE, A, None, DONE, False),
            (WAIT, W, Hold(Stage.WAITING, 10.0, "m"), None, False),  # start kept
            (ALERTED, W, Hold(Stage.WAITING, 10.0, "m", alerted=True), None, False),
            (DONE, D, Hold(Stage.DONE, 10.0, "m"), None, False),
            (WAIT, D, Hold(Stage.DONE, 50.0, "m"), WAIT, True),  # done ends the wait
            (DONE, W, Hold(Stage.WAITING, 50.0, "m"), DONE, True),  # back, and asking
        ],
    )
    def test_each_signal_on_each_hold(self, before: Hold | None, signal: Signal,
                                      after: Hold | None, ended: Hold | None,
                                      started: bool) -> None:
        change = next_hold(before, signal, 50.0, "m")
        assert (change.hold, change.ended, change.started) == (after, ended, started)

    def test_a_repeated_beat_without_a_message_keeps_the_last_one(self) -> None:
        assert next_hold(WAIT, W, 60.0, None).hold == WAIT


class TestAlertAt:
    def test_a_wait_is_owed_its_alert_once_and_a_done_agent_never(self) -> None:
        assert WAIT.alert_at(300.0) == 310.0
        assert ALERTED.alert_at(300.0) is None
        assert DONE.alert_at(300.0) is None


class TestSignals:
    @pytest.mark.parametrize(
        ("state", "signal", "stage"),
        [
            (HeartbeatState.WAITING, W, Stage.WAITING),
            (HeartbeatState.DONE, D, Stage.DONE),
            (HeartbeatState.WORKING, A, None),
            (None, A, None),  # no beat, or one that could not be read
        ],
    )
    def test_what_a_beat_says(self, state: HeartbeatState | None, signal: Signal,
                              stage: Stage | None) -> None:
        assert signal_of(state) is signal
        assert held_stage(state) is stage

    @pytest.mark.parametrize(
        ("beat_at", "newest", "holds"),
        [
            (100.0, 100.0, True),  # the beat is the newest write
            (100.0, None, True),
            (100.0, 100.0005, True),  # the same stat, as two floats
            (100.0, 101.0, False),  # the agent wrote something after it
            (None, 100.0, False),
        ],
    )
    def test_a_beat_holds_only_while_it_is_the_newest_write(
        self, beat_at: float | None, newest: float | None, holds: bool
    ) -> None:
        assert beat_is_newest(beat_at, newest) is holds
