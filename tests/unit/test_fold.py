"""The alert fold: what goes out, what an outage holds, what only ends an Alertmanager alert."""

from __future__ import annotations

from typing import Any

from healer.core.model import Transition as T
from healer.fold import AlertFold
from healer.testing import RecordingAlerts


def fold(flapping: tuple[str, ...] = ()) -> tuple[AlertFold, RecordingAlerts]:
    sink = RecordingAlerts()
    f = AlertFold(sink)
    f.is_flapping = lambda agent: agent in flapping
    return f, sink


def sent(sink: RecordingAlerts) -> list[tuple[str, str]]:
    return [(a, t) for a, t, _ in sink.alerts]


def keep(_agent: str, _slot: str, details: dict[str, Any]) -> dict[str, Any]:
    return details


class TestAlertFold:
    def test_without_an_outage_or_flapping_everything_goes_out(self) -> None:
        f, sink = fold()
        for t in (T.STALLED, T.ESCALATED, T.RECOVERED):
            f.send("Agent-1", t, {})
        assert sent(sink) == [("Agent-1", "stalled"), ("Agent-1", "escalated"),
                              ("Agent-1", "recovered")]

    def test_an_outage_holds_openings_and_counts_them(self) -> None:
        f, sink = fold()
        f.outage = True
        f.send("Agent-1", T.STALLED, {"silent_for": 5})
        f.send("Agent-1", T.ESCALATED, {"attempts": 3})
        f.send("", T.SWARM_OUTAGE, {"agents": 3})
        assert sent(sink) == [("", "swarm_outage")]
        assert f.folded == {"stalled": 1, "escalated": 1} and f.held() == 1

    def test_a_closing_in_an_outage_only_ends_the_alertmanager_alert(self) -> None:
        f, sink = fold()
        f.send("Agent-1", T.STALLED, {})  # before the outage: told
        f.outage = True
        f.send("Agent-1", T.RECOVERED, {})
        assert sent(sink) == [("Agent-1", "stalled"), ("Agent-1", "resolved")]
        assert f.folded == {"recovered": 1}

    def test_release_sends_what_is_still_open_with_fresh_details(self) -> None:
        f, sink = fold()
        f.outage = True
        f.send("Agent-1", T.STALLED, {"silent_for": 5})
        f.send("Agent-2", T.STALLED, {"silent_for": 5})
        f.outage = False
        gone = {"Agent-2"}
        released = f.release(lambda a, _s, d: None if a in gone else {**d, "silent_for": 9})
        assert released == 1
        assert sink.alerts == [("Agent-1", "stalled", {"silent_for": 9})]
        assert f.held() == 0

    def test_an_incident_held_and_ended_after_the_outage_ends_quietly(self) -> None:
        """Nobody was told of it on its own, so its end tells nobody either (SPEC §17)."""
        f, sink = fold()
        f.outage = True
        f.send("Agent-1", T.STALLED, {})
        f.outage = False
        f.send("Agent-1", T.RECOVERED, {})
        assert sent(sink) == [("Agent-1", "resolved")]
        assert f.release(keep) == 0

    def test_a_new_opening_after_the_outage_goes_out_and_is_heard(self) -> None:
        f, sink = fold()
        f.outage = True
        f.send("Agent-1", T.STALLED, {})
        f.outage = False
        f.send("Agent-1", T.ESCALATED, {})
        f.send("Agent-1", T.RECOVERED, {})
        assert sent(sink) == [("Agent-1", "escalated"), ("Agent-1", "recovered")]

    def test_a_flapping_agent_sends_only_its_flapping_alerts(self) -> None:
        f, sink = fold(flapping=("Agent-1",))
        for t in (T.FLAPPING, T.STALLED, T.ESCALATED, T.RECOVERED, T.FLAPPING_OVER):
            f.send("Agent-1", t, {})
        assert sent(sink) == [("Agent-1", "flapping"), ("Agent-1", "resolved"),
                              ("Agent-1", "flapping_over")]

    def test_without_a_sink_nothing_breaks(self) -> None:
        f = AlertFold(None)
        f.send("Agent-1", T.STALLED, {})
        f.restore("Agent-1", T.STALLED, {})
