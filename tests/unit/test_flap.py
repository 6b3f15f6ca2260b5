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
