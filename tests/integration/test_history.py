"""The durable history under the real daemon: a SIGKILL mid-incident resumes it, `healer stats`
adds up to what the log said, readers never see a locked database, and retention prunes."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from healer.adapters.store import Store
from tests.conftest import make_agent
from tests.integration.daemon import (
    LogLine,
    run_healer,
    running_daemon,
    watch_args,
)


def _agents(root: Path, *names: str, age: float = 0.0) -> None:
    """Agent folders whose files were last touched `age` seconds ago."""
    when = time.time() - age
    for name in names:
        folder = make_agent(root, name)
        for path in (folder / "status.json", folder / "devlogs", folder / "inbox", folder):
            os.utime(path, (when, when))


@contextmanager
def _keep_alive(folder: Path, every: float = 0.1) -> Iterator[None]:
    """Write to the agent's devlog until the block ends: an agent that is working."""
    stop = threading.Event()

    def work() -> None:
        n = 0
        while True:
            n += 1
            (folder / "devlogs" / "work.md").write_text(f"step {n}\n")
            if stop.wait(every):
                return

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(2)


def _named(lines: list[LogLine], event: str, **fields: Any) -> list[LogLine]:
    return [x for x in lines if x.get("event") == event
            and all(x.get(k) == v for k, v in fields.items())]


class TestKillMidIncident:
    def test_sigkill_resumes_the_incident_at_the_next_attempt(self, tmp_path: Path) -> None:
        """After a SIGKILL right after attempt 1 the restarted daemon's next action for the
        agent is attempt 2; the resumed incident is not detected again, and the restart's scan
        does not take healer's own force_update write for the agent's activity."""
        root = tmp_path / "ws"
        _agents(root, "Agent-1")
        args = watch_args(0.5, 30, 0.05)
        with running_daemon(root, tmp_path, args, stop_signal=None) as first:
            first.wait_event("heal_action", timeout=10, agent="Agent-1", attempt=1)
            first.kill()
        assert first.proc.returncode == -signal.SIGKILL
        assert _named(first.snapshot(), "stall_detected", agent="Agent-1", pipeline="healing")
        with running_daemon(root, tmp_path, args) as second:
            heal = second.wait_event("heal_action", timeout=10, agent="Agent-1")
            assert (heal["attempt"], heal["action"]) == (2, "clear_stuck_tasks")
            later = second.snapshot()
        assert not _named(later, "stall_detected", agent="Agent-1", pipeline="healing")
        assert not _named(later, "agent_recovered", agent="Agent-1")
        with Store.open(root / ".healer" / "healer.db") as store:
            (row,) = store.open_incidents()
            assert (row.agent, row.attempts) == ("Agent-1", 2)
            assert store.stats()["by_agent"]["Agent-1"]["total"] == 2


def _stats(tmp_path: Path, root: Path) -> dict[str, Any]:
    done = run_healer(tmp_path, "stats", "--json", root=root)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert isinstance(data, dict)
    return data


class TestStatsMatchTheLog:
    def test_stats_totals_equal_the_actions_logged(self, tmp_path: Path) -> None:
        """Three agents that stay silent and one that wakes after its first heal: every total
        of `healer stats --json` equals what the daemon's log says happened."""
        root = tmp_path / "ws"
        _agents(root, "Agent-1", "Agent-2", "Agent-3", "Agent-4")
        silent = ("Agent-1", "Agent-2", "Agent-3")
        with running_daemon(root, tmp_path, watch_args(0.5, 2.0, 0.05)) as d:
            d.wait_event("heal_action", timeout=10, agent="Agent-4", attempt=1)
            with _keep_alive(root / "Agent-4"):
                d.wait_event("agent_recovered", timeout=5, agent="Agent-4")
                for agent in silent:
                    d.wait_event("agent_escalated", timeout=10, agent=agent)
                    d.wait_event("recovery_action", timeout=10, agent=agent, action="alert")
        lines = d.snapshot()
        stats = _stats(tmp_path, root)

        heals = _named(lines, "heal_action")
        recovered = _named(lines, "agent_recovered")
        opened = _named(lines, "stall_detected", pipeline="healing")
        assert stats["total_actions"] == len(heals) == 3 * 3 + 1
        assert stats["recovery_actions"] == len(_named(lines, "recovery_action")) > 0
        assert stats["successful"] == len([r for r in recovered if r["attempts"] > 0]) == 1
        assert stats["failed"] == stats["total_actions"] - stats["successful"]
        incidents = stats["incidents"]
        assert incidents["open"] == len(opened) - len(recovered) == 3
        assert incidents["recovered"] == len(recovered)
        assert incidents["escalated"] == len(_named(lines, "agent_escalated")) == 3
        per_agent = Counter(h["agent"] for h in heals)
        won = Counter(r["agent"] for r in recovered if r["attempts"] > 0)
        assert stats["by_agent"] == {
            agent: {"total": n, "successful": won[agent], "failed": n - won[agent]}
            for agent, n in per_agent.items()
        }
        assert stats["success_rate"] == round(100 * 1 / len(heals), 2)
        assert stats["mttd_seconds"] >= 0.5
        assert stats["mttr_seconds"] is not None and stats["mttr_seconds"] >= 0


class TestConcurrentReaders:
    def test_readers_never_see_a_locked_database(self, tmp_path: Path) -> None:
        """While 30 agents stall at once and the daemon writes their incidents, readers in a
        thread and `healer stats --json` processes never fail and never meet a lock."""
        root = tmp_path / "ws"
        names = [f"Agent-{n}" for n in range(1, 31)]
        _agents(root, *names)
        db = root / ".healer" / "healer.db"
        errors: list[str] = []
        reads = 0
        stop = threading.Event()

        def reader() -> None:
            nonlocal reads
            while not stop.is_set():
                try:
                    view = Store.open_readonly(db, timeout=1.0)
                    if view is not None:
                        with view:
                            view.stats()
                            view.agent_rows()
                    reads += 1
                except Exception as exc:  # every failure is the finding
                    errors.append(repr(exc))

        with running_daemon(root, tmp_path, watch_args(0.5, 1.0, 0.05)) as d:
            thread = threading.Thread(target=reader, daemon=True)
            thread.start()
            runs = []
            try:
                while len(_named(d.snapshot(), "agent_escalated")) < len(names) and len(runs) < 8:
                    runs.append(run_healer(tmp_path, "stats", "--json", root=root))
                d.wait_for(lambda x: len(_named(d.snapshot(), "agent_escalated")) == len(names),
                           timeout=15, what="every agent escalated")
            finally:
                stop.set()
                thread.join(5)
        assert errors == []
        assert reads > 10
        assert runs
        for run in runs:
            assert run.returncode == 0, run.stderr
            assert "locked" not in run.stderr
            assert set(json.loads(run.stdout)) >= {"total_actions", "incidents"}
        final = _stats(tmp_path, root)
        assert final["total_actions"] == len(_named(d.snapshot(), "heal_action"))


class TestRetention:
    def test_the_daemon_prunes_closed_incidents_past_retention(self, tmp_path: Path) -> None:
        """With `healer.retention: 2s` a recovered incident disappears from the history while
        the daemon runs, and detection of another agent still lands within a tick or so."""
        root = tmp_path / "ws"
        _agents(root, "Agent-1")
        text = "healer:\n  retention: 2s\n"
        with running_daemon(root, tmp_path, watch_args(0.5, 30, 0.05), config_text=text) as d:
            d.wait_event("heal_action", timeout=10, agent="Agent-1", attempt=1)
            with _keep_alive(root / "Agent-1"):
                d.wait_event("agent_recovered", timeout=5, agent="Agent-1")
                assert _stats(tmp_path, root)["incidents"]["recovered"] == 1
                _agents(root, "Agent-2")
                d.wait_for(lambda x: x.get("event") == "history_pruned" and x["rows"] >= 2,
                           timeout=8, what="history_pruned")
                stats = _stats(tmp_path, root)
                stall = d.wait_event("stall_detected", timeout=5, agent="Agent-2")
        assert stats["incidents"]["recovered"] == 0
        assert "Agent-1" not in stats["by_agent"]
        # Pruning ran in the same loop; detection still came within a few ticks.
        assert 0.5 <= stall["silent_for"] < 0.5 + 0.5

