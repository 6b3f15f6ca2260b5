"""The hooks block and its merge into a settings document (SPEC §12 `healer hooks`)."""

from __future__ import annotations

import copy
import shlex
import tomllib
from typing import Any

import pytest

from healer.core.heartbeat import Invalid
from healer.core.hookconfig import (
    CLAUDE_CODE_EVENTS,
    HOOK_TIMEOUT,
    Merged,
    claude_code_hooks,
    codex_notify,
    merge_hooks,
    shell_command,
)

CMD = "/opt/healer/bin/healer --workspaces /srv/ws beat Agent-1 --hook claude-code"
HOSTILE = ["/opt/my healer/bin/healer", "--workspaces", "/srv/ws $HOME", "beat",
           "Agent-x;touch PWNED", "--hook", "claude-code", "it's", "`id`", "a\"b", "ü"]

# A settings file someone already uses: keys of its own, and hooks of its own on two of
# the events healer wires and on one it does not.
THEIRS: dict[str, Any] = {
    "model": "claude-sonnet-4-6",
    "permissions": {"allow": ["Bash(npm run lint)"], "deny": ["Read(./.env)"]},
    "env": {"NODE_ENV": "development"},
    "hooks": {
        "PreToolUse": [{"matcher": "Bash", "hooks": [
            {"type": "command", "command": "./.claude/hooks/validate-bash.py", "timeout": 10}]}],
        "Notification": [{"matcher": "idle_prompt", "hooks": [
            {"type": "command", "command": "say 'Claude is waiting'"}]}],
        "PostToolUseFailure": [{"hooks": [{"type": "command", "command": "log-failure"}]}],
    },
}


def merged(doc: object, command: str = CMD) -> Merged:
    result = merge_hooks(doc, claude_code_hooks(command))
    assert isinstance(result, Merged), result
    return result


class TestBlock:
    def test_every_event_of_spec_12_runs_the_command(self) -> None:
        block = claude_code_hooks(CMD)
        assert list(block) == [
            "SessionStart", "UserPromptSubmit", "PreToolUse", "PermissionRequest",
            "PostToolUse", "Notification", "SubagentStop", "Stop", "PreCompact", "SessionEnd"]
        for groups in block.values():
            assert groups[0]["hooks"] == [
                {"type": "command", "command": CMD, "timeout": HOOK_TIMEOUT}]

    def test_matchers_only_where_claude_code_filters_by_one(self) -> None:
        block = claude_code_hooks(CMD)
        with_matcher = {e for e, groups in block.items() if "matcher" in groups[0]}
        assert with_matcher == {e for e, has in CLAUDE_CODE_EVENTS if has}
        assert {"UserPromptSubmit", "Stop"}.isdisjoint(with_matcher)
        assert all(block[e][0]["matcher"] == "*" for e in with_matcher)

    def test_no_event_whose_hook_has_a_contract_of_its_own(self) -> None:
        # WorktreeCreate's hook must print a path and replaces git; an unknown event name
        # makes Claude Code skip the whole settings file.
        assert "WorktreeCreate" not in claude_code_hooks(CMD)

    def test_the_command_line_quotes_every_element(self) -> None:
        assert shlex.split(shell_command(HOSTILE)) == HOSTILE
        assert shell_command(["/bin/healer", "beat"]) == "/bin/healer beat"

    def test_the_codex_line_is_toml_for_the_same_argv(self) -> None:
        assert tomllib.loads(codex_notify(HOSTILE))["notify"] == HOSTILE


class TestMerge:
    def test_into_nothing(self) -> None:
        result = merged({})
        assert result.doc == {"hooks": claude_code_hooks(CMD)}
        assert result.added == tuple(e for e, _ in CLAUDE_CODE_EVENTS)

    def test_every_other_key_and_hook_stays(self) -> None:
        before = copy.deepcopy(THEIRS)
        result = merged(THEIRS)
        assert before == THEIRS, "the input document is not changed"
        doc = result.doc
        assert {k: v for k, v in doc.items() if k != "hooks"} == {
            k: v for k, v in THEIRS.items() if k != "hooks"}
        assert doc["hooks"]["PostToolUseFailure"] == THEIRS["hooks"]["PostToolUseFailure"]
        for event in ("PreToolUse", "Notification"):
            assert doc["hooks"][event][0] == THEIRS["hooks"][event][0], "theirs first"
            assert doc["hooks"][event][1] == claude_code_hooks(CMD)[event][0]
        assert len(result.added) == len(CLAUDE_CODE_EVENTS)

    def test_a_second_merge_adds_nothing(self) -> None:
        once = merged(THEIRS)
        twice = merged(once.doc)
        assert twice.added == ()
        assert twice.doc == once.doc

    def test_an_event_already_running_the_command_is_left_alone(self) -> None:
        doc = {"hooks": {"Stop": [{"hooks": [{"type": "command", "command": CMD}]}]}}
        result = merged(doc)
        assert "Stop" not in result.added
        assert result.doc["hooks"]["Stop"] == doc["hooks"]["Stop"]

    def test_another_agents_hooks_are_kept_beside(self) -> None:
        other = CMD.replace("Agent-1", "Agent-2")
        result = merged(merged({}, other).doc)
        assert len(result.added) == len(CLAUDE_CODE_EVENTS)
        commands = [h["command"] for g in result.doc["hooks"]["Stop"] for h in g["hooks"]]
        assert commands == [other, CMD]

    @pytest.mark.parametrize(
        ("doc", "reason"),
        [
            ([], "not a JSON object"),
            ("hooks", "not a JSON object"),
            ({"hooks": []}, "hooks: not an object"),
            ({"hooks": {"Stop": {"hooks": []}}}, "hooks.Stop: not a list"),
        ],
    )
    def test_a_shape_it_cannot_merge_into_is_refused(self, doc: object, reason: str) -> None:
        result = merge_hooks(doc, claude_code_hooks(CMD))
        assert isinstance(result, Invalid)
        assert result.reason.endswith(reason)

    def test_odd_groups_of_their_own_do_not_stop_the_merge(self) -> None:
        doc = {"hooks": {"Stop": ["junk", {"hooks": "x"}, {"hooks": [3, {"command": 4}]}]}}
        result = merged(doc)
        assert result.doc["hooks"]["Stop"][:3] == doc["hooks"]["Stop"]
        assert "Stop" in result.added
