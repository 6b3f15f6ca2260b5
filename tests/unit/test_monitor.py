"""The detection engine: table + wheel + incidents under a fake clock."""

from __future__ import annotations

from healer.core.model import HEAL_ACTIONS, Stage
from healer.core.monitor import Monitor
from healer.core.policy import HealAttempt, Incident, Policy, RunRecovery
from healer.testing import FakeClock

POLICY = Policy(heal_after=2.0, recover_after=5.0, max_attempts=3, ladder=HEAL_ACTIONS)
TICK = 0.1


def run_until(monitor: Monitor, clock: FakeClock, end: float) -> list[tuple[float, str, str]]:
    """Step the clock tick by tick, evaluating due agents; returns (t, agent, step) rows."""
    rows = []
    while clock.now() < end - 1e-9:
        clock.advance(TICK)
        for agent in monitor.due(clock.now()):
            decision = monitor.evaluate(agent, clock.now())
            rows += [(clock.now(), agent, type(s).__name__) for s in decision.steps]
    return rows


class TestMonitor:
    def test_a_silent_agent_is_detected_within_one_tick_of_the_threshold(
        self, clock: FakeClock
    ) -> None:
        monitor = Monitor(lambda a: POLICY, TICK, clock.now())
        start = clock.now()
        monitor.add("Agent-1", start - 0.05)
        rows = run_until(monitor, clock, start + 3)
        first = rows[0]
        assert first[1:] == ("Agent-1", "StallDetected")
        exact = start - 0.05 + POLICY.heal_after
        assert exact <= first[0] <= exact + TICK + 1e-9

    def test_activity_defers_detection_without_touching_the_wheel(self, clock: FakeClock) -> None:
        monitor = Monitor(lambda a: POLICY, TICK, clock.now())
        monitor.add("Agent-1", clock.now())
        armed = monitor.wheel.deadline("Agent-1")
        for _ in range(30):
            clock.advance(0.5)
            monitor.observe("Agent-1", clock.now())
            assert monitor.due(clock.now()) == []
        assert monitor.wheel.deadline("Agent-1") != armed  # re-armed lazily on fire
        quiet_from = clock.now()
        rows = run_until(monitor, clock, quiet_from + 2.5)
        assert rows and rows[0][0] >= quiet_from + POLICY.heal_after

    def test_activity_during_an_incident_closes_it_and_returns_it(self, clock: FakeClock) -> None:
        monitor = Monitor(lambda a: POLICY, TICK, clock.now())
        monitor.add("Agent-1", clock.now())
        run_until(monitor, clock, clock.now() + 4.5)
        assert monitor.stage("Agent-1", clock.now()) is Stage.HEALING
        closed = monitor.observe("Agent-1", clock.now())
        assert isinstance(closed, Incident) and closed.attempts == 2
        assert monitor.stage("Agent-1", clock.now()) is Stage.ACTIVE
        assert monitor.observe("Agent-1", clock.now() + 0.01) is None

    def test_an_escalated_agent_that_comes_back_is_watched_again(self, clock: FakeClock) -> None:
        monitor = Monitor(lambda a: POLICY, TICK, clock.now())
        monitor.add("Agent-1", clock.now())
        rows = run_until(monitor, clock, clock.now() + 20)
        assert [r[2] for r in rows].count("Escalate") == 1
        assert len(monitor.wheel) == 0
        monitor.observe("Agent-1", clock.now())
        again = run_until(monitor, clock, clock.now() + 2.2)
        assert again[0][2] == "StallDetected"

    def test_per_agent_overrides_apply(self, clock: FakeClock) -> None:
        slow = Policy(heal_after=10.0, recover_after=50.0, max_attempts=3, ladder=HEAL_ACTIONS)
        monitor = Monitor(lambda a: slow if a == "Agent-2" else POLICY, TICK, clock.now())
        monitor.add("Agent-1", clock.now())
        monitor.add("Agent-2", clock.now())
        rows = run_until(monitor, clock, clock.now() + 9)
        assert {r[1] for r in rows} == {"Agent-1"}
        rows = run_until(monitor, clock, clock.now() + 1.2)
        assert ("Agent-2", "StallDetected") in {(r[1], r[2]) for r in rows}

    def test_a_busy_lease_holds_until_it_ends(self, clock: FakeClock) -> None:
        monitor = Monitor(lambda a: POLICY, TICK, clock.now())
        start = clock.now()
        monitor.add("Agent-1", start)
        clock.advance(2.05)
        (agent,) = monitor.due(clock.now())
        decision = monitor.evaluate(agent, clock.now(), lease_until=start + 8)
        assert decision.busy and monitor.stage(agent, clock.now()) is Stage.BUSY
        rows = run_until(monitor, clock, start + 7.9)
        assert rows == []
        rows = run_until(monitor, clock, start + 8.2)
        assert [r[2] for r in rows][:2] == ["StallDetected", "HealAttempt"]
        assert "RunRecovery" in [r[2] for r in rows]

    def test_a_resumed_incident_continues_at_its_next_attempt(self, clock: FakeClock) -> None:
        now = clock.now()
        carried = Incident(
            "Agent-1", silence_start=now - 3, opened_at=now - 1, attempts=2,
            next_attempt_at=now + 1, healing_detected=True, actions=HEAL_ACTIONS[:2],
        )
        monitor = Monitor(lambda a: POLICY, TICK, now)
        assert monitor.add("Agent-1", now - 3, carried)
        clock.advance(1.0)
        (agent,) = monitor.due(clock.now())
        steps = monitor.evaluate(agent, clock.now()).steps
        assert HealAttempt(3, "reset_status") in steps

    def test_an_incident_outlived_by_activity_is_not_resumed(self, clock: FakeClock) -> None:
        now = clock.now()
        carried = Incident("Agent-1", silence_start=now - 30, opened_at=now - 28, attempts=1)
        monitor = Monitor(lambda a: POLICY, TICK, now)
        assert not monitor.add("Agent-1", now - 1, carried)
        assert monitor.incident("Agent-1") is None

    def test_resolve_drops_the_incident_and_waits_a_fresh_threshold(
        self, clock: FakeClock
    ) -> None:
        monitor = Monitor(lambda a: POLICY, TICK, clock.now())
        monitor.add("Agent-1", clock.now())
        run_until(monitor, clock, clock.now() + 20)
        assert monitor.stage("Agent-1", clock.now()) is Stage.ESCALATED
        resolved_at = clock.now()
        assert monitor.resolve("Agent-1", resolved_at) is not None
        rows = run_until(monitor, clock, resolved_at + 1.9)
        assert rows == []
        rows = run_until(monitor, clock, resolved_at + 2.2)
        assert rows[0][2] == "StallDetected"

    def test_removed_agents_never_fire(self, clock: FakeClock) -> None:
        monitor = Monitor(lambda a: POLICY, TICK, clock.now())
        monitor.add("Agent-1", clock.now())
        monitor.remove("Agent-1")
        assert run_until(monitor, clock, clock.now() + 10) == []
        assert monitor.observe("Agent-1", clock.now()) is None

    def test_activity_of_an_agent_not_in_the_table_does_not_add_it(
        self, clock: FakeClock
    ) -> None:
        monitor = Monitor(lambda a: POLICY, TICK, clock.now())
        monitor.add("Agent-1", clock.now())
        monitor.remove("Agent-1")
        monitor.observe("Agent-1", clock.now() + 1)
        monitor.observe("Agent-2", clock.now() + 1)
        assert "Agent-1" not in monitor and "Agent-2" not in monitor
        assert len(monitor.table) == 0

    def test_new_thresholds_apply_to_armed_timers(self, clock: FakeClock) -> None:
        monitor = Monitor(lambda a: POLICY, TICK, clock.now())
        start = clock.now()
        monitor.add("Agent-1", start)
        shorter = Policy(heal_after=0.5, recover_after=5.0, max_attempts=3, ladder=HEAL_ACTIONS)
        monitor.set_policy(lambda a: shorter)
        rows = run_until(monitor, clock, start + 0.7)
        assert rows and rows[0][2] == "StallDetected"

    def test_ten_thousand_agents_fire_once_each_per_step(self, clock: FakeClock) -> None:
        monitor = Monitor(lambda a: POLICY, TICK, clock.now())
        for i in range(10_000):
            monitor.add(f"Agent-{i}", clock.now() + (i % 10) * 0.01)
        rows = run_until(monitor, clock, clock.now() + 2.3)
        detected = [r for r in rows if r[2] == "StallDetected"]
        assert len(detected) == 10_000
        assert len({r[1] for r in detected}) == 10_000
        assert RunRecovery.__name__ not in {r[2] for r in rows}

    def test_defer_holds_an_agent_until_the_given_time(self, clock: FakeClock) -> None:
        monitor = Monitor(lambda a: POLICY, TICK, clock.now())
        start = clock.now()
        monitor.add("Agent-1", start)
        monitor.defer("Agent-1", start + 5.0)
        assert run_until(monitor, clock, start + 4.9) == []
        rows = run_until(monitor, clock, start + 5.2)
        assert rows and rows[0][2] == "StallDetected"

    def test_an_attempt_that_ended_late_counts_heal_after_from_its_end(
        self, clock: FakeClock
    ) -> None:
        """A command rung held by defer() while it ran: the next attempt is due heal_after
        after it ended, not after it started; a stale end changes nothing."""
        policy = Policy(heal_after=2.0, recover_after=100.0, max_attempts=3, ladder=HEAL_ACTIONS)
        monitor = Monitor(lambda a: policy, TICK, clock.now())
        start = clock.now()
        monitor.add("Agent-1", start)
        rows = run_until(monitor, clock, start + 2.05)
        assert [r[2] for r in rows] == ["StallDetected", "HealAttempt"]
        incident = monitor.incident("Agent-1")
        assert incident is not None
        monitor.defer("Agent-1", clock.now() + 60.0)
        assert run_until(monitor, clock, start + 9.0) == []
        assert not monitor.attempt_ended("Agent-1", incident.opened_at, 2, clock.now())
        assert not monitor.attempt_ended("Agent-1", incident.opened_at + 1, 1, clock.now())
        assert monitor.attempt_ended("Agent-1", incident.opened_at, 1, clock.now())
        ended = clock.now()
        assert run_until(monitor, clock, ended + policy.heal_after - TICK) == []
        rows = run_until(monitor, clock, ended + policy.heal_after + TICK)
        assert [r[2] for r in rows] == ["SettleAttempt", "HealAttempt"]

    def test_rearm_restores_the_timer_of_an_agent_taken_off_the_wheel(
        self, clock: FakeClock
    ) -> None:
        """A caller that took a due agent and then recorded activity the table had missed
        must be able to put the agent back on the wheel, or it is never looked at again."""
        monitor = Monitor(lambda a: POLICY, TICK, clock.now())
        start = clock.now()
        monitor.add("Agent-1", start)
        clock.advance(2.05)
        assert monitor.due(clock.now()) == ["Agent-1"]
        monitor.observe("Agent-1", clock.now())
        assert monitor.wheel.deadline("Agent-1") is None
        monitor.rearm("Agent-1")
        assert monitor.wheel.deadline("Agent-1") == clock.now() + POLICY.heal_after



class TestParked:
    """Waiting and done agents (SPEC §12): parked, they are never detected; their only
    timer is the one they are parked with."""

    def test_a_parked_agent_is_never_detected_and_detection_resumes_unparked(
        self, clock: FakeClock
    ) -> None:
        monitor = Monitor(lambda a: POLICY, TICK, clock.now())
        start = clock.now()
        monitor.add("Agent-1", start)
        assert monitor.park("Agent-1", Stage.DONE)
        assert monitor.stage("Agent-1", clock.now()) is Stage.DONE
        assert run_until(monitor, clock, start + 60) == []
        assert monitor.parked_count() == 1 and monitor.incidents() == {}
        monitor.unpark("Agent-1")
        # Silent for a minute already: due at once, counted from its last activity.
        rows = run_until(monitor, clock, clock.now() + 0.2)
        assert rows[0][1:] == ("Agent-1", "StallDetected")
        assert monitor.parked("Agent-1") is None

    def test_a_parked_agent_comes_due_only_at_its_own_time(self, clock: FakeClock) -> None:
        monitor = Monitor(lambda a: POLICY, TICK, clock.now())
        start = clock.now()
        monitor.add("Agent-1", start)
        monitor.park("Agent-1", Stage.WAITING, start + 7.0)
        due = []
        while clock.now() < start + 8:
            clock.advance(TICK)
            due += [(clock.now(), a) for a in monitor.due(clock.now())]
        assert len(due) == 1 and start + 7.0 <= due[0][0] <= start + 7.0 + TICK + 1e-9
        monitor.park("Agent-1", Stage.WAITING, None)  # alerted: no timer left
        assert monitor.wheel.deadline("Agent-1") is None

    def test_an_agent_in_an_incident_is_not_parked(self, clock: FakeClock) -> None:
        """Its activity closes the incident first; a park that would hide one is refused."""
        monitor = Monitor(lambda a: POLICY, TICK, clock.now())
        monitor.add("Agent-1", clock.now())
        run_until(monitor, clock, clock.now() + 2.5)
        assert monitor.incident("Agent-1") is not None
        assert not monitor.park("Agent-1", Stage.WAITING)
        assert monitor.stage("Agent-1", clock.now()) is Stage.HEALING
        assert not monitor.park("Agent-9", Stage.WAITING)  # unknown agent

    def test_a_deferred_parked_agent_does_not_spin(self, clock: FakeClock) -> None:
        """A step that failed defers the agent: its parked timer waits for the deferral."""
        monitor = Monitor(lambda a: POLICY, TICK, clock.now())
        start = clock.now()
        monitor.add("Agent-1", start)
        monitor.park("Agent-1", Stage.WAITING, start)
        monitor.defer("Agent-1", start + 30)
        assert monitor.due_target("Agent-1") == start + 30

    def test_removing_a_parked_agent_forgets_its_park(self, clock: FakeClock) -> None:
        monitor = Monitor(lambda a: POLICY, TICK, clock.now())
        monitor.add("Agent-1", clock.now())
        monitor.park("Agent-1", Stage.DONE)
        monitor.remove("Agent-1")
        monitor.add("Agent-1", clock.now())
        assert monitor.parked("Agent-1") is None and monitor.parked_count() == 0
