"""Command values: the placeholder grammar, one-pass substitution, the HEALER_* environment."""

from __future__ import annotations

import pytest

from healer.core.commands import (
    ENV_NAMES,
    PLACEHOLDERS,
    CommandRequest,
    CommandResult,
    CommandSpec,
    render,
    template_problem,
)
from healer.testing import FakeClock, RecordingCommandRunner

VALUES = {"agent": "Agent-3", "agent_dir": "/ws/Agent-3", "attempt": "2", "silent_for": "125",
          "transition": "stalled"}


def request(
    agent: str = "Agent-3", run: tuple[str, ...] = ("echo",), *, transition: str = "",
    attempt: int = 0, silent_for: float = 0.0, incident: int | None = None,
) -> CommandRequest:
    return CommandRequest(CommandSpec("nudge", run, 10.0), agent, f"/ws/{agent}", "/ws",
                          transition, attempt, silent_for, incident)


class TestTemplateProblem:
    @pytest.mark.parametrize("text", [
        "plain", "", "{agent}", "{agent_dir}/x", "{attempt}{silent_for}{transition}",
        "{{literal}}", "{{", "}}", "a{{b}}c", "{{{agent}}}", '{{"a": "{agent}"}}',
    ])
    def test_well_formed(self, text: str) -> None:
        assert template_problem(text) is None

    @pytest.mark.parametrize(("text", "words"), [
        ("{agnet}", "unknown placeholder '{agnet}'"),
        ("{Agent}", "unknown placeholder"),
        ("{agent!r}", "unknown placeholder"),
        ("{agent:>10}", "unknown placeholder"),
        ("{agent.__class__}", "unknown placeholder"),
        ("{0}", "unknown placeholder"),
        ("{}", "unknown placeholder '{}'"),
        ("{", "unmatched '{'"),
        ("}", "unmatched '}'"),
        ("a{b", "unmatched '{'"),
        ("{{{", "unmatched '{'"),
        ("{a\nb}", "'{a\\nb}'"),
    ])
    def test_malformed(self, text: str, words: str) -> None:
        problem = template_problem(text)
        assert problem is not None and words in problem and "\n" not in problem

    def test_the_problem_lists_the_known_names(self) -> None:
        problem = template_problem("{x}") or ""
        assert all("{" + name + "}" in problem for name in PLACEHOLDERS)


class TestRender:
    @pytest.mark.parametrize(("text", "out"), [
        ("tmux", "tmux"),
        ("{agent}", "Agent-3"),
        ("agent@{agent}.service", "agent@Agent-3.service"),
        ("{agent_dir}/restart.sh", "/ws/Agent-3/restart.sh"),
        ("{agent} try {attempt} after {silent_for}s ({transition})",
         "Agent-3 try 2 after 125s (stalled)"),
        ("{{agent}}", "{agent}"),
        ("{{{agent}}}", "{Agent-3}"),
        ('{{"text": "{agent}"}}', '{"text": "Agent-3"}'),
    ])
    def test_substitution(self, text: str, out: str) -> None:
        assert render(text, VALUES) == out

    @pytest.mark.parametrize("agent", [
        "Agent-{attempt}", "Agent-x;touch PWNED", "Agent-$(id)", "Agent-{{x}}", "Agent-{",
        "Agent-`id`", "Agent- spaced 'quoted'",
    ])
    def test_a_value_comes_through_verbatim(self, agent: str) -> None:
        """One pass: a value that looks like a placeholder or a brace is never re-expanded."""
        values = {**VALUES, "agent": agent}
        assert render("{agent}", values) == agent
        assert render("x{agent}{attempt}", values) == f"x{agent}2"

    def test_argv_is_rendered_element_by_element(self) -> None:
        """Each element stays one argument, whatever spaces or quotes a value holds."""
        req = request("Agent x; rm -rf /", run=("tmux", "send-keys", "-t", "{agent}", "Enter"))
        assert req.argv() == ["tmux", "send-keys", "-t", "Agent x; rm -rf /", "Enter"]


class TestRequest:
    def test_environment_carries_every_value(self) -> None:
        req = request(transition="escalated", attempt=3, silent_for=421.6, incident=17)
        env = req.environment()
        assert set(env) == set(ENV_NAMES)
        assert env == {
            "HEALER_AGENT": "Agent-3", "HEALER_AGENT_DIR": "/ws/Agent-3", "HEALER_ATTEMPT": "3",
            "HEALER_SILENT_FOR": "422", "HEALER_TRANSITION": "escalated",
            "HEALER_INCIDENT": "17", "HEALER_WORKSPACES": "/ws",
        }

    def test_no_incident_is_an_empty_variable(self) -> None:
        assert request().environment()["HEALER_INCIDENT"] == ""


class TestResult:
    def test_log_fields(self) -> None:
        ok = CommandResult(request(), True, 0, 0.12345, "done\n")
        assert ok.log_fields() == {"ok": True, "exit_code": 0, "duration": 0.123,
                                   "output": "done\n"}
        late = CommandResult(request(), False, -15, 10.0, "", timed_out=True,
                             error="timed out after 10s")
        assert late.log_fields()["timed_out"] is True
        assert late.log_fields()["error"] == "timed out after 10s"


class TestRecordingCommandRunner:
    def test_records_and_finishes_in_order(self) -> None:
        clock = FakeClock()
        runner = RecordingCommandRunner(now=clock.now)
        first, second = request("Agent-1"), request("Agent-2")
        runner.submit(first)
        runner.submit(second)
        assert runner.submitted == [first, second] and runner.drain() == []
        assert not runner.wake.is_set()
        clock.advance(5)
        done = runner.finish(exit_code=3, output="boom", duration=1.5)
        assert done.request is first and not done.ok and done.ended_at == clock.now()
        assert runner.wake.is_set() and runner.drain() == [done] and runner.drain() == []
        assert runner.unfinished == [second]
        late = runner.finish(second, exit_code=-15, timed_out=True, error="timed out")
        assert not late.ok and late.timed_out and runner.unfinished == []

    def test_respond_answers_at_once(self) -> None:
        def respond(req: CommandRequest) -> CommandResult | None:
            return CommandResult(req, True, 0, 0.1) if req.agent == "Agent-1" else None

        runner = RecordingCommandRunner(respond)
        runner.submit(request("Agent-1"))
        runner.submit(request("Agent-2"))
        assert [r.request.agent for r in runner.drain()] == ["Agent-1"]
        assert [r.agent for r in runner.unfinished] == ["Agent-2"]

    def test_after_close_a_submit_is_not_run(self) -> None:
        runner = RecordingCommandRunner()
        runner.close()
        runner.submit(request())
        [result] = runner.drain()
        assert not result.ok and result.error == "not run: healer is stopping"
        assert runner.unfinished == []

    def test_finish_without_a_run_is_a_test_error(self) -> None:
        with pytest.raises(AssertionError):
            RecordingCommandRunner().finish()
