"""Faults of the environment: a full or read-only disk, a refused agent, an agent or the root
deleted mid-run, a locked or corrupt history, a dead alert endpoint, SIGKILL mid-write."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from healer.adapters.ledger import SelfWriteLedger
from healer.adapters.store import Store
from healer.adapters.writer import SafeWriter
from healer.config import Config
from healer.core import statusdoc
from healer.core.model import TEMP_MARKER, is_own_temp_name
from healer.history import HISTORY_PAUSE
from healer.testing import FakeClock
from healer.tracker import STALE_TEMP_AGE
from healer.wiring import build_engine
from tests.conftest import make_agent
from tests.integration.daemon import at, poll_until, running_daemon, watch_args

HEAL = 2.0
Logs = list[dict[str, Any]]


def events(logs: Logs, name: str, agent: str | None = None) -> Logs:
    return [e for e in logs if e["event"] == name and (agent is None or e.get("agent") == agent)]


def set_age(folder: Path, when: float) -> None:
    for p in [folder, *folder.rglob("*")]:
        os.utime(p, (when, when), follow_symlinks=False)


def temps(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if is_own_temp_name(p.name)]


class Rig:
    """An engine with a real history over a workspace of stale agents, on a fake clock."""

    def __init__(self, root: Path, state: Path, **overrides: Any) -> None:
        self.root = root
        self.clock = FakeClock(start=time.time())
        self.config = Config(workspaces=root, heal_after=HEAL, recover_after=100.0, tick=0.1,
                             state_dir=state, **overrides)
        self.store = Store.open(state / "healer.db", clock=self.clock)
        self.engine = build_engine(self.config, self.clock, store=self.store)

    def age_all(self, seconds: float = 10.0) -> None:
        for folder in self.root.iterdir():
            if folder.name.startswith("Agent-"):
                set_age(folder, self.clock.now() - seconds)

    def step(self, advance: float = 0.0) -> Logs:
        self.clock.advance(advance)
        with capture_logs() as logs:
            self.engine.step()
        return logs

    def actions(self) -> list[tuple[str, str, int, str | None]]:
        with sqlite3.connect(self.store.path) as db:
            return db.execute("SELECT agent, action, applied_ok, error FROM actions"
                              " WHERE pipeline = 'healing' ORDER BY id").fetchall()

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def rig_at(tmp_path: Path) -> Iterator[Callable[[Path], Rig]]:
    rigs: list[Rig] = []

    def make(root: Path) -> Rig:
        rigs.append(Rig(root, tmp_path / "state"))
        return rigs[-1]

    yield make
    for rig in rigs:
        rig.close()


@contextmanager
def mounted_tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                           str(where)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def remount(where: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(where)], check=True)


@contextmanager
def injected(err: int, where: Callable[[str], bool]) -> Iterator[None]:
    """os.write fails with `err` on temp files whose path `where` accepts: the OS boundary,
    for machines where a small or read-only filesystem cannot be mounted."""
    real = os.write

    def write(fd: int, data: Any) -> int:
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            path = ""
        if TEMP_MARKER in path and where(path):
            raise OSError(err, os.strerror(err))
        return real(fd, data)

    os.write = write  # type: ignore[assignment]
    try:
        yield
    finally:
        os.write = real


# ---------------------------------------------------------------------------------------


class TestCrashLeftovers:
    def _leftovers(self, root: Path) -> tuple[Path, Path]:
        folder = make_agent(root, "Agent-1")
        old = folder / f".status.json{TEMP_MARKER}dead"
        fresh = folder / "inbox" / f".HEALER_RESCUE_x.md{TEMP_MARKER}live"
        old.write_text("{")
        fresh.write_text("half a message")
        stale = time.time() - STALE_TEMP_AGE - 5
        os.utime(old, (stale, stale))
        return old, fresh

    def test_start_removes_a_crashed_writers_temps(self, tmp_path: Path) -> None:
        """Engine.start sweeps temps older than STALE_TEMP_AGE; a younger one may be a live
        write (the daemon's, while `check --now` starts beside it) and is kept."""
        old, fresh = self._leftovers(tmp_path / "ws")
        build_engine(Config(workspaces=tmp_path / "ws"), FakeClock(start=time.time())).start()
        assert not old.exists() and fresh.exists()

    @pytest.mark.parametrize("how", ["read_only_check", "dry_run"])
    def test_an_engine_that_may_not_write_leaves_them(self, tmp_path: Path, how: str) -> None:
        old, _ = self._leftovers(tmp_path / "ws")
        config = Config(workspaces=tmp_path / "ws", dry_run=how == "dry_run")
        build_engine(config, FakeClock(start=time.time()), record=how == "dry_run").start()
        assert old.exists()


def _writer_loop(root: str, ready: Any) -> None:
    """Child: rewrite status.json and drop inbox messages as fast as it can, until killed."""
    writer = SafeWriter(Path(root), SelfWriteLedger())
    ready.set()
    n = 0
    while True:
        n += 1
        writer.update_status("Agent-1", lambda d, n=n: {**d, "n": n, "pad": "x" * (n % 9000)})
        if n % 5 == 0:
            writer.write_new("Agent-1", f"inbox/m{n}.md", f"message {n}\n" + "y" * 5000 + "\nEND\n")


class TestSigkill:
    def test_a_killed_writer_never_leaves_a_partial_file(self, tmp_path: Path) -> None:
        """60 SIGKILLs at random moments of update_status and write_new: status.json is
        always valid and exactly one version; every message is whole; temps are swept."""
        root = tmp_path / "ws"
        folder = make_agent(root, "Agent-1", {"agent_id": "Agent-1", "n": 0, "pad": ""})
        ctx = multiprocessing.get_context("fork")
        rng = random.Random(7)
        versions: set[int] = set()
        for _ in range(60):
            ready = ctx.Event()
            child = ctx.Process(target=_writer_loop, args=(str(root), ready), daemon=True)
            child.start()
            assert ready.wait(10)
            time.sleep(rng.uniform(0.0, 0.03))
            os.kill(child.pid or 0, signal.SIGKILL)
            child.join(10)
            doc = json.loads((folder / "status.json").read_bytes())
            assert doc["pad"] == "x" * (doc["n"] % 9000)  # the whole of one version
            versions.add(doc["n"])
            for message in (folder / "inbox").iterdir():
                if not is_own_temp_name(message.name):
                    assert message.read_text().endswith("\nEND\n"), message.name
        assert len(versions) > 1  # the kills did land at different points of the loop
        left = temps(folder)
        removed = SafeWriter(root, SelfWriteLedger()).remove_stale_temps("Agent-1")
        assert removed == len(left) and not temps(folder)


class TestDisk:
    def _workspace(self, root: Path) -> None:
        make_agent(root, "Agent-1", {"agent_id": "Agent-1", "pad": "p" * 40_000})
        make_agent(root, "Agent-2", {"agent_id": "Agent-2"})

    def test_disk_full_fails_one_action_cleanly(self, tmp_path: Path, rig_at: Any) -> None:
        """ENOSPC on a real 128 KiB tmpfs: Agent-1's rewrite does not fit, fails with
        heal_action ok=false error=..., is in the history, leaves the file and no temp;
        Agent-2 is healed in the same step; once space is free the next attempt works."""
        with mounted_tmpfs(tmp_path / "mnt", "128k") as root:
            self._workspace(root)
            vfs = os.statvfs(root)
            (root / "filler").write_bytes(b"f" * (vfs.f_bavail * vfs.f_frsize - 12_288))
            before = (root / "Agent-1" / "status.json").read_bytes()
            rig = rig_at(root)
            rig.age_all()
            rig.engine.start()
            logs = rig.step(0.5)
            (fail,) = events(logs, "heal_action", "Agent-1")
            assert fail["ok"] is False and "No space left" in fail["error"]
            assert events(logs, "heal_action", "Agent-2")[0]["ok"] is True
            assert (root / "Agent-1" / "status.json").read_bytes() == before
            assert not temps(root)
            assert rig.actions()[0][:3] == ("Agent-1", "force_update", 0)
            assert "No space left" in (rig.actions()[0][3] or "")
            (root / "filler").unlink()
            logs = rig.step(HEAL + 0.1)
            assert events(logs, "heal_action", "Agent-1")[0]["ok"] is True

    def test_read_only_filesystem_fails_cleanly_and_recovers(
        self, tmp_path: Path, rig_at: Any
    ) -> None:
        """EROFS (the tmpfs remounted read-only): every action fails, is recorded, nothing
        changes on disk; remounted writable, the next attempt is applied."""
        with mounted_tmpfs(tmp_path / "mnt", "1m") as root:
            self._workspace(root)
            rig = rig_at(root)
            rig.age_all()
            rig.engine.start()
            remount(root, "ro")
            try:
                logs = rig.step(0.5)
            finally:
                remount(root, "rw")
            failed = events(logs, "heal_action")
            assert len(failed) == 2 and all(not e["ok"] for e in failed)
            assert all("Read-only file system" in e["error"] for e in failed)
            assert [a[2] for a in rig.actions()] == [0, 0] and not temps(root)
            logs = rig.step(HEAL + 0.1)
            assert [e["ok"] for e in events(logs, "heal_action")] == [True, True]

    def test_injected_enospc_at_the_os_boundary(self, tmp_path: Path, rig_at: Any) -> None:
        """The same promise without a mount: os.write of Agent-1's temp fails with ENOSPC."""
        root = tmp_path / "ws"
        self._workspace(root)
        rig = rig_at(root)
        rig.age_all()
        rig.engine.start()
        with injected(errno.ENOSPC, lambda path: "/Agent-1/" in path):
            logs = rig.step(0.5)
        assert [e["ok"] for e in events(logs, "heal_action", "Agent-1")] == [False]
        assert [e["ok"] for e in events(logs, "heal_action", "Agent-2")] == [True]
        assert not temps(root)


class TestOneAgentRefused:
    @pytest.mark.parametrize("how", ["read_only_bind_mount", "injected_eacces"])
    def test_others_are_unaffected(self, tmp_path: Path, rig_at: Any, how: str) -> None:
        """One agent's folder refuses writes (root ignores permission bits, so a read-only
        bind mount, or EACCES injected at the OS boundary): its action fails, the two
        others are healed, and the engine goes on to the next attempt."""
        root = tmp_path / "ws"
        for name in ("Agent-1", "Agent-2", "Agent-3"):
            make_agent(root, name)
        rig = rig_at(root)
        rig.age_all()
        rig.engine.start()
        target = root / "Agent-2"
        if how == "read_only_bind_mount":
            done = subprocess.run(["mount", "--bind", "-o", "ro", str(target), str(target)],
                                  capture_output=True)
            if done.returncode != 0:
                pytest.skip("cannot bind-mount here")
            try:
                logs = rig.step(0.5)
            finally:
                subprocess.run(["umount", "-l", str(target)], check=False)
        else:
            with injected(errno.EACCES, lambda path: "/Agent-2/" in path):
                logs = rig.step(0.5)
        outcome = {e["agent"]: e["ok"] for e in events(logs, "heal_action")}
        assert outcome == {"Agent-1": True, "Agent-2": False, "Agent-3": True}
        assert not temps(root)
        logs = rig.step(HEAL + 0.1)
        assert len(events(logs, "heal_action")) == 3  # attempt 2 for all, Agent-2 included


class TestAgentDeletedMidHealing:
    def test_engine_goes_on_and_drops_the_agent(
        self, tmp_path: Path, rig_at: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The folder vanishes between healer's read and its write: the action fails, the
        others are healed, nothing is re-created, and the agent is removed (agent_removed)."""
        root = tmp_path / "ws"
        for name in ("Agent-1", "Agent-2", "Agent-3"):
            make_agent(root, name)
        real = statusdoc.apply_force_update

        def vanish(doc: dict[str, Any], now: Any, attempt: int) -> dict[str, Any]:
            if doc.get("agent_id") == "Agent-2":
                shutil.rmtree(root / "Agent-2")
            return real(doc, now, attempt)

        monkeypatch.setattr(statusdoc, "apply_force_update", vanish)
        rig = rig_at(root)
        rig.age_all()
        rig.engine.start()
        logs = rig.step(0.5)
        outcome = {e["agent"]: e["ok"] for e in events(logs, "heal_action")}
        assert outcome == {"Agent-1": True, "Agent-2": False, "Agent-3": True}
        assert not (root / "Agent-2").exists()
        with capture_logs() as logs:
            rig.engine.reconcile()
        assert [e["agent"] for e in events(logs, "agent_removed")] == ["Agent-2"]
        assert rig.store.open_incident_for("Agent-2") is None
        assert not (root / "Agent-2").exists()


class TestCorruptHistory:
    @pytest.mark.parametrize("command", [["check"], ["check", "--now"], ["status"], ["stats"],
                                         watch_args()])
    def test_clear_error_and_exit_3(self, tmp_path: Path, command: list[str]) -> None:
        """A history that is not a database: every command says so in one line, exit 3."""
        root = tmp_path / "ws"
        make_agent(root, "Agent-1")
        (root / ".healer").mkdir()
        (root / ".healer" / "healer.db").write_bytes(b"this is not a database" * 200)
        (tmp_path / "c.yml").write_text("")
        done = subprocess.run(
            [sys.executable, "-m", "healer", "--config", str(tmp_path / "c.yml"),
             "--workspaces", str(root), *command],
            capture_output=True, text=True, timeout=60, cwd=tmp_path,
        )
        assert done.returncode == 3, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "healer.db" in lines[0] and "not a database" in lines[0]


class TestLockedHistory:
    def test_daemon_keeps_detecting_on_time(self, tmp_path: Path) -> None:
        """Another process holds the history's write lock: the daemon logs
        history_write_failed once, then pauses the history instead of waiting out the busy
        timeout on every write, so a later stall is still detected on time; it never exits."""
        root = tmp_path / "ws"
        make_agent(root, "Agent-1")
        with running_daemon(root, tmp_path, watch_args(0.6, 30.0, 0.05)) as daemon:
            holder = sqlite3.connect(root / ".healer" / "healer.db", isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")
            try:
                daemon.wait_event("history_write_failed", timeout=20)
                daemon.wait_event("heal_action", timeout=20, agent="Agent-1", attempt=1)
                make_agent(root, "Agent-2")
                created = time.time()
                stall = daemon.wait_event("stall_detected", timeout=20, agent="Agent-2")
                assert at(stall) - created < 0.6 + 1.5
                assert daemon.proc.poll() is None
            finally:
                holder.execute("ROLLBACK")
                holder.close()
        assert len(daemon.events("history_write_failed")) == 1

    def test_history_is_written_again_after_the_pause(self, tmp_path: Path) -> None:
        """The pause is HISTORY_PAUSE seconds; the first stall after it is on record."""
        root = tmp_path / "ws"
        make_agent(root, "Agent-1")
        rig = Rig(root, tmp_path / "state")
        rig.store.close()
        rig.store = Store.open(tmp_path / "state" / "healer.db", clock=rig.clock, timeout=0.1)
        rig.engine = build_engine(rig.config, rig.clock, store=rig.store)
        rig.age_all()
        rig.engine.start()
        holder = sqlite3.connect(rig.store.path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            logs = rig.step(0.5)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert len(events(logs, "history_write_failed")) == 1
        assert events(logs, "heal_action", "Agent-1")
        make_agent(root, "Agent-2")
        rig.engine.reconcile()
        rig.step(HEAL + 0.1)
        assert rig.store.open_incident_for("Agent-2") is None  # still paused
        rig.clock.advance(HISTORY_PAUSE)
        set_age(make_agent(root, "Agent-3"), rig.clock.now())
        rig.engine.reconcile()
        rig.step(HEAL + 0.1)
        assert rig.store.open_incident_for("Agent-3") is not None
        rig.close()


def _recorded(root: Path, agent: str) -> bool:
    with sqlite3.connect(root / ".healer" / "healer.db") as db:
        return bool(db.execute("SELECT 1 FROM incidents WHERE agent = ?", (agent,)).fetchone())


class TestWorkspaceRootDeleted:
    def test_daemon_follows_the_root_when_it_comes_back(self, tmp_path: Path) -> None:
        """rm -rf of the root: agents are removed, `workspace_root_missing` is logged; the
        root made again: `workspace_root_replaced`, and the new tree is watched (a new
        agent's folder is seen at once, not at the 30 s sweep; its stall is detected)."""
        root = tmp_path / "ws"
        make_agent(root, "Agent-1")
        with running_daemon(root, tmp_path, watch_args(1.0, 30.0, 0.05)) as daemon:
            shutil.rmtree(root)
            daemon.wait_event("agent_removed", timeout=10, agent="Agent-1")
            daemon.wait_event("workspace_root_missing", timeout=10)
            root.mkdir()
            daemon.wait_event("workspace_root_replaced", timeout=10)
            make_agent(root, "Agent-7")
            added = daemon.wait_event("agent_added", timeout=5, agent="Agent-7")
            stall = daemon.wait_event("stall_detected", timeout=10, agent="Agent-7")
            assert added and stall["silent_for"] >= 1.0


# ---------------------------------------------------------------------------------------


@contextmanager
def refusing_port() -> Iterator[int]:
    """A port nothing listens on: bound, never listened to, so connects are refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@contextmanager
def hanging_server() -> Iterator[int]:
    """Accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        server.close()


class TestAlertEndpoint:
    SECRET = "s3cr3t-T0KEN-do-not-log"

    def test_refused_alerts_fail_quietly_and_never_log_the_url(self, tmp_path: Path) -> None:
        """Connection refused: alert_sent ok=false after its tries, the daemon goes on, and
        the webhook's secret token appears nowhere in the whole JSON log."""
        root = tmp_path / "ws"
        make_agent(root, "Agent-1")
        with refusing_port() as port:
            url = f"http://127.0.0.1:{port}/api/webhooks/123/{self.SECRET}"
            config = "healer:\n  alerts: {max_tries: 2, backoff: 0.05, timeout: 0.5}\n"
            with running_daemon(root, tmp_path, watch_args(0.3, 0.6, 0.05),
                                config_text=config,
                                env={"HEALER_DISCORD_WEBHOOK": url}) as daemon:
                sent = daemon.wait_event("alert_sent", timeout=15, agent="Agent-1")
                assert sent["ok"] is False and sent["tries"] == 2
                make_agent(root, "Agent-2")
                daemon.wait_event("stall_detected", timeout=10, agent="Agent-2")
        text = "\n".join(json.dumps(line) for line in daemon.lines) + "\n".join(daemon.raw)
        assert self.SECRET not in text and "api/webhooks" not in text

    def test_a_hanging_endpoint_never_delays_detection(self, tmp_path: Path) -> None:
        """The endpoint accepts and never answers: a later stall is still detected within
        a tick or two of its threshold."""
        root = tmp_path / "ws"
        make_agent(root, "Agent-1")
        with hanging_server() as port:
            config = (f"healer:\n  alerts: {{webhook_url: 'http://127.0.0.1:{port}/hook',"
                      " max_tries: 3, timeout: 5}\n")
            with running_daemon(root, tmp_path, watch_args(0.3, 0.5, 0.05),
                                config_text=config) as daemon:
                daemon.wait_event("recovery_action", timeout=10, agent="Agent-1",
                                  action="alert")
                make_agent(root, "Agent-2")
                stall = daemon.wait_event("stall_detected", timeout=10, agent="Agent-2",
                                          pipeline="healing")
                assert stall["silent_for"] < 0.3 + 1.5  # not held up by 3 tries of 5 s


class TestInotifyLimit:
    def test_no_watches_left_means_polling_said_in_the_log(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The kernel's watch limit reached (injected at the probe; the real limit is a soak,
        `make soak`): the watcher polls, logs `inotify_unavailable`, and still sees writes."""
        from healer.adapters import watcher as watcher_module

        root = tmp_path / "ws"
        make_agent(root, "Agent-1")
        monkeypatch.setattr(watcher_module, "watches_left", lambda path: False)
        watcher = watcher_module.Watcher(root, is_agent=lambda n: n.startswith("Agent-"),
                                         ledger=SelfWriteLedger(), poll_interval=0.1)
        with capture_logs() as logs:
            watcher.start()
        try:
            assert watcher.poll and events(logs, "inotify_unavailable")
            (root / "Agent-1" / "devlogs" / "new.md").write_text("work")
            assert poll_until(lambda: any(c.activity for c in watcher.changes), 5)
        finally:
            watcher.close()
