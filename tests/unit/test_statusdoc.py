"""Tests for the pure status.json transforms, against every real fixture."""

from __future__ import annotations

import ast
import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from healer.core import statusdoc as sd
from tests.conftest import STATUS_DIR

FIXTURES = STATUS_DIR
MALFORMED = "Agent-1_9b3d8b004.json"
ALL_FILES = sorted(FIXTURES.glob("*.json"))
PARSEABLE = [p for p in ALL_FILES if p.name != MALFORMED]
NOW = "2026-01-20T10:00:00Z"


def load(path: Path) -> dict[str, Any]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def tasks_of(doc: dict[str, Any]) -> list[Any]:
    value = doc.get("current_tasks")
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def cleared_of(doc: dict[str, Any]) -> list[Any]:
    return [e["task"] for e in doc.get("healer", {}).get("cleared_tasks", [])]


@pytest.fixture(params=PARSEABLE, ids=lambda p: p.name)
def fixture_doc(request: pytest.FixtureRequest) -> dict[str, Any]:
    path: Path = request.param
    return load(path)


class TestPurity:
    def test_module_imports_no_io(self) -> None:
        """statusdoc imports nothing that touches the world (os, time, io, pathlib…)."""
        tree = ast.parse(Path(sd.__file__).read_text(encoding="utf-8"))
        imported: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
        assert not imported & {"os", "time", "io", "pathlib", "shutil", "structlog"}

    def test_fixtures_are_all_there(self) -> None:
        """The parametrised tests really run over the real fixture set, malformed one aside."""
        assert len(PARSEABLE) >= 30
        assert (FIXTURES / MALFORMED).exists()
        with pytest.raises(json.JSONDecodeError):
            load(FIXTURES / MALFORMED)


class TestForceUpdate:
    def test_appends_entry_and_keeps_everything_else(self, fixture_doc: dict[str, Any]) -> None:
        """force_update adds one healing_applied entry; every other key and its order stay."""
        before = copy.deepcopy(fixture_doc)
        new = sd.apply_force_update(fixture_doc, NOW, 1)
        assert fixture_doc == before, "input must not be mutated"
        old_entries = before.get("healing_applied", [])
        assert new["healing_applied"][:-1] == old_entries
        assert new["healing_applied"][-1] == {
            "timestamp": NOW,
            "action": "force_update",
            "reason": "stall_recovery",
            "attempt": 1,
        }
        rest = {k: v for k, v in new.items() if k != "healing_applied"}
        assert rest == {k: v for k, v in before.items() if k != "healing_applied"}
        assert [k for k in new if k in before] == list(before)

    def test_never_touches_last_updated(self) -> None:
        """The agent's own last_updated is never forged."""
        new = sd.apply_force_update({"last_updated": "2025-01-01 00:00:00"}, NOW, 2)
        assert new["last_updated"] == "2025-01-01 00:00:00"

    def test_keeps_a_non_list_healing_applied(self) -> None:
        """An agent's non-list healing_applied is wrapped, never dropped."""
        new = sd.apply_force_update({"healing_applied": {"x": 1}}, NOW, 1)
        assert new["healing_applied"][0] == {"x": 1}
        assert new["healing_applied"][1]["action"] == "force_update"

    def test_datetime_now_is_formatted_utc(self) -> None:
        """A datetime `now` becomes an ISO 8601 UTC stamp with Z."""
        when = datetime(2026, 1, 20, 12, 0, tzinfo=timezone(timedelta(hours=2)))
        new = sd.apply_force_update({}, when, 1)
        assert new["healing_applied"][0]["timestamp"] == "2026-01-20T10:00:00Z"


class TestClearStuckTasks:
    def test_no_task_is_lost(self, fixture_doc: dict[str, Any]) -> None:
        """Every task ends up in healer.cleared_tasks and in the moved list; none vanish."""
        before = copy.deepcopy(fixture_doc)
        new, moved = sd.apply_clear_stuck_tasks(fixture_doc, NOW, 2)
        assert fixture_doc == before
        assert moved == tasks_of(before)
        assert cleared_of(new) == tasks_of(before)
        if "current_tasks" in before:
            assert new["current_tasks"] == []
        assert new["healing_applied"][-1]["action"] == "clear_stuck_tasks"
        for key, value in before.items():
            if key not in ("current_tasks", "healing_applied"):
                assert new[key] == value

    def test_second_clear_appends(self) -> None:
        """Clearing twice keeps both batches with their time."""
        doc, _ = sd.apply_clear_stuck_tasks({"current_tasks": ["a"]}, "T1", 2)
        doc["current_tasks"] = ["b", {"task": "c", "status": "open"}]
        doc, moved = sd.apply_clear_stuck_tasks(doc, "T2", 2)
        assert moved == ["b", {"task": "c", "status": "open"}]
        entries = doc["healer"]["cleared_tasks"]
        assert [(e["task"], e["cleared_at"]) for e in entries] == [
            ("a", "T1"),
            ("b", "T2"),
            ({"task": "c", "status": "open"}, "T2"),
        ]

    def test_missing_and_string_current_tasks(self) -> None:
        """No current_tasks moves nothing; a single string is one task."""
        new, moved = sd.apply_clear_stuck_tasks({"agent_id": "Agent-1"}, NOW, 2)
        assert moved == [] and "current_tasks" not in new
        new, moved = sd.apply_clear_stuck_tasks({"current_tasks": "write docs"}, NOW, 2)
        assert moved == ["write docs"] and new["current_tasks"] == []

    def test_foreign_healer_value_is_kept(self) -> None:
        """An agent's own non-dict `healer` value survives inside healer's section."""
        new, _ = sd.apply_clear_stuck_tasks({"healer": "mine", "current_tasks": ["a"]}, NOW, 2)
        assert new["healer"]["agent_value"] == "mine"
        assert cleared_of(new) == ["a"]


class TestResetStatus:
    def test_default_status_keeping_identity(self, fixture_doc: dict[str, Any]) -> None:
        """reset writes the default status, keeps identity, history and every task."""
        before = copy.deepcopy(fixture_doc)
        new = sd.apply_reset_status(fixture_doc, NOW, 3)
        assert fixture_doc == before
        assert new["status"] == "ACTIVE_AGENT_MODE"
        assert new["current_phase"] == "TASK_EXECUTION"
        assert new["current_tasks"] == []
        for key in ("agent_id", "agent_name", "current_mission"):
            assert new.get(key) == before.get(key)
        assert new["healing_applied"][:-1] == before.get("healing_applied", [])
        assert new["healing_applied"][-1]["action"] == "reset_status"
        assert cleared_of(new) == tasks_of(before)
        assert set(new) <= {
            "agent_id", "agent_name", "current_mission", "status", "current_phase",
            "current_tasks", "healing_applied", "healer",
        }  # fmt: skip

    def test_keeps_earlier_cleared_and_reassigned(self) -> None:
        """A reset after a clear and a reassignment loses neither record."""
        doc, _ = sd.apply_clear_stuck_tasks({"agent_id": "Agent-2", "current_tasks": ["a"]}, NOW, 2)
        doc = sd.record_reassigned(doc, ["a"], "Agent-5", NOW)
        doc["current_tasks"] = ["late"]
        new = sd.apply_reset_status(doc, NOW, 3)
        assert cleared_of(new) == ["a", "late"]
        assert new["healer"]["reassigned_tasks"][0]["to"] == "Agent-5"


class TestIsFinished:
    @pytest.mark.parametrize(
        "task",
        [
            "✅ Fixed path handling in agent_status_collector",
            "  ✅ COMPLETE: Stress Testing System",
            "Test Coverage Batch 10 - COMPLETE: Created 39 new tests",
            "Debug MCP servers - COMPLETE - Fixed 3 remaining servers",
            "A5-STAGE1-DUPLICATE-001 Phase 1: ✅ COMPLETE - All 4 consolidations done",
            "Comprehensive Website Audit - ✅ COMPLETE (2025-12-25) - Audited",
            "COMPLETED: Detected 43 files approaching 300-line threshold",
            "🎉 COMPLETE: DigitalDreamscape → DreamVault merge",
            "Release - done",
            "[x] write the changelog",
            {"task": "t", "status": "completed"},
            {"task": "t", "state": "Done"},
            {"task": "t", "completed": True},
        ],
    )
    def test_finished(self, task: Any) -> None:
        """Check-marked items, COMPLETE/DONE status words and done dicts are finished."""
        assert sd.is_finished(task)

    @pytest.mark.parametrize(
        "task",
        [
            "INT-TEST-001: Integration testing preparation (active, monitoring dependencies)",
            "Phase 1 V2 Refactoring - synthetic_github.py: Analysis complete ✅, awaiting Phase 2",
            "Coordination: Agent-8 QA validation complete ✅, Agent-2 architecture review pending",
            "⏳ PENDING: Create PRs for completed merges",
            "⏳ TASK 3 (MEDIUM): Architecture SSOT tagging - Agent-3 COMPLETE ✅, Agent-2 verified",
            "🚨 BLOCKER: Phase 1 blocked until tools consolidation complete",
            "Complete hard onboarding activation",
            "Tier 1 Quick Wins - ✅ IN PROGRESS: 7/11 complete (64%)",
            {"task": "Website grade card improvements", "status": "in_progress"},
            {"task": "t"},
        ],
    )
    def test_open(self, task: Any) -> None:
        """Progress notes, pending items and imperative 'Complete …' tasks stay open."""
        assert not sd.is_finished(task)


class TestOpenTasks:
    def test_open_tasks_are_the_unfinished_current_tasks(self, fixture_doc: dict[str, Any]) -> None:
        """Open tasks of a fixture are exactly its unfinished, non-blank current_tasks."""
        expected: list[Any] = []
        for t in tasks_of(fixture_doc):
            if t and not sd.is_finished(t) and t not in expected:
                expected.append(t)
        assert sd.open_tasks(fixture_doc) == expected
        assert sd.task_count(fixture_doc) == len(expected)

    def test_cleared_tasks_stay_open_until_reassigned(self, fixture_doc: dict[str, Any]) -> None:
        """After a clear the same tasks are still open; after reassignment none are."""
        open_before = sd.open_tasks(fixture_doc)
        cleared, _ = sd.apply_clear_stuck_tasks(fixture_doc, NOW, 2)
        assert sd.open_tasks(cleared) == open_before
        assert sd.task_count(cleared) == 0
        moved = sd.record_reassigned(cleared, open_before, "Agent-4", NOW)
        assert sd.open_tasks(moved) == []

    def test_mixed_sources_dedupe_and_skip_blanks(self) -> None:
        """A task both cleared and re-listed counts once; None and blanks are not tasks."""
        doc = {
            "current_tasks": ["b", None, "  ", "✅ done one"],
            "healer": {"cleared_tasks": [{"task": "a"}, {"task": "b"}, "legacy"]},
        }
        assert sd.open_tasks(doc) == ["b", "a", "legacy"]

    def test_partial_reassignment(self) -> None:
        """Only the reassigned tasks leave the open list."""
        doc = sd.record_reassigned({"current_tasks": ["a", "b"]}, ["a"], "Agent-3", NOW)
        assert sd.open_tasks(doc) == ["b"]
        entry = doc["healer"]["reassigned_tasks"][0]
        assert entry == {"task": "a", "to": "Agent-3", "timestamp": NOW}


class TestBusyUntil:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("2026-01-20T10:00:00Z", datetime(2026, 1, 20, 10, tzinfo=UTC)),
            ("2026-01-20T10:00:00z", datetime(2026, 1, 20, 10, tzinfo=UTC)),
            ("2026-01-20T12:00:00+02:00", datetime(2026, 1, 20, 10, tzinfo=UTC)),
            ("2026-01-20T10:00:00", datetime(2026, 1, 20, 10, tzinfo=UTC)),
            ("2026-01-20 10:00:00.250000", datetime(2026, 1, 20, 10, 0, 0, 250000, tzinfo=UTC)),
        ],
    )
    def test_parses_iso_forms(self, value: str, expected: datetime) -> None:
        """Z, offsets and naive (taken as UTC) ISO 8601 all give the same instant."""
        assert sd.parse_busy_until({"busy_until": value}) == expected.timestamp()

    @pytest.mark.parametrize(
        "value", [None, "", "soon", "2026-13-01T00:00:00", True, [], {}, float("nan"), "Z"]
    )
    def test_invalid_is_none(self, value: Any) -> None:
        """Anything that is not a time gives None and never raises."""
        assert sd.parse_busy_until({"busy_until": value}) is None

    def test_absent_is_none(self, fixture_doc: dict[str, Any]) -> None:
        """No real fixture carries a lease."""
        assert sd.parse_busy_until(fixture_doc) is None
