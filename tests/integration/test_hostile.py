"""Hostile workspaces: symlinks out of the root or into another agent, a symlink swapped in
mid-write, FIFOs and device nodes, a replaced root, odd agent names, shell-looking content."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from healer.adapters.fsops import exchange
from healer.adapters.ledger import SelfWriteLedger
from healer.adapters.scan import Scanner
from healer.adapters.writer import SafeWriter
from healer.config import AgentOverride, Config
from healer.core import statusdoc
from healer.core.model import ESCALATION_MARKER
from healer.errors import ActionError
from healer.testing import FakeClock
from healer.wiring import build_engine
from tests.conftest import make_agent
from tests.integration.daemon import at, running_daemon, watch_args

HEAL, RECOVER = 2.0, 5.0
Logs = list[dict[str, Any]]


def events(logs: Logs, name: str, agent: str | None = None) -> Logs:
    return [e for e in logs if e["event"] == name and (agent is None or e.get("agent") == agent)]


def set_age(path: Path, when: float) -> None:
    for p in [path, *path.rglob("*")]:
        os.utime(p, (when, when), follow_symlinks=False)


def fingerprint(path: Path) -> list[tuple[str, bytes, int]]:
    """Every file under `path` with its bytes and mtime: proof that nothing was touched."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return [(str(p), p.read_bytes(), p.stat().st_mtime_ns) for p in files]


def run_ladder(root: Path, seconds: float = 12.0, active: tuple[str, ...] = ()) -> Logs:
    """An engine over `root` on a fake clock, run through the whole ladder and recovery;
    the `active` agents never stall (they can take reassigned tasks)."""
    clock = FakeClock(start=time.time())
    for folder in root.iterdir():
        if not folder.is_symlink() and folder.name not in active:
            set_age(folder, clock.now() - 1)
    never = AgentOverride(heal_after=1e6, recover_after=1e6)
    config = Config(workspaces=root, heal_after=HEAL, recover_after=RECOVER, tick=0.1,
                    agents=dict.fromkeys(active, never))
    engine = build_engine(config, clock)
    with capture_logs() as logs:
        engine.start()
        for _ in range(int(seconds / 0.5)):
            clock.advance(0.5)
            engine.step()
    return logs


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A tree outside the workspace root that healer must never write."""
    folder = tmp_path / "outside"
    (folder / "inbox").mkdir(parents=True)
    (folder / "devlogs").mkdir()
    (folder / "status.json").write_text('{"secret": true, "current_tasks": ["x"]}')
    (folder / "devlogs" / "fresh.md").write_text("written just now")
    return folder


def check_now(cwd: Path, root: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """`healer check --now --json` as a process, with an empty config of its own."""
    (cwd / "c.yml").write_text("")
    return subprocess.run(
        [sys.executable, "-m", "healer", "--config", str(cwd / "c.yml"),
         "--workspaces", str(root), "check", "--now", "--json"],
        capture_output=True, text=True, timeout=timeout, cwd=cwd,
    )


class TestSymlinks:
    @pytest.mark.parametrize("into", ["outside", "other_agent"])
    def test_status_symlink_is_never_written_through(
        self, tmp_path: Path, outside: Path, into: str
    ) -> None:
        """Every rung fails with an error naming the symlink; the target keeps its bytes
        and mtime, whether it lies outside the root or is another agent's status.json."""
        root = tmp_path / "ws"
        folder = make_agent(root, "Agent-1")
        other = make_agent(root, "Agent-2")
        target = outside / "status.json" if into == "outside" else other / "status.json"
        (folder / "status.json").unlink()
        (folder / "status.json").symlink_to(target)
        before = fingerprint(target)
        logs = run_ladder(root, active=("Agent-2",))
        failed = events(logs, "heal_action", "Agent-1")
        assert [e["action"] for e in failed] == ["force_update", "clear_stuck_tasks",
                                                 "reset_status"]
        assert all(not e["ok"] and "symlink" in e["error"] for e in failed)
        assert fingerprint(target) == before
        assert (folder / "status.json").is_symlink()
        assert not list(tmp_path.rglob("status.json.bak.*"))

    def test_an_agent_writing_through_a_status_symlink_is_not_stalled(
        self, tmp_path: Path
    ) -> None:
        """The real daemon: Agent-1's status.json links to a dashboard file it rewrites every
        0.3 s. That is its activity (it used to be flagged and escalated as dead); the silent
        Agent-2 beside it is detected and healed, and the dashboard file is never written."""
        root = tmp_path / "ws"
        folder = make_agent(root, "Agent-1")
        make_agent(root, "Agent-2")
        dashboard = tmp_path / "dashboard"
        dashboard.mkdir()
        target = dashboard / "Agent-1.json"
        target.write_text('{"agent_id": "Agent-1", "current_tasks": ["t"]}')
        (folder / "status.json").unlink()
        (folder / "status.json").symlink_to(target)
        set_age(root, time.time() - 1000)
        stop = threading.Event()
        writes: list[bytes] = []

        def agent() -> None:
            n = 0
            while not stop.wait(0.3):
                n += 1
                text = json.dumps({"agent_id": "Agent-1", "current_tasks": ["t"], "n": n})
                target.write_text(text)
                writes.append(text.encode())

        thread = threading.Thread(target=agent, daemon=True)
        thread.start()
        try:
            with running_daemon(root, tmp_path, watch_args(1.0, 30.0, 0.05)) as daemon:
                daemon.wait_event("heal_action", timeout=15, agent="Agent-2", attempt=2)
                assert daemon.events("stall_detected", agent="Agent-1") == []
                assert daemon.events("heal_action", agent="Agent-1") == []
        finally:
            stop.set()
            thread.join(2)
        assert target.read_bytes() == writes[-1]  # only the agent ever wrote it
        assert (folder / "status.json").is_symlink()

    def test_inbox_symlink_gets_no_message(self, tmp_path: Path, outside: Path) -> None:
        """Rescue messages and reassignments are refused when the inbox is a symlink."""
        root = tmp_path / "ws"
        folder = make_agent(root, "Agent-1")
        make_agent(root, "Agent-2", {"current_tasks": []})
        shutil.rmtree(folder / "inbox")
        (folder / "inbox").symlink_to(outside / "inbox")
        logs = run_ladder(root)
        rescue = events(logs, "recovery_action", "Agent-1")
        assert any(e["action"] == "rescue_message" and not e["ok"] for e in rescue)
        assert not list((outside / "inbox").iterdir())

    @pytest.mark.parametrize("into", ["outside", "other_agent"])
    def test_devlogs_symlink_is_not_followed_for_activity(
        self, tmp_path: Path, outside: Path, into: str
    ) -> None:
        """Fresh files behind a devlogs symlink are another tree's activity, not this
        agent's: the scan ignores them and the stall is detected."""
        root = tmp_path / "ws"
        folder = make_agent(root, "Agent-1")
        other = make_agent(root, "Agent-2")
        shutil.rmtree(folder / "devlogs")
        set_age(folder, time.time() - 1000)
        (folder / "devlogs").symlink_to(outside / "devlogs" if into == "outside"
                                        else other / "devlogs")
        (other / "devlogs" / "fresh.md").write_text("now")
        found = Scanner(root, lambda name: True).scan("Agent-1", time.time())
        assert found is not None and found.last_activity is not None
        assert found.last_activity < time.time() - 900
        logs = run_ladder(root, seconds=3.0)
        assert events(logs, "stall_detected", "Agent-1")


@contextmanager
def flipping(real: Path, link_target: Path) -> Iterator[list[int]]:
    """A thread swaps `real` between itself and a symlink to `link_target` (atomically, with
    RENAME_EXCHANGE) as fast as it can; yields the count of swaps so far."""
    alt = real.with_name(real.name + ".alt")
    alt.symlink_to(link_target)
    stop = threading.Event()
    swaps = [0]
    dfd = os.open(real.parent, os.O_RDONLY | os.O_DIRECTORY)
    if not exchange(dfd, real.name, alt.name):
        os.close(dfd)
        pytest.skip("no RENAME_EXCHANGE here")

    def flip() -> None:
        while not stop.is_set():
            exchange(dfd, real.name, alt.name)
            swaps[0] += 1

    thread = threading.Thread(target=flip, daemon=True)
    thread.start()
    try:
        yield swaps
    finally:
        stop.set()
        thread.join(5)
        os.close(dfd)


class TestSwapRace:
    @pytest.mark.parametrize("what", ["status.json", "inbox", "agent_folder"])
    def test_a_symlink_swapped_in_mid_write_never_leads_out(
        self, tmp_path: Path, outside: Path, what: str
    ) -> None:
        """While a thread flips the path between the real thing and a symlink to outside
        thousands of times, healer writes 300 times: some writes succeed, some are refused,
        and the outside tree is never modified."""
        root = tmp_path / "ws"
        folder = make_agent(root, "Agent-1")
        before = fingerprint(outside)
        writer = SafeWriter(root, SelfWriteLedger())
        target = {"status.json": (folder / "status.json", outside / "status.json"),
                  "inbox": (folder / "inbox", outside / "inbox"),
                  "agent_folder": (folder, outside)}[what]
        results = {"ok": 0, "refused": 0}
        with flipping(*target) as swaps:
            for n in range(300):
                try:
                    if n % 2:
                        writer.update_status(
                            "Agent-1", lambda d, n=n: statusdoc.apply_force_update(d, "now", n))
                    else:
                        writer.write_new("Agent-1", f"inbox/m{n}.md", "hello\n")
                    results["ok"] += 1
                except ActionError:
                    results["refused"] += 1
        assert swaps[0] > 300 and results["ok"] > 0
        assert fingerprint(outside) == before
        assert not [p for p in outside.rglob("*") if ".healer-tmp." in p.name]


class TestSpecialFiles:
    def _workspace(self, root: Path) -> None:
        fifo_agent = make_agent(root, "Agent-1")
        (fifo_agent / "status.json").unlink()
        os.mkfifo(fifo_agent / "status.json")
        os.mkfifo(fifo_agent / "devlogs" / "pipe.md")
        os.mkfifo(fifo_agent / "inbox" / "pipe.md")
        with contextlib.suppress(PermissionError):  # not root: the FIFOs still make the point
            os.mknod(fifo_agent / "devlogs" / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        make_agent(root, "Agent-2")
        for folder in root.iterdir():
            set_age(folder, time.time() - 1000)

    def test_check_does_not_block(self, tmp_path: Path) -> None:
        """`healer check --now --json` finishes (well within its timeout) over FIFOs as
        status.json, in devlogs and in the inbox, and a device node; the FIFO stays."""
        root = tmp_path / "ws"
        self._workspace(root)
        done = check_now(tmp_path, root, timeout=30)
        assert done.returncode == 1, done.stderr
        report = json.loads(done.stdout)
        assert {s["agent"] for s in report["stalled"]} == {"Agent-1", "Agent-2"}
        ok = {(a["agent"], a["action"]): a["ok"] for a in report["actions"]}
        assert ok[("Agent-1", "force_update")] is False and ok[("Agent-2", "force_update")]
        assert stat.S_ISFIFO(os.lstat(root / "Agent-1" / "status.json").st_mode)

    def test_daemon_does_not_block(self, tmp_path: Path) -> None:
        """The daemon over the same workspace detects and heals both agents and stops."""
        root = tmp_path / "ws"
        self._workspace(root)
        with running_daemon(root, tmp_path, watch_args(0.5, 30.0, 0.05)) as daemon:
            for agent, ok in (("Agent-1", False), ("Agent-2", True)):
                daemon.wait_event("heal_action", timeout=10, agent=agent, attempt=1, ok=ok)


class TestRootReplaced:
    def test_daemon_moves_to_the_new_root(self, tmp_path: Path) -> None:
        """The root renamed away and a new one made in its place while the daemon runs:
        `workspace_root_replaced`, the new tree is watched (a new folder is seen at once),
        and writes into the old tree no longer count for the new tree's agents."""
        root = tmp_path / "ws"
        make_agent(root, "Agent-1")
        with running_daemon(root, tmp_path, watch_args(1.0, 30.0, 0.05)) as daemon:
            old = tmp_path / "ws.old"
            root.rename(old)
            make_agent(root, "Agent-1")
            replaced_at = time.time()
            stop = threading.Event()

            def keep_writing() -> None:  # the old tree's Agent-1 stays busy
                while not stop.wait(0.05):
                    (old / "Agent-1" / "devlogs" / "log.md").write_text(str(time.time()))

            writer = threading.Thread(target=keep_writing, daemon=True)
            writer.start()
            try:
                daemon.wait_event("workspace_root_replaced", timeout=5)
                make_agent(root, "Agent-3")
                daemon.wait_event("agent_added", timeout=5, agent="Agent-3")
                stall = daemon.wait_event("stall_detected", timeout=10, agent="Agent-1")
                assert at(stall) - replaced_at < 1.0 + 1.5
            finally:
                stop.set()
                writer.join(2)


ODD_NAMES = ["Agent-1 copy", "Agent-ü", "Agent-..", "Agent-\n", "Agent-$(touch pwned)",
             "Agent-;touch pwned", "Agent-`id`"]


class TestAgentNames:
    def _workspace(self, root: Path) -> None:
        for name in ODD_NAMES:
            make_agent(root, name, {"agent_id": name, "current_tasks": ["a task"]})
        bad = os.path.join(os.fsencode(root), b"Agent-\xff")  # not UTF-8
        os.makedirs(os.path.join(bad, b"inbox"))
        with open(os.path.join(bad, b"status.json"), "wb") as f:
            f.write(b'{"current_tasks": ["t"]}')
        for folder in root.iterdir():
            set_age(folder, time.time() - 1000)

    def test_check_heals_odd_names_and_skips_undecodable_ones(self, tmp_path: Path) -> None:
        """Spaces, unicode, `..`, newlines and shell syntax in names are ordinary agents to
        `check --now --json`; a name that is not UTF-8 is left out, not a crash; nothing is
        written outside each agent's own folder and nothing is executed."""
        root = tmp_path / "ws"
        self._workspace(root)
        done = check_now(tmp_path, root, timeout=60)
        assert done.returncode == 1, done.stderr
        report = json.loads(done.stdout)
        assert report["checked"] == len(ODD_NAMES)
        assert {s["agent"] for s in report["stalled"]} == set(ODD_NAMES)
        assert all(a["ok"] for a in report["actions"] if a["action"] != "reassign_tasks")
        for name in ODD_NAMES:
            doc = json.loads((root / name / "status.json").read_text())
            assert doc["healing_applied"][-1]["action"] == "force_update"
        assert sorted(os.listdir(tmp_path)) == ["c.yml", "ws"]
        assert not list(tmp_path.rglob("pwned"))

    def test_engine_takes_them_through_the_ladder(self, tmp_path: Path) -> None:
        root = tmp_path / "ws"
        self._workspace(root)
        logs = run_ladder(root)
        escalated = {e["agent"] for e in events(logs, "agent_escalated")}
        assert escalated == set(ODD_NAMES)
        assert all((root / name / ESCALATION_MARKER).is_file() for name in ODD_NAMES)


class TestNothingExecuted:
    def test_shell_syntax_in_content_is_only_text(self, tmp_path: Path) -> None:
        """status.json fields, task texts, devlog and inbox file names full of `$(...)`,
        backticks and `; cmd` go through the whole ladder and recovery; nothing runs."""
        root = tmp_path / "ws"
        marker = tmp_path / "pwned"
        evil = [f"$(touch {marker})", f"`touch {marker}`", f"; touch {marker}",
                f"| touch {marker}", f"&& touch {marker} #"]
        folder = make_agent(root, "Agent-1", {"agent_id": evil[0], "current_mission": evil[1],
                                              "current_tasks": evil, "busy_until": evil[2]})
        make_agent(root, "Agent-2", {"current_tasks": []})
        (folder / "devlogs" / f"; touch {marker.name}").write_text(evil[3])
        (folder / "inbox" / f"$(touch {marker.name}).md").write_text(evil[4])
        logs = run_ladder(root, active=("Agent-2",))
        assert events(logs, "agent_escalated", "Agent-1")
        reassigned = list((root / "Agent-2" / "inbox").glob("HEALER_REASSIGN_*"))
        assert reassigned and evil[0] in reassigned[0].read_text()
        assert not marker.exists() and not list(tmp_path.rglob("pwned"))


class TestStateFiles:
    def test_history_files_are_0600_whatever_the_umask(self, tmp_path: Path) -> None:
        """A real daemon run that writes history under umask 000: the folder is 0700 and
        healer.db, -wal and -shm are 0600."""
        root = tmp_path / "ws"
        make_agent(root, "Agent-1")
        old_umask = os.umask(0)
        try:
            with running_daemon(root, tmp_path, watch_args(0.3, 30.0, 0.05)) as daemon:
                daemon.wait_event("heal_action", timeout=10, agent="Agent-1")
                state = root / ".healer"
                modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in state.iterdir()}
        finally:
            os.umask(old_umask)
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        assert {"healer.db", "healer.db-wal", "healer.db-shm"} <= set(modes)
        assert all(mode == 0o600 for mode in modes.values()), modes
