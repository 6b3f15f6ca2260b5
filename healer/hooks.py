"""`healer hooks`: the settings that wire an agent CLI to `healer beat`, printed or merged into
Claude Code's settings file. The commands name healer by absolute path and carry the root
(and config) absolute, since a hook runs in the agent's directory with the agent's PATH."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from healer.adapters.settingsfile import read_settings, replace_settings
from healer.config import Config
from healer.core.heartbeat import HookSource, Invalid
from healer.core.hookconfig import claude_code_hooks, codex_notify, merge_hooks, shell_command
from healer.errors import ActionError, UsageError

__all__ = ["beat_argv", "healer_argv", "hooks_text", "install_claude_code", "run_hooks"]

_INSTALL_TRIES = 3


def healer_argv(argv0: str | None = None, python: str | None = None) -> list[str]:
    """How to run the healer that is running now: its executable, or `python -m healer`."""
    exe = sys.argv[0] if argv0 is None else argv0
    python = sys.executable if python is None else python
    if (exe and not exe.endswith(".py") and os.path.isfile(exe) and os.access(exe, os.X_OK)):
        return [os.path.abspath(exe)]
    return [os.path.abspath(python), "-m", "healer"]


def beat_argv(config: Config, source: HookSource, agent: str | None,
              healer: Sequence[str]) -> list[str]:
    """The `healer beat --hook` command line for `source` (Codex appends its payload)."""
    if agent is not None:
        if agent in (".", "..") or "/" in agent or "\0" in agent:
            raise UsageError(f"hooks: {agent!r} is not an agent name")
        if not config.is_agent_name(agent):
            raise UsageError(
                f"hooks: {agent!r} does not match agent_pattern {config.agent_pattern!r}")
    argv = [*healer, "--workspaces", os.path.abspath(config.workspaces)]
    if config.source is not None:
        # The file this healer read, even when it was only found in the current directory:
        # the hook runs elsewhere and must read the same settings.
        argv += ["--config", os.path.abspath(config.source)]
    argv.append("beat")
    if agent is not None:
        argv.append(agent)
    return [*argv, "--hook", source.value]


def hooks_text(source: HookSource, argv: Sequence[str]) -> str:
    """What `healer hooks` prints: Claude Code's `hooks` block, or Codex's `notify` line."""
    for arg in argv:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(f"hooks: {arg!r} is not UTF-8; no settings file holds it") from None
    if source is HookSource.CODEX:
        return codex_notify(argv)
    return json.dumps({"hooks": claude_code_hooks(shell_command(argv))}, indent=2)


def _parse(path: Path, data: bytes | None) -> object:
    if data is None or not data.strip():
        return {}
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = str(exc).splitlines()[0][:80] if str(exc) else type(exc).__name__
        raise UsageError(f"{path}: not valid JSON ({reason}); left untouched") from None


def _encode(doc: object) -> bytes:
    try:
        return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate, read from a \ud800 escape: written back as the same escape.
        return (json.dumps(doc, indent=2) + "\n").encode("ascii")


def install_claude_code(path: Path, argv: Sequence[str]) -> tuple[str, ...]:
    """Merge the hooks for `argv` into the settings file at `path`; the events it added
    (none when they were all there already, and then the file is not rewritten)."""
    block = claude_code_hooks(shell_command(argv))
    for _ in range(_INSTALL_TRIES):
        read = read_settings(path)
        merged = merge_hooks(_parse(path, read.data), block)
        if isinstance(merged, Invalid):
            raise UsageError(f"{path}: {merged.reason}; left untouched")
        if not merged.added:
            return ()
        if replace_settings(path, _encode(merged.doc), read):
            return merged.added
    raise ActionError(f"{path} kept changing while healer merged its hooks; nothing written")


def run_hooks(config: Config, source: HookSource, agent: str | None,
              install: Path | None) -> tuple[str, str | None]:
    """`healer hooks`: what to print, and a note for stderr (an agent folder still missing)."""
    argv = beat_argv(config, source, agent, healer_argv())
    note = None
    if agent is not None and not (config.workspaces / agent).is_dir():
        note = f"no agent folder {agent!r} under {config.workspaces} yet; no beat until it is"
    if install is None:
        return hooks_text(source, argv), note
    if source is not HookSource.CLAUDE_CODE:
        raise UsageError("hooks: --install merges Claude Code settings; for Codex, put the "
                         "printed line at the top of ~/.codex/config.toml")
    added = install_claude_code(install, argv)
    if not added:
        return f"{install}: already hooked; nothing changed", note
    return f"{install}: healer beat hooked to {', '.join(added)}", note
