"""One acting healer per workspace: the lock itself (real files, real flock, real
processes), then the commands: a second `watch` refused, `check --now` refused beside a
daemon, plain `check` and a `--dry-run` watch still allowed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from healer.adapters.lockfile import LOCK_FILE, WorkspaceLock
from healer.errors import StoreError, WorkspaceBusyError
from tests.conftest import make_agent
from tests.integration.daemon import poll_until, run_healer, running_daemon, watch_args

pytestmark = pytest.mark.integration

HOLD = """
import sys, time
from pathlib import Path
from healer.adapters.lockfile import WorkspaceLock
WorkspaceLock.acquire(Path(sys.argv[1]), "holder")
print("held", flush=True)
time.sleep(60)
"""


class TestWorkspaceLock:
    def test_a_second_holder_is_refused_with_the_first_ones_pid(self, tmp_path: Path) -> None:
        state = tmp_path / "ws" / ".healer"
        first = WorkspaceLock.acquire(state, "healer watch")
        assert first.held
        assert (state / LOCK_FILE).read_text() == f"{os.getpid()} healer watch\n"
        assert (state / LOCK_FILE).stat().st_mode & 0o777 == 0o600
        with pytest.raises(WorkspaceBusyError, match=rf"pid {os.getpid()}, healer watch"):
            WorkspaceLock.acquire(state, "healer check --now")
        assert (state / LOCK_FILE).read_text() == f"{os.getpid()} healer watch\n"
        first.release()
        again = WorkspaceLock.acquire(state, "healer check --now")
        assert (state / LOCK_FILE).read_text() == f"{os.getpid()} healer check --now\n"
        again.release()

    def test_a_killed_holder_leaves_no_stale_lock(self, tmp_path: Path) -> None:
        """The kernel drops a dead process's flock: no pid file to clean up by hand."""
        state = tmp_path / ".healer"
        holder = subprocess.Popen([sys.executable, "-c", HOLD, str(state)],
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "held\n"
            with pytest.raises(WorkspaceBusyError, match=rf"pid {holder.pid}, holder"):
                WorkspaceLock.acquire(state, "second")
        finally:
            holder.kill()
            holder.wait(5)
        WorkspaceLock.acquire(state, "after").release()

    def test_a_command_started_while_holding_it_does_not_inherit_it(self, tmp_path: Path
                                                                    ) -> None:
        """A restart command that leaves the agent running in the background must not keep
        the workspace locked after healer is gone."""
        state = tmp_path / ".healer"
        lock = WorkspaceLock.acquire(state, "healer watch")
        child = subprocess.Popen(["sleep", "30"], close_fds=False)
        try:
            lock.release()
            WorkspaceLock.acquire(state, "next").release()
        finally:
            child.kill()
            child.wait(5)

    def test_a_lock_file_that_is_a_symlink_is_not_followed(self, tmp_path: Path) -> None:
        state = tmp_path / ".healer"
        state.mkdir()
        (state / LOCK_FILE).symlink_to(tmp_path / "elsewhere")
        with pytest.raises(StoreError, match="cannot open the lock"):
            WorkspaceLock.acquire(state, "healer watch")
        assert not (tmp_path / "elsewhere").exists()


def _silent(root: Path, name: str, age: float = 3600.0) -> Path:
    folder = make_agent(root, name)
    when = time.time() - age
    for path in [*folder.rglob("*"), folder]:
        os.utime(path, (when, when))
    return folder


class TestOneDaemonPerWorkspace:
    def test_a_second_watch_is_refused_naming_the_first(self, tmp_path: Path) -> None:
        root = tmp_path / "ws"
        make_agent(root, "Agent-1")
        with running_daemon(root, tmp_path, watch_args(30, 60, 0.05)) as daemon:
            second = run_healer(tmp_path, "watch", "--heal-after", "30", root=root)
            assert second.returncode == 2
            lines = second.stderr.strip().splitlines()
            assert len(lines) == 1, second.stderr
            assert f"pid {daemon.pid}, healer watch" in lines[0]
            assert daemon.proc.poll() is None  # the first one goes on
        # Stopped cleanly, it let go: the next one starts.
        with running_daemon(root, tmp_path, watch_args(30, 60, 0.05)):
            pass

    def test_check_now_beside_a_daemon_refuses_and_plain_check_reports(
        self, tmp_path: Path
    ) -> None:
        """`check --now` would heal what the daemon heals: exit 2 naming its pid, nothing
        written; `check` only reads, so it answers as ever."""
        root = tmp_path / "ws"
        folder = _silent(root, "Agent-1")
        before = (folder / "status.json").read_bytes()
        with running_daemon(root, tmp_path, watch_args(7200, 9000, 0.05)) as daemon:
            acting = run_healer(tmp_path, "check", "--now", root=root)
            assert acting.returncode == 2
            assert f"pid {daemon.pid}, healer watch" in acting.stderr
            assert (folder / "status.json").read_bytes() == before
            assert list((folder / "inbox").iterdir()) == []
            looking = run_healer(tmp_path, "check", "--json", root=root)
            assert looking.returncode == 1, looking.stderr  # its own thresholds: stalled
            report = json.loads(looking.stdout)
            assert [s["agent"] for s in report["stalled"]] == ["Agent-1"]
            assert report["actions"] == []
            assert (folder / "status.json").read_bytes() == before
        # Without the daemon, check --now acts.
        done = run_healer(tmp_path, "check", "--now", "--json", root=root)
        assert done.returncode == 1, done.stderr
        assert json.loads(done.stdout)["actions"] != []
        assert (folder / "status.json").read_bytes() != before

    def test_a_dry_run_watch_may_run_beside_a_real_one(self, tmp_path: Path) -> None:
        """It writes nothing at all, not even the lock: it cannot double an action."""
        root = tmp_path / "ws"
        make_agent(root, "Agent-1")
        with running_daemon(root, tmp_path, watch_args(30, 60, 0.05)) as real, \
                running_daemon(root, tmp_path, watch_args(30, 60, 0.05, "--dry-run")) as dry:
            assert dry.events("watch_started")[0]["dry_run"] is True
            assert real.proc.poll() is None
        lock = (root / ".healer" / LOCK_FILE).read_text()
        assert lock == f"{real.pid} healer watch\n"

    def test_a_killed_daemon_does_not_block_the_next(self, tmp_path: Path) -> None:
        root = tmp_path / "ws"
        make_agent(root, "Agent-1")
        with running_daemon(root, tmp_path, watch_args(30, 60, 0.05), stop_signal=None) as first:
            first.send(signal.SIGKILL)
            assert poll_until(lambda: first.proc.poll() is not None, 5)
        with running_daemon(root, tmp_path, watch_args(30, 60, 0.05)):
            pass
