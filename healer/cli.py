"""The command line: parses flags, builds the config, calls one function of healer.wiring,
prints its answer and exits; healer's errors become one-line messages and exit codes.
Inner code only raises."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from healer import __version__
from healer.config import LOG_FORMATS, LOG_LEVELS, Config, load_config, require_tick_fits
from healer.core.heartbeat import HookSource
from healer.core.model import Stage
from healer.errors import ConfigError, HealerError, StoreError
from healer.log import configure_logging, stop_background
from healer.report import age, live_status, render_stats, render_status

# The commands import healer.wiring (and through it watchdog, SQLite, HTTP) only when they
# run: `healer --help` and the quick commands start fast.
__all__ = ["EXIT_FAILURE", "EXIT_OK", "EXIT_STALLED", "EXIT_USAGE", "main"]

if TYPE_CHECKING:
    from healer.wiring import CheckReport

T = TypeVar("T")

EXIT_OK = 0
EXIT_STALLED = 1  # check found stalled agents, or an agent is escalated
EXIT_USAGE = 2  # usage or config error
EXIT_FAILURE = 3  # healer itself could not run (e.g. its history is unusable)


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"healer: {message}", err=True)
    sys.exit(code)


def _run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call into healer; its errors become one line and an exit code: an unusable history
    is EXIT_FAILURE, anything else of healer's a usage or config error."""
    try:
        return fn(*args, **kwargs)
    except StoreError as exc:
        stop_background()
        _fail(str(exc), EXIT_FAILURE)
    except HealerError as exc:
        stop_background()
        _fail(str(exc))
    except BaseException:
        stop_background()  # the lines logged before a traceback come before it
        raise


class _Settings:
    """What the group options gave; commands finish the config with their own flags."""

    def __init__(self, config: Path | None, workspaces: Path | None, fmt: str | None,
                 level: str | None) -> None:
        self.config_path = config
        self.cli: dict[str, Any] = {"workspaces": workspaces, "log_format": fmt, "log_level": level}

    def load(self, **flags: Any) -> Config:
        return load_config(self.config_path, cli={**self.cli, **flags})

    def build(self, background: bool = False, **flags: Any) -> Config:
        try:
            config = self.load(**flags)
        except ConfigError as exc:
            _fail(str(exc))
        configure_logging(config.log_format, config.log_level, background=background)
        root = config.workspaces
        if not root.is_dir():
            _fail(f"workspaces: {root} is not a directory")
        return config


pass_settings = click.make_pass_decorator(_Settings)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="healer")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="Config file (default config/orchestration.yml, or $HEALER_CONFIG).")
@click.option("--workspaces", type=click.Path(path_type=Path), default=None,
              help="Workspace root holding one folder per agent (default agent_workspaces/).")
@click.option("--log-format", type=click.Choice(LOG_FORMATS), default=None)
@click.option("--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False), default=None)
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, workspaces: Path | None,
        log_format: str | None, log_level: str | None) -> None:
    """healer: detects and heals stalled AI coding agents."""
    ctx.obj = _Settings(config_path, workspaces, log_format, log_level and log_level.lower())


@cli.command()
@click.option("--heal-after", type=float, default=None, help="Seconds of silence before healing.")
@click.option("--recover-after", type=float, default=None,
              help="Seconds of silence before standard recovery.")
@click.option("--tick", type=float, default=None, help="Timer wheel tick in seconds.")
@click.option("--poll", is_flag=True, default=None, help="Poll instead of inotify.")
@click.option("--dry-run", is_flag=True, default=None, help="Detect and log; write nothing.")
@click.option("--metrics-addr", default=None, help="Serve Prometheus metrics on HOST:PORT.")
@pass_settings
def watch(settings: _Settings, heal_after: float | None, recover_after: float | None,
          tick: float | None, poll: bool | None, dry_run: bool | None,
          metrics_addr: str | None) -> None:
    """Run the event-driven daemon in the foreground."""
    from healer import wiring

    flags = {"heal_after": heal_after, "recover_after": recover_after, "tick": tick,
             "poll": poll, "dry_run": dry_run, "metrics_addr": metrics_addr}
    # The loop must not wait for the log's reader: lines are written by a thread.
    config = settings.build(background=True, **flags)
    _run(require_tick_fits, config)
    _run(wiring.watch, config, lambda: require_tick_fits(settings.load(**flags)))


@cli.command()
@click.option("--now", "act", is_flag=True, help="Also heal the stalled agents at once.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--verbose", "-v", is_flag=True, help="List every agent, not only stalled ones.")
@pass_settings
def check(settings: _Settings, act: bool, as_json: bool, verbose: bool) -> None:
    """Report stalled agents (exit 1 if any); --now runs the pipelines once."""
    from healer import wiring

    report = _run(wiring.check, settings.build(), act=act)
    if as_json:
        click.echo(json.dumps(report.as_json()))
    else:
        _print_check(report, verbose)
    sys.exit(EXIT_STALLED if report.stalled or report.escalated else EXIT_OK)


def _print_check(report: CheckReport, verbose: bool) -> None:
    stalled = {s.agent: s for s in report.stalled}
    click.echo(f"checked {len(report.agents)} agents: {len(stalled)} stalled")
    for agent, last in report.agents:
        if agent in stalled:
            row = stalled[agent]
            click.echo(f"  {agent:<24} silent {age(row.silent_for):>8}  {row.pipeline.value}")
        elif agent in report.held:
            hold = report.held[agent]
            line = f"  {agent:<24} {hold.stage.value:<7} {age(report.now - hold.since):>8}"
            click.echo(f"{line}  {hold.message}"[:100] if hold.message else line)
        elif verbose:
            click.echo(f"  {agent:<24} silent {age(report.now - last):>8}  active")
    for action in report.actions:
        click.echo(f"  {action.agent:<24} {action.action:<18} "
                   f"{'ok' if action.ok else 'FAILED'}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--watch", "live", is_flag=True, help="Refresh a live table until Ctrl-C.")
@click.option("--interval", type=float, default=1.0, show_default=True,
              help="Refresh interval of --watch, seconds.")
@pass_settings
def status(settings: _Settings, as_json: bool, live: bool, interval: float) -> None:
    """Per-agent state: last activity, silence, stage, attempts, lease."""
    from healer import wiring

    config = settings.build()
    if live:
        live_status(lambda: _run(wiring.status, config), interval)
        return
    data = _run(wiring.status, config)
    if as_json:
        click.echo(json.dumps(data))
    else:
        click.echo(render_status(data, color=sys.stdout.isatty()))
    escalated = any(a["stage"] == Stage.ESCALATED.value for a in data["agents"])
    sys.exit(EXIT_STALLED if escalated else EXIT_OK)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_settings
def stats(settings: _Settings, as_json: bool) -> None:
    """Healing statistics from the durable history."""
    from healer import wiring

    data = _run(wiring.stats, settings.build())
    click.echo(json.dumps(data) if as_json else render_stats(data))


@cli.command()
@click.argument("agent")
@pass_settings
def resolve(settings: _Settings, agent: str) -> None:
    """Operator acknowledgement: clear AGENT's escalation and reset its attempts."""
    from healer import wiring

    done = _run(wiring.resolve, settings.build(), agent)
    if not done.anything:
        click.echo(f"{agent}: nothing to resolve (no open incident, no escalation marker)")
        return
    click.echo(f"{agent}: resolved (incident closed after {done.attempts} attempts"
               f"{', escalation marker removed' if done.marker_removed else ''})")


@cli.command(context_settings={"ignore_unknown_options": True}, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@pass_settings
def beat(settings: _Settings, args: tuple[str, ...]) -> None:
    """Write AGENT's heartbeat.json: working, waiting or done."""
    # `healer` itself runs beat before it imports this module (healer/entry.py); this is the
    # way through click, for `healer --help` and a group option the fast path does not know.
    from healer.entry import run_beat_command

    run_beat_command(settings.config_path, settings.cli["workspaces"], list(args))


@cli.command()
@click.argument("agent_cli", metavar="CLI", type=click.Choice([s.value for s in HookSource]))
@click.argument("agent", required=False)
@click.option("--install", "install_path", type=click.Path(path_type=Path), default=None,
              help="Merge the hooks into this Claude Code settings file instead of printing.")
@pass_settings
def hooks(settings: _Settings, agent_cli: str, agent: str | None,
          install_path: Path | None) -> None:
    """Print (or --install) the hooks that run `healer beat`.

    CLI is claude-code (a hooks block for .claude/settings.json) or codex (the notify line
    for ~/.codex/config.toml)."""
    from healer.hooks import run_hooks

    config = settings.build()
    try:
        out, note = run_hooks(config, HookSource(agent_cli), agent, install_path)
    except HealerError as exc:
        _fail(str(exc))
    click.echo(out)
    if note:
        click.echo(f"healer: note: {note}", err=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `healer` command."""
    try:
        cli.main(args=argv, prog_name="healer", standalone_mode=False)
    except click.exceptions.Abort:
        _fail("aborted", 130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_USAGE)
    except HealerError as exc:
        _fail(str(exc))
    except SystemExit:
        raise
    sys.exit(EXIT_OK)
