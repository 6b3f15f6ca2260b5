"""The settings that make an agent CLI run `healer beat` (SPEC §12): Claude Code's `hooks`
block, merged into a settings document without disturbing what is there, and Codex's
`notify` line. Pure: documents in, documents out."""

from __future__ import annotations

import copy
import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from healer.core.heartbeat import Invalid

__all__ = [
    "CLAUDE_CODE_EVENTS",
    "HOOK_TIMEOUT",
    "Merged",
    "claude_code_hooks",
    "codex_notify",
    "merge_hooks",
    "shell_command",
]

# Every event SPEC §12 maps, and whether Claude Code filters it with a matcher. Only names
# every recent release knows: one unknown key makes Claude Code skip the whole settings file.
# WorktreeCreate is left out on purpose: its hook replaces git's own worktree creation.
CLAUDE_CODE_EVENTS: tuple[tuple[str, bool], ...] = (
    ("SessionStart", True),
    ("UserPromptSubmit", False),
    ("PreToolUse", True),
    ("PermissionRequest", True),
    ("PostToolUse", True),
    ("Notification", True),
    ("SubagentStop", True),
    ("Stop", False),
    ("PreCompact", True),
    ("SessionEnd", True),
)
# Seconds Claude Code waits for the hook; `healer beat` finishes in well under one, so this
# only bounds a filesystem that hangs.
HOOK_TIMEOUT = 5

Doc = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Merged:
    """A settings document with healer's hooks in it, and the events that were missing them."""

    doc: Doc
    added: tuple[str, ...]


def shell_command(argv: Sequence[str]) -> str:
    """`argv` as one shell command line; each element quoted, so no name reaches a shell."""
    return " ".join(shlex.quote(arg) for arg in argv)


def claude_code_hooks(command: str) -> Doc:
    """The `hooks` block: each event of §12 runs `command`."""
    block: Doc = {}
    for event, has_matcher in CLAUDE_CODE_EVENTS:
        group: Doc = {"matcher": "*"} if has_matcher else {}
        group["hooks"] = [{"type": "command", "command": command, "timeout": HOOK_TIMEOUT}]
        block[event] = [group]
    return block


def codex_notify(argv: Sequence[str]) -> str:
    """The `notify = [...]` line for ~/.codex/config.toml (a TOML array of basic strings)."""
    # json.dumps without ASCII escaping is a valid TOML basic string: the same escapes.
    return "notify = [" + ", ".join(json.dumps(a, ensure_ascii=False) for a in argv) + "]"


def _has_command(groups: Sequence[Any], command: str) -> bool:
    for group in groups:
        hooks = group.get("hooks") if isinstance(group, Mapping) else None
        if not isinstance(hooks, list):
            continue
        for hook in hooks:
            if isinstance(hook, Mapping) and hook.get("command") == command:
                return True
    return False


def merge_hooks(doc: object, block: Mapping[str, Sequence[Doc]]) -> Merged | Invalid:
    """`doc` with every group of `block` whose command is not yet there; every other key,
    event and hook stays as it was. Merging twice adds nothing the second time."""
    if not isinstance(doc, dict):
        return Invalid("the settings file is not a JSON object")
    hooks = doc.get("hooks", {})
    if not isinstance(hooks, dict):
        return Invalid("hooks: not an object")
    for event in block:
        if event in hooks and not isinstance(hooks[event], list):
            return Invalid(f"hooks.{event}: not a list")
    merged = copy.deepcopy(doc)
    target = merged.setdefault("hooks", {})
    added = []
    for event, groups in block.items():
        existing = target.setdefault(event, [])
        for group in groups:
            commands = [h["command"] for h in group["hooks"]]
            if all(_has_command(existing, c) for c in commands):
                continue
            existing.append(copy.deepcopy(dict(group)))
            added.append(event)
    return Merged(merged, tuple(added))
