"""The hashed timer wheel."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healer.core.wheel import TimerWheel

START = 1_000.0


class TestTimerWheel:
    def test_a_timer_fires_on_the_first_advance_at_or_after_its_deadline(self) -> None:
        wheel: TimerWheel[str] = TimerWheel(tick=1.0, start=START)
        wheel.schedule("a", START + 5.5)
        assert wheel.advance(START + 5.4) == []
        assert wheel.advance(START + 5.5) == ["a"]
        assert wheel.advance(START + 9) == []

    def test_advancing_on_tick_boundaries_fires_within_one_tick(self) -> None:
        wheel: TimerWheel[str] = TimerWheel(tick=0.25, start=START)
        deadline = START + 3.13
        wheel.schedule("a", deadline)
        now = START
        while True:
            now += 0.25
            if wheel.advance(now):
                break
        assert deadline <= now < deadline + 0.25

    def test_rescheduling_supersedes_the_earlier_timer(self) -> None:
        wheel: TimerWheel[str] = TimerWheel(tick=1.0, start=START)
        wheel.schedule("a", START + 2)
        wheel.schedule("a", START + 10)
        assert wheel.advance(START + 5) == []
        assert wheel.advance(START + 10) == ["a"]

    def test_a_cancelled_timer_never_fires(self) -> None:
        wheel: TimerWheel[str] = TimerWheel(tick=1.0, start=START)
        wheel.schedule("a", START + 2)
        wheel.cancel("a")
        assert wheel.advance(START + 100) == []
        assert len(wheel) == 0

    def test_timers_beyond_one_rotation_wait_for_their_round(self) -> None:
        wheel: TimerWheel[str] = TimerWheel(tick=1.0, start=START, slots=8)
        wheel.schedule("far", START + 20.5)
        for step in range(1, 20):
            assert wheel.advance(START + step) == []
        assert wheel.advance(START + 21) == ["far"]

    def test_a_deadline_in_the_past_fires_on_the_next_advance(self) -> None:
        wheel: TimerWheel[str] = TimerWheel(tick=1.0, start=START)
        wheel.advance(START + 50)
        wheel.schedule("late", START + 3)
        assert wheel.advance(START + 50.01) == ["late"]

    def test_fired_keys_come_in_deadline_order(self) -> None:
        wheel: TimerWheel[str] = TimerWheel(tick=1.0, start=START, slots=4)
        wheel.schedule("c", START + 7.9)
        wheel.schedule("a", START + 1.2)
        wheel.schedule("b", START + 3.3)
        assert wheel.advance(START + 100) == ["a", "b", "c"]

    def test_a_clock_that_steps_back_fires_nothing(self) -> None:
        wheel: TimerWheel[str] = TimerWheel(tick=1.0, start=START)
        wheel.schedule("a", START + 2)
        wheel.advance(START + 1)
        assert wheel.advance(START - 30) == []
        assert wheel.advance(START + 2) == ["a"]

    def test_invalid_geometry_is_refused(self) -> None:
        with pytest.raises(ValueError):
            TimerWheel(tick=0, start=START)

    @settings(max_examples=60, deadline=None)
    @given(
        deadlines=st.lists(st.floats(min_value=0, max_value=400), min_size=1, max_size=40),
        tick=st.sampled_from([0.1, 0.5, 1.0, 3.0]),
        step=st.floats(min_value=0.05, max_value=7),
    )
    def test_every_timer_fires_exactly_once_and_never_early(
        self, deadlines: list[float], tick: float, step: float
    ) -> None:
        wheel: TimerWheel[int] = TimerWheel(tick=tick, start=START, slots=16)
        for key, offset in enumerate(deadlines):
            wheel.schedule(key, START + offset)
        seen: dict[int, float] = {}
        now = START
        while now < START + 420:
            now += step
            for key in wheel.advance(now):
                assert key not in seen
                seen[key] = now
        assert set(seen) == set(range(len(deadlines)))
        for key, fired_at in seen.items():
            assert fired_at >= START + deadlines[key]
            assert fired_at < START + deadlines[key] + step + 1e-9


class TestUpcoming:
    def test_it_names_the_timers_of_a_window_without_firing_them(self) -> None:
        wheel: TimerWheel[str] = TimerWheel(0.5, 0.0, slots=8)
        wheel.schedule("a", 1.2)
        wheel.schedule("b", 1.9)
        wheel.schedule("c", 9.0)  # past the window, in a slot the window also covers (mod 8)
        wheel.schedule("d", 0.7)
        wheel.schedule("d", 5.0)  # re-armed: its old entry is stale
        assert sorted(wheel.upcoming(1.0, 2.0)) == ["a", "b"]
        assert wheel.upcoming(2.0, 3.0) == []
        assert sorted(wheel.advance(2.0)) == ["a", "b"]  # nothing was fired by looking


class TestSoonest:
    def test_it_is_the_earliest_live_timer_of_the_current_tick(self) -> None:
        wheel: TimerWheel[str] = TimerWheel(1.0, 0.0, slots=4)
        wheel.schedule("a", 2.7)
        wheel.schedule("b", 2.4)
        wheel.schedule("b", 30.0)  # re-armed: its entry at 2.4 is stale
        wheel.schedule("c", 6.1)  # the same slot (mod 4), a rotation later
        wheel.schedule("d", 3.2)  # the next tick's
        assert wheel.soonest(2.1) == 2.7
        assert wheel.soonest(1.5) is None  # nothing due within tick 1
        assert wheel.advance(2.8) == ["a"]
        assert wheel.soonest(2.9) is None
        assert wheel.soonest(3.0) == 3.2


class TestAgainstAModel:
    """Arming, re-arming and cancelling between advances (within a tick, too: the current
    tick's timers live apart from the slots), checked against a plain dict of deadlines."""

    @settings(max_examples=120, deadline=None)
    @given(
        ops=st.lists(
            st.tuples(
                st.sampled_from(["schedule", "cancel", "advance"]),
                st.integers(min_value=0, max_value=7),
                st.floats(min_value=0, max_value=30),
            ),
            min_size=1, max_size=80,
        ),
        tick=st.sampled_from([0.25, 1.0, 2.5]),
    )
    def test_it_fires_what_a_model_fires_in_deadline_order(
        self, ops: list[tuple[str, int, float]], tick: float
    ) -> None:
        wheel: TimerWheel[int] = TimerWheel(tick=tick, start=0.0, slots=4)
        model: dict[int, float] = {}
        now = 0.0
        for op, key, value in ops:
            if op == "schedule":
                wheel.schedule(key, value)
                model[key] = value
            elif op == "cancel":
                wheel.cancel(key)
                model.pop(key, None)
            else:
                now += value / 10
                due = sorted((d, k) for k, d in model.items() if d <= now)
                soon = [d for d in model.values()
                        if now < d < (math.floor(now / tick) + 1) * tick]
                fired = wheel.advance(now)
                assert sorted(fired) == sorted(k for _, k in due)
                assert [model[k] for k in fired] == sorted(model[k] for k in fired)
                for _, k in due:
                    del model[k]
                assert wheel.soonest(now) == (min(soon) if soon else None)
                assert len(wheel) == len(model)
