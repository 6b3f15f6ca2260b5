"""Tests for the rescue, reassignment and escalation texts (SPEC §3, §4)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from healer.pipelines import messages as m

NOW = "2026-01-20T10:00:00Z"

HEADER = [
    "# 🚨 INBOX MESSAGE - RESCUE",
    "**From**: healer",
    "**To**: Agent-3",
    "**Priority**: urgent",
    "**Message Type**: rescue",
    f"**Timestamp**: {NOW}",
    "---",
]


class TestRescueMessage:
    def test_header_is_the_swarm_inbox_format(self) -> None:
        """The first seven lines are exactly SPEC §4's header."""
        text = m.rescue_message("Agent-3", NOW, 305.4, "2026-01-20T09:54:55Z", [], "Resume.")
        assert text.splitlines()[:7] == HEADER

    def test_body_says_why_what_was_tried_and_what_next(self) -> None:
        """The body names the silence, the last activity, the actions tried and the advice."""
        text = m.rescue_message(
            "Agent-3",
            NOW,
            305.4,
            "2026-01-20T09:54:55Z",
            ["force_update", "clear_stuck_tasks"],
            "Read this inbox, then update status.json.",
        )
        body = text.split("---\n", 1)[1]
        assert "silent for 305 s" in body
        assert "2026-01-20T09:54:55Z" in body
        assert "force_update, clear_stuck_tasks" in body
        assert body.rstrip().endswith("Read this inbox, then update status.json.")
        assert text.endswith("\n")

    def test_short_silence_and_unknown_last_activity(self) -> None:
        """A sub-10 s silence keeps a decimal; no activity seen is said plainly."""
        text = m.rescue_message("Agent-1", NOW, 2.5, None, [], "Go on.")
        assert "silent for 2.5 s" in text
        assert "never seen" in text
        assert "nothing yet" in text


class TestReassignmentMessage:
    def test_header_and_tasks(self) -> None:
        """The reassignment carries the inbox header and lists each task on one line."""
        text = m.reassignment_message(
            "Agent-5",
            "Agent-2",
            ["Fix the\nbuild", {"task": "Deploy", "status": "in_progress"}],
            NOW,
        )
        lines = text.splitlines()
        assert lines[0] == "# 🚨 INBOX MESSAGE - TASK REASSIGNMENT"
        assert lines[1:7] == [
            "**From**: healer",
            "**To**: Agent-5",
            "**Priority**: urgent",
            "**Message Type**: task_reassignment",
            f"**Timestamp**: {NOW}",
            "---",
        ]
        assert "- Fix the build" in lines
        assert '- {"task": "Deploy", "status": "in_progress"}' in lines
        assert "Agent-2" in text and "2 open tasks" in text

    def test_single_task_grammar(self) -> None:
        """One task is 'task', not 'tasks'."""
        assert "1 open task to you" in m.reassignment_message("Agent-5", "Agent-2", ["a"], NOW)


class TestEscalationMarker:
    def test_layout(self) -> None:
        """First line fixed, then timestamp, attempts and one action per line."""
        text = m.escalation_marker(
            "Agent-7", NOW, 3, ["force_update", "clear_stuck_tasks", "reset_status"]
        )
        assert text.splitlines() == [
            "Agent-7 requires manual intervention.",
            f"Timestamp: {NOW}",
            "Recovery attempts: 3",
            "force_update",
            "clear_stuck_tasks",
            "reset_status",
        ]


class TestRescueFilename:
    def test_plain_name(self) -> None:
        """The name is HEALER_RESCUE_<YYYYMMDD_HHMMSS>.md."""
        name = m.rescue_filename(datetime(2026, 1, 20, 9, 5, 7, tzinfo=UTC), set())
        assert name == "HEALER_RESCUE_20260120_090507.md"
        assert re.fullmatch(r"HEALER_RESCUE_\d{8}_\d{6}\.md", name)

    def test_suffixes_when_taken(self) -> None:
        """Collisions in the same second get _2, _3, … in order."""
        now = datetime(2026, 1, 20, 9, 5, 7, tzinfo=UTC)
        taken: set[str] = set()
        names = []
        for _ in range(4):
            name = m.rescue_filename(now, taken)
            taken.add(name)
            names.append(name)
        assert names == [
            "HEALER_RESCUE_20260120_090507.md",
            "HEALER_RESCUE_20260120_090507_2.md",
            "HEALER_RESCUE_20260120_090507_3.md",
            "HEALER_RESCUE_20260120_090507_4.md",
        ]

    @pytest.mark.parametrize("offset", [2, -5])
    def test_aware_times_are_stamped_in_utc(self, offset: int) -> None:
        """An aware datetime in another zone is converted to UTC for the stamp."""
        local = datetime(2026, 1, 20, 9, 0, 0, tzinfo=UTC).astimezone(
            timezone(timedelta(hours=offset))
        )
        assert m.rescue_filename(local, ()) == "HEALER_RESCUE_20260120_090000.md"
