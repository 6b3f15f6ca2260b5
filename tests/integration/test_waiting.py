"""Waiting and done against the real daemon (SPEC §12, §17): `healer beat` writes, inotify
carries it, `healer watch` holds the agent. A wait is never healed and alerted once; a done
agent is never detected; every Claude Code hook event drives the state it means."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_agent
from tests.hookpayloads import CLAUDE_CODE_EVENTS, EXPECTED_STATE, claude_code, notification
from tests.integration.alertmanager import requires_alertmanager, running_alertmanager
from tests.integration.beatrun import run
from tests.integration.daemon import DaemonProcess, at, poll_until, running_daemon, watch_args

pytestmark = pytest.mark.integration

HEAL, RECOVER, TICK, ALERT_AFTER = 0.8, 1.6, 0.05, 2.5


def beat(root: Path, *args: str, stdin: str | None = None) -> None:
    done = run(root.parent, "--workspaces", str(root), "beat", *args, stdin=stdin,
               env={"HEALER_AGENT": "Agent-1"})
    assert done.returncode == 0, done.stderr


def keep_working(root: Path, agent: str, seconds: float) -> None:
    """`agent` writes its devlog every 0.1 s for `seconds` (the healthy rest of the swarm)."""
    log = root / agent / "devlogs" / "work.md"
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        log.write_text(f"{time.time()}\n")
        time.sleep(0.1)


def config(extra: str = "") -> str:
    return f"healer:\n  waiting_alert_after: {ALERT_AFTER}s\n{extra}"


class TestWaitingAgent:
    def test_no_healing_one_alert_and_work_ends_the_wait(self, tmp_path: Path) -> None:
        """Waiting when healer starts (the start-up read), reminded at runtime (the same
        wait: no second alert), answered (`working` ends it); healed only after that."""
        root = tmp_path / "ws"
        for agent in ("Agent-1", "Agent-2"):
            make_agent(root, agent)
        beat(root, "--state", "waiting", "--message", "approve rm -rf node_modules?")
        began = (root / "Agent-1" / "heartbeat.json").stat().st_mtime
        # Holds found at start-up are logged at debug (a one-shot check stays quiet).
        args = ["--log-level", "debug", *watch_args(HEAL, RECOVER, TICK)]
        with running_daemon(root, tmp_path, args, config_text=config()) as d:
            d.wait_event("agent_waiting", agent="Agent-1")
            sent = d.wait_event("alert_sent", timeout=ALERT_AFTER + 10, agent="Agent-1",
                                transition="waiting")
            assert began + ALERT_AFTER - TICK <= at(sent) <= began + ALERT_AFTER + 1.5
            beat(root, "--state", "waiting", "--message", "still waiting")  # a reminder
            time.sleep(2 * RECOVER)
            assert len(d.events("alert_sent", agent="Agent-1", transition="waiting")) == 1
            for event in ("stall_detected", "heal_action", "recovery_action",
                          "agent_waiting_over"):
                assert d.events(event, agent="Agent-1") == [], d.tail()
            beat(root)  # working: the human answered
            over = d.wait_event("agent_waiting_over", agent="Agent-1")
            assert over["alerted"] is True and over["waited"] >= ALERT_AFTER
            # An agent like any other again: silent from here, it is healed.
            stall = d.wait_event("stall_detected", timeout=HEAL + 5, agent="Agent-1")
            assert stall["pipeline"] == "healing" and at(stall) >= at(over) + HEAL - TICK
        stats = json.loads(run(tmp_path, "--workspaces", str(root), "stats", "--json").stdout)
        assert stats["waiting"]["waits"] == 1 and stats["waiting"]["alerted"] == 1
        assert stats["waiting"]["by_agent"]["Agent-1"]["seconds"] >= ALERT_AFTER + 2 * RECOVER

    def test_a_done_agent_is_never_detected(self, tmp_path: Path) -> None:
        """Done at start-up, and again at runtime after a new job: never a stall while done;
        `status` and `check` say so."""
        root = tmp_path / "ws"
        for agent in ("Agent-1", "Agent-2"):
            make_agent(root, agent)
        beat(root, "--state", "done", "--message", "all tasks shipped")
        args = ["--log-level", "debug", *watch_args(HEAL, RECOVER, TICK)]
        with running_daemon(root, tmp_path, args) as d:
            d.wait_event("agent_done", agent="Agent-1")
            time.sleep(2 * RECOVER)
            assert d.events("stall_detected", agent="Agent-1") == [], d.tail()
            status = run(tmp_path, "--workspaces", str(root), "status", "--json")
            stages = {r["agent"]: r["stage"] for r in json.loads(status.stdout)["agents"]}
            assert stages["Agent-1"] == "done"
            check = run(tmp_path, "--workspaces", str(root), "check", "--json")
            report = json.loads(check.stdout)
            assert "Agent-1" not in {s["agent"] for s in report["stalled"]}
            assert report["done"] == ["Agent-1"]
            (root / "Agent-1" / "devlogs" / "next.md").write_text("a new job\n")
            d.wait_event("agent_done_over", agent="Agent-1")
            beat(root, "--state", "done")
            assert poll_until(lambda: len(d.events("agent_done", agent="Agent-1")) == 2, 10)
            done = d.events("agent_done", agent="Agent-1")[-1]
            time.sleep(2 * RECOVER)
            stalls = [e for e in d.events("stall_detected", agent="Agent-1")
                      if at(e) > at(done)]
            assert stalls == [], d.tail()

    @requires_alertmanager
    def test_the_wait_is_an_agentwaiting_alert_until_it_ends(self, tmp_path: Path) -> None:
        root = tmp_path / "ws"
        make_agent(root, "Agent-1")
        with running_alertmanager(tmp_path) as am:
            text = config(f"  alerts:\n    alertmanager_url: {am.url}\n")
            with running_daemon(root, tmp_path, watch_args(60, 120, TICK), config_text=text):
                beat(root, "--state", "waiting", "--message", "which branch?")

                def waiting(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
                    return [a for a in alerts if a["labels"]["alertname"] == "AgentWaiting"
                            and a["status"]["state"] == "active"]

                [alert] = am.wait_for(waiting, timeout=ALERT_AFTER + 10, what="AgentWaiting")
                assert alert["labels"] == {
                    "alertname": "AgentWaiting", "agent": "Agent-1",
                    "host": socket.gethostname(), "swarm": "ws", "severity": "warning"}
                assert "which branch?" in alert["annotations"]["summary"]
                beat(root)
                am.wait_for(lambda alerts: not waiting(alerts), what="AgentWaiting ended")


class TestCheck:
    def test_check_reports_waiting_and_done_and_neither_is_stalled(self, tmp_path: Path
                                                                   ) -> None:
        """`check --json` without a daemon: both agents silent for an hour, one waiting and
        one done by their heartbeats: nothing stalled (exit 0), each listed; only the
        report is printed."""
        root = tmp_path / "ws"
        for agent in ("Agent-1", "Agent-2"):
            folder = make_agent(root, agent)
            old = time.time() - 3600
            for path in (folder / "status.json", folder / "devlogs", folder / "inbox"):
                os.utime(path, (old, old))
        beat(root, "--state", "waiting", "--message", "which branch?")
        done = run(root.parent, "--workspaces", str(root), "beat", "Agent-2", "--state",
                   "done")
        assert done.returncode == 0, done.stderr
        check = run(tmp_path, "--workspaces", str(root), "check", "--json")
        assert check.returncode == 0, check.stdout + check.stderr
        report = json.loads(check.stdout)
        assert report["stalled"] == [] and report["done"] == ["Agent-2"]
        [waiting] = report["waiting"]
        assert waiting["agent"] == "Agent-1" and waiting["message"] == "which branch?"
        assert waiting["alerted"] is False and waiting["waiting_for"] < 60
        assert "agent_waiting" not in check.stderr and "agent_done" not in check.stderr


class TestClaudeCodeHooks:
    """Every hook event through `healer beat --hook claude-code`, against the running daemon:
    each is run from the state it would change, and the daemon's log says it did."""

    def _drive(self, d: DaemonProcess, root: Path, payload: dict[str, Any],
               expect: str) -> None:
        before = len(d.events(expect, agent="Agent-1"))
        beat(root, "--hook", "claude-code", stdin=json.dumps(payload))
        assert poll_until(lambda: len(d.events(expect, agent="Agent-1")) > before,
                          timeout=10), f"{payload['hook_event_name']}: no {expect}\n{d.tail()}"

    def test_every_event_drives_working_waiting_or_done(self, tmp_path: Path) -> None:
        root = tmp_path / "ws"
        make_agent(root, "Agent-1")
        payloads = [(claude_code(event), EXPECTED_STATE[event]) for event in CLAUDE_CODE_EVENTS]
        payloads += [
            (notification("Claude is waiting for your input", "idle_prompt"), "waiting"),
            (notification("Claude Code needs your input", "elicitation_dialog"), "waiting"),
            (notification("Logged in", "auth_success"), "working"),
            (notification("Claude needs your permission to use Bash", None), "waiting"),
        ]
        asking, answered = claude_code("PermissionRequest"), claude_code("PostToolUse")
        state = "working"
        with running_daemon(root, tmp_path, watch_args(60, 120, TICK)) as d:
            for payload, expected in payloads:
                if expected == "working":  # from a wait, which it must end
                    if state != "waiting":
                        self._drive(d, root, asking, "agent_waiting")
                    self._drive(d, root, payload, "agent_waiting_over")
                elif expected == "waiting":  # from work, a wait must begin
                    if state == "waiting":
                        self._drive(d, root, answered, "agent_waiting_over")
                    self._drive(d, root, payload, "agent_waiting")
                else:  # done, and the next session ends it
                    if state == "waiting":
                        self._drive(d, root, answered, "agent_waiting_over")
                    self._drive(d, root, payload, "agent_done")
                    self._drive(d, root, claude_code("SessionStart"), "agent_done_over")
                    expected = "working"
                state = expected
            assert d.events("stall_detected") == [] and d.events("heartbeat_invalid") == []
