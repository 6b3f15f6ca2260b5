"""The command runner with real processes: exit codes, timeouts that kill the whole group,
background children left alone, programs that cannot run, the output tail, placeholders and
HEALER_* variables, hostile folder names, and a bounded pool that never blocks submit()."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from healer.adapters.commands import OUTPUT_LIMIT, SubprocessCommandRunner, tail_text
from healer.core.commands import CommandRequest, CommandResult, CommandSpec
from tests.integration.daemon import daemon_env, poll_until, watch_args

pytestmark = pytest.mark.integration

GRACE = 0.5
# Prints what it was started with: argv, cwd, the HEALER_* variables, stdin, its group.
PROBE = f"""#!{sys.executable}
import json, os, sys
stdin = os.fstat(0)
null = os.stat(os.devnull)
print(json.dumps({{
    "argv": sys.argv[1:], "cwd": os.getcwd(),
    "env": {{k: v for k, v in os.environ.items() if k.startswith("HEALER_")}},
    "inherited": os.environ.get("PROBE_INHERITED"),
    "stdin_is_null": (stdin.st_rdev, stdin.st_ino) == (null.st_rdev, null.st_ino),
    "own_group": os.getpgrp() == os.getpid(), "own_session": os.getsid(0) == os.getpid(),
}}))
"""


@pytest.fixture
def runner() -> Iterator[SubprocessCommandRunner]:
    r = SubprocessCommandRunner(4, grace=GRACE)
    yield r
    r.close(timeout=1.0)


@pytest.fixture
def agent_dir(root: Path) -> Path:
    folder = root / "Agent-1"
    folder.mkdir()
    return folder


def request(folder: Path, *run: str, timeout: float = 10.0, **kw: object) -> CommandRequest:
    return CommandRequest(
        CommandSpec("probe", tuple(run), timeout), folder.name, str(folder), str(folder.parent),
        **kw,  # type: ignore[arg-type]
    )


def results(
    runner: SubprocessCommandRunner, count: int, timeout: float = 15.0
) -> list[CommandResult]:
    """Wait (on the runner's wake event) for `count` results."""
    got: list[CommandResult] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        runner.wake.wait(0.1)
        runner.wake.clear()
        got += runner.drain()
    assert len(got) == count, got
    return got


def one(runner: SubprocessCommandRunner, req: CommandRequest) -> CommandResult:
    runner.submit(req)
    return results(runner, 1)[0]


def sh(folder: Path, script: str, **kw: object) -> CommandRequest:
    return request(folder, "/bin/sh", "-c", script, **kw)


def alive(pid: int) -> bool:
    """Running, not a zombie (an orphan may stay one where nothing reaps it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def pid_in(path: Path) -> int:
    assert poll_until(lambda: path.is_file() and path.read_text().strip() != "", 5)
    return int(path.read_text())


def kill_quietly(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 9)


def executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


class TestExitCodes:
    def test_exit_zero_is_ok(self, runner: SubprocessCommandRunner, agent_dir: Path) -> None:
        result = one(runner, sh(agent_dir, "echo fine"))
        assert (result.ok, result.exit_code, result.output, result.error) == (
            True, 0, "fine\n", None)
        assert 0 < result.duration < 5 and not result.timed_out
        assert abs(result.ended_at - time.time()) < 5

    @pytest.mark.parametrize("code", [1, 3, 127])
    def test_another_exit_code_is_not_ok(
        self, runner: SubprocessCommandRunner, agent_dir: Path, code: int
    ) -> None:
        result = one(runner, sh(agent_dir, f"echo failing >&2; exit {code}"))
        assert (result.ok, result.exit_code) == (False, code)
        assert result.output == "failing\n"  # stderr is in the tail too

    def test_death_by_signal_is_a_negative_code(
        self, runner: SubprocessCommandRunner, agent_dir: Path
    ) -> None:
        result = one(runner, sh(agent_dir, "kill -9 $$"))
        assert (result.ok, result.exit_code, result.timed_out) == (False, -9, False)

    def test_the_result_carries_its_request(
        self, runner: SubprocessCommandRunner, agent_dir: Path
    ) -> None:
        req = sh(agent_dir, "true", transition="stalled", attempt=2)
        assert one(runner, req).request is req


class TestTimeout:
    def test_the_whole_group_is_killed_grandchild_included(
        self, runner: SubprocessCommandRunner, agent_dir: Path
    ) -> None:
        """A grandchild that ignores SIGTERM is killed with SIGKILL after the grace."""
        script = ("(trap '' TERM; exec sleep 300) & echo $! > stubborn.pid; "
                  "sleep 300 & echo $! > child.pid; echo started; wait")
        started = time.monotonic()
        result = one(runner, sh(agent_dir, script, timeout=0.5))
        took = time.monotonic() - started
        stubborn, child = pid_in(agent_dir / "stubborn.pid"), pid_in(agent_dir / "child.pid")
        assert result.timed_out and not result.ok and result.exit_code is not None
        assert result.error is not None and "timed out after 0.5s" in result.error
        assert result.output == "started\n"
        assert 0.5 <= result.duration < 0.5 + GRACE + 2.0 and took < 0.5 + GRACE + 3.0
        assert poll_until(lambda: not alive(stubborn) and not alive(child), 5)

    def test_a_group_that_obeys_sigterm_is_not_waited_for(
        self, runner: SubprocessCommandRunner, agent_dir: Path
    ) -> None:
        """The grace is an upper bound: a group gone at SIGTERM ends the run at once."""
        runner_ = SubprocessCommandRunner(1, grace=30.0)
        try:
            result = one(runner_, sh(agent_dir, "sleep 300 & wait", timeout=0.3))
        finally:
            runner_.close(timeout=1.0)
        assert result.timed_out and result.exit_code == -15
        assert result.duration < 5.0

    def test_a_timed_out_run_frees_its_worker(self, agent_dir: Path) -> None:
        """With one worker, the run after a timed-out one still runs."""
        single = SubprocessCommandRunner(1, grace=GRACE)
        try:
            single.submit(sh(agent_dir, "sleep 300", timeout=0.3))
            single.submit(sh(agent_dir, "echo next"))
            late, nxt = results(single, 2)
        finally:
            single.close(timeout=1.0)
        assert late.timed_out and (nxt.ok, nxt.output) == (True, "next\n")


class TestNormalExit:
    def test_a_background_child_is_left_running(
        self, runner: SubprocessCommandRunner, agent_dir: Path
    ) -> None:
        """A restart may start the agent in the background: its children are the operator's."""
        result = one(runner, sh(agent_dir, "sleep 60 > /dev/null 2>&1 & echo $! > bg.pid"))
        bg = pid_in(agent_dir / "bg.pid")
        try:
            assert result.ok and result.duration < 5
            assert alive(bg)  # a kill at exit would have happened before the result
        finally:
            kill_quietly(bg)

    def test_a_child_still_writing_to_the_pipe_is_not_blocked_or_killed(
        self, runner: SubprocessCommandRunner, agent_dir: Path
    ) -> None:
        """The result comes at the leader's exit, not at the pipe's EOF; the child keeps
        writing (more than a pipe holds) without a SIGPIPE or a full pipe stopping it."""
        script = ("(sleep 0.5; i=0; while [ $i -lt 2000 ]; do "
                  "echo line-$i-padding-padding-padding; i=$((i+1)); done; "
                  "echo done > finished; sleep 60) & echo $! > bg.pid; echo first")
        result = one(runner, sh(agent_dir, script))
        bg = pid_in(agent_dir / "bg.pid")
        try:
            assert result.ok and result.duration < 5  # the child lives 60 s more
            assert poll_until(lambda: (agent_dir / "finished").is_file(), 10)
            assert alive(bg)
        finally:
            kill_quietly(bg)
        assert poll_until(lambda: runner._drainer.holding() == 0, 5)


class TestCannotRun:
    @pytest.mark.parametrize(("program", "words"), [
        ("no-such-program-anywhere", "not found: 'no-such-program-anywhere'"),
        ("/nonexistent/dir/prog", "not found"),
    ])
    def test_not_found(
        self, runner: SubprocessCommandRunner, agent_dir: Path, program: str, words: str
    ) -> None:
        result = one(runner, request(agent_dir, program, "arg"))
        assert (result.ok, result.exit_code) == (False, None)
        assert result.error is not None and words in result.error

    def test_not_executable(self, runner: SubprocessCommandRunner, agent_dir: Path) -> None:
        script = agent_dir / "restart.sh"
        script.write_text("#!/bin/sh\necho hi\n")
        script.chmod(0o644)
        result = one(runner, request(agent_dir, str(script)))
        assert (result.ok, result.exit_code) == (False, None)
        assert result.error is not None and result.error.startswith("not executable")

    def test_a_directory_is_not_executable(
        self, runner: SubprocessCommandRunner, agent_dir: Path
    ) -> None:
        result = one(runner, request(agent_dir, str(agent_dir)))
        assert not result.ok and result.error is not None and "not" in result.error

    def test_an_executable_that_is_not_a_program(
        self, runner: SubprocessCommandRunner, agent_dir: Path
    ) -> None:
        junk = executable(agent_dir / "junk", "\x7fELF not really\n")
        result = one(runner, request(agent_dir, str(junk)))
        assert not result.ok and result.error is not None and "cannot run" in result.error

    def test_a_missing_working_folder(self, runner: SubprocessCommandRunner, root: Path) -> None:
        result = one(runner, request(root / "Agent-gone", "true"))
        assert not result.ok and result.error is not None and "working folder" in result.error

    def test_a_relative_program_is_found_in_the_agent_folder(
        self, runner: SubprocessCommandRunner, agent_dir: Path
    ) -> None:
        executable(agent_dir / "nudge.sh", "#!/bin/sh\necho nudged\n")
        result = one(runner, request(agent_dir, "./nudge.sh"))
        assert (result.ok, result.output) == (True, "nudged\n")


class TestOutput:
    def test_the_tail_is_at_most_one_kib(
        self, runner: SubprocessCommandRunner, agent_dir: Path
    ) -> None:
        script = "i=0; while [ $i -lt 5000 ]; do echo noise-$i; i=$((i+1)); done; echo THE END"
        result = one(runner, sh(agent_dir, script))
        assert result.ok and len(result.output.encode()) <= OUTPUT_LIMIT
        assert result.output.endswith("noise-4999\nTHE END\n")
        assert len(result.output.encode()) > OUTPUT_LIMIT - 20

    def test_bytes_that_are_not_utf8_are_replaced(
        self, runner: SubprocessCommandRunner, agent_dir: Path
    ) -> None:
        result = one(runner, request(agent_dir, sys.executable, "-c",
                                     "import os; os.write(1, bytes(range(256)) * 8)"))
        assert result.ok and "\ufffd" in result.output
        assert len(result.output.encode()) <= OUTPUT_LIMIT

    @pytest.mark.parametrize(("data", "text"), [
        (b"", ""), (b"short", "short"), (b"x" * 2000, "x" * 1024),
        ("é".encode() * 600, "é" * 512),  # cut in the middle of a character: dropped
        (b"\xff" * 2000, "\ufffd" * 341),  # each replacement is 3 bytes once encoded
    ])
    def test_tail_text(self, data: bytes, text: str) -> None:
        assert tail_text(data) == text
        assert len(tail_text(data).encode()) <= OUTPUT_LIMIT


class TestWhatTheCommandSees:
    def test_placeholders_environment_cwd_stdin_and_group(
        self, runner: SubprocessCommandRunner, agent_dir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        probe = executable(agent_dir.parent / "probe", PROBE)
        monkeypatch.setenv("PROBE_INHERITED", "from healer's environment")
        req = request(agent_dir, str(probe), "{agent}", "--dir={agent_dir}", "{attempt}",
                      "{silent_for}s", "{transition}", "{{literal}}",
                      transition="stalled", attempt=2, silent_for=125.4, incident=9)
        result = one(runner, req)
        assert result.ok, result
        seen = json.loads(result.output)
        assert seen["argv"] == ["Agent-1", f"--dir={agent_dir}", "2", "125s", "stalled",
                                "{literal}"]
        assert seen["cwd"] == str(agent_dir)
        assert seen["env"] == {
            "HEALER_AGENT": "Agent-1", "HEALER_AGENT_DIR": str(agent_dir),
            "HEALER_ATTEMPT": "2", "HEALER_SILENT_FOR": "125", "HEALER_TRANSITION": "stalled",
            "HEALER_INCIDENT": "9", "HEALER_WORKSPACES": str(agent_dir.parent),
        }
        assert seen["inherited"] == "from healer's environment"
        assert seen["stdin_is_null"] and seen["own_group"] and seen["own_session"]

    @pytest.mark.parametrize("name", ["Agent-x;touch PWNED", "Agent-{attempt}",
                                      "Agent-$(touch PWNED)", "Agent-`touch PWNED`"])
    def test_a_hostile_folder_name_never_reaches_a_shell(
        self, runner: SubprocessCommandRunner, root: Path, name: str
    ) -> None:
        folder = root / name
        folder.mkdir()
        probe = executable(root / "probe", PROBE)
        result = one(runner, request(folder, str(probe), "{agent}", "{agent_dir}",
                                     attempt=3, transition="escalated"))
        assert result.ok, result
        seen = json.loads(result.output)
        assert seen["argv"] == [name, str(folder)]
        assert seen["env"]["HEALER_AGENT"] == name and seen["cwd"] == str(folder)
        echoed = one(runner, request(folder, "echo", "{agent}"))
        assert echoed.output == name + "\n"
        assert not any(p.name == "PWNED" for p in root.parent.rglob("*"))
        assert not Path("PWNED").exists()


class TestPool:
    def test_concurrency_is_bounded_and_submit_never_blocks(
        self, agent_dir: Path
    ) -> None:
        """Six 0.4 s runs on two workers: submit returns at once, at most two overlap,
        and both workers are used."""
        pool = SubprocessCommandRunner(2, grace=GRACE)
        script = ("import sys, time; n = sys.argv[1]; "
                  "open(f'{n}.start', 'w').write(repr(time.time())); time.sleep(0.4); "
                  "open(f'{n}.end', 'w').write(repr(time.time()))")
        try:
            started = time.monotonic()
            for n in range(6):
                pool.submit(request(agent_dir, sys.executable, "-c", script, str(n)))
            submitting = time.monotonic() - started
            done = results(pool, 6)
        finally:
            pool.close(timeout=1.0)
        assert submitting < 0.5, submitting  # six runs take 1.2 s on two workers
        assert all(r.ok for r in done), done
        spans = [(float((agent_dir / f"{n}.start").read_text()),
                  float((agent_dir / f"{n}.end").read_text())) for n in range(6)]
        most = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
        assert most == 2, spans

    def test_the_wake_event_is_the_callers(self, agent_dir: Path) -> None:
        shared = threading.Event()
        pool = SubprocessCommandRunner(1, wake=shared)
        try:
            pool.submit(sh(agent_dir, "true"))
            assert shared.wait(10) and pool.wake is shared
            assert [r.ok for r in pool.drain()] == [True]
        finally:
            pool.close(timeout=1.0)

    def test_a_full_queue_answers_at_once(self, agent_dir: Path) -> None:
        pool = SubprocessCommandRunner(1, max_pending=1, grace=GRACE)
        try:
            pool.submit(sh(agent_dir, "sleep 300"))
            assert poll_until(lambda: pool.running == 1, 5)
            pool.submit(sh(agent_dir, "echo queued"))
            refused = sh(agent_dir, "echo refused")
            pool.submit(refused)
            [result] = pool.drain()
            assert result.request is refused and not result.ok
            assert result.error is not None and "already waiting" in result.error
        finally:
            pool.close(timeout=0.2)

    def test_close_kills_what_runs_and_reports_what_never_ran(self, agent_dir: Path) -> None:
        pool = SubprocessCommandRunner(1, grace=GRACE)
        pool.submit(sh(agent_dir, "echo $$ > leader.pid; exec sleep 300"))
        waiting = sh(agent_dir, "echo never")
        pool.submit(waiting)
        leader = pid_in(agent_dir / "leader.pid")
        started = time.monotonic()
        pool.close(timeout=0.3)
        took = time.monotonic() - started
        assert took < 0.3 + GRACE + 2.0, took
        assert not alive(leader)
        by_script = {r.request.spec.run[-1]: r for r in pool.drain()}
        assert by_script["echo never"].error == "not run: healer stopped first"
        killed = by_script["echo $$ > leader.pid; exec sleep 300"]
        assert not killed.ok and not killed.timed_out
        assert killed.error == "killed: healer stopped while it ran"
        late = sh(agent_dir, "true")
        pool.submit(late)
        [refused] = pool.drain()
        assert refused.request is late and refused.error == "not run: healer is stopping"


class TestBadCommandConfigExitsTwo:
    @pytest.mark.parametrize(("text", "key"), [
        ("healer:\n  commands: {nudge: {run: [tmux]}}\n  ladder: [force_update, nudge, reboot]\n",
         "healer.ladder[2]"),
        ("healer:\n  commands:\n    nudge: {run: 'tmux send-keys -t x continue Enter'}\n",
         "healer.commands.nudge.run"),
        ("healer:\n  commands:\n    reset_status: {run: [my-reset]}\n",
         "healer.commands.reset_status"),
        ("healer:\n  commands: {page: {run: [pager, '{agnet}']}}\n",
         "healer.commands.page.run[1]"),
        ("healer:\n  on: {escalated: [page_oncall]}\n", "healer.on.escalated[0]"),
    ])
    def test_every_command_exits_two_naming_the_key(
        self, tmp_path: Path, root: Path, text: str, key: str
    ) -> None:
        """The bad config stops healer before it touches anything: one line, exit 2."""
        config = tmp_path / "healer-test.yml"
        config.write_text(text)
        for command in (["check"], ["status"], watch_args()):
            done = subprocess.run(
                [sys.executable, "-m", "healer", "--workspaces", str(root), *command],
                cwd=tmp_path, env=daemon_env(config), capture_output=True, text=True,
                timeout=30,
            )
            assert done.returncode == 2, (command, done.stdout, done.stderr)
            line = done.stderr.strip()
            assert "\n" not in line and line.startswith(f"healer: {key}: "), line
        assert list(root.iterdir()) == []
