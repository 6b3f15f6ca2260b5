"""`healer resolve` as a function: the incident closes as resolved, the marker goes, and
what is not an agent folder is refused with a usage error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from healer.config import Config
from healer.core.model import Stage
from healer.errors import UsageError
from healer.resolution import check_agent_folder, resolve
from healer.testing import MemoryIncidentLog, MemoryStatusStore


class TestResolve:
    def test_closes_the_incident_and_removes_the_marker(self) -> None:
        log, files = MemoryIncidentLog(), MemoryStatusStore()
        row = log.open_incident("Agent-1", opened_at=1.0, silence_started_at=0.0,
                                stage=Stage.ESCALATED)
        log.update_incident(row, attempts=3)
        files.write_marker("Agent-1", "Agent-1 requires manual intervention.\n")
        done = resolve("Agent-1", log, files, now=10.0)
        assert (done.closed, done.attempts, done.marker_removed) == (True, 3, True)
        assert log.open_incident_for("Agent-1") is None
        assert log.last_resolved() == {"Agent-1": 10.0}

    def test_nothing_to_resolve(self) -> None:
        done = resolve("Agent-1", MemoryIncidentLog(), MemoryStatusStore(), now=1.0)
        assert not done.anything


class TestAgentFolder:
    @pytest.mark.parametrize("name", ["", "..", "a/b", "Other-1"])
    def test_refuses_what_is_not_an_agent_name(self, tmp_path: Path, name: str) -> None:
        with pytest.raises(UsageError, match="resolve: "):
            check_agent_folder(Config(workspaces=tmp_path), name)

    def test_refuses_a_symlink_and_a_missing_folder(self, tmp_path: Path) -> None:
        (tmp_path / "Agent-0").mkdir()
        os.symlink(tmp_path / "Agent-0", tmp_path / "Agent-1")
        config = Config(workspaces=tmp_path)
        with pytest.raises(UsageError, match="symlink"):
            check_agent_folder(config, "Agent-1")
        with pytest.raises(UsageError, match="no agent folder"):
            check_agent_folder(config, "Agent-2")
        assert check_agent_folder(config, "Agent-0") == tmp_path / "Agent-0"
