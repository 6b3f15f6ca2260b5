"""heartbeat.json and the hook payloads (SPEC §12): every state, every Claude Code event,
every notification type, Codex's notify, and the bytes that are not a heartbeat."""

from __future__ import annotations

import json

import pytest

from healer.core.heartbeat import (
    Beat,
    Heartbeat,
    HeartbeatState,
    HookSource,
    Invalid,
    beat_from_claude_code,
    beat_from_codex,
    encode_heartbeat,
    parse_heartbeat,
)
from tests.hookpayloads import (
    CLAUDE_CODE_EVENTS,
    EXPECTED_STATE,
    claude_code,
    codex_turn_complete,
    notification,
)

W, WAIT, DONE = HeartbeatState.WORKING, HeartbeatState.WAITING, HeartbeatState.DONE


def claude(payload: dict[str, object]) -> Beat:
    beat = beat_from_claude_code(json.dumps(payload).encode())
    assert isinstance(beat, Beat), beat
    return beat


class TestParseHeartbeat:
    @pytest.mark.parametrize("state", list(HeartbeatState))
    def test_every_state_reads_back_with_its_fields(self, state: HeartbeatState) -> None:
        data = json.dumps({"state": state.value, "at": "2026-12-01T10:00:00Z",
                           "message": "needs approval", "source": "claude-code"}).encode()
        assert parse_heartbeat(data) == Heartbeat(state, "2026-12-01T10:00:00Z",
                                                  "needs approval", "claude-code")

    @pytest.mark.parametrize("data", [b'{"at": "2026-12-01T10:00:00Z"}', b'{"state": null}',
                                      b"", b"  \n", b"{}"])
    def test_no_state_is_plain_working(self, data: bytes) -> None:
        """A heartbeat without a state, or an empty file (a `touch`), is working."""
        beat = parse_heartbeat(data)
        assert isinstance(beat, Heartbeat)
        assert beat.state is W

    @pytest.mark.parametrize(
        ("data", "reason"),
        [
            (b"{not json", "not valid JSON"),
            (b'{"state": "working"', "not valid JSON"),
            (b"\xff\xfe{}", "not UTF-8"),
            (b'["working"]', "not a JSON object"),
            (b'"working"', "not a JSON object"),
            (b"[" * 100_000, "not valid JSON"),
            (b'{"state": "sleeping"}', "unknown state 'sleeping'"),
            (b'{"state": "WORKING"}', "unknown state 'WORKING'"),
            (b'{"state": 3}', "unknown state 3"),
            (b'{"state": ["waiting"]}', "unknown state ['waiting']"),
        ],
    )
    def test_what_is_not_a_heartbeat_says_why(self, data: bytes, reason: str) -> None:
        result = parse_heartbeat(data)
        assert isinstance(result, Invalid)
        assert reason in result.reason

    def test_fields_of_the_wrong_type_are_dropped_not_fatal(self) -> None:
        beat = parse_heartbeat(b'{"state": "done", "at": 5, "message": ["x"], "source": {}}')
        assert beat == Heartbeat(DONE)

    def test_what_beat_writes_parses_back(self) -> None:
        data = encode_heartbeat(Beat(WAIT, "Claude needs your permission to use Bash",
                                     HookSource.CLAUDE_CODE), "2026-12-01T10:00:00Z")
        assert json.loads(data) == {"state": "waiting", "at": "2026-12-01T10:00:00Z",
                                    "message": "Claude needs your permission to use Bash",
                                    "source": "claude-code"}
        assert parse_heartbeat(data) == Heartbeat(
            WAIT, "2026-12-01T10:00:00Z", "Claude needs your permission to use Bash",
            "claude-code")

    def test_the_written_message_is_one_short_line_for_the_operator(self) -> None:
        data = encode_heartbeat(Beat(W, "x" * 5000), "2026-12-01T10:00:00Z")
        assert len(json.loads(data)["message"]) == 300
        assert "source" not in json.loads(data)


class TestClaudeCode:
    def test_every_documented_event_is_covered(self) -> None:
        assert set(CLAUDE_CODE_EVENTS) >= {
            "SessionStart", "UserPromptSubmit", "PreToolUse", "PermissionRequest",
            "PostToolUse", "PostToolUseFailure", "Notification", "SubagentStart",
            "SubagentStop", "Stop", "TeammateIdle", "TaskCompleted", "ConfigChange",
            "WorktreeCreate", "WorktreeRemove", "PreCompact", "SessionEnd"}

    @pytest.mark.parametrize("event", sorted(CLAUDE_CODE_EVENTS))
    def test_each_event_maps_to_its_state(self, event: str) -> None:
        beat = claude(claude_code(event))
        assert beat.state.value == EXPECTED_STATE[event]
        assert beat.source is HookSource.CLAUDE_CODE
        assert beat.message

    @pytest.mark.parametrize(
        ("notification_type", "state"),
        [
            ("permission_prompt", WAIT),
            ("idle_prompt", WAIT),
            ("elicitation_dialog", WAIT),
            ("auth_success", W),
            ("elicitation_complete", W),
            ("elicitation_response", W),
            ("some_future_type", W),
        ],
    )
    def test_notification_types(self, notification_type: str, state: HeartbeatState) -> None:
        beat = claude(notification("Claude needs your permission to use Bash",
                                   notification_type))
        assert beat.state is state

    @pytest.mark.parametrize(
        ("message", "state"),
        [
            ("Claude needs your permission to use Bash", WAIT),
            ("Claude is waiting for your input", WAIT),
            ("Claude Code needs your approval for the plan", WAIT),
            ("Authentication successful", W),
            ("", W),
        ],
    )
    def test_a_notification_without_its_type_is_decided_from_its_message(
        self, message: str, state: HeartbeatState
    ) -> None:
        beat = claude(notification(message, None))
        assert beat.state is state

    def test_a_waiting_notification_carries_claude_codes_own_words(self) -> None:
        beat = claude(notification("Claude is waiting for your input", "idle_prompt"))
        assert beat == Beat(WAIT, "Claude is waiting for your input", HookSource.CLAUDE_CODE)

    @pytest.mark.parametrize(
        ("event", "message"),
        [
            ("PermissionRequest", "permission requested for Bash"),
            ("PreToolUse", "PreToolUse: Bash"),
            ("SessionStart", "SessionStart: startup"),
            ("SessionEnd", "SessionEnd: prompt_input_exit"),
            ("PreCompact", "PreCompact: manual"),
            ("SubagentStop", "SubagentStop: Explore"),
            ("Stop", "Stop"),
        ],
    )
    def test_the_message_says_what_happened(self, event: str, message: str) -> None:
        assert claude(claude_code(event)).message == message

    def test_an_event_it_has_never_heard_of_is_working(self) -> None:
        assert claude(claude_code("SomethingNew", detail=1)).state is W

    @pytest.mark.parametrize(
        ("data", "reason"),
        [
            (b"", "is empty"),
            (b"\n", "is empty"),
            (b"garbage", "not valid JSON"),
            (b"\x80\x81", "not UTF-8"),
            (b"[1, 2]", "not a JSON object"),
            (b'{"session_id": "abc123"}', "no hook_event_name"),
            (b'{"hook_event_name": ""}', "no hook_event_name"),
            (b'{"hook_event_name": 7}', "no hook_event_name"),
        ],
    )
    def test_a_payload_that_cannot_be_read_is_invalid(self, data: bytes, reason: str) -> None:
        result = beat_from_claude_code(data)
        assert isinstance(result, Invalid)
        assert reason in result.reason


class TestCodex:
    def test_agent_turn_complete_is_working(self) -> None:
        assert beat_from_codex(codex_turn_complete()) == Beat(
            W, "agent-turn-complete", HookSource.CODEX)

    def test_another_type_is_still_the_cli_speaking(self) -> None:
        beat = beat_from_codex('{"type": "approval-requested"}')
        assert isinstance(beat, Beat)
        assert beat.state is W

    @pytest.mark.parametrize(
        ("data", "reason"),
        [("", "is empty"), ("{", "not valid JSON"), ('"agent-turn-complete"', "not a JSON"),
         ('{"turn-id": "1"}', "no type"), ('{"type": null}', "no type")],
    )
    def test_a_payload_that_cannot_be_read_is_invalid(self, data: str, reason: str) -> None:
        result = beat_from_codex(data)
        assert isinstance(result, Invalid)
        assert reason in result.reason
