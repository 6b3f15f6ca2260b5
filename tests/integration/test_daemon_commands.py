"""Named commands in the real daemon (SPEC §13, §17): a tmux nudge that revives an agent
blocked on its terminal, a hung rung killed at its timeout while another agent's stall is
detected on time, `on:` commands, a hostile folder name, `--dry-run` and `check --now`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import make_agent
from tests.integration.daemon import at, poll_until, running_daemon, watch_args

pytestmark = pytest.mark.integration

HEAL = 0.6
TICK = 0.05
# One tick plus what a loaded two-core machine needs to wake the daemon and log the line.
ALLOWANCE = TICK + 0.25
# Writes what it was started with (argv, the HEALER_* variables) to the file named first.
PROBE = f"""#!{sys.executable}
import json, os, sys
with open(sys.argv[1], "a") as out:
    out.write(json.dumps({{"argv": sys.argv[2:], "cwd": os.getcwd(),
        "env": {{k: v for k, v in os.environ.items() if k.startswith("HEALER_")}}}}) + "\\n")
"""
# An agent whose session hangs on its terminal: it does nothing until a line arrives.
AGENT = """import pathlib, sys, time
line = sys.stdin.readline()
pathlib.Path("devlogs/revived.md").write_text(f"revived by {line.strip()!r}\\n")
time.sleep(60)
"""


def probe(tmp_path: Path) -> Path:
    path = tmp_path / "probe"
    path.write_text(PROBE)
    path.chmod(0o755)
    return path


def seen(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def quiet(*folders: Path, ago: float = 0.0) -> None:
    """Make every file of the agents as old as `ago` seconds: silent from then on."""
    when = time.time() - ago
    for folder in folders:
        for path in [folder, *folder.rglob("*")]:
            os.utime(path, (when, when))


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[tuple[list[str], dict[str, str]]]:
    """A tmux server of the test's own: `-L swarm` under TMUX_TMPDIR=tmp_path."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    env = {k: v for k, v in os.environ.items() if k != "TMUX"}
    env["TMUX_TMPDIR"] = str(tmp_path)
    command = ["tmux", "-L", "swarm"]
    try:
        yield command, env
    finally:
        subprocess.run([*command, "kill-server"], env=env, capture_output=True, check=False)


class TestRungs:
    def test_a_nudge_revives_an_agent_blocked_on_its_terminal(
        self, tmp_path: Path, root: Path, tmux: tuple[list[str], dict[str, str]]
    ) -> None:
        command, env = tmux
        agent = make_agent(root, "Agent-1")
        (tmp_path / "agent.py").write_text(AGENT)
        subprocess.run([*command, "new-session", "-d", "-s", "swarm", "-n", "Agent-1", "-c",
                        str(agent), sys.executable, str(tmp_path / "agent.py")],
                       env=env, check=True)
        config = (
            "healer:\n  commands:\n    nudge:\n"
            "      run: [tmux, -L, swarm, send-keys, -t, 'swarm:{agent}', continue, Enter]\n"
            "      timeout: 10s\n"
            "  ladder: [nudge, force_update]\n"
        )
        quiet(agent)
        with running_daemon(root, tmp_path, config_text=config,
                            env={"TMUX_TMPDIR": str(tmp_path)}) as daemon:
            nudge = daemon.wait_event("heal_action", timeout=10, agent="Agent-1",
                                      action="nudge")
            back = daemon.wait_event("agent_recovered", timeout=10, agent="Agent-1")
        assert (nudge["ok"], nudge["exit_code"], nudge["attempt"]) == (True, 0, 1)
        assert back["attempts"] == 1
        assert (agent / "devlogs" / "revived.md").read_text() == "revived by 'continue'\n"
        assert daemon.events("heal_action", attempt=2) == []

    def test_a_hung_rung_is_killed_at_its_timeout_and_holds_up_no_one_else(
        self, tmp_path: Path, root: Path
    ) -> None:
        hung, busy = make_agent(root, "Agent-1"), make_agent(root, "Agent-2")
        config = (
            "healer:\n  commands:\n    hang:\n"
            "      run: [sh, -c, 'echo $$ > hang.pid; exec sleep 300']\n"
            "      timeout: 3s\n"
            "  ladder: [hang, force_update]\n"
        )
        quiet(hung, busy)
        stop = threading.Event()

        def keep_busy() -> None:  # Agent-2 works until Agent-1's command is running
            while not stop.is_set():
                (busy / "devlogs" / "work.md").write_text(str(time.time()))
                stop.wait(0.1)

        writer = threading.Thread(target=keep_busy, daemon=True)
        writer.start()
        try:
            with running_daemon(root, tmp_path, watch_args(HEAL, 60.0, TICK),
                                config_text=config) as daemon:
                daemon.wait_event("command_started", timeout=10, agent="Agent-1")
                stop.set()
                writer.join()
                last_write = (busy / "devlogs" / "work.md").stat().st_mtime
                stall = daemon.wait_event("stall_detected", timeout=5, agent="Agent-2")
                assert (hung / "hang.pid").is_file()
                killed = daemon.wait_event("heal_action", timeout=10, agent="Agent-1",
                                           action="hang")
                second = daemon.wait_event("heal_action", timeout=10, agent="Agent-1",
                                           attempt=2)
        finally:
            stop.set()
        # Agent-2's stall was detected within a tick while Agent-1's command hung.
        assert stall["silent_for"] <= HEAL + ALLOWANCE, stall
        assert at(stall) - last_write <= HEAL + ALLOWANCE
        assert at(stall) < at(killed)
        assert (killed["ok"], killed["timed_out"]) == (False, True)
        assert 3.0 <= killed["duration"] < 6.0, killed
        assert not Path(f"/proc/{int((hung / 'hang.pid').read_text())}").exists()
        # Its attempt was given heal_after from the kill, not from the start.
        assert at(second) - at(killed) >= HEAL - TICK

    def test_a_stop_kills_a_rung_that_ignores_sigterm_and_logs_it(
        self, tmp_path: Path, root: Path
    ) -> None:
        """SIGTERM to healer while a rung runs that ignores SIGTERM: healer still exits
        within 2 s (running_daemon asserts it), the group killed, the outcome logged."""
        agent = make_agent(root, "Agent-1")
        quiet(agent)
        config = (
            "healer:\n  commands:\n    stubborn:\n"
            "      run: [sh, -c, \"trap '' TERM; echo $$ > pid; while :; do sleep 0.1; done\"]\n"
            "      timeout: 60s\n"
            "  ladder: [stubborn]\n"
        )
        with running_daemon(root, tmp_path, config_text=config) as daemon:
            daemon.wait_event("command_started", timeout=10, agent="Agent-1")
            assert poll_until(lambda: (agent / "pid").is_file()
                              and (agent / "pid").read_text().strip() != "", 5)
        [killed] = daemon.events("heal_action", action="stubborn")
        assert killed["error"] == "killed: healer stopped while it ran"
        assert not Path(f"/proc/{int((agent / 'pid').read_text())}").exists()
        names = [line["event"] for line in daemon.snapshot()]
        assert names.index("heal_action") < names.index("watch_stopped")

    def test_a_missing_program_fails_the_rung_and_the_ladder_goes_on(
        self, tmp_path: Path, root: Path
    ) -> None:
        quiet(make_agent(root, "Agent-1"))
        config = ("healer:\n  commands: {ghost: {run: [no-such-program-healer-test]}}\n"
                  "  ladder: [ghost, force_update]\n")
        with running_daemon(root, tmp_path, config_text=config) as daemon:
            ghost = daemon.wait_event("heal_action", timeout=10, action="ghost")
            daemon.wait_event("heal_action", timeout=10, attempt=2, action="force_update")
        assert ghost["ok"] is False and ghost["exit_code"] is None
        assert ghost["error"].startswith("not found: 'no-such-program-healer-test'")


class TestOnCommands:
    def test_escalated_runs_a_command_that_sees_the_agent(
        self, tmp_path: Path, root: Path
    ) -> None:
        quiet(make_agent(root, "Agent-1"))
        out = tmp_path / "escalated.jsonl"
        config = (
            f"healer:\n  commands:\n    page: {{run: ['{probe(tmp_path)}', '{out}',"
            " '{agent}', '{transition}', '{attempt}']}\n"
            "  ladder: [force_update]\n  on: {escalated: [page]}\n"
            "overnight: {self_healing: {max_attempts: 1}}\n"
        )
        with running_daemon(root, tmp_path, config_text=config) as daemon:
            ran = daemon.wait_event("hook_ran", timeout=10, transition="escalated")
        assert (ran["agent"], ran["command"], ran["ok"], ran["exit_code"]) == (
            "Agent-1", "page", True, 0)
        [run] = seen(out)
        assert run["argv"] == ["Agent-1", "escalated", "1"]
        env = run["env"]
        assert isinstance(env, dict)
        assert (env["HEALER_AGENT"], env["HEALER_TRANSITION"]) == ("Agent-1", "escalated")
        assert env["HEALER_AGENT_DIR"] == str((root / "Agent-1").absolute())
        assert env["HEALER_INCIDENT"] == "1"  # the incident's id in the history
        assert run["cwd"] == str((root / "Agent-1").absolute())


class TestSafety:
    def test_a_hostile_folder_name_never_reaches_a_shell(
        self, tmp_path: Path, root: Path
    ) -> None:
        name = "Agent-x;touch PWNED"
        quiet(make_agent(root, name))
        out = tmp_path / "seen.jsonl"
        config = (
            f"healer:\n  commands:\n    nudge: {{run: ['{probe(tmp_path)}', '{out}', '{{agent}}',"
            " 'dir={agent_dir}']}\n  ladder: [nudge]\n  on: {escalated: [nudge]}\n"
            "overnight: {self_healing: {max_attempts: 1}}\n"
        )
        with running_daemon(root, tmp_path, config_text=config) as daemon:
            daemon.wait_event("hook_ran", timeout=10, agent=name, transition="escalated")
        runs = seen(out)
        assert [r["argv"] for r in runs] == [
            [name, f"dir={(root / name).absolute()}"]] * 2
        assert [r["env"]["HEALER_AGENT"] for r in runs] == [name, name]  # type: ignore[index]
        everywhere = [tmp_path, Path.cwd(), root / name]
        assert not [p for base in everywhere for p in base.rglob("PWNED")]

    def test_nothing_runs_under_dry_run(self, tmp_path: Path, root: Path) -> None:
        quiet(make_agent(root, "Agent-1"))
        out = tmp_path / "ran.jsonl"
        config = (
            f"healer:\n  commands:\n    nudge: {{run: ['{probe(tmp_path)}', '{out}',"
            " '{agent}']}\n"
            "  ladder: [nudge]\n  on: {escalated: [nudge], stalled: [nudge]}\n"
            "overnight: {self_healing: {max_attempts: 1}}\n"
        )
        with running_daemon(root, tmp_path, watch_args(HEAL, 2.0, TICK, "--dry-run"),
                            config_text=config) as daemon:
            rung = daemon.wait_event("heal_action", timeout=10, action="nudge")
            # The stalled hook comes 1.4 s after the rung: time enough for a stray run to land.
            hooks = [daemon.wait_event("hook_ran", timeout=10, transition=t)
                     for t in ("escalated", "stalled")]
        assert (rung["dry_run"], rung["argv"]) == (True, [str(probe(tmp_path)), str(out),
                                                           "Agent-1"])
        assert all(h["dry_run"] is True for h in hooks)
        assert not out.exists()
        assert daemon.events("command_started") == []


class TestCheckNow:
    def test_a_rung_s_result_is_waited_for_and_reported(self, tmp_path: Path, root: Path
                                                         ) -> None:
        quiet(make_agent(root, "Agent-1"), ago=10)
        config = tmp_path / "healer-test.yml"
        config.write_text("healer:\n  commands:\n    slow: {run: [sh, -c, 'sleep 0.5; exit 3']}\n"
                          "  ladder: [slow]\novernight: {self_healing: {stall_threshold: 5}}\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEALER_")}
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "healer", "--config", str(config), "--workspaces", str(root),
             "--log-format", "json", "check", "--now", "--json"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30,
        )
        took = time.monotonic() - started
        assert done.returncode == 1, done.stderr
        report = json.loads(done.stdout)
        assert report["actions"][0] == {"agent": "Agent-1", "action": "slow", "ok": False}
        lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
        [heal] = [line for line in lines if line["event"] == "heal_action"]
        assert (heal["exit_code"], heal["duration"] >= 0.5) == (3, True)
        assert took < 20, took
