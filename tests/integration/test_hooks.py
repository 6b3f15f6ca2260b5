"""`healer hooks` as a process: the printed settings run `healer beat` for real (through a
shell, as Claude Code runs them), and `--install` merges into a settings file that has its
own keys and hooks, atomically and only once."""

from __future__ import annotations

import json
import os
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from healer.core.hookconfig import CLAUDE_CODE_EVENTS
from tests.conftest import make_agent
from tests.hookpayloads import EXPECTED_STATE, claude_code, codex_turn_complete
from tests.integration.beatrun import HEALER, heartbeat, hook_env, run

pytestmark = pytest.mark.integration

EVENTS = [event for event, _ in CLAUDE_CODE_EVENTS]
HOSTILE = "Agent-x;touch PWNED"

THEIRS: dict[str, Any] = {
    "$schema": "https://json.schemastore.org/claude-code-settings.json",
    "model": "claude-sonnet-4-6",
    "permissions": {"allow": ["Bash(npm run lint)"], "deny": ["Read(./.env)"]},
    "env": {"NODE_ENV": "développement"},
    "hooks": {
        "PreToolUse": [{"matcher": "Bash", "hooks": [
            {"type": "command", "command": "./.claude/hooks/validate-bash.py", "timeout": 10}]}],
        "Stop": [{"hooks": [{"type": "command", "command": "notify-send done"}]}],
        "PostToolUseFailure": [{"hooks": [{"type": "command", "command": "log-failure"}]}],
    },
}


def hooks(tmp_path: Path, root: Path, *args: str,
          config: Path | None = None) -> subprocess.CompletedProcess[str]:
    head = ["--config", str(config)] if config is not None else []
    return run(tmp_path, *head, "--workspaces", str(root), "hooks", *args)


def commands(block: dict[str, Any]) -> dict[str, list[str]]:
    return {event: [h["command"] for g in groups for h in g["hooks"]]
            for event, groups in block["hooks"].items()}


def through_shell(command: str, payload: dict[str, Any], cwd: Path,
                  env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """What Claude Code does with a hook: the command through a shell, the payload on stdin,
    in the project's directory."""
    return subprocess.run(["/bin/sh", "-c", command], input=json.dumps(payload).encode(),
                          cwd=cwd, env=hook_env(env), capture_output=True, timeout=30,
                          check=False)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """Where the agent works: not the workspace, not healer's directory."""
    path = tmp_path / "project"
    path.mkdir()
    return path


class TestPrint:
    def test_every_event_runs_healer_beat_by_absolute_path(
        self, tmp_path: Path, root: Path
    ) -> None:
        make_agent(root, "Agent-1")
        done = hooks(tmp_path, root, "claude-code", "Agent-1")
        assert done.returncode == 0, done.stderr
        block = json.loads(done.stdout)
        expected = (f"{HEALER[0]} --workspaces {root} beat Agent-1 --hook claude-code")
        assert commands(block) == {event: [expected] for event in EVENTS}
        assert os.path.isabs(HEALER[0])

    @pytest.mark.parametrize("event", EVENTS)
    def test_the_printed_command_drives_the_beat(
        self, tmp_path: Path, root: Path, project: Path, event: str
    ) -> None:
        folder = make_agent(root, "Agent-1")
        block = json.loads(hooks(tmp_path, root, "claude-code", "Agent-1").stdout)
        command = block["hooks"][event][0]["hooks"][0]["command"]
        done = through_shell(command, claude_code(event), project, env={"PATH": "/nonexistent"})
        assert (done.returncode, done.stdout) == (0, b""), done.stderr
        assert heartbeat(folder)["state"] == EXPECTED_STATE[event]

    def test_without_agent_it_relies_on_healer_agent(
        self, tmp_path: Path, root: Path, project: Path
    ) -> None:
        folder = make_agent(root, "Agent-2")
        block = json.loads(hooks(tmp_path, root, "claude-code").stdout)
        command = block["hooks"]["SessionEnd"][0]["hooks"][0]["command"]
        assert "Agent" not in command.split("--workspaces")[1]
        done = through_shell(command, claude_code("SessionEnd"), project,
                             env={"HEALER_AGENT": "Agent-2"})
        assert done.returncode == 0, done.stderr
        assert heartbeat(folder)["state"] == "done"

    def test_a_config_is_carried_absolute(self, tmp_path: Path, root: Path) -> None:
        (tmp_path / "conf").mkdir()
        config = tmp_path / "conf" / "healer.yml"
        config.write_text("healer:\n  agent_pattern: 'Bot-*'\n")
        make_agent(root, "Bot-1")
        done = run(tmp_path / "conf", "--config", "healer.yml", "--workspaces", str(root),
                   "hooks", "claude-code", "Bot-1")
        assert done.returncode == 0, done.stderr
        command = commands(json.loads(done.stdout))["Stop"][0]
        assert f"--config {config}" in command
        result = through_shell(command, claude_code("Stop"), tmp_path)
        assert result.returncode == 0, result.stderr
        assert heartbeat(root / "Bot-1")["state"] == "working"

    def test_a_hostile_agent_name_never_reaches_a_shell(
        self, tmp_path: Path, root: Path, project: Path
    ) -> None:
        folder = make_agent(root, HOSTILE)
        block = json.loads(hooks(tmp_path, root, "claude-code", HOSTILE).stdout)
        for event in ("PreToolUse", "PermissionRequest"):
            command = block["hooks"][event][0]["hooks"][0]["command"]
            done = through_shell(command, claude_code(event), project)
            assert done.returncode == 0, done.stderr
            assert heartbeat(folder)["state"] == EXPECTED_STATE[event]
        assert not any(p.name == "PWNED" for p in (tmp_path, project, root)
                       for p in p.rglob("*"))

    def test_codex_notify_line(self, tmp_path: Path, root: Path, project: Path) -> None:
        folder = make_agent(root, HOSTILE)
        done = hooks(tmp_path, root, "codex", HOSTILE)
        assert done.returncode == 0, done.stderr
        argv = tomllib.loads(done.stdout)["notify"]
        assert argv == [*HEALER, "--workspaces", str(root), "beat", HOSTILE, "--hook", "codex"]
        # Codex runs the argv itself (no shell), its JSON appended as the last argument.
        ran = subprocess.run([*argv, codex_turn_complete()], cwd=project, env=hook_env(),
                             capture_output=True, stdin=subprocess.DEVNULL, check=False)
        assert ran.returncode == 0, ran.stderr
        assert heartbeat(folder)["source"] == "codex"

    @pytest.mark.parametrize(
        ("args", "why"),
        [(["claude-code", "../Agent-1"], "not an agent name"),
         (["claude-code", "worker"], "agent_pattern"),
         (["cursor"], "is not one of"),
         (["codex", "Agent-1", "--install", "x.toml"], "--install")],
    )
    def test_usage_errors_exit_2(self, tmp_path: Path, root: Path, args: list[str],
                                 why: str) -> None:
        done = hooks(tmp_path, root, *args)
        assert done.returncode == 2
        assert why in done.stderr

    def test_an_agent_folder_not_there_yet_is_a_note(self, tmp_path: Path, root: Path) -> None:
        done = hooks(tmp_path, root, "claude-code", "Agent-7")
        assert done.returncode == 0
        assert "no agent folder 'Agent-7'" in done.stderr
        json.loads(done.stdout)


class TestInstall:
    def test_merges_into_a_file_with_its_own_keys_and_hooks(
        self, tmp_path: Path, root: Path, project: Path
    ) -> None:
        folder = make_agent(root, "Agent-1")
        settings = project / ".claude" / "settings.json"
        settings.parent.mkdir()
        settings.write_text(json.dumps(THEIRS, indent=4))
        settings.chmod(0o640)
        done = hooks(tmp_path, root, "claude-code", "Agent-1", "--install", str(settings))
        assert done.returncode == 0, done.stderr
        assert "hooked to SessionStart" in done.stdout
        doc = json.loads(settings.read_text())
        assert {k: v for k, v in doc.items() if k != "hooks"} == {
            k: v for k, v in THEIRS.items() if k != "hooks"}
        ours = f"{HEALER[0]} --workspaces {root} beat Agent-1 --hook claude-code"
        got = commands(doc)
        assert got["PreToolUse"] == ["./.claude/hooks/validate-bash.py", ours]
        assert got["Stop"] == ["notify-send done", ours]
        assert got["PostToolUseFailure"] == ["log-failure"]
        assert all(got[event][-1] == ours for event in EVENTS)
        assert doc["hooks"]["PreToolUse"][0] == THEIRS["hooks"]["PreToolUse"][0]
        assert oct(settings.stat().st_mode & 0o777) == oct(0o640)
        assert sorted(p.name for p in settings.parent.iterdir()) == ["settings.json"]
        # And the installed hooks work.
        command = doc["hooks"]["Notification"][-1]["hooks"][0]["command"]
        assert through_shell(command, claude_code("Notification"), project).returncode == 0
        assert heartbeat(folder)["state"] == "waiting"

    def test_a_second_install_changes_nothing(self, tmp_path: Path, root: Path,
                                              project: Path) -> None:
        make_agent(root, "Agent-1")
        settings = project / "settings.json"
        settings.write_text(json.dumps(THEIRS))
        assert hooks(tmp_path, root, "claude-code", "Agent-1", "--install",
                     str(settings)).returncode == 0
        before = (settings.read_bytes(), settings.stat().st_mtime_ns, settings.stat().st_ino)
        again = hooks(tmp_path, root, "claude-code", "Agent-1", "--install", str(settings))
        assert again.returncode == 0
        assert "already hooked; nothing changed" in again.stdout
        assert (settings.read_bytes(), settings.stat().st_mtime_ns,
                settings.stat().st_ino) == before

    def test_a_missing_file_is_created(self, tmp_path: Path, root: Path,
                                       project: Path) -> None:
        settings = project / ".claude" / "settings.json"
        done = hooks(tmp_path, root, "claude-code", "Agent-1", "--install", str(settings))
        assert done.returncode == 0, done.stderr
        assert list(json.loads(settings.read_text())["hooks"]) == EVENTS

    @pytest.mark.parametrize(
        ("content", "why"),
        [(b'{"model": "x",', "not valid JSON"), (b"// comment\n{}", "not valid JSON"),
         (b"\xff\xfe", "not valid JSON"), (b"[]", "not a JSON object"),
         (b'{"hooks": []}', "hooks: not an object"),
         (b'{"hooks": {"Stop": {}}}', "hooks.Stop: not a list")],
    )
    def test_a_file_it_cannot_merge_into_is_refused_and_left_untouched(
        self, tmp_path: Path, root: Path, project: Path, content: bytes, why: str
    ) -> None:
        settings = project / "settings.json"
        settings.write_bytes(content)
        before = settings.stat().st_mtime_ns
        done = hooks(tmp_path, root, "claude-code", "Agent-1", "--install", str(settings))
        assert done.returncode == 2
        assert why in done.stderr and "left untouched" in done.stderr
        assert settings.read_bytes() == content
        assert settings.stat().st_mtime_ns == before
        assert sorted(p.name for p in project.iterdir()) == ["settings.json"]

    def test_a_symlinked_settings_file_is_refused(self, tmp_path: Path, root: Path,
                                                  project: Path) -> None:
        real = tmp_path / "dotfiles-settings.json"
        real.write_text("{}")
        (project / "settings.json").symlink_to(real)
        done = hooks(tmp_path, root, "claude-code", "--install", str(project / "settings.json"))
        assert done.returncode == 2
        assert str(real) in done.stderr
        assert real.read_text() == "{}"
        assert (project / "settings.json").is_symlink()
