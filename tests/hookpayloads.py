"""Hook payloads in the exact shapes the agent CLIs document, for the unit and process tests.

Claude Code (hooks reference, code.claude.com/docs/en/hooks): every event's JSON on stdin
carries `session_id`, `transcript_path`, `cwd`, `permission_mode` and `hook_event_name`, plus
the fields of its event. Codex (`notify` in docs/config.md): one JSON object appended as the
program's last argument, `type` always set, `agent-turn-complete` the type it sends.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "CLAUDE_CODE_EVENTS",
    "EXPECTED_STATE",
    "claude_code",
    "codex_turn_complete",
    "notification",
]

_COMMON = {
    "session_id": "abc123",
    "transcript_path": "/home/user/.claude/projects/my-project/abc123.jsonl",
    "cwd": "/home/user/my-project",
    "permission_mode": "default",
}
_BASH = {"command": "npm test", "description": "Run the test suite"}

# Each event's own fields, as documented.
CLAUDE_CODE_EVENTS: dict[str, dict[str, Any]] = {
    "SessionStart": {"source": "startup", "model": "claude-sonnet-4-6"},
    "UserPromptSubmit": {"prompt": "Write a function to calculate the factorial of a number"},
    "PreToolUse": {"tool_name": "Bash", "tool_input": _BASH, "tool_use_id": "toolu_01ABC123"},
    "PermissionRequest": {
        "tool_name": "Bash",
        "tool_input": {"command": "rm -rf node_modules"},
        "permission_suggestions": [{"type": "toolAlwaysAllow", "tool": "Bash"}],
    },
    "PostToolUse": {
        "tool_name": "Write",
        "tool_input": {"file_path": "/path/to/file.txt", "content": "file content"},
        "tool_response": {"filePath": "/path/to/file.txt", "success": True},
        "tool_use_id": "toolu_01ABC123",
    },
    "PostToolUseFailure": {
        "tool_name": "Bash", "tool_input": _BASH, "tool_use_id": "toolu_01ABC124",
        "error": "Command exited with non-zero status code 1", "is_interrupt": False,
    },
    "Notification": {
        "message": "Claude needs your permission to use Bash",
        "title": "Permission needed",
        "notification_type": "permission_prompt",
    },
    "SubagentStart": {"agent_id": "agent-abc123", "agent_type": "Explore"},
    "SubagentStop": {
        "stop_hook_active": False, "agent_id": "agent-abc123", "agent_type": "Explore",
        "agent_transcript_path": "/home/user/.claude/projects/my-project/agent-abc123.jsonl",
        "last_assistant_message": "Analysis complete.",
    },
    "Stop": {"stop_hook_active": False, "last_assistant_message": "All tests pass."},
    "TeammateIdle": {"teammate_name": "researcher", "team_name": "my-project"},
    "TaskCompleted": {
        "task_id": "task-001", "task_subject": "Implement user authentication",
        "task_description": "Add login and signup endpoints",
        "teammate_name": "implementer", "team_name": "my-project",
    },
    "ConfigChange": {
        "source": "project_settings",
        "file_path": "/home/user/my-project/.claude/settings.json",
    },
    "WorktreeCreate": {"name": "feature-auth"},
    "WorktreeRemove": {"worktree_path": "/home/user/my-project/.claude/worktrees/feature-auth"},
    "PreCompact": {"trigger": "manual", "custom_instructions": "Focus on the API"},
    "SessionEnd": {"reason": "prompt_input_exit"},
}

# SPEC §12: waiting on a human, done, and everything else working.
EXPECTED_STATE = {event: "working" for event in CLAUDE_CODE_EVENTS} | {
    "Notification": "waiting",  # its permission_prompt type
    "PermissionRequest": "waiting",
    "SessionEnd": "done",
}


def claude_code(event: str, **fields: Any) -> dict[str, Any]:
    """The payload of `event`, its documented fields overridden by `fields`."""
    return {**_COMMON, "hook_event_name": event, **CLAUDE_CODE_EVENTS.get(event, {}), **fields}


def notification(message: str, notification_type: str | None) -> dict[str, Any]:
    """A Notification payload; without a type, as older releases sent it."""
    payload = {**_COMMON, "hook_event_name": "Notification", "message": message}
    if notification_type is not None:
        payload["notification_type"] = notification_type
    return payload


def codex_turn_complete() -> str:
    """Codex's notify argument, every documented field (and `client`, which it also sends)."""
    return json.dumps({
        "type": "agent-turn-complete",
        "thread-id": "12345678-1234-1234-1234-123456789abc",
        "turn-id": "12345",
        "cwd": "/home/user/my-project",
        "client": "codex-tui",
        "input-messages": ["Rename `foo` to `bar` and update the callsites."],
        "last-assistant-message": "Rename complete and verified `cargo build` succeeds.",
    })
