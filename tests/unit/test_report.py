"""The operator's tables: `status` fits 80 columns whatever the names, `stats` reads well
empty and full."""

from __future__ import annotations

from typing import Any

import click

from healer.core.stats import IncidentCounts, RecentAction, Tally, WaitTally, summarize
from healer.report import age, fit, render_stats, render_status

NOW = 1_700_000_000.0


def _row(agent: str, stage: str = "active", silent: float | None = 5.0,
         attempts: int = 0) -> dict[str, Any]:
    return {"agent": agent, "last_activity": "2023-11-14T22:13:15.000Z", "silent_for": silent,
            "stage": stage, "attempts": attempts, "busy_until": None}


class TestFit:
    def test_short_text_is_kept(self) -> None:
        """A name that fits is returned as it is."""
        assert fit("Agent-1", 20) == "Agent-1"

    def test_long_text_keeps_both_ends(self) -> None:
        """A long name is cut in the middle to exactly the width, so names that differ only
        at the end (a number) stay apart."""
        a = fit("Agent-with-a-very-long-descriptive-name-11", 20)
        b = fit("Agent-with-a-very-long-descriptive-name-12", 20)
        assert len(a) == len(b) == 20
        assert a != b and a.startswith("Agent-") and a.endswith("-11")


class TestRenderStatus:
    def test_fits_eighty_columns_with_long_names(self) -> None:
        """Every line fits 80 columns even with 60-character agent names, huge silences and
        attempt counts, and the names stay distinguishable."""
        rows = [_row("Agent-" + "x" * 54 + f"-{n}", stage, 10.0 ** (n + 2), 10 ** n)
                for n, stage in enumerate(("active", "healing", "recovering", "escalated", "busy"))]
        rows.append(_row("Agent-2", silent=None))
        text = render_status({"agents": rows})
        lines = text.splitlines()
        assert max(len(line) for line in lines) <= 80
        assert len(lines) == 1 + len(rows) + 1
        names = [line.split()[0] for line in lines[1:-1]]
        assert len(set(names)) == len(names)
        assert lines[-1] == ("6 agents: 2 active, 1 busy, 1 escalated, 1 healing, "
                             "1 recovering")

    def test_color_wraps_only_the_stage(self) -> None:
        """With color, the stage is styled and the rest of the line stays as without."""
        plain = render_status({"agents": [_row("Agent-1", "escalated", 3.0, 3)]})
        colored = render_status({"agents": [_row("Agent-1", "escalated", 3.0, 3)]}, color=True)
        assert colored != plain
        assert click.unstyle(colored) == plain

    def test_no_agents(self) -> None:
        """An empty workspace still prints the header and says there is no agent."""
        assert render_status({"agents": []}).splitlines()[-1] == "0 agents: no agents"


class TestWaitingRows:
    def test_a_waiting_agents_message_is_printed_under_the_table(self) -> None:
        rows = [{**_row("Agent-1", "waiting", 40.0, 0), "message": "approve " + "x" * 90},
                {**_row("Agent-2", "done", 5.0, 0), "message": "SessionEnd"}]
        lines = render_status({"agents": rows}).splitlines()
        assert lines[3].startswith("  Agent-1: waiting: approve xxx")
        assert not [line for line in lines if "SessionEnd" in line]  # done needs nobody
        assert max(len(line) for line in lines) <= 80
        assert lines[-1] == "2 agents: 1 done, 1 waiting"

    def test_stats_show_the_waits_once_there_are_any(self) -> None:
        assert "waits on a human" not in render_stats(summarize())
        text = render_stats(summarize(waits={"Agent-1": WaitTally(3, 1, 2, 930.5)}))
        assert "waits on a human       3   open 1   alerted 2   time waiting 930.5s" in text


class TestAge:
    def test_units(self) -> None:
        """Ages read in the largest sensible unit; None is a dash."""
        assert [age(x) for x in (None, -1, 5.9, 125, 7300, 200000)] == [
            "-", "0s", "5s", "2m05s", "2h01m", "2d07h"]


class TestRenderStats:
    def test_empty_history(self) -> None:
        """The empty history renders zeros and dashes, no agent table, no recent actions."""
        text = render_stats(summarize())
        assert "healing actions        0" in text
        assert "success rate         0.0%" in text
        assert "MTTD -   MTTR -" in text
        assert "AGENT" not in text and "recent actions" not in text
        assert max(len(line) for line in text.splitlines()) <= 80

    def test_full_history(self) -> None:
        """A full summary shows every total, pending and resolved too, a per-agent table, and
        recent actions where recovery actions show dashes for attempt and outcome."""
        data = summarize(
            by_agent={"Agent-1": Tally(3, 1, 1), "Agent-" + "y" * 40: Tally(2, 0, 2)},
            recovery_actions=4,
            incidents=IncidentCounts(open=1, recovered=2, resolved=1, escalated=1),
            mttd_seconds=121.04, mttr_seconds=33.0,
            recent=[RecentAction(NOW, "Agent-1", "recovery", "rescue_message", 0, None),
                    RecentAction(NOW - 1, "Agent-1", "healing", "force_update", 1, "success")],
        )
        text = render_stats(data)
        lines = text.splitlines()
        assert max(len(line) for line in lines) <= 80
        assert lines[0].split() == ["healing", "actions", "5", "successful", "1", "failed", "3",
                                    "pending", "1"]
        assert "success rate        25.0%" in text
        assert "recovery actions       4" in text
        assert "open 1   recovered 2   resolved 1   escalated 1" in text
        assert "MTTD 121.0s   MTTR 33.0s" in text
        agent_rows = [line.split() for line in lines if line.startswith("Agent-")]
        assert ["Agent-1", "3", "1", "1"] in agent_rows
        assert len(agent_rows) == 2
        recent = [line.split() for line in lines if line.startswith("  2023")]
        assert recent == [
            ["2023-11-14", "22:13:20", "Agent-1", "rescue_message", "-", "-"],
            ["2023-11-14", "22:13:19", "Agent-1", "force_update", "1", "success"],
        ]
