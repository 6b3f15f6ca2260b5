"""`make run`'s demo, headless and sped up: the swarm and healer as real processes, the
five transitions read from healer's JSON log, and a Ctrl-C to the process group."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from healer.log import ConsoleLine

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "scripts" / "demo.py"
CONFIG = REPO / "config" / "orchestration.yml"
# The demo's cast at 8x speed against thresholds scaled to match: everything happens in
# about five seconds; the deadline leaves room for a loaded two-core machine.
FAST = ["--heal-after", "0.8", "--recover-after", "2.4", "--tick", "0.05", "--speed", "8",
        "--waiting-alert-after", "1.25"]
DEADLINE = 40.0
TMUX = shutil.which("tmux") is not None
NO_TMUX = "tmux is not installed: the demo skips its agent in a tmux pane"
PANE_AGENT = "Agent-9"  # after the 8 simulated agents

pytestmark = pytest.mark.integration


@dataclass
class DemoRun:
    proc: subprocess.Popen[str]
    events: list[dict[str, Any]] = field(default_factory=list)
    other: list[str] = field(default_factory=list)
    stdout: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    readers: list[threading.Thread] = field(default_factory=list)

    def named(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.events if e.get("event") == name]


def _start(root: Path, *extra: str, env: dict[str, str] | None = None) -> DemoRun:
    proc = subprocess.Popen(
        [sys.executable, str(DEMO), "--workspaces", str(root), "--config", str(CONFIG),
         "--log-format", "json", *FAST, *extra],
        cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True, env=env)
    run = DemoRun(proc)

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            with run.lock:
                if isinstance(event, dict):
                    run.events.append(event)
                else:
                    run.other.append(line.rstrip("\n"))

    def read_stdout() -> None:
        assert proc.stdout is not None
        run.stdout.extend(proc.stdout)

    run.readers = [threading.Thread(target=f, daemon=True) for f in (read, read_stdout)]
    for reader in run.readers:
        reader.start()
    return run


def _seen_all(run: DemoRun) -> bool:
    return all(run.named(name) for name in ("stall_detected", "heal_action", "agent_recovered",
                                            "agent_escalated", "agent_waiting_over")) and any(
        e.get("action") == "reassign_tasks" and e.get("ok") for e in run.named("recovery_action")
    ) and (not TMUX or any(e["agent"] == PANE_AGENT for e in run.named("agent_recovered")))


def _running(needle: str) -> list[str]:
    """Command lines of live processes that mention `needle`."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in text:
            found.append(text)
    return found


def _interrupt(run: DemoRun) -> int:
    """Ctrl-C as a terminal sends it: SIGINT to the whole process group."""
    os.killpg(run.proc.pid, signal.SIGINT)
    try:
        code = run.proc.wait(timeout=20)  # a loaded two-core machine is slow to stop
    except subprocess.TimeoutExpired:
        os.killpg(run.proc.pid, signal.SIGKILL)
        run.proc.wait()
        raise
    for reader in run.readers:
        reader.join(timeout=5)
    return code


def _wait(run: DemoRun, done: Any) -> None:
    deadline = time.monotonic() + DEADLINE
    while not done(run) and time.monotonic() < deadline and run.proc.poll() is None:
        time.sleep(0.05)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoRun, int, Path]:
    root = tmp_path_factory.mktemp("demo") / "agent_workspaces"
    run = _start(root)
    try:
        _wait(run, _seen_all)
    finally:
        code = _interrupt(run)
    return run, code, root


class TestDemo:
    def test_shows_each_of_the_five_transitions(
        self, first_run: tuple[DemoRun, int, Path]
    ) -> None:
        """Detection, a heal, a recovery, a task reassignment and an escalation all happen."""
        run, _code, _root = first_run
        assert run.named("stall_detected"), run.other
        assert any(e["ok"] for e in run.named("heal_action"))
        assert run.named("agent_recovered")
        assert [e for e in run.named("recovery_action")
                if e["action"] == "reassign_tasks" and e["ok"] is True]
        assert run.named("agent_escalated")

    def test_the_cast_plays_its_roles(self, first_run: tuple[DemoRun, int, Path]) -> None:
        """Agent-4 (never recovers) escalates; Agent-2 and Agent-5 come back."""
        run, _code, _root = first_run
        assert {e["agent"] for e in run.named("agent_escalated")} == {"Agent-4"}
        assert {"Agent-2", "Agent-5"} <= {e["agent"] for e in run.named("agent_recovered")}

    def test_the_agent_waiting_on_a_human_is_alerted_once_and_never_healed(
        self, first_run: tuple[DemoRun, int, Path]
    ) -> None:
        """Agent-3 beats waiting through `healer beat`: one waiting alert, no stall, no
        rung, none of its tasks moved; its answer ends the wait."""
        run, _code, _root = first_run
        assert [e["agent"] for e in run.named("agent_waiting")] == ["Agent-3"]
        alerts = [e for e in run.named("alert_sent") if e.get("agent") == "Agent-3"]
        assert [e["transition"] for e in alerts] == ["waiting"]
        for name in ("stall_detected", "heal_action", "recovery_action"):
            assert not [e for e in run.named(name) if e.get("agent") == "Agent-3"], name
        (over,) = [e for e in run.named("agent_waiting_over") if e["agent"] == "Agent-3"]
        assert over["alerted"] is True
        assert "Agent-3 waits on a human" in "\n".join(run.other)

    def test_ctrl_c_stops_both_cleanly(self, first_run: tuple[DemoRun, int, Path]) -> None:
        """SIGINT to the group: exit 0, healer logs watch_stopped, no traceback anywhere."""
        run, code, _root = first_run
        assert code == 0
        assert [e["reason"] for e in run.named("watch_stopped")] == ["SIGINT"]
        assert not [line for line in run.other if "Traceback" in line]
        with pytest.raises(ProcessLookupError):
            os.killpg(run.proc.pid, 0)

    def test_json_keeps_every_field_and_console_fits_80_columns(
        self, first_run: tuple[DemoRun, int, Path]
    ) -> None:
        """The JSON lines carry the SPEC §8 fields; their console rendering stays narrow."""
        run, _code, _root = first_run
        stall = run.named("stall_detected")[0]
        assert {"agent", "pipeline", "silent_for", "threshold", "timestamp", "level"} <= set(stall)
        render = ConsoleLine(colors=False)
        for name in ("stall_detected", "heal_action", "agent_recovered", "recovery_action",
                     "agent_escalated", "agent_waiting", "waiting_alert", "agent_waiting_over",
                     "watch_started", "watch_stopped"):
            for event in run.named(name):
                text = render(None, event["level"], dict(event))
                assert text.split()[2] == name
                assert max(len(line) for line in text.splitlines()) <= 80, text

    def test_a_second_run_reuses_the_workspace(
        self, first_run: tuple[DemoRun, int, Path]
    ) -> None:
        """make run on an existing workspace keeps its files and history and starts again."""
        _run, _code, root = first_run
        backups = sorted(root.glob("Agent-*/status.json.bak.*"))
        assert backups
        again = _start(root)
        try:
            _wait(again, lambda r: bool(r.named("watch_started")))
        finally:
            code = _interrupt(again)
        assert code == 0
        assert "existing, reused" in "".join(again.stdout)
        assert again.named("watch_started")[0]["agents"] == (9 if TMUX else 8)
        assert set(backups) <= set(root.glob("Agent-*/status.json.bak.*"))
        assert (root / ".healer" / "healer.db").is_file()

    def test_no_swarm_outage_in_the_demo(self, first_run: tuple[DemoRun, int, Path]) -> None:
        """The cast's stalls stay single incidents: under half the swarm at any time."""
        run, _code, _root = first_run
        assert run.named("stall_detected")
        assert run.named("watch_started")[0]["agents"] == (9 if TMUX else 8)
        assert not run.named("swarm_outage"), run.named("swarm_outage")


class TestTmuxActor:
    @pytest.mark.skipif(not TMUX, reason=NO_TMUX)
    def test_the_nudge_typed_into_its_pane_brings_the_agent_back(
        self, first_run: tuple[DemoRun, int, Path]
    ) -> None:
        """Agent-9 hangs reading its tmux pane; healer's nudge rung (tmux send-keys on the
        demo's own -L socket) types `continue`: it recovers at the first attempt."""
        run, _code, root = first_run
        (nudge,) = [e for e in run.named("heal_action") if e["agent"] == PANE_AGENT]
        assert (nudge["action"], nudge["attempt"], nudge["ok"], nudge["exit_code"]) == (
            "nudge", 1, True, 0)
        (back,) = [e for e in run.named("agent_recovered") if e["agent"] == PANE_AGENT]
        assert back["attempts"] == 1
        devlog = "".join(p.read_text() for p in (root / PANE_AGENT / "devlogs").glob("*.md"))
        assert "resumed: 'continue' typed at the prompt" in devlog
        assert f"{PANE_AGENT} got 'continue' typed into its pane" in "\n".join(run.other)
        # Every other agent has no pane: its nudge fails and the ladder goes on.
        failed = [e for e in run.named("heal_action")
                  if e["action"] == "nudge" and e["agent"] == "Agent-4"]
        assert [e["ok"] for e in failed] == [False]

    @pytest.mark.skipif(not TMUX, reason=NO_TMUX)
    def test_ctrl_c_leaves_no_tmux_server_or_pane_running(
        self, first_run: tuple[DemoRun, int, Path]
    ) -> None:
        run, _code, root = first_run
        started = [m for line in run.other
                   if (m := re.search(r"tmux -L (healer-demo-\d+) \(TMUX_TMPDIR=(\S+)\)", line))]
        assert started, run.other
        socket, tmpdir = started[0].groups()
        assert not _running(socket)
        assert not _running(f"tmux_agent.py --workspaces {root.resolve()}")
        assert not Path(tmpdir).exists()  # the private socket's folder is gone too

    def test_without_tmux_the_banner_says_so_and_the_pane_agent_is_skipped(
        self, tmp_path: Path
    ) -> None:
        """A PATH with no tmux on it: the banner says the actor is skipped, 8 agents run."""
        bare = tmp_path / "bin"
        bare.mkdir()
        run = _start(tmp_path / "agent_workspaces", env={**os.environ, "PATH": str(bare)})
        try:
            _wait(run, lambda r: bool(r.named("watch_started")))
        finally:
            code = _interrupt(run)
        assert code == 0
        assert "tmux is not installed: the agent in a tmux pane is skipped" in "".join(
            run.stdout)
        assert run.named("watch_started")[0]["agents"] == 8
        assert not (tmp_path / "agent_workspaces" / PANE_AGENT).exists()
