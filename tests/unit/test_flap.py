"""The flapping breaker: trips on the Nth incident within the window, ends a quiet window
after the last incident ended."""

from __future__ import annotations

from healer.core.flap import FlapBreaker, FlapPolicy, FlapVerdict

W = 100.0


def breaker(incidents: int = 3) -> FlapBreaker:
    return FlapBreaker(FlapPolicy(incidents=incidents, window=W))


def cycle(b: FlapBreaker, agent: str, start: float, length: float = 5.0) -> FlapVerdict | None:
    verdict = b.opened(agent, start)
    b.closed(agent, start + length)
    return verdict


class TestFlapBreaker:
    def test_the_third_incident_within_the_window_trips_it(self) -> None:
        b = breaker()
        assert cycle(b, "Agent-1", 0.0) is None
        assert cycle(b, "Agent-1", 30.0) is None
        assert b.opened("Agent-1", 60.0) is FlapVerdict.FLAPPING
        assert b.is_flapping("Agent-1")
        assert b.flapping() == ["Agent-1"]

    def test_incidents_further_apart_than_the_window_never_trip_it(self) -> None:
        """Openings 51 s apart: any 100 s window holds at most two of them."""
        b = breaker()
        assert [cycle(b, "Agent-1", k * 51.0) for k in range(10)] == [None] * 10

    def test_it_trips_once_not_at_every_later_incident(self) -> None:
        b = breaker()
        verdicts = [cycle(b, "Agent-1", k * 10.0) for k in range(6)]
        assert verdicts.count(FlapVerdict.FLAPPING) == 1

    def test_flapping_ends_a_whole_window_after_the_last_incident_ended(self) -> None:
        b = breaker()
        for k in range(3):
            cycle(b, "Agent-1", k * 10.0)  # the last one ends at 25
        assert b.next_sweep() == 25.0 + W
        assert b.sweep(25.0 + W - 0.1) == []
        assert b.sweep(25.0 + W) == ["Agent-1"]
        assert not b.is_flapping("Agent-1")
        assert b.next_sweep() is None

    def test_an_open_incident_keeps_it_flapping_however_long(self) -> None:
        b = breaker()
        cycle(b, "Agent-1", 0.0)
        cycle(b, "Agent-1", 10.0)
        b.opened("Agent-1", 20.0)  # trips, and never closes
        assert b.sweep(10_000.0) == []
        assert b.is_flapping("Agent-1")
        assert b.next_sweep() is None

    def test_a_new_incident_restarts_the_quiet_window(self) -> None:
        b = breaker()
        for k in range(3):
            cycle(b, "Agent-1", k * 10.0)
        cycle(b, "Agent-1", 90.0)  # ends at 95: quiet until 195 now
        assert b.sweep(130.0) == []
        assert b.sweep(195.0) == ["Agent-1"]

    def test_agents_are_judged_apart(self) -> None:
        b = breaker()
        for k in range(3):
            cycle(b, "Agent-1", k * 10.0)
        assert cycle(b, "Agent-2", 0.0) is None
        assert b.flapping() == ["Agent-1"]

    def test_a_removed_agent_is_forgotten(self) -> None:
        b = breaker()
        for k in range(3):
            cycle(b, "Agent-1", k * 10.0)
        b.forget("Agent-1")
        assert not b.is_flapping("Agent-1")
        assert cycle(b, "Agent-1", 40.0) is None

    def test_state_of_quiet_agents_is_dropped(self) -> None:
        """10,000 agents with one incident each must not grow the breaker for ever."""
        b = breaker()
        for k in range(100):
            cycle(b, f"Agent-{k}", 0.0)
        b.sweep(W + 10.0)
        assert b._agents == {}


class TestAskedBeforeTheDecision:
    def test_would_flap_foresees_the_tripping_incident_without_recording_it(self) -> None:
        b = breaker()
        assert not b.would_flap("Agent-1", 0.0)
        cycle(b, "Agent-1", 0.0)
        cycle(b, "Agent-1", 30.0)
        assert b.would_flap("Agent-1", 60.0)
        assert not b.is_flapping("Agent-1") and b.recent("Agent-1") == 2
        assert b.opened("Agent-1", 60.0) is FlapVerdict.FLAPPING
        assert b.recent("Agent-1") == 3

    def test_openings_out_of_the_window_do_not_count(self) -> None:
        b = breaker()
        cycle(b, "Agent-1", 0.0)
        cycle(b, "Agent-1", 30.0)
        assert not b.would_flap("Agent-1", 100.0)  # 0.0 is on the horizon: out
        assert b.would_flap("Agent-1", 99.9)

    def test_a_flapping_agent_would_flap_whenever(self) -> None:
        b = breaker()
        for k in range(3):
            cycle(b, "Agent-1", k * 10.0)
        assert b.would_flap("Agent-1", 99.0)


class TestReplay:
    def test_the_history_rebuilds_a_flapping_agent_and_its_quiet_window(self) -> None:
        """Tripped 150 s ago by openings now partly out of the window: still flapping until
        a window after the last incident ended (at 135)."""
        b = breaker()
        spans = [("Agent-1", 50.0, 55.0), ("Agent-1", 120.0, 125.0),
                 ("Agent-1", 130.0, 135.0), ("Agent-2", 100.0, None)]
        assert b.replay(spans, 200.0) == ["Agent-1"]
        assert b.next_sweep() == 235.0
        assert b.sweep(235.0) == ["Agent-1"]

    def test_an_open_incident_of_a_flapping_agent_is_open_again(self) -> None:
        b = breaker()
        spans = [("Agent-1", 0.0, 5.0), ("Agent-1", 10.0, 15.0), ("Agent-1", 20.0, None)]
        assert b.replay(spans, 10_000.0) == ["Agent-1"]
        assert b.sweep(20_000.0) == []
        b.closed("Agent-1", 20_000.0)
        assert b.sweep(20_000.0 + W) == ["Agent-1"]

    def test_a_flapping_that_ended_before_now_is_over(self) -> None:
        b = breaker()
        spans = [("Agent-1", k * 10.0, k * 10.0 + 5.0) for k in range(3)]
        assert b.replay(spans, 25.0 + W) == []
        assert not b.would_flap("Agent-1", 25.0 + W)

    def test_a_quiet_gap_inside_the_history_ends_the_flapping_there(self) -> None:
        """Flapping at 0-25, quiet for more than a window, then one incident: not flapping."""
        b = breaker()
        spans = [("Agent-1", k * 10.0, k * 10.0 + 5.0) for k in range(3)]
        spans.append(("Agent-1", 200.0, 205.0))
        assert b.replay(spans, 210.0) == []
