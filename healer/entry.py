"""The `healer` executable. `healer beat` is dispatched here, before click and the rest of the
command line are imported: a hook runs it on every tool call, and those imports alone cost
about as much as its whole budget. Every other command goes on to cli.main."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

__all__ = ["EXIT_NOT_WRITTEN", "main", "run_beat_command", "split_beat_command"]

# cli.py's codes (a test holds them equal); cli.py cannot be imported here, it is the cost.
EXIT_OK = 0
EXIT_NOT_WRITTEN = 1  # no heartbeat was written; in hook mode every problem is this
EXIT_USAGE = 2  # usage or config error; never in hook mode (Claude Code: "block the tool call")

# The group options that may stand before `beat`, each with a value. One added to the click
# group and not here only sends `beat` the long way round, through click.
_GROUP_OPTIONS = ("--config", "--workspaces", "--log-format", "--log-level")


def _fail(message: str, code: int) -> NoReturn:
    sys.stderr.write(f"healer: {message}\n")
    sys.exit(code)


def hook_mode(args: Sequence[str]) -> bool:
    """Whether `args` ask for hook mode, decided before (and whatever) a parse says."""
    return any(a == "--hook" or a.startswith("--hook=") for a in args)


def split_beat_command(args: Sequence[str]) -> tuple[Path | None, Path | None, list[str]] | None:
    """(--config, --workspaces, beat's own arguments) when `args` run `beat`, else None."""
    group: dict[str, str] = {}
    i = 0
    while i < len(args):
        name, eq, value = args[i].partition("=")
        if name not in _GROUP_OPTIONS:
            if args[i] != "beat":
                return None
            config, workspaces = group.get("--config"), group.get("--workspaces")
            return (Path(config) if config is not None else None,
                    Path(workspaces) if workspaces is not None else None, list(args[i + 1:]))
        if not eq:
            if i + 1 >= len(args):
                return None
            i += 1
            value = args[i]
        group[name] = value
        i += 1
    return None


def run_beat_command(config: Path | None, workspaces: Path | None, args: list[str]) -> NoReturn:
    """`healer beat` and its exit codes. In hook mode nothing exits 2: every problem is one
    line on stderr and exit 1, and no beat is written."""
    from healer.beat import run_beat
    from healer.errors import ConfigError, HealerError, UsageError

    hook = hook_mode(args)
    try:
        run_beat(args, config_path=config, workspaces=workspaces)
    except (UsageError, ConfigError) as exc:
        _fail(str(exc), EXIT_NOT_WRITTEN if hook else EXIT_USAGE)
    except HealerError as exc:
        _fail(str(exc), EXIT_NOT_WRITTEN)
    except SystemExit as exc:  # --help
        if hook and exc.code not in (None, EXIT_OK):
            sys.exit(EXIT_NOT_WRITTEN)
        raise
    except (Exception, KeyboardInterrupt) as exc:
        if not hook:
            raise
        _fail(f"beat failed: {exc!r}", EXIT_NOT_WRITTEN)
    sys.exit(EXIT_OK)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `healer` command."""
    args = sys.argv[1:] if argv is None else list(argv)
    fast = split_beat_command(args)
    if fast is not None:
        run_beat_command(*fast)
    from healer.cli import main as cli_main

    try:
        cli_main(args)
    except SystemExit as exc:
        # `beat` behind a group option the fast path does not know: click's usage error is
        # still not allowed to block a hooked agent.
        if exc.code == EXIT_USAGE and "beat" in args and hook_mode(args):
            sys.exit(EXIT_NOT_WRITTEN)
        raise
