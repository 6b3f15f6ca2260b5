"""Operator commands (SPEC §13) as values: a named argv, what one run is asked to do, what
it did, and the placeholder grammar shared by config validation and the runner."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "ENV_NAMES",
    "ON_TRANSITIONS",
    "PLACEHOLDERS",
    "CommandRequest",
    "CommandResult",
    "CommandSpec",
    "render",
    "template_problem",
]

PLACEHOLDERS = ("agent", "agent_dir", "attempt", "silent_for", "transition")
# The incident transitions an `on:` list may name (SPEC §17).
ON_TRANSITIONS = (
    "stalled", "escalated", "recovered", "waiting", "flapping", "swarm_outage", "swarm_recovered",
)
ENV_NAMES = (
    "HEALER_AGENT", "HEALER_AGENT_DIR", "HEALER_ATTEMPT", "HEALER_SILENT_FOR",
    "HEALER_TRANSITION", "HEALER_INCIDENT", "HEALER_WORKSPACES",
)
DEFAULT_TIMEOUT = 30.0

# The grammar is str.format's without its format specs, conversions or attribute access:
# `{{` and `}}` are literal braces, `{name}` a placeholder, any other brace an error.
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_BRACE_HINT = "a literal brace is written {{ or }}"


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """A named command from `healer.commands`: argv templates, never a shell string."""

    name: str
    run: tuple[str, ...]
    timeout: float = DEFAULT_TIMEOUT


@dataclass(frozen=True, slots=True)
class CommandRequest:
    """One run of a command for an agent (agent "" for a swarm-wide transition)."""

    spec: CommandSpec
    agent: str
    agent_dir: str
    workspaces: str
    transition: str = ""
    attempt: int = 0
    silent_for: float = 0.0
    incident: int | None = None

    def values(self) -> dict[str, str]:
        """Placeholder values, as text."""
        return {
            "agent": self.agent,
            "agent_dir": self.agent_dir,
            "attempt": str(self.attempt),
            "silent_for": f"{self.silent_for:.0f}",
            "transition": self.transition,
        }

    def environment(self) -> dict[str, str]:
        """The `HEALER_*` variables set on top of healer's own environment."""
        values = self.values()
        return {
            "HEALER_AGENT": values["agent"],
            "HEALER_AGENT_DIR": values["agent_dir"],
            "HEALER_ATTEMPT": values["attempt"],
            "HEALER_SILENT_FOR": values["silent_for"],
            "HEALER_TRANSITION": values["transition"],
            "HEALER_INCIDENT": "" if self.incident is None else str(self.incident),
            "HEALER_WORKSPACES": self.workspaces,
        }

    def argv(self) -> list[str]:
        """The argv to execute, placeholders substituted element by element."""
        values = self.values()
        return [render(part, values) for part in self.spec.run]


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What one run did. `ok` is exit code 0; `error` says why it did not run or finish."""

    request: CommandRequest
    ok: bool
    exit_code: int | None
    duration: float
    output: str = ""
    timed_out: bool = False
    error: str | None = None
    ended_at: float = 0.0

    def log_fields(self) -> dict[str, object]:
        """The fields of its `heal_action` / `hook_ran` line (SPEC §13)."""
        fields: dict[str, object] = {
            "ok": self.ok, "exit_code": self.exit_code, "duration": round(self.duration, 3),
            "output": self.output,
        }
        if self.timed_out:
            fields["timed_out"] = True
        if self.error is not None:
            fields["error"] = self.error
        return fields


def template_problem(text: str) -> str | None:
    """What is wrong with one argv template, or None when every brace is well formed."""
    for match in _TOKEN.finditer(text):
        token = match.group(0)
        if token in ("{{", "}}"):
            continue
        name = match.group(1)
        if name is None:
            return f"unmatched {token!r} ({_BRACE_HINT})"
        if name not in PLACEHOLDERS:
            return (f"unknown placeholder {token!r} (known: "
                    f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)}; {_BRACE_HINT})")
    return None


def render(text: str, values: Mapping[str, str]) -> str:
    """Substitute placeholders in one pass, so a value that itself looks like a placeholder
    (an agent folder named `Agent-{attempt}`) comes through verbatim."""

    def one(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        name = match.group(1)
        return values.get(name, token)

    return _TOKEN.sub(one, text)
