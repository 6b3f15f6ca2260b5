"""The read-only view: `agent_status` takes its stages from the history and the files
(moved here from test_report), and the engine's view answers `check` and the metrics."""

from __future__ import annotations

import json
import os
from pathlib import Path

from healer.adapters.store import Store
from healer.config import Config
from healer.report import fit, render_status
from healer.wiring import agent_status
from tests.conftest import make_agent

NOW = 1_700_000_000.0


class TestAgentStatus:
    def _config(self, tmp_path: Path) -> Config:
        return Config(workspaces=tmp_path / "ws", heal_after=2.0, recover_after=5.0, tick=0.1)

    def test_stages_from_history_and_files(self, tmp_path: Path) -> None:
        """The stage is the open incident's, else busy while a lease holds, else active; the
        silence counts from the newest genuine mtime; healer's own write does not count."""
        config = self._config(tmp_path)
        root = config.workspaces
        for name in ("Agent-1", "Agent-2", "Agent-3"):
            folder = make_agent(root, name)
            for path in (folder / "status.json", folder / "devlogs", folder / "inbox"):
                os.utime(path, (NOW - 100, NOW - 100))
        status = root / "Agent-3" / "status.json"
        status.write_text(json.dumps({"busy_until": "2023-11-14T22:30:00Z"}))
        os.utime(status, (NOW - 10, NOW - 10))
        with Store.open(config.state_path / "healer.db") as store:
            incident = store.open_incident("Agent-1", opened_at=NOW - 90,
                                           silence_started_at=NOW - 100, stage="escalated")
            store.update_incident(incident, attempts=3)
            own = root / "Agent-1" / "status.json"
            own.write_text("{}")
            st = own.stat()
            store.note_self_write(str(own), st.st_ino, st.st_mtime_ns, st.st_size, NOW)
            rows = {r["agent"]: r for r in agent_status(config, store, now=NOW)["agents"]}
        assert {a: (r["stage"], r["attempts"]) for a, r in rows.items()} == {
            "Agent-1": ("escalated", 3), "Agent-2": ("active", 0), "Agent-3": ("busy", 0)}
        assert rows["Agent-1"]["silent_for"] == 100.0
        assert rows["Agent-1"]["last_activity"] == "2023-11-14T22:11:40Z"
        assert rows["Agent-3"]["busy_until"] == "2023-11-14T22:30:00Z"
        assert rows["Agent-2"]["busy_until"] is None

    def test_without_history(self, tmp_path: Path) -> None:
        """No history: every agent is listed from its files alone."""
        config = self._config(tmp_path)
        make_agent(config.workspaces, "Agent-1")
        (config.workspaces / "not-an-agent").mkdir()
        data = agent_status(config, None)
        assert [r["agent"] for r in data["agents"]] == ["Agent-1"]
        assert data["agents"][0]["stage"] == "active"

    def test_activity_after_the_silence_ends_a_stale_incident(self, tmp_path: Path) -> None:
        """An open incident in the history whose agent wrote since its silence began (healer
        was down) is reported as the files say: active, no attempts."""
        config = self._config(tmp_path)
        folder = make_agent(config.workspaces, "Agent-1")
        for path in (folder / "status.json", folder / "devlogs", folder / "inbox"):
            os.utime(path, (NOW - 100, NOW - 100))
        with Store.open(config.state_path / "healer.db") as store:
            incident = store.open_incident("Agent-1", opened_at=NOW - 90,
                                           silence_started_at=NOW - 100)
            store.update_incident(incident, attempts=2)
            stale = agent_status(config, store, now=NOW)["agents"][0]
            os.utime(folder / "devlogs", (NOW - 5, NOW - 5))
            fresh = agent_status(config, store, now=NOW)["agents"][0]
        assert (stale["stage"], stale["attempts"]) == ("healing", 2)
        assert (fresh["stage"], fresh["attempts"], fresh["silent_for"]) == ("active", 0, 5.0)

    def test_a_symlinked_status_json_is_noted(self, tmp_path: Path) -> None:
        """An agent whose status.json is a symlink to a dashboard file: its row says healer
        reads it and never writes it, the silence comes from the file behind the link, and
        the table prints the note under the rows within 80 columns."""
        config = self._config(tmp_path)
        dashboard = tmp_path / "dashboard"
        dashboard.mkdir()
        (dashboard / "one.json").write_text("{}")
        os.utime(dashboard / "one.json", (NOW - 7, NOW - 7))
        name = "Agent-" + "x" * 40
        for agent in (name, "Agent-2"):
            folder = make_agent(config.workspaces, agent)
            for path in (folder / "status.json", folder / "devlogs", folder / "inbox"):
                os.utime(path, (NOW - 100, NOW - 100))
        linked = config.workspaces / name / "status.json"
        linked.unlink()
        linked.symlink_to(dashboard / "one.json")
        os.utime(linked, (NOW - 100, NOW - 100), follow_symlinks=False)
        data = agent_status(config, None, now=NOW)
        rows = {r["agent"]: r for r in data["agents"]}
        assert rows[name]["note"] == "status.json is a symlink: healer reads it, never writes it"
        assert rows[name]["silent_for"] == 7.0
        assert "note" not in rows["Agent-2"]
        lines = render_status(data).splitlines()
        assert lines[-2] == f"  {fit(name, 18)}: {rows[name]['note']}"
        assert max(len(line) for line in lines) <= 80


class TestWaitingAndDone:
    """`status` reads heartbeat.json itself (SPEC §12): a waiting or done beat that is the
    agent's newest write is its stage; the wait on record keeps its start."""

    def _agents(self, root: Path) -> None:
        for name, beat, beat_age in (
            ("Agent-1", {"state": "waiting", "message": "permission requested for Bash"}, 40),
            ("Agent-2", {"state": "done", "message": "SessionEnd: logout"}, 30),
            ("Agent-3", {"state": "waiting"}, 50),  # ... and then it wrote its devlog
            ("Agent-4", {"state": "working", "message": "PostToolUse: Edit"}, 20),
        ):
            folder = make_agent(root, name)
            for path in (folder / "status.json", folder / "devlogs", folder / "inbox"):
                os.utime(path, (NOW - 100, NOW - 100))
            (folder / "heartbeat.json").write_text(json.dumps(beat))
            os.utime(folder / "heartbeat.json", (NOW - beat_age, NOW - beat_age))
        os.utime(root / "Agent-3" / "devlogs", (NOW - 10, NOW - 10))

    def test_stages_since_and_messages(self, tmp_path: Path) -> None:
        config = Config(workspaces=tmp_path / "ws", heal_after=2.0, recover_after=5.0,
                        tick=0.1)
        self._agents(config.workspaces)
        with Store.open(config.state_path / "healer.db") as store:
            store.waits.open_wait("Agent-1", started_at=NOW - 70)  # repeated beats since
            data = agent_status(config, store, now=NOW)
        rows = {r["agent"]: r for r in data["agents"]}
        assert {a: r["stage"] for a, r in rows.items()} == {
            "Agent-1": "waiting", "Agent-2": "done", "Agent-3": "active", "Agent-4": "active"}
        assert rows["Agent-1"]["waiting_since"] == "2023-11-14T22:12:10Z"  # NOW - 70
        assert rows["Agent-1"]["silent_for"] == 40.0
        assert [rows[a]["waiting_since"] for a in ("Agent-2", "Agent-3", "Agent-4")] == [
            None, None, None]
        assert rows["Agent-4"]["message"] == "PostToolUse: Edit"
        lines = render_status(data).splitlines()
        assert "  Agent-1: waiting: permission requested for Bash" in lines
        assert lines[-1] == "4 agents: 2 active, 1 done, 1 waiting"
        assert max(len(line) for line in lines) <= 80

    def test_without_history_a_wait_starts_at_its_beat(self, tmp_path: Path) -> None:
        config = Config(workspaces=tmp_path / "ws", heal_after=2.0, recover_after=5.0,
                        tick=0.1)
        self._agents(config.workspaces)
        rows = {r["agent"]: r for r in agent_status(config, None, now=NOW)["agents"]}
        assert rows["Agent-1"]["waiting_since"] == "2023-11-14T22:12:40Z"  # NOW - 40
