"""The composition root: the only module that turns a Config into adapters (history,
alerter, writer, scanner, watcher, metrics, service notifier) and plugs them into the
engine and the daemon, for every command alike."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from healer.adapters.alerts import Alerter
from healer.adapters.commands import SubprocessCommandRunner
from healer.adapters.ledger import SelfWriteLedger
from healer.adapters.lockfile import WorkspaceLock
from healer.adapters.metrics import serve_metrics
from healer.adapters.scan import Scanner
from healer.adapters.store import Store
from healer.adapters.systemd import Notifier
from healer.adapters.watcher import Watcher
from healer.adapters.writer import SafeWriter
from healer.clock import SystemClock
from healer.config import Config
from healer.core.model import Stage
from healer.core.stats import summarize
from healer.core.waiting import Hold
from healer.daemon import Daemon
from healer.engine import Engine
from healer.executor import ActionReport
from healer.history import History
from healer.ports import Clock, CommandRunner, MetricsSink, Readings
from healer.resolution import Resolution, check_agent_folder
from healer.resolution import resolve as resolve_agent
from healer.view import Stalled, status_rows

__all__ = [
    "HISTORY_FILE",
    "CheckReport",
    "agent_status",
    "build_engine",
    "check",
    "open_history",
    "resolve",
    "stats",
    "status",
    "watch",
]

HISTORY_FILE = "healer.db"  # in config.state_path


def open_history(config: Config, *, write: bool) -> Store | None:
    """The history for writing (created if need be), or a read-only view of it (None when
    there is none yet). StoreError when it cannot be used."""
    path = config.state_path / HISTORY_FILE
    return Store.open(path) if write else Store.open_readonly(path)


@dataclass(frozen=True, slots=True)
class _Parts:
    """An engine and the adapters behind it that a config reload retunes."""

    engine: Engine
    ledger: SelfWriteLedger
    writer: SafeWriter
    scanner: Scanner

    def retune(self, config: Config) -> None:
        self.writer.dry_run = config.dry_run
        self.scanner.inbox_mode = config.inbox_mode
        self.scanner.is_agent = config.is_agent_name


def _ledger(store: Store | None) -> SelfWriteLedger:
    """healer's earlier writes, from the history: a restart must not take them for the
    agents' activity."""
    ledger = SelfWriteLedger()
    if store is not None:
        ledger.load(store.self_writes())
    return ledger


def _scanner(config: Config, ledger: SelfWriteLedger) -> Scanner:
    return Scanner(config.workspaces, config.is_agent_name, inbox_mode=config.inbox_mode,
                   is_self=ledger.is_self, max_status_bytes=config.max_status_bytes)


def _assemble(
    config: Config, clock: Clock, store: Store | None, alerter: Alerter | None, *,
    record: bool, keep_actions: bool, commands: CommandRunner | None = None,
) -> _Parts:
    # `check` without --now and `--dry-run` read the history but never write it.
    writes = record and not config.dry_run
    history = History(store, clock, record=writes)
    ledger = _ledger(store)
    if history.recording:
        ledger.on_note = history.note_self_write
    writer = SafeWriter(
        config.workspaces, ledger, config.max_status_bytes, config.dry_run, clock=clock
    )
    scanner = _scanner(config, ledger)
    engine = Engine(
        config, clock, workspace=scanner, files=writer, history=history, alerts=alerter,
        commands=commands, cleans_temps=writes, keep_actions=keep_actions,
    )
    return _Parts(engine, ledger, writer, scanner)


def build_engine(
    config: Config, clock: Clock, *, store: Store | None = None, alerter: Alerter | None = None,
    record: bool = True, keep_actions: bool = False, commands: CommandRunner | None = None,
) -> Engine:
    """An engine over the real workspace, for `check` and for tests that drive it by hand."""
    return _assemble(
        config, clock, store, alerter, record=record, keep_actions=keep_actions,
        commands=commands,
    ).engine


# -- watch --------------------------------------------------------------------------------


def _acting(config: Config, role: str) -> WorkspaceLock | None:
    """The workspace's lock for a command that acts (WorkspaceBusyError when another holds
    it). A dry run writes nothing at all, not even the lock, and may run beside one."""
    return None if config.dry_run else WorkspaceLock.acquire(config.state_path, role)


def watch(config: Config, load: Callable[[], Config] | None = None) -> None:
    """Run the daemon until a signal stops it; `load` reads the config again on SIGHUP.
    One per workspace: a second is refused while the first holds the lock."""
    lock = _acting(config, "healer watch")
    try:
        _watch(config, load)
    finally:
        if lock is not None:
            lock.release()


def _watch(config: Config, load: Callable[[], Config] | None) -> None:
    clock = SystemClock()
    store = None if config.dry_run else open_history(config, write=True)
    alerter = Alerter.from_config(
        config.alerts, workspaces=config.workspaces, swarm=config.swarm.name
    )
    runner = SubprocessCommandRunner(config.commands_parallel)
    parts = _assemble(config, clock, store, alerter, record=True, keep_actions=False,
                      commands=runner)
    watcher = Watcher(
        config.workspaces,
        is_agent=config.is_agent_name,
        ledger=parts.ledger,
        inbox_mode=config.inbox_mode,
        poll=config.poll,
        poll_interval=min(1.0, config.tick),
        clock=clock.monotonic,  # events are stamped on the engine's clock
    )
    runner.wake = watcher.wake  # the loop's one wake-up: a command's end cuts its sleep short

    def reload(read: Callable[[], Config]) -> Config:
        new = read()
        parts.retune(new)
        watcher.inbox_mode = new.inbox_mode
        watcher.is_agent = new.is_agent_name
        return new

    def metrics(addr: str) -> Callable[[Callable[[], Readings]], MetricsSink]:
        return lambda source: serve_metrics(addr, source)

    daemon = Daemon(
        config, clock=clock, engine=parts.engine, watcher=watcher,
        notifier=Notifier.from_env(), alerter=alerter, store=store,
        metrics=metrics(config.metrics_addr) if config.metrics_addr else None,
        reload=functools.partial(reload, load) if load is not None else None,
    )
    daemon.install_signals()
    daemon.run()


# -- check --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckReport:
    """What `healer check` found (and, with --now, did)."""

    now: float
    agents: list[tuple[str, float]]  # every agent with its last activity
    stalled: list[Stalled]
    escalated: list[str]
    actions: list[ActionReport]
    held: dict[str, Hold] = field(default_factory=dict)  # waiting on a human, or done

    def as_json(self) -> dict[str, Any]:
        """SPEC §7: `{"checked", "stalled": [...], "actions": [...]}`, and the agents that are
        no stall because they said so (§12): `waiting` and `done`."""
        held = sorted(self.held.items())
        return {
            "checked": len(self.agents),
            "stalled": [{"agent": s.agent, "silent_for": s.silent_for,
                         "pipeline": s.pipeline.value} for s in self.stalled],
            "actions": [{"agent": a.agent, "action": a.action, "ok": a.ok}
                        for a in self.actions],
            "waiting": [{"agent": a, "waiting_for": round(max(0.0, self.now - h.since), 3),
                         "alerted": h.alerted, "message": h.message}
                        for a, h in held if h.stage is Stage.WAITING],
            "done": [a for a, h in held if h.stage is Stage.DONE],
        }


def check(config: Config, *, act: bool) -> CheckReport:
    """One look at every agent; with `act` (--now) the pipelines run once as well, under
    the workspace's lock: never beside a running daemon, which would act a second time."""
    lock = _acting(config, "healer check --now") if act else None
    try:
        return _check(config, act=act)
    finally:
        if lock is not None:
            lock.release()


def _check(config: Config, *, act: bool) -> CheckReport:
    clock = SystemClock()
    store = open_history(config, write=act and not config.dry_run)
    alerter = Alerter.from_config(
        config.alerts, workspaces=config.workspaces, swarm=config.swarm.name
    ) if act else None
    runner = SubprocessCommandRunner(config.commands_parallel) if act else None
    try:
        engine = build_engine(config, clock, store=store, alerter=alerter, record=act,
                              keep_actions=True, commands=runner)
        engine.start()
        now = engine.timeline.now()
        if act:
            engine.step(now)
            # One shot: a command rung's result is waited for (each run bounded by its
            # timeout), so what it did is in the report.
            engine.finish_commands(wait=True)
            engine.close_commands(0.0)
        view = engine.view
        return CheckReport(now, view.agents(), view.stalled(now), view.escalated(),
                           list(engine.executor.actions or ()), engine.beats.holds())
    finally:
        if runner is not None:
            runner.close(timeout=0.0)  # idempotent; after a failure, nothing is left running
        if alerter is not None:
            alerter.close(timeout=config.alerts.timeout)
        if store is not None:
            store.close()


# -- status, stats, resolve ---------------------------------------------------------------


def agent_status(config: Config, store: Store | None, now: float | None = None
                 ) -> dict[str, Any]:
    """SPEC §9 `status --json` from the files and the given history."""
    scanner = _scanner(config, _ledger(store))
    when = SystemClock().now() if now is None else now
    return {"agents": status_rows(config, scanner, store, when)}


def status(config: Config) -> dict[str, Any]:
    """`healer status`: read-only, beside a running daemon or without one."""
    store = open_history(config, write=False)
    try:
        return agent_status(config, store)
    finally:
        if store is not None:
            store.close()


def stats(config: Config) -> dict[str, Any]:
    """`healer stats`: the SPEC §9 report from the history (the empty one if there is none)."""
    store = open_history(config, write=False)
    if store is None:
        return summarize()
    try:
        return store.stats()
    finally:
        store.close()


def resolve(config: Config, agent: str) -> Resolution:
    """`healer resolve AGENT` (UsageError for what is not an agent folder)."""
    check_agent_folder(config, agent)
    store = Store.open(config.state_path / HISTORY_FILE)
    try:
        writer = SafeWriter(config.workspaces, SelfWriteLedger())
        return resolve_agent(agent, store, writer, SystemClock().now())
    finally:
        store.close()
