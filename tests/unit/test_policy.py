"""The decision function: timelines of one silence."""

from __future__ import annotations

import pytest

from healer.core.model import HEAL_ACTIONS, Pipeline, Stage
from healer.core.policy import (
    Decision,
    Escalate,
    HealAttempt,
    Incident,
    Policy,
    RunRecovery,
    SettleAttempt,
    StallDetected,
    decide,
    stage_of,
)

T0 = 10_000.0
DEFAULT = Policy(heal_after=120, recover_after=300, max_attempts=3, ladder=HEAL_ACTIONS)


def walk(policy: Policy, times: list[float]) -> list[tuple[float, Decision]]:
    incident: Incident | None = None
    out = []
    for t in times:
        decision = decide("Agent-1", T0, incident, T0 + t, policy)
        incident = decision.incident
        out.append((t, decision))
    return out


def kinds(decision: Decision) -> list[str]:
    return [type(s).__name__ for s in decision.steps]


class TestDecide:
    def test_nothing_is_due_before_the_heal_threshold(self) -> None:
        d = decide("Agent-1", T0, None, T0 + 119.9, DEFAULT)
        assert d.steps == () and d.incident is None and d.next_at == T0 + 120

    def test_the_default_timeline_heals_three_times_recovers_once_then_escalates(self) -> None:
        timeline = walk(DEFAULT, [120, 240, 300, 360, 480, 600, 5000])
        steps = {t: d.steps for t, d in timeline}
        assert steps[120] == (
            StallDetected(Pipeline.HEALING, 120, 120),
            HealAttempt(1, "force_update"),
        )
        assert steps[240] == (SettleAttempt(1), HealAttempt(2, "clear_stuck_tasks"))
        assert steps[300] == (StallDetected(Pipeline.RECOVERY, 300, 300), RunRecovery(300))
        assert steps[360] == (SettleAttempt(2), HealAttempt(3, "reset_status"))
        assert steps[480] == (SettleAttempt(3), Escalate(3, HEAL_ACTIONS))
        assert steps[600] == () and steps[5000] == ()
        assert timeline[-1][1].next_at is None
        assert stage_of(timeline[-1][1].incident) is Stage.ESCALATED

    def test_next_at_points_at_the_next_due_moment(self) -> None:
        timeline = dict(walk(DEFAULT, [120, 240, 300, 360]))
        assert timeline[120].next_at == T0 + 240
        assert timeline[240].next_at == T0 + 300
        assert timeline[300].next_at == T0 + 360
        assert timeline[360].next_at == T0 + 480

    def test_a_late_evaluation_runs_one_attempt_not_a_burst(self) -> None:
        _, (_, late) = walk(DEFAULT, [120, 5000])
        assert kinds(late) == ["SettleAttempt", "HealAttempt", "StallDetected", "RunRecovery"]
        assert late.incident is not None and late.incident.attempts == 2
        assert late.next_at == T0 + 5000 + 120

    def test_recovery_runs_once_even_after_escalation(self) -> None:
        policy = Policy(heal_after=10, recover_after=300, max_attempts=2, ladder=HEAL_ACTIONS)
        timeline = dict(walk(policy, [10, 20, 30, 300, 400]))
        assert Escalate(2, ("force_update", "clear_stuck_tasks")) in timeline[30].steps
        assert RunRecovery(300) in timeline[300].steps
        assert timeline[400].steps == ()

    def test_attempts_past_the_ladder_repeat_its_last_rung(self) -> None:
        policy = Policy(heal_after=10, recover_after=1e9, max_attempts=4, ladder=("force_update",))
        timeline = walk(policy, [10, 20, 30, 40, 50])
        actions = [s.action for _, d in timeline for s in d.steps if isinstance(s, HealAttempt)]
        assert actions == ["force_update"] * 4
        assert isinstance(timeline[-1][1].steps[-1], Escalate)

    def test_an_empty_ladder_escalates_at_detection(self) -> None:
        policy = Policy(heal_after=10, recover_after=1e9, max_attempts=3, ladder=())
        (_, d), = walk(policy, [10])
        assert kinds(d) == ["StallDetected", "Escalate"]

    def test_with_healing_disabled_only_recovery_runs(self) -> None:
        policy = Policy(120, 300, 3, HEAL_ACTIONS, healing_enabled=False)
        assert decide("Agent-1", T0, None, T0 + 200, policy).steps == ()
        d = decide("Agent-1", T0, None, T0 + 300, policy)
        assert kinds(d) == ["StallDetected", "RunRecovery"]
        assert stage_of(d.incident) is Stage.RECOVERING and d.next_at is None

    def test_a_policy_that_does_not_act_only_detects(self) -> None:
        """A flapping agent's incident: both stalls reported, no rung, no recovery, and no
        timer left once both are reported (it would fire at every tick)."""
        quiet = Policy(120, 300, 3, HEAL_ACTIONS, acting=False)
        timeline = dict(walk(quiet, [120, 240, 300, 5000]))
        assert timeline[120].steps == (StallDetected(Pipeline.HEALING, 120, 120),)
        assert timeline[120].next_at == T0 + 300
        assert timeline[240].steps == ()
        assert timeline[300].steps == (StallDetected(Pipeline.RECOVERY, 300, 300),)
        assert timeline[300].next_at is None and timeline[5000].steps == ()
        incident = timeline[5000].incident
        assert incident is not None and incident.attempts == 0 and not incident.escalated

    def test_a_quiet_policy_drops_an_attempt_that_was_pending(self) -> None:
        """An incident carried over a restart with attempt 2 due, of an agent now flapping."""
        quiet = Policy(120, 300, 3, HEAL_ACTIONS, acting=False)
        carried = Incident("Agent-1", T0, T0 + 120, attempts=1, next_attempt_at=T0 + 240,
                           healing_detected=True, actions=("force_update",))
        d = decide("Agent-1", T0, carried, T0 + 240, quiet)
        assert d.steps == () and d.next_at == T0 + 300
        assert d.incident is not None and d.incident.next_attempt_at is None

    def test_recover_after_shorter_than_heal_after_runs_recovery_first(self) -> None:
        policy = Policy(heal_after=200, recover_after=100, max_attempts=3, ladder=HEAL_ACTIONS)
        d = decide("Agent-1", T0, None, T0 + 100, policy)
        assert kinds(d) == ["StallDetected", "RunRecovery"]
        assert d.next_at == T0 + 200

    @pytest.mark.parametrize("now", [121.0, 250.0, 301.0, 10_000.0])
    def test_a_busy_lease_holds_every_pipeline(self, now: float) -> None:
        d = decide("Agent-1", T0, None, T0 + now, DEFAULT, lease_until=T0 + 20_000)
        assert d.busy and d.steps == () and d.next_at == T0 + 20_000
        assert stage_of(d.incident, busy=True) is Stage.BUSY

    def test_thresholds_count_from_the_end_of_an_expired_lease(self) -> None:
        d = decide("Agent-1", T0, None, T0 + 130, DEFAULT, lease_until=T0 + 125)
        assert not d.busy and d.steps == () and d.next_at == T0 + 125 + 120
        d = decide("Agent-1", T0, None, T0 + 245, DEFAULT, lease_until=T0 + 125)
        assert d.steps[0] == StallDetected(Pipeline.HEALING, 245, 120)  # the true silence
        assert HealAttempt(1, "force_update") in d.steps
        assert d.next_at == T0 + 125 + 240  # attempt 2, before the recovery at 125 + 300

    def test_a_lease_older_than_the_last_activity_changes_nothing(self) -> None:
        d = decide("Agent-1", T0, None, T0 + 120, DEFAULT, lease_until=T0 - 50)
        assert HealAttempt(1, "force_update") in d.steps
