"""What an agent says about itself (SPEC §12): heartbeat.json's states, reading the file's
bytes, and turning a Claude Code or Codex hook payload into a beat. Pure: bytes in, values out."""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "HEARTBEAT_FILE",
    "WAITING_NOTIFICATIONS",
    "Beat",
    "Heartbeat",
    "HeartbeatState",
    "HookSource",
    "Invalid",
    "beat_from_claude_code",
    "beat_from_codex",
    "encode_heartbeat",
    "parse_heartbeat",
]

HEARTBEAT_FILE = "heartbeat.json"

# Claude Code's notification types that mean a human has to answer before the agent goes on.
WAITING_NOTIFICATIONS = frozenset({"permission_prompt", "idle_prompt", "elicitation_dialog"})
# Older releases send a Notification without its type; their two texts are "Claude needs your
# permission to use <tool>" and "Claude is waiting for your input".
_WAITING_WORDS = ("permission", "waiting for your input", "waiting for input",
                  "needs your input", "your approval", "approve")
_MAX_MESSAGE = 300  # a beat's message is a line for the operator, not a transcript


class HeartbeatState(enum.Enum):
    """What the agent is doing, in its own words."""

    WORKING = "working"
    WAITING = "waiting"  # on a human: a permission prompt, a question
    DONE = "done"  # off duty until its next genuine activity


class HookSource(enum.Enum):
    """The agent CLIs whose hook payloads `healer beat --hook` reads."""

    CLAUDE_CODE = "claude-code"
    CODEX = "codex"


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A readable heartbeat.json. `at` is the writer's own clock, kept as written."""

    state: HeartbeatState
    at: str | None = None
    message: str | None = None
    source: str | None = None


@dataclass(frozen=True, slots=True)
class Beat:
    """What a hook payload (or the command line) says should be written."""

    state: HeartbeatState
    message: str | None = None
    source: HookSource | None = None


@dataclass(frozen=True, slots=True)
class Invalid:
    """Bytes that are not a heartbeat, or a payload that is not one the hook knows."""

    reason: str


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _json_object(data: bytes | str, what: str) -> Mapping[str, Any] | Invalid:
    if not data.strip():
        return Invalid(f"{what} is empty")
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        doc = json.loads(text)
    except UnicodeDecodeError:
        return Invalid(f"{what} is not UTF-8")
    except (ValueError, RecursionError) as exc:
        return Invalid(f"{what} is not valid JSON ({str(exc).splitlines()[0][:80]})")
    if not isinstance(doc, dict):
        return Invalid(f"{what} is not a JSON object")
    return doc


def parse_heartbeat(data: bytes) -> Heartbeat | Invalid:
    """A heartbeat.json's content. No state (or an empty file, a `touch`) is plain working."""
    if not data.strip():
        return Heartbeat(HeartbeatState.WORKING)
    doc = _json_object(data, "heartbeat.json")
    if isinstance(doc, Invalid):
        return doc
    raw = doc.get("state")
    if raw is None:
        state = HeartbeatState.WORKING
    else:
        try:
            state = HeartbeatState(raw)
        except (ValueError, TypeError):
            return Invalid(f"heartbeat.json has an unknown state {_short(raw)}")
    return Heartbeat(state, _text(doc.get("at")), _text(doc.get("message")),
                     _text(doc.get("source")))


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def encode_heartbeat(beat: Beat, at: str) -> bytes:
    """The bytes `healer beat` writes: state, at, and message and source when known."""
    doc: dict[str, str] = {"state": beat.state.value, "at": at}
    if beat.message:
        doc["message"] = beat.message[:_MAX_MESSAGE]
    if beat.source is not None:
        doc["source"] = beat.source.value
    return (json.dumps(doc, ensure_ascii=False) + "\n").encode("utf-8", "backslashreplace")


def _notification_waits(payload: Mapping[str, Any]) -> bool:
    kind = payload.get("notification_type")
    if isinstance(kind, str) and kind:
        return kind in WAITING_NOTIFICATIONS
    message = (_text(payload.get("message")) or "").lower()
    return any(word in message for word in _WAITING_WORDS)


def _detail(payload: Mapping[str, Any]) -> str | None:
    # The one field that says what the event was about: the tool, how a session started or
    # ended, what triggered a compaction, which subagent.
    for key in ("tool_name", "source", "reason", "trigger", "agent_type"):
        value = _text(payload.get(key))
        if value:
            return value
    return None


def beat_from_claude_code(data: bytes | str) -> Beat | Invalid:
    """A Claude Code hook payload (JSON on stdin, `hook_event_name` naming the event)."""
    payload = _json_object(data, "the Claude Code payload")
    if isinstance(payload, Invalid):
        return payload
    event = payload.get("hook_event_name")
    if not isinstance(event, str) or not event:
        return Invalid("the Claude Code payload has no hook_event_name")
    detail = _detail(payload)
    if event == "Notification":
        waiting = _notification_waits(payload)
        message = _text(payload.get("message")) or f"Notification: {detail or 'no message'}"
        state = HeartbeatState.WAITING if waiting else HeartbeatState.WORKING
        return Beat(state, message, HookSource.CLAUDE_CODE)
    if event == "PermissionRequest":
        tool = _text(payload.get("tool_name")) or "a tool"
        return Beat(HeartbeatState.WAITING, f"permission requested for {tool}",
                    HookSource.CLAUDE_CODE)
    state = HeartbeatState.DONE if event == "SessionEnd" else HeartbeatState.WORKING
    message = f"{event}: {detail}" if detail else event
    return Beat(state, message, HookSource.CLAUDE_CODE)


def beat_from_codex(data: str) -> Beat | Invalid:
    """A Codex `notify` payload (JSON as the program's last argument, `type` naming it)."""
    payload = _json_object(data, "the Codex payload")
    if isinstance(payload, Invalid):
        return payload
    kind = payload.get("type")
    if not isinstance(kind, str) or not kind:
        return Invalid("the Codex payload has no type")
    # agent-turn-complete is the only type Codex documents; any other is still the CLI
    # speaking for a live agent, so it is activity too.
    return Beat(HeartbeatState.WORKING, kind, HookSource.CODEX)
