"""`healer watch`: the main loop. Small steps that each say whether they did work; the loop
is an iterator a test can step; signals only set flags (on healer.signals' thread); the
sleep is an interruptible wait. Every interval is paced on the monotonic clock, the
engine's. Past 300 lines: each thing a step does (events, root, scan, actions, sweep, prune,
pings) is a few lines, and they read best in their order, in one place."""

from __future__ import annotations

import math
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import structlog

from healer.config import Config
from healer.core.model import FolderEvent
from healer.engine import Engine
from healer.ports import (
    AlertSink,
    Clock,
    EventSource,
    IncidentLog,
    MetricsSink,
    Readings,
    ServiceManager,
)
from healer.signals import SignalRelay

__all__ = ["Daemon", "prune_interval"]

MetricsFactory = Callable[[Callable[[], Readings]], MetricsSink]

log = structlog.get_logger()

# At most this many queued changes are applied before the wheel gets a turn, so a flood
# of writes can delay detection by one batch at the most, never starve it.
BATCH = 50_000
PRUNE_EVERY = 3600.0
PRUNE_MIN = 1.0  # a prune of nothing costs a few queries; no need to run it every tick
# How long a stop waits for running commands before their groups are killed: with the
# runner's short grace after that, the 2 s of SPEC §7 still hold.
COMMANDS_CLOSE = 0.5
# Seconds of actions a step may spend (at most a tick); the next steps, which first apply
# the events (an agent back meanwhile is spared) and detect new stalls, do the rest.
ACTION_BUDGET = 0.1
# A timer due within a tick wakes the loop at the next of this many marks of it: a stall
# is seen within an eighth of a tick, and agents whose timers move on (active ones, re-armed
# when they fire) wake it at most this often a tick.
WAKES_PER_TICK = 8


def prune_interval(retention: float) -> float:
    """How often the history is pruned: hourly, or a tenth of a short retention, so rows
    never outlive `healer.retention` by more than a tenth of it."""
    return max(PRUNE_MIN, min(PRUNE_EVERY, retention / 10))


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


class Daemon:
    """The loop over the engine and the event source. Built by healer.wiring, which owns
    the adapters; the daemon closes what it was given when it stops."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock,
        engine: Engine,
        watcher: EventSource,
        notifier: ServiceManager,
        alerter: AlertSink,
        store: IncidentLog | None = None,
        metrics: MetricsFactory | None = None,
        reload: Callable[[], Config] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.engine = engine
        self.watcher = watcher
        self.notifier = notifier
        self.alerter = alerter
        self.store = store
        self._metrics_factory = metrics
        self.metrics: MetricsSink | None = None
        self._reload_config = reload
        self.stop_reason: str | None = None
        self._reload = threading.Event()
        self._signals: SignalRelay | None = None
        self.sweeps = 0
        self.overflows = 0  # kernel event-queue overflows, each answered by a rescan
        self._last_sweep = 0.0
        self._last_ping = 0.0
        self._last_prune = 0.0
        self._root_id: tuple[int, int] | None = None
        self._root_due = 0.0  # when the root's identity is looked at next
        self._scan_started = 0.0

    # -- signals --------------------------------------------------------------------------
    def install_signals(self) -> None:
        """SIGTERM and SIGINT stop, SIGHUP reloads; the flags are set on the relay's
        thread (healer.signals says why not in a handler)."""
        self._signals = SignalRelay({
            signal.SIGTERM: self._on_stop, signal.SIGINT: self._on_stop,
            signal.SIGHUP: self._on_hup,
        })
        self._signals.install()

    def _on_stop(self, signum: int) -> None:
        self.stop_reason = signal.Signals(signum).name
        self.watcher.wake.set()

    def _on_hup(self, _signum: int) -> None:
        self._reload.set()
        self.watcher.wake.set()

    def stop(self, reason: str = "requested") -> None:
        self.stop_reason = reason
        self.watcher.wake.set()

    def readings(self) -> Readings:
        """The state the metrics read at scrape time (from their server's thread)."""
        now = self.clock.monotonic()
        view = self.engine.view
        return Readings(
            now=now,
            agents=view.stages(now),
            counters=view.counters,
            events_seen=self.watcher.events_seen,
            sweeps=self.sweeps,
            observer_restarts=self.watcher.restarts,
            alerts_sent=self.alerter.sent,
            alerts_failed=self.alerter.failed,
            alerts_dropped=self.alerter.dropped,
            alerts_pending=self.alerter.pending(),
            deliveries=tuple(self.alerter.deliveries()),
            refreshes=tuple(self.alerter.refreshes()),
            overflows=self.overflows,
            observer_up=self.watcher.alive(),
            history_paused=self.engine.history.paused,
            history_failures=self.engine.history.failures,
        )

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        if self._metrics_factory is not None:
            self.metrics = self._metrics_factory(self.readings)
        # Watch first, then scan: a write landing between the two is seen by one of them.
        self._root_id = _identity(self.config.workspaces)
        # The root now, each agent's folders just before its scan in the first steps: a
        # write is seen by the scan or is an event, and a large swarm is ready at once
        # (issue #16). Until its scan, an agent has no timer.
        self.watcher.start(defer=True)
        agents = self.engine.begin()
        self._scan_started = now = self.clock.monotonic()
        self._last_sweep = self._last_prune = now
        log.info(
            "watch_started", workspaces=str(self.config.workspaces), agents=agents,
            heal_after=self.config.heal_after, recover_after=self.config.recover_after,
            tick=self.config.tick, polling=self.watcher.poll, dry_run=self.config.dry_run,
        )
        self.notifier.ready()
        self.notifier.status(f"watching {agents} agents")

    def close(self) -> None:
        self.notifier.stopping()
        self.watcher.close()
        self.engine.close_commands(COMMANDS_CLOSE)
        self.engine.save()
        self.alerter.close(timeout=1.0)
        if self.metrics is not None:
            self.metrics.close()
        if self.store is not None:
            self.store.close()
        log.info("watch_stopped", reason=self.stop_reason or "requested")
        if self._signals is not None:
            self._signals.close()

    def run(self) -> None:
        self.start()
        try:
            for _ in self.steps():
                pass
        finally:
            self.close()

    # -- the loop -------------------------------------------------------------------------
    def steps(self) -> Iterator[bool]:
        """One iteration per wake-up; yields whether it did any work."""
        while self.stop_reason is None:
            self._sleep()
            if self.stop_reason is not None:
                return
            yield self.step()

    def _sleep(self) -> None:
        if self.engine.pending() or self.engine.starting():
            return  # actions or scans wait for their turn: straight back, events first
        tick = self.config.tick
        now = self.clock.monotonic()
        # Wake on the next tick boundary, or at once when events arrive ...
        timeout = tick - math.fmod(now, tick)
        soon = self.engine.monitor.soonest(now)
        if soon is not None:
            # ... or when a timer falls due before it, to a fraction of a tick: woken only
            # at the boundary, a tick's worth of stalls waited for it, then for each other
            # (a mass stall then ran a tick behind from its first agent on; issue #16).
            grain = tick / WAKES_PER_TICK
            timeout = min(timeout, math.ceil(soon / grain) * grain - now)
        if self.clock.wait(self.watcher.wake, max(timeout, 0.001)):
            self.watcher.wake.clear()

    def step(self) -> bool:
        did = False
        # Notice a wall-clock step now, so mtimes written after it are placed by the new offset.
        self.engine.timeline.follow()
        if self._reload.is_set():
            self._reload.clear()
            self._do_reload()
            did = True
        did |= self._follow_root()
        did |= self._apply_changes()
        if self.watcher.overflowed.is_set():
            self.watcher.overflowed.clear()
            self.overflows += 1
            log.warning("event_queue_overflow", action="rescan")
            self.engine.rescan()
            did = True
        # Without a root there is nothing to watch; _follow_root restarts it on a new one.
        if not self.watcher.alive() and self.stop_reason is None and self._root_id is not None:
            self.watcher.restart()
            self.engine.rescan()
            did = True
        if self.engine.starting():
            did |= self._scan_some()
        did |= self.engine.finish_commands() > 0  # a rung that ended lets its agent go on
        now = self.clock.monotonic()
        did |= self.engine.step(now, budget=self._budget()) > 0
        if now - self._last_sweep >= self.config.check_interval:
            self._last_sweep = now
            self.sweeps += 1
            added, removed = self.engine.reconcile()
            did |= bool(added or removed)
            if self.watcher.fall_back_if_full():
                self.engine.rescan()
                did = True
        if self.store is not None and (
            now - self._last_prune >= prune_interval(self.config.retention)
        ):
            self._last_prune = now
            self.engine.history.prune(now - self.config.retention)
        # Read the clock again: a step that healed (fsync) can take a while, and pacing
        # the pings by its start would send two of them back to back after it.
        self._ping(self.clock.monotonic())
        return did

    def _budget(self) -> float:
        return min(self.config.tick, ACTION_BUDGET)

    def _scan_some(self) -> bool:
        self.engine.start_some(self._budget(), before=self.watcher.watch_agent)
        if not self.engine.starting():
            log.info("scan_finished", agents=len(self.engine.monitor.table),
                     seconds=round(self.clock.monotonic() - self._scan_started, 3))
        return True

    def _follow_root(self) -> bool:
        """The root deleted, or renamed away and another made in its place: inotify then
        watches nothing, or the old tree under the old name. healer follows the path: a
        stat a tick, or at once when the watcher died (inotify saw the root go)."""
        now = self.clock.monotonic()
        if now < self._root_due and self.watcher.alive():
            return False
        self._root_due = now + self.config.tick
        current = _identity(self.config.workspaces)
        if current == self._root_id:
            return False
        self._root_id = current
        root = str(self.config.workspaces)
        if current is None:
            log.warning("workspace_root_missing", workspaces=root)
            return False
        log.warning("workspace_root_replaced", workspaces=root)
        self.watcher.changes.clear()  # events of the old tree say nothing of the new one
        self.watcher.restart()
        self.engine.rescan()
        return True

    def _apply_changes(self) -> bool:
        changes = self.watcher.drain(BATCH)
        known, observe = self.engine.monitor.table.agents, self.engine.observe
        for change in changes:
            if change.folder is None and change.agent in known:  # nearly every change
                if change.activity:
                    observe(change.agent, change.when, change.beat)
                continue
            match change.folder:
                case FolderEvent.ADDED:
                    self.engine.add_agent(change.agent, at=change.when)
                case FolderEvent.REMOVED:
                    if change.agent in known and not (
                        self.config.workspaces / change.agent
                    ).is_dir():
                        self.engine.remove_agent(change.agent)
                case _ if change.agent not in known:
                    # The first event of a folder whose creation we did not see: its
                    # appearance, as far as healer can tell.
                    self.engine.add_agent(change.agent, at=change.when)
                    if change.activity:
                        observe(change.agent, change.when, change.beat)
        if changes and self.metrics is not None:
            self.metrics.observe_changes(changes, self.clock.monotonic())
        if len(changes) == BATCH:
            self.watcher.wake.set()  # more are queued: come straight back
        return bool(changes)

    def _ping(self, now: float) -> None:
        interval = self.notifier.watchdog_interval()
        if interval is not None and now - self._last_ping >= interval / 2:
            self._last_ping = now
            self.notifier.ping()

    def _do_reload(self) -> None:
        if self._reload_config is None:
            return
        self.notifier.reloading()
        try:
            config = self._reload_config()
        except Exception as exc:  # a bad edit must not take the running daemon down
            log.error("config_reload_failed", error=str(exc))
            self.notifier.ready()
            return
        self.config = config
        self.engine.reload(config)
        log.info("config_reloaded", heal_after=config.heal_after,
                 recover_after=config.recover_after, tick=config.tick)
        self.notifier.ready()
