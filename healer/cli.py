"""The command line: parses flags, builds the config, turns healer's errors into one-line
messages and exit codes. Inner code only raises."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from healer import __version__
from healer.config import LOG_FORMATS, LOG_LEVELS, Config, load_config, require_tick_fits
from healer.errors import ConfigError, HealerError, StoreError, UsageError
from healer.log import configure_logging

__all__ = ["EXIT_OK", "EXIT_STALLED", "EXIT_USAGE", "main"]

EXIT_OK = 0
EXIT_STALLED = 1  # check found stalled agents, or an agent is escalated
EXIT_USAGE = 2  # usage or config error
EXIT_FAILURE = 3  # healer itself could not run (e.g. its history is unusable)


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"healer: {message}", err=True)
    sys.exit(code)


class _Settings:
    """What the group options gave; commands finish the config with their own flags."""

    def __init__(self, config: Path | None, workspaces: Path | None, fmt: str | None,
                 level: str | None) -> None:
        self.config_path = config
        self.cli: dict[str, Any] = {"workspaces": workspaces, "log_format": fmt, "log_level": level}

    def load(self, **flags: Any) -> Config:
        return load_config(self.config_path, cli={**self.cli, **flags})

    def build(self, **flags: Any) -> Config:
        try:
            config = self.load(**flags)
        except ConfigError as exc:
            _fail(str(exc))
        configure_logging(config.log_format, config.log_level)
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
    from healer.daemon import Daemon

    flags = {"heal_after": heal_after, "recover_after": recover_after, "tick": tick,
             "poll": poll, "dry_run": dry_run, "metrics_addr": metrics_addr}
    config = settings.build(**flags)
    try:
        require_tick_fits(config)
    except ConfigError as exc:
        _fail(str(exc))
    try:
        daemon = Daemon(config, reload=lambda: require_tick_fits(settings.load(**flags)))
        if config.metrics_addr:
            from healer.adapters.metrics import serve_metrics

            daemon.metrics = serve_metrics(config.metrics_addr, daemon)
        daemon.install_signals()
        daemon.run()
    except StoreError as exc:
        _fail(str(exc), EXIT_FAILURE)
    except HealerError as exc:
        _fail(str(exc))


def _open_history(config: Config, *, write: bool) -> Any:
    from healer.adapters.store import Store

    path = config.state_path / "healer.db"
    try:
        return Store.open(path) if write else Store.open_readonly(path)
    except StoreError as exc:
        _fail(str(exc), EXIT_FAILURE)


@cli.command()
@click.option("--now", "act", is_flag=True, help="Also heal the stalled agents at once.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--verbose", "-v", is_flag=True, help="List every agent, not only stalled ones.")
@pass_settings
def check(settings: _Settings, act: bool, as_json: bool, verbose: bool) -> None:
    """Report stalled agents (exit 1 if any); --now runs the pipelines once."""
    from healer.adapters.alerts import Alerter
    from healer.clock import SystemClock
    from healer.engine import Engine

    config = settings.build()
    store = _open_history(config, write=act and not config.dry_run)
    alerter = Alerter.from_config(config.alerts, workspaces=config.workspaces) if act else None
    clock = SystemClock()
    engine = Engine(config, clock, store=store, alerter=alerter, record=act, keep_actions=True)
    try:
        engine.start()
        now = clock.now()
        if act:
            engine.step(now)
        stalled = engine.stalled(now)
        escalated = [a for a, i in engine.monitor.incidents().items() if i.escalated]
    finally:
        if alerter is not None:
            alerter.close(timeout=config.alerts.timeout)
        if store is not None:
            store.close()
    report = {
        "checked": len(engine.monitor.table),
        "stalled": stalled,
        "actions": [{"agent": a.agent, "action": a.action, "ok": a.ok}
                    for a in engine.actions or ()],
    }
    if as_json:
        click.echo(json.dumps(report))
    else:
        _print_check(report, engine, now, verbose)
    sys.exit(EXIT_STALLED if stalled or escalated else EXIT_OK)


def _print_check(report: dict[str, Any], engine: Any, now: float, verbose: bool) -> None:
    from healer.report import age as _age

    stalled = {s["agent"]: s for s in report["stalled"]}
    click.echo(f"checked {report['checked']} agents: {len(stalled)} stalled")
    for agent, last in sorted(engine.monitor.table.items()):
        if agent in stalled:
            row = stalled[agent]
            click.echo(f"  {agent:<24} silent {_age(row['silent_for']):>8}  {row['pipeline']}")
        elif verbose:
            click.echo(f"  {agent:<24} silent {_age(now - last):>8}  active")
    for action in report["actions"]:
        click.echo(f"  {action['agent']:<24} {action['action']:<18} "
                   f"{'ok' if action['ok'] else 'FAILED'}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--watch", "live", is_flag=True, help="Refresh a live table until Ctrl-C.")
@click.option("--interval", type=float, default=1.0, show_default=True,
              help="Refresh interval of --watch, seconds.")
@pass_settings
def status(settings: _Settings, as_json: bool, live: bool, interval: float) -> None:
    """Per-agent state: last activity, silence, stage, attempts, lease."""
    from healer.report import agent_status, render_status

    config = settings.build()

    def snapshot() -> dict[str, Any]:
        store = _open_history(config, write=False)
        try:
            return agent_status(config, store)
        except StoreError as exc:
            _fail(str(exc), EXIT_FAILURE)
        finally:
            if store is not None:
                store.close()

    if live:
        from healer.report import live_status

        live_status(snapshot, interval)
        return
    data = snapshot()
    if as_json:
        click.echo(json.dumps(data))
    else:
        click.echo(render_status(data, color=sys.stdout.isatty()))
    sys.exit(EXIT_STALLED if any(a["stage"] == "escalated" for a in data["agents"]) else EXIT_OK)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_settings
def stats(settings: _Settings, as_json: bool) -> None:
    """Healing statistics from the durable history."""
    from healer.core.stats import summarize
    from healer.report import render_stats

    config = settings.build()
    store = _open_history(config, write=False)
    try:
        data = store.stats() if store is not None else summarize()
    except StoreError as exc:
        _fail(str(exc), EXIT_FAILURE)
    finally:
        if store is not None:
            store.close()
    click.echo(json.dumps(data) if as_json else render_stats(data))


def _agent_folder(config: Config, agent: str) -> Path:
    """AGENT must name an existing agent folder directly under the root."""
    if not agent or agent in (".", "..") or "/" in agent or "\0" in agent:
        raise UsageError(f"resolve: {agent!r} is not an agent name")
    if not config.is_agent_name(agent):
        raise UsageError(
            f"resolve: {agent!r} does not match agent_pattern {config.agent_pattern!r}"
        )
    path = config.workspaces / agent
    try:
        st = os.lstat(path)
    except OSError:
        raise UsageError(f"resolve: no agent folder {agent!r} under {config.workspaces}") from None
    if stat.S_ISLNK(st.st_mode):
        raise UsageError(f"resolve: {agent!r} is a symlink, not an agent folder")
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"resolve: {path} is not a directory")
    return path


@cli.command()
@click.argument("agent")
@pass_settings
def resolve(settings: _Settings, agent: str) -> None:
    """Operator acknowledgement: clear AGENT's escalation and reset its attempts."""
    from healer.adapters.writer import SafeWriter, SelfWriteLedger
    from healer.clock import SystemClock
    from healer.errors import ActionError

    config = settings.build()
    try:
        _agent_folder(config, agent)
    except UsageError as exc:
        _fail(str(exc))
    store = _open_history(config, write=True)
    now = SystemClock().now()
    try:
        row = store.open_incident_for(agent)
        if row is not None:
            store.close_incident(row.id, closed_at=now, outcome="resolved")
        try:
            marker = SafeWriter(config.workspaces, SelfWriteLedger()).remove_marker(agent)
        except ActionError as exc:
            _fail(str(exc))
    finally:
        store.close()
    if row is None and not marker:
        click.echo(f"{agent}: nothing to resolve (no open incident, no escalation marker)")
        return
    attempts = row.attempts if row is not None else 0
    click.echo(f"{agent}: resolved (incident closed after {attempts} attempts"
               f"{', escalation marker removed' if marker else ''})")


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
