"""The swarm judge: an outage starts and ends exactly at the configured thresholds."""

from __future__ import annotations

import pytest

from healer.core.swarm import SwarmJudge, SwarmPolicy, SwarmVerdict


class TestSwarmPolicy:
    @pytest.mark.parametrize(
        ("in_incident", "agents", "outage"),
        [
            (0, 0, False),      # no agents, no outage
            (2, 2, False),      # all of them, but fewer than min_agents
            (3, 6, True),       # exactly half, exactly min_agents
            (3, 7, False),      # just under half
            (50, 53, True),     # the API-down case
            (4, 100, False),    # many agents, few stalled
        ],
    )
    def test_an_outage_needs_both_the_fraction_and_the_minimum(
        self, in_incident: int, agents: int, outage: bool
    ) -> None:
        assert SwarmPolicy(0.5, 3).is_outage(in_incident, agents) is outage


class TestSwarmJudge:
    def test_one_verdict_when_the_outage_starts_and_one_when_it_ends(self) -> None:
        judge = SwarmJudge(SwarmPolicy(0.5, 3))
        timeline = [(1, 10, None), (4, 10, None), (5, 10, SwarmVerdict.OUTAGE),
                    (9, 10, None), (6, 10, None), (4, 10, SwarmVerdict.RECOVERED), (0, 10, None)]
        got = [judge.update(n, total, float(t)) for t, (n, total, _) in enumerate(timeline)]
        assert got == [want for _, _, want in timeline]

    def test_the_outage_remembers_when_it_began_and_its_peak(self) -> None:
        judge = SwarmJudge(SwarmPolicy(0.5, 3))
        judge.update(5, 10, 100.0)
        judge.update(8, 10, 101.0)
        judge.update(6, 10, 102.0)
        assert judge.outage and judge.since == 100.0 and judge.peak == 8
        judge.update(1, 10, 103.0)
        assert not judge.outage and judge.since is None and judge.peak == 8

    def test_agents_leaving_the_swarm_can_start_an_outage(self) -> None:
        """Three of ten stalled is no outage; when five healthy folders go away it is."""
        judge = SwarmJudge(SwarmPolicy(0.5, 3))
        assert judge.update(3, 10, 0.0) is None
        assert judge.update(3, 5, 1.0) is SwarmVerdict.OUTAGE

    def test_a_new_policy_applies_from_the_next_update(self) -> None:
        judge = SwarmJudge(SwarmPolicy(0.5, 3))
        assert judge.update(3, 10, 0.0) is None
        judge.set_policy(SwarmPolicy(0.25, 3))
        assert judge.update(3, 10, 1.0) is SwarmVerdict.OUTAGE
