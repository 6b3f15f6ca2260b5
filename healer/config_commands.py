"""The config of operator commands (SPEC §13): `healer.commands`, the command rungs of
`healer.ladder` and `healer.on`, each checked against the others at load time."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from healer.config_values import duration, mapping, part, string_list
from healer.core.commands import ON_TRANSITIONS, CommandSpec, template_problem
from healer.core.model import HEAL_ACTIONS, RecoveryAction
from healer.errors import ConfigError

__all__ = ["BUILT_IN_ACTIONS", "check_on", "check_rungs", "parse_commands", "parse_on"]

# A command named like a built-in would make `action` in the log and the history ambiguous.
BUILT_IN_ACTIONS = HEAL_ACTIONS + tuple(RecoveryAction)
# Names go into log lines, metric labels and the history: keep them plain.
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
_COMMAND_KEYS = ("run", "timeout")


def parse_commands(value: object, key: str) -> dict[str, CommandSpec]:
    """`healer.commands`: name -> {run: [argv...], timeout: duration}."""
    commands: dict[str, CommandSpec] = {}
    for name, body in mapping(value, key).items():
        where = f"{key}.{part(name)}"
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ConfigError(
                f"{where}: a command name is a letter or _ then letters, digits, _ or - "
                "(at most 64)"
            )
        if name in BUILT_IN_ACTIONS:
            raise ConfigError(
                f"{where}: shadows the built-in action {name}; give the command another name"
            )
        commands[name] = _command(name, mapping(body, where), where)
    return commands


def _command(name: str, body: Mapping[str, Any], where: str) -> CommandSpec:
    for sub in body:
        if sub not in _COMMAND_KEYS:
            raise ConfigError(f"{where}.{part(sub)}: unknown key (known: run, timeout)")
    if "run" not in body:
        raise ConfigError(f"{where}.run: missing: a command needs run: [program, args...]")
    raw, key = body["run"], f"{where}.run"
    if not isinstance(raw, list):
        kind = "a string" if isinstance(raw, str) else type(raw).__name__
        raise ConfigError(f"{key}: expected a list of arguments (never a shell string), got {kind}")
    if not raw:
        raise ConfigError(f"{key}: expected at least the program to run, got []")
    for index, arg in enumerate(raw):
        if not isinstance(arg, str):
            raise ConfigError(f"{key}[{index}]: expected a string argument, got {arg!r}")
        problem = "contains a NUL byte" if "\0" in arg else template_problem(arg)
        if index == 0 and not arg.strip():
            problem = "the program is empty"
        if problem is not None:
            raise ConfigError(f"{key}[{index}]: {problem}")
    run = tuple(raw)
    if "timeout" in body:
        return CommandSpec(name, run, duration(body["timeout"], f"{where}.timeout"))
    return CommandSpec(name, run)


def parse_on(value: object, key: str) -> dict[str, tuple[str, ...]]:
    """`healer.on`: transition -> command names (checked against the commands later)."""
    result: dict[str, tuple[str, ...]] = {}
    for transition, names in mapping(value, key).items():
        where = f"{key}.{part(transition)}"
        if transition not in ON_TRANSITIONS:
            raise ConfigError(
                f"{where}: unknown transition (known: {', '.join(ON_TRANSITIONS)})"
            )
        result[transition] = () if names is None else string_list(names, where, "command name")
    return result


def check_rungs(ladder: tuple[str, ...], commands: Mapping[str, CommandSpec], key: str) -> None:
    """Every rung is a built-in healing action or a configured command."""
    for index, rung in enumerate(ladder):
        if rung not in HEAL_ACTIONS and rung not in commands:
            raise ConfigError(
                f"{key}[{index}]: unknown rung {rung!r} (built-in: {', '.join(HEAL_ACTIONS)}; "
                f"commands: {', '.join(commands) or 'none configured'})"
            )


def check_on(
    on: Mapping[str, tuple[str, ...]], commands: Mapping[str, CommandSpec], key: str
) -> None:
    """Every name in an `on:` list is a configured command."""
    for transition, names in on.items():
        for index, name in enumerate(names):
            if name not in commands:
                raise ConfigError(
                    f"{key}.{transition}[{index}]: unknown command {name!r} "
                    f"(commands: {', '.join(commands) or 'none configured'})"
                )
