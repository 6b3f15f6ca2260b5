"""The pure time rules: the wall clock's offset over its steps, an mtime read as an age at
start-up and by change while running, and the slack a restart's round trip needs."""

from __future__ import annotations

import math

import pytest

from healer.core.timebase import (
    MAX_SEGMENTS,
    SAME_WRITE_SLACK,
    STEP_TOLERANCE,
    Offsets,
    Sighting,
    active_since,
    by_age,
    placed,
)

WALL0, MONO0 = 1_700_000_000.0, 5_000.0  # far apart: a time on the wrong clock shows


class TestByAge:
    @pytest.mark.parametrize(("mtime", "expected"), [
        (WALL0 - 30, MONO0 - 30),  # thirty seconds old is thirty seconds before now
        (WALL0, MONO0),
        (WALL0 + 900, MONO0),  # a file from the future (a skewed writer) counts as now
    ])
    def test_an_mtime_is_its_age_on_the_wall_clock_now(self, mtime: float, expected: float
                                                       ) -> None:
        assert by_age(mtime, wall_now=WALL0, mono_now=MONO0) == expected


class TestOffsets:
    def test_a_slew_is_followed_and_a_step_starts_a_segment(self) -> None:
        """A drift under the tolerance moves the offset; a jump past it is a step."""
        offsets = Offsets(MONO0, WALL0)
        assert offsets.read(MONO0 + 10, WALL0 + 10 + STEP_TOLERANCE / 2) is None
        assert offsets.segments == 1
        assert offsets.read(MONO0 + 20, WALL0 + 3620) == pytest.approx(3600 - STEP_TOLERANCE / 2)
        assert offsets.segments == 2

    @pytest.mark.parametrize("step", [3600.0, -3600.0, -10.0])
    def test_an_mtime_is_placed_by_the_offset_in_force_when_it_was_written(
        self, step: float
    ) -> None:
        """Writes before and after a step land where they happened, whichever way it went."""
        offsets = Offsets(MONO0, WALL0)
        offsets.read(MONO0 + 100, WALL0 + 100 + step)  # the step, noticed at mono +100
        now = MONO0 + 200
        before = offsets.places(WALL0 + 40, now)  # written at mono +40, before the step
        after = offsets.places(WALL0 + 150 + step, now)  # at mono +150, after it
        assert MONO0 + 40 in before
        assert MONO0 + 150 in after
        if step > 0:  # nothing is read twice when the clock jumps ahead
            assert (before, after) == ([MONO0 + 40], [MONO0 + 150])

    def test_a_step_back_makes_a_reading_ambiguous_and_the_future_has_none(self) -> None:
        """After a 10 s step back the wall clock read the same 10 s twice; a reading it
        has not reached yet has no place."""
        offsets = Offsets(MONO0, WALL0)
        offsets.read(MONO0 + 100, WALL0 + 90)
        assert offsets.places(WALL0 + 95, MONO0 + 200) == [MONO0 + 105, MONO0 + 95]
        assert offsets.places(WALL0 + 500, MONO0 + 200) == []

    def test_only_the_recent_segments_are_kept(self) -> None:
        offsets = Offsets(MONO0, WALL0)
        for k in range(1, MAX_SEGMENTS + 10):
            offsets.read(MONO0 + 10 * k, WALL0 + 10 * k + 100 * k)
        assert offsets.segments == MAX_SEGMENTS
        # The oldest kept offset now stands for everything before it.
        assert offsets.places(0.0, MONO0 + 10_000) != []


NOW = MONO0 + 1000


def seen(mtime: float | None, at: float = MONO0) -> Sighting:
    return Sighting(mtime, at)


class TestPlaced:
    """Where a re-stat puts activity: (what healer saw last, the newest mtime now, the last
    activity healer knows, the places of that mtime) -> the moment, or None."""

    @pytest.mark.parametrize(("case", "sighting", "mtime", "known", "places", "expected"), [
        ("an mtime that did not move says nothing",
         seen(WALL0), WALL0, MONO0, [NOW - 5], None),
        ("no activity file at all says nothing",
         seen(None), None, MONO0, [], None),
        ("a write the events missed lands where it was written",
         seen(WALL0), WALL0 + 900, MONO0, [NOW - 100], NOW - 100),
        ("of two readings after a step back the later is taken",
         seen(WALL0), WALL0 + 900, MONO0, [NOW - 20, NOW - 30], NOW - 20),
        ("the write an event already reported is no news",
         seen(WALL0), WALL0 + 900, NOW - 100, [NOW - 100.001], None),
        ("a reading twice over, once at the known write, is that write",
         seen(WALL0), WALL0 + 900, NOW - 100, [NOW - 95, NOW - 100], None),
        ("an older file made newest (healer's own write left out) is no news",
         seen(WALL0 + 900, at=NOW - 50), WALL0 + 100, NOW - 10, [NOW - 800], None),
        ("a moved mtime that cannot be placed (a step ahead of it) is now",
         seen(WALL0), WALL0 + 99_999, MONO0, [], NOW),
        ("copied in with an old mtime since healer looked, nothing else known: now",
         seen(WALL0 - 500, at=MONO0), WALL0 - 100, MONO0, [MONO0 - 100], NOW),
        ("stamped old, but activity was learnt of since healer looked: that explains it",
         seen(WALL0 - 500, at=MONO0), WALL0 - 100, MONO0 + 50, [MONO0 - 100], None),
    ])
    def test_by_change(self, case: str, sighting: Sighting, mtime: float | None,
                       known: float, places: list[float], expected: float | None) -> None:
        assert placed(sighting, mtime, known, places, NOW) == expected, case

    def test_an_agent_never_seen_with_any_mtime_is_active_now_at_worst(self) -> None:
        assert placed(None, WALL0, None, [], NOW) == NOW
        assert placed(None, WALL0, None, [NOW - 3], NOW) == NOW - 3


class TestActiveSince:
    def test_only_activity_past_the_round_trip_slack_is_a_return(self) -> None:
        start = MONO0
        assert not active_since(start, start)
        assert not active_since(start + SAME_WRITE_SLACK, start)
        assert active_since(start + SAME_WRITE_SLACK + 0.001, start)
        assert not active_since(-math.inf, start)
