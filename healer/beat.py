"""`healer beat`: an agent (or its CLI's hook) saying working, waiting or done. It imports
nothing of the daemon, in hook mode gives up within its budget rather than hold the agent
up, and raises healer's errors, which entry.py turns into exit codes."""

from __future__ import annotations

import argparse
import os
import select
import signal
import stat
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import NoReturn

from healer.adapters.beatfile import write_heartbeat
from healer.config import Config, load_config
from healer.core.heartbeat import (
    Beat,
    HeartbeatState,
    HookSource,
    Invalid,
    beat_from_claude_code,
    beat_from_codex,
    encode_heartbeat,
)
from healer.core.isotime import iso
from healer.errors import ActionError, PayloadError, UsageError

__all__ = ["HOOK_BUDGET", "MAX_PAYLOAD", "beat_parser", "run_beat"]

# Claude Code waits for the hook before it goes on, and the contract gives it one second.
# Start-up takes a tenth of that, a few tenths on a loaded machine; the rest is this.
HOOK_BUDGET = 0.6
_PAYLOAD_WAIT = 0.4  # of the budget, at most this long for the payload on stdin
MAX_PAYLOAD = 8 << 20  # a PostToolUse payload carries the tool's whole output

_DESCRIPTION = (
    "Write AGENT's heartbeat.json: working (the default), waiting on a human, or done. "
    "With --hook, the state comes from the agent CLI's hook payload (Claude Code: JSON on "
    "stdin; Codex: JSON as the last argument) and a problem exits 1, never 2."
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse would exit 2 itself, and in hook mode 2 blocks the agent's tool call.
        raise UsageError(f"beat: {message}")


def beat_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="healer beat", description=_DESCRIPTION, allow_abbrev=False,
                     usage="healer [--workspaces DIR] [--config PATH] beat [AGENT] [--state S] "
                           "[--message TEXT] [--hook claude-code|codex] [PAYLOAD]")
    parser.add_argument("args", nargs="*", metavar="AGENT",
                        help="the agent's folder name (default $HEALER_AGENT); "
                             "Codex appends its payload after it")
    parser.add_argument("--state", choices=[s.value for s in HeartbeatState],
                        help="the state to write; with --hook it wins over the payload's")
    parser.add_argument("--message", help="a line for the operator")
    parser.add_argument("--hook", choices=[s.value for s in HookSource],
                        help="read this agent CLI's hook payload")
    return parser


@contextmanager
def _budget(seconds: float | None) -> Iterator[None]:
    """Abort with ActionError after `seconds` of wall time (None: no limit)."""
    if seconds is None:
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        raise ActionError(f"beat: gave up after {seconds:g} s (stdin or the filesystem hung)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _read_payload(fd: int, wait: float) -> bytes:
    """All of stdin, or PayloadError: a terminal, a pipe left open, or too much."""
    try:
        if os.isatty(fd):
            raise PayloadError("beat: no payload: stdin is a terminal")
        deadline = time.monotonic() + wait
        chunks: list[bytes] = []
        total = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PayloadError(f"beat: no complete payload on stdin within {wait:g} s")
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return b"".join(chunks)
            total += len(chunk)
            if total > MAX_PAYLOAD:
                raise PayloadError(f"beat: payload larger than {MAX_PAYLOAD >> 20} MiB")
            chunks.append(chunk)
    except OSError as exc:
        raise PayloadError(f"beat: cannot read stdin: {exc.strerror or exc}") from None


def _split(ns: argparse.Namespace, hook: HookSource | None) -> tuple[str | None, str | None]:
    """(AGENT, Codex payload) from the positional arguments."""
    args: list[str] = ns.args
    if hook is HookSource.CODEX:
        if not args:
            raise PayloadError("beat: no Codex payload (Codex passes it as the last argument)")
        if len(args) > 2:
            raise UsageError("beat: expected AGENT and the Codex payload, got more")
        return (args[0] if len(args) == 2 else None), args[-1]
    if len(args) > 1:
        raise UsageError(f"beat: one AGENT expected, got {len(args)}")
    return (args[0] if args else None), None


def _decide(ns: argparse.Namespace, hook: HookSource | None, payload: str | None,
            stdin_fd: int) -> Beat:
    said: Beat | Invalid
    if hook is HookSource.CLAUDE_CODE:
        said = beat_from_claude_code(_read_payload(stdin_fd, _PAYLOAD_WAIT))
    elif hook is HookSource.CODEX:
        said = beat_from_codex(payload or "")
    else:
        said = Beat(HeartbeatState.WORKING)
    if isinstance(said, Invalid):
        raise PayloadError(f"beat: {said.reason}; no beat written")
    state = HeartbeatState(ns.state) if ns.state else said.state
    message = ns.message if ns.message is not None else said.message
    return Beat(state, message, said.source)


def _check_agent(config: Config, agent: str) -> None:
    """AGENT must name an existing agent folder (a real directory) directly under the root."""
    root = config.workspaces
    if not root.is_dir():
        raise UsageError(f"workspaces: {root} is not a directory")
    if agent in (".", "..") or "/" in agent or "\0" in agent:
        raise UsageError(f"beat: {agent!r} is not an agent name")
    if not config.is_agent_name(agent):
        raise UsageError(f"beat: {agent!r} does not match agent_pattern {config.agent_pattern!r}")
    try:
        st = os.lstat(root / agent)
    except OSError:
        raise UsageError(f"beat: no agent folder {agent!r} under {root}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"beat: {root / agent} is not an agent folder")


def run_beat(
    args: Sequence[str],
    *,
    config_path: Path | None = None,
    workspaces: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin_fd: int = 0,
) -> None:
    """Parse `args`, decide the beat, write it; raises UsageError, ConfigError or ActionError."""
    env = os.environ if env is None else env
    ns = beat_parser().parse_intermixed_args(list(args))
    hook = HookSource(ns.hook) if ns.hook else None
    with _budget(HOOK_BUDGET if hook else None):
        agent, payload = _split(ns, hook)
        # The payload first: a hook that cannot say what happened writes nothing, whatever
        # else is wrong too.
        beat = _decide(ns, hook, payload, stdin_fd)
        agent = agent or env.get("HEALER_AGENT") or None
        if agent is None:
            raise UsageError("beat: no agent: give AGENT or set HEALER_AGENT")
        config = load_config(config_path, env=env, cli={"workspaces": workspaces})
        _check_agent(config, agent)
        write_heartbeat(config.workspaces, agent, encode_heartbeat(beat, iso(time.time())))
