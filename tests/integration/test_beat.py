"""`healer beat` as the process a hook runs (SPEC §12): what it writes for every Claude Code
event and for Codex, that hook mode never exits 2 whatever it is fed, and that the daemon
takes a beat for the agent's own activity."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from healer.adapters.scan import Scanner
from tests.conftest import make_agent
from tests.hookpayloads import (
    CLAUDE_CODE_EVENTS,
    EXPECTED_STATE,
    claude_code,
    codex_turn_complete,
)
from tests.integration.beatrun import HEALER, heartbeat, hook_env, run, unwritable
from tests.integration.daemon import at as log_time
from tests.integration.daemon import running_daemon, watch_args

pytestmark = pytest.mark.integration

PRE_TOOL_USE = json.dumps(claude_code("PreToolUse"))


@pytest.fixture
def agent(root: Path) -> Path:
    return make_agent(root, "Agent-1")


def beat(root: Path, *args: str, stdin: str | None = None,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run(root.parent, "--workspaces", str(root), "beat", *args, stdin=stdin, env=env)


class TestBeat:
    def test_a_plain_beat_is_working_now(self, root: Path, agent: Path) -> None:
        before = time.time()
        done = beat(root, "Agent-1")
        assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
        written = heartbeat(agent)
        assert written.keys() == {"state", "at"} and written["state"] == "working"
        at = written["at"].replace("Z", "+00:00")
        assert before - 1 <= datetime.fromisoformat(at).timestamp() <= time.time() + 1
        assert stat.S_IMODE((agent / "heartbeat.json").stat().st_mode) == 0o644
        assert sorted(p.name for p in agent.iterdir()) == [
            "devlogs", "heartbeat.json", "inbox", "status.json"], "no temp file left behind"

    def test_state_and_message_from_the_command_line(self, root: Path, agent: Path) -> None:
        done = beat(root, "Agent-1", "--state", "waiting", "--message", "approve the migration?")
        assert done.returncode == 0, done.stderr
        assert heartbeat(agent)["state"] == "waiting"
        assert heartbeat(agent)["message"] == "approve the migration?"
        assert beat(root, "--state=done", "Agent-1").returncode == 0
        assert heartbeat(agent)["state"] == "done"

    def test_agent_defaults_to_healer_agent(self, root: Path, agent: Path) -> None:
        done = beat(root, "--state", "done", env={"HEALER_AGENT": "Agent-1"})
        assert done.returncode == 0, done.stderr
        assert heartbeat(agent)["state"] == "done"

    def test_a_rewrite_keeps_the_files_mode(self, root: Path, agent: Path) -> None:
        assert beat(root, "Agent-1").returncode == 0
        (agent / "heartbeat.json").chmod(0o600)
        assert beat(root, "Agent-1", "--state", "waiting").returncode == 0
        assert stat.S_IMODE((agent / "heartbeat.json").stat().st_mode) == 0o600

    @pytest.mark.parametrize("event", sorted(CLAUDE_CODE_EVENTS))
    def test_every_claude_code_event(self, root: Path, agent: Path, event: str) -> None:
        """Each documented payload on stdin drives working, waiting or done; stdout stays
        empty (for SessionStart and UserPromptSubmit it would become the model's context)."""
        done = beat(root, "Agent-1", "--hook", "claude-code",
                    stdin=json.dumps(claude_code(event)))
        assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
        written = heartbeat(agent)
        assert written["state"] == EXPECTED_STATE[event]
        assert written["source"] == "claude-code"
        assert written["message"]

    def test_state_given_with_hook_wins(self, root: Path, agent: Path) -> None:
        done = beat(root, "Agent-1", "--hook", "claude-code", "--state", "waiting",
                    "--message", "paused by the operator", stdin=PRE_TOOL_USE)
        assert done.returncode == 0, done.stderr
        assert heartbeat(agent) | {"at": ""} == {
            "state": "waiting", "at": "", "message": "paused by the operator",
            "source": "claude-code"}

    def test_codex_passes_its_payload_last(self, root: Path, agent: Path) -> None:
        done = beat(root, "Agent-1", "--hook", "codex", codex_turn_complete())
        assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
        assert heartbeat(agent)["state"] == "working"
        assert heartbeat(agent)["source"] == "codex"

    def test_codex_with_the_agent_from_the_environment(self, root: Path, agent: Path) -> None:
        done = beat(root, "--hook", "codex", codex_turn_complete(),
                    env={"HEALER_AGENT": "Agent-1"})
        assert done.returncode == 0, done.stderr
        assert heartbeat(agent)["source"] == "codex"

    def test_help(self, root: Path) -> None:
        done = beat(root, "--help")
        assert done.returncode == 0
        assert "heartbeat.json" in done.stdout and "--hook" in done.stdout
        listing = run(root.parent, "--help")
        assert listing.returncode == 0
        assert "beat" in listing.stdout and "hooks" in listing.stdout


def _bad_config(tmp: Path) -> list[str]:
    path = tmp / "bad.yml"
    path.write_text("healer:\n  no_such_key: 1\n")
    return ["--config", str(path)]


# Each: (what, extra group options, beat arguments, stdin). Every one is a problem a hook can
# meet; none may exit 2 or write a beat.
BAD_HOOK_INPUTS = [
    ("unknown agent", [], ["Agent-9", "--hook", "claude-code"], PRE_TOOL_USE),
    ("not an agent name", [], ["notes", "--hook", "claude-code"], PRE_TOOL_USE),
    ("a path, not a name", [], ["../Agent-1", "--hook", "claude-code"], PRE_TOOL_USE),
    ("no agent at all", [], ["--hook", "claude-code"], PRE_TOOL_USE),
    ("empty stdin", [], ["Agent-1", "--hook", "claude-code"], ""),
    ("garbage", [], ["Agent-1", "--hook", "claude-code"], "\x00\xff garbage {"),
    ("no event name", [], ["Agent-1", "--hook", "claude-code"], '{"session_id": "abc123"}'),
    ("a JSON list", [], ["Agent-1", "--hook", "claude-code"], "[]"),
    ("unknown state", [], ["Agent-1", "--hook", "claude-code", "--state", "asleep"],
     PRE_TOOL_USE),
    ("unknown option", [], ["Agent-1", "--hook", "claude-code", "--bogus"], PRE_TOOL_USE),
    ("unknown hook", [], ["Agent-1", "--hook=cursor"], PRE_TOOL_USE),
    ("two agents", [], ["Agent-1", "Agent-2", "--hook", "claude-code"], PRE_TOOL_USE),
    ("codex without payload", [], ["Agent-1", "--hook", "codex"], None),
    ("codex garbage", [], ["Agent-1", "--hook", "codex", "{{"], None),
    ("a group option the fast path does not know", ["--no-such-option", "x"],
     ["Agent-1", "--hook", "claude-code"], PRE_TOOL_USE),
    ("missing root", ["--workspaces", "/nonexistent/ws"], ["Agent-1", "--hook", "claude-code"],
     PRE_TOOL_USE),
]


class TestHookModeNeverBlocks:
    @pytest.mark.parametrize(("what", "group", "args", "stdin"), BAD_HOOK_INPUTS,
                             ids=[b[0] for b in BAD_HOOK_INPUTS])
    def test_bad_input_exits_1_with_one_line_and_writes_nothing(
        self, root: Path, agent: Path, what: str, group: list[str], args: list[str],
        stdin: str | None,
    ) -> None:
        done = run(root.parent, "--workspaces", str(root), *group, "beat", *args, stdin=stdin)
        assert done.returncode == 1, f"{what}: {done.returncode} {done.stderr}"
        assert done.stdout == ""
        lines = done.stderr.strip().splitlines()
        assert lines and lines[-1].startswith(("healer:", "Error:")), done.stderr
        assert "Traceback" not in done.stderr
        assert not (agent / "heartbeat.json").exists()

    def test_a_config_it_cannot_read(self, root: Path, agent: Path, tmp_path: Path) -> None:
        done = run(tmp_path, *_bad_config(tmp_path), "--workspaces", str(root), "beat",
                   "Agent-1", "--hook", "claude-code", stdin=PRE_TOOL_USE)
        assert done.returncode == 1
        assert "healer.no_such_key" in done.stderr

    def test_a_symlinked_heartbeat_is_not_written_through(
        self, root: Path, agent: Path, tmp_path: Path
    ) -> None:
        target = tmp_path / "elsewhere.json"
        target.write_text("precious")
        (agent / "heartbeat.json").symlink_to(target)
        done = beat(root, "Agent-1", "--hook", "claude-code", stdin=PRE_TOOL_USE)
        assert done.returncode == 1
        assert "symlink" in done.stderr
        assert target.read_text() == "precious"
        assert (agent / "heartbeat.json").is_symlink()

    def test_a_symlinked_agent_folder_is_not_written_into(
        self, root: Path, tmp_path: Path
    ) -> None:
        outside = tmp_path / "outside"
        outside.mkdir()
        (root / "Agent-3").symlink_to(outside)
        done = beat(root, "Agent-3", "--hook", "claude-code", stdin=PRE_TOOL_USE)
        assert done.returncode == 1
        assert list(outside.iterdir()) == []
        assert beat(root, "Agent-3").returncode == 2, "without --hook: a usage error"

    def test_an_unwritable_folder(self, root: Path, agent: Path) -> None:
        with unwritable(agent):
            hooked = beat(root, "Agent-1", "--hook", "claude-code", stdin=PRE_TOOL_USE)
            plain = beat(root, "Agent-1")
        assert hooked.returncode == 1 and "cannot write" in hooked.stderr
        assert plain.returncode == 1, "not a usage error: the beat could not be written"
        assert not (agent / "heartbeat.json").exists()

    def test_a_payload_that_never_ends_is_given_up_on_within_the_second(
        self, root: Path, agent: Path
    ) -> None:
        """stdin left open (a caller that never closes it): no hang, no beat."""
        proc = subprocess.Popen(
            [*HEALER, "--workspaces", str(root), "beat", "Agent-1", "--hook", "claude-code"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=hook_env(),
        )
        assert proc.stdin is not None
        t0 = time.monotonic()
        proc.stdin.write(b'{"hook_event_name": "PreToolUse"')  # and never the rest
        proc.stdin.flush()
        try:
            _, err = proc.communicate(timeout=5)
        finally:
            proc.kill()
        elapsed = time.monotonic() - t0
        assert proc.returncode == 1, err
        # The budget is 0.6 s after start-up; a loaded machine adds to the start-up.
        assert elapsed < 1.5, elapsed
        assert not (agent / "heartbeat.json").exists()


    def test_a_config_that_hangs_is_given_up_on_within_the_second(
        self, root: Path, agent: Path, tmp_path: Path
    ) -> None:
        """Anything that blocks (here a FIFO with no writer as the config file; in life a
        hung network filesystem) meets the budget's alarm: exit 1, no beat."""
        fifo = tmp_path / "config.fifo"
        os.mkfifo(fifo)
        t0 = time.monotonic()
        done = run(tmp_path, "--config", str(fifo), "--workspaces", str(root), "beat",
                   "Agent-1", "--hook", "claude-code", stdin=PRE_TOOL_USE, timeout=10)
        elapsed = time.monotonic() - t0
        assert done.returncode == 1, done.stderr
        assert "gave up after 0.6 s" in done.stderr
        assert elapsed < 1.5, elapsed
        assert not (agent / "heartbeat.json").exists()


class TestWithoutHook:
    @pytest.mark.parametrize(
        "args",
        [["Agent-9"], ["notes"], [], ["Agent-1", "--state", "asleep"], ["Agent-1", "Agent-2"],
         ["Agent-1", "--bogus"]],
        ids=["unknown agent", "not an agent", "no agent", "bad state", "two agents", "option"],
    )
    def test_usage_problems_exit_2(self, root: Path, agent: Path, args: list[str]) -> None:
        done = beat(root, *args)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("healer: beat:"), done.stderr
        assert not (agent / "heartbeat.json").exists()


def _age(folder: Path, seconds: float) -> None:
    when = time.time() - seconds
    for path in [*folder.rglob("*"), folder]:
        os.utime(path, (when, when), follow_symlinks=False)


class TestBeatIsActivity:
    def test_the_start_up_scan_counts_the_heartbeats_mtime(self, root: Path) -> None:
        folder = make_agent(root, "Agent-1")
        _age(folder, 1000)
        assert beat(root, "Agent-1").returncode == 0
        found = Scanner(root, lambda name: True).scan("Agent-1", time.time())
        assert found is not None and found.last_activity is not None
        assert found.last_activity > time.time() - 60

    def test_check_sees_a_beating_agent_as_active(self, root: Path, tmp_path: Path) -> None:
        for name in ("Agent-1", "Agent-2"):
            _age(make_agent(root, name), 1000)
        assert beat(root, "Agent-1").returncode == 0
        (tmp_path / "empty.yml").write_text("")
        done = run(tmp_path, "--config", str(tmp_path / "empty.yml"), "--workspaces",
                   str(root), "check", "--json")
        stalled = {row["agent"] for row in json.loads(done.stdout)["stalled"]}
        assert stalled == {"Agent-2"}

    def test_the_daemon_takes_beats_for_the_agents_own_activity(
        self, root: Path, tmp_path: Path
    ) -> None:
        """An agent whose only sign of life is `healer beat` is not stalled while it beats,
        and is when the beats stop: the rename into heartbeat.json is its write, not
        healer's."""
        heal = 1.5
        make_agent(root, "Agent-1")
        with running_daemon(root, tmp_path, watch_args(heal, 30.0, 0.05)) as daemon:
            until = time.monotonic() + 2.5 * heal
            while time.monotonic() < until:
                assert beat(root, "Agent-1", "--hook", "claude-code",
                            stdin=PRE_TOOL_USE).returncode == 0
            last = time.time()
            assert daemon.events("stall_detected", agent="Agent-1") == []
            stall = daemon.wait_event("stall_detected", timeout=heal + 5, agent="Agent-1")
        assert log_time(stall) >= last + heal - 0.2, "counted from the last beat"


def beat_then(root: Path, report: str, env: dict[str, str]) -> str:
    """Run `healer beat Agent-1` through entry.main in a fresh interpreter, then the Python
    statement `report`; returns what it printed."""
    probe = (
        "import sys\n"
        "from healer import entry\n"
        "try:\n"
        f"    entry.main(['--workspaces', {str(root)!r}, 'beat', 'Agent-1'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        f"{report}\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=root.parent, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_fast_path_imports_neither_click_nor_the_daemon(root: Path, agent: Path) -> None:
    """A hook runs `healer beat` on every tool call: what it imports is its start-up."""
    heavy = ("{'click', 'structlog', 'watchdog', 'sqlite3', 'healer.cli', 'healer.log', "
             "'healer.engine', 'healer.daemon', 'prometheus_client', 'urllib.request'}")
    assert beat_then(root, f"print(sorted({heavy} & set(sys.modules)))", hook_env()) == "[]"
    assert heartbeat(agent)["state"] == "working"


def test_without_a_config_file_the_fast_path_does_not_import_yaml(
        root: Path, agent: Path) -> None:
    """yaml is imported to read a config file, and only then (a fifth of a beat's time)."""
    env = {k: v for k, v in hook_env().items() if k != "HEALER_CONFIG"}
    assert beat_then(root, "print('yaml' in sys.modules)", env) == "False"
    assert heartbeat(agent)["state"] == "working"
