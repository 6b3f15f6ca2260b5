"""The arithmetic of `healer stats`, without SQLite."""

from __future__ import annotations

import json

import pytest

from healer.core.stats import (
    IncidentCounts,
    RecentAction,
    Tally,
    WaitTally,
    success_rate,
    summarize,
)

SPEC_KEYS = {
    "total_actions",
    "successful",
    "failed",
    "success_rate",
    "by_agent",
    "recovery_actions",
    "incidents",
    "mttd_seconds",
    "mttr_seconds",
    "recent_actions",
}


class TestSuccessRate:
    def test_is_zero_when_no_action_is_settled(self) -> None:
        assert success_rate(0, 0) == 0.0

    @pytest.mark.parametrize(
        ("successful", "failed", "expected"),
        [(1, 0, 100.0), (0, 3, 0.0), (1, 3, 25.0), (2, 1, 66.67), (1, 2, 33.33)],
    )
    def test_is_the_percent_of_settled_actions_rounded_to_two_places(
        self, successful: int, failed: int, expected: float
    ) -> None:
        assert success_rate(successful, failed) == expected


class TestTally:
    def test_pending_is_what_is_neither_successful_nor_failed(self) -> None:
        assert Tally(total=5, successful=1, failed=3).pending == 1


class TestSummarize:
    def test_the_empty_history_has_every_spec_key_with_zero_and_null(self) -> None:
        report = summarize()
        assert report.keys() >= SPEC_KEYS
        assert report["total_actions"] == 0
        assert report["success_rate"] == 0.0
        assert report["by_agent"] == {}
        assert report["incidents"] == {"open": 0, "recovered": 0, "resolved": 0, "escalated": 0}
        assert report["mttd_seconds"] is None
        assert report["mttr_seconds"] is None
        assert report["recent_actions"] == []

    def test_waits_are_summed_apart_from_the_ladder(self) -> None:
        """Waits on a human (SPEC §12): their own key, per agent and in all; every figure of
        the ladder and the incidents stays as it was."""
        report = summarize(waits={"Agent-2": WaitTally(2, 1, 1, 90.0),
                                  "Agent-1": WaitTally(1, 0, 0, 12.3456)})
        assert report["waiting"] == {
            "waits": 3, "open": 1, "alerted": 1, "seconds": 102.346,
            "by_agent": {"Agent-1": {"waits": 1, "alerted": 0, "seconds": 12.346},
                         "Agent-2": {"waits": 2, "alerted": 1, "seconds": 90.0}}}
        assert list(report["waiting"]["by_agent"]) == ["Agent-1", "Agent-2"]
        assert report["total_actions"] == 0 and report["by_agent"] == {}
        assert summarize()["waiting"] == {"waits": 0, "open": 0, "alerted": 0, "seconds": 0.0,
                                          "by_agent": {}}

    def test_totals_are_the_sums_of_the_agents_and_pending_stays_out_of_the_rate(self) -> None:
        report = summarize(
            by_agent={"Agent-2": Tally(3, 0, 3), "Agent-1": Tally(4, 2, 1)},
            recovery_actions=2,
        )
        assert (report["total_actions"], report["successful"], report["failed"]) == (7, 2, 4)
        assert report["pending"] == 1
        assert report["success_rate"] == 33.33  # 2 of the 6 settled, the pending one left out
        assert list(report["by_agent"]) == ["Agent-1", "Agent-2"]
        assert report["by_agent"]["Agent-1"] == {"total": 4, "successful": 2, "failed": 1}
        assert report["recovery_actions"] == 2

    def test_means_are_rounded_to_the_millisecond_and_incidents_passed_through(self) -> None:
        report = summarize(
            incidents=IncidentCounts(open=1, recovered=2, resolved=3, escalated=4),
            mttd_seconds=370.0 / 3,
            mttr_seconds=180.0,
        )
        assert report["mttd_seconds"] == 123.333
        assert report["mttr_seconds"] == 180.0
        assert report["incidents"] == {"open": 1, "recovered": 2, "resolved": 3, "escalated": 4}

    def test_recent_actions_keep_their_order_and_carry_an_iso_timestamp(self) -> None:
        recent = [
            RecentAction(1_700_000_060.0, "Agent-1", "healing", "reset_status", 3, "pending"),
            RecentAction(1_700_000_000.0, "Agent-2", "recovery", "alert", 1, None),
        ]
        report = summarize(recent=recent)
        assert report["recent_actions"] == [
            {
                "timestamp": "2023-11-14T22:14:20.000Z",
                "agent": "Agent-1",
                "pipeline": "healing",
                "action": "reset_status",
                "attempt": 3,
                "outcome": "pending",
            },
            {
                "timestamp": "2023-11-14T22:13:20.000Z",
                "agent": "Agent-2",
                "pipeline": "recovery",
                "action": "alert",
                "attempt": 1,
                "outcome": None,
            },
        ]

    def test_the_report_is_plain_json(self) -> None:
        report = summarize(by_agent={"Agent-1": Tally(1, 1, 0)}, mttr_seconds=1.5)
        assert json.loads(json.dumps(report)) == report
