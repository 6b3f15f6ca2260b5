"""The engine: the pure monitor driven over the ports. The tracker keeps membership and
activity, the executor carries out the policy's steps; both `healer check` and `healer
watch` drive it, only the source of activity differs. Its times are monotonic (see
healer.timeline); wall-clock times are converted where they come in and go out.
Past 300 lines: a step's order (read ahead, detect, act in budget) is the one place that
keeps a mass stall on time, and reads best whole."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

import structlog

from healer.breakers import Breakers, lookback
from healer.commanding import Commanding
from healer.config import Config
from healer.core.monitor import Monitor
from healer.core.policy import Incident, Policy, StallDetected, Step
from healer.executor import Executor
from healer.fold import AlertFold
from healer.heartbeats import Heartbeats
from healer.history import History
from healer.ports import AlertSink, Clock, CommandRunner, StatusStore, WorkspaceReader
from healer.timeline import Timeline
from healer.tracker import Tracker
from healer.view import EngineView

__all__ = ["FAILED_STEP_BACKOFF", "Engine"]

log = structlog.get_logger()

# An agent whose step raised (a bug meeting some input no test foresaw) is looked at again
# after this long instead of at every tick: one bad folder must neither kill the daemon
# nor spin it.
FAILED_STEP_BACKOFF = 30.0
# How many ticks ahead the agents about to fall due are named to the workspace, which
# starts reading their status.json: on a cold cache the lease read at the stall waited
# for the disk, one agent at a time (issue #16).
READ_AHEAD = 2

_Acting = tuple[str, Incident, list[Step], float]


class Engine:
    """Built by healer.wiring from a Config and the ports; holds no adapter itself."""

    def __init__(
        self,
        config: Config,
        clock: Clock,
        *,
        workspace: WorkspaceReader,
        files: StatusStore,
        history: History,
        alerts: AlertSink | None = None,
        commands: CommandRunner | None = None,
        cleans_temps: bool = True,
        keep_actions: bool = False,
    ) -> None:
        self.config = config
        self._default: tuple[Config, Policy] | None = None
        self.clock = clock
        self.history = history
        self._workspace = workspace
        self.timeline = Timeline(clock)
        self.monitor = Monitor(self.policy_for, config.tick, self.timeline.now())
        self.commands = Commanding(config, clock, self.monitor, history, commands)
        # Where an alert leaves the fold, its `on:` commands run: folded and muted with it.
        fold = AlertFold(alerts, on_send=self.commands.on_transition, dry_run=config.dry_run)
        self.breakers = Breakers(config, self.monitor, fold)
        self.executor = Executor(
            config, clock, self.monitor, files, history, self.breakers, commands=self.commands,
            keep_actions=keep_actions,
        )
        self.tracker = Tracker(
            self.timeline, self.monitor, workspace, files, history, self.policy_for, self.executor,
            cleans_temps=cleans_temps,
        )
        # What agents say of themselves: waiting on a human, done (heartbeat.json).
        self.beats = Heartbeats(config, self.timeline, self.monitor, workspace, history,
                                observe=self.tracker.observe, restat=self.tracker.restat,
                                announce=self.executor.announce)
        self.view = EngineView(self.monitor, self.policy_for, self.executor.counters,
                               flapping=self.breakers.is_flapping)
        # Decided steps waiting to be carried out (step's budget), and whose they are.
        self._queue: deque[tuple[_Acting, float]] = deque()
        self._waiting: set[str] = set()
        self._read_until = 0.0  # agents due up to here were handed to prefetch
        # Membership and activity, as the daemon and `check` call them.
        self.remove_agent = self.tracker.remove_agent

    def policy_for(self, agent: str) -> Policy:
        c = self.config
        if agent not in c.agents:  # most agents: the default, built once per config
            default = self._default
            if default is None or default[0] is not c:
                default = self._default = (c, self._policy(c, c.heal_after, c.recover_after))
            return default[1]
        return self._policy(c, c.heal_after_for(agent), c.recover_after_for(agent))

    @staticmethod
    def _policy(c: Config, heal_after: float, recover_after: float) -> Policy:
        return Policy(heal_after=heal_after, recover_after=recover_after,
                      max_attempts=c.max_attempts, ladder=c.ladder,
                      healing_enabled=c.healing_enabled)

    def start(self) -> int:
        """The breaker from the history first (an incident carried over from a flapping
        agent must not resume its ladder), then the agents, then what their heartbeats say;
        returns how many there are."""
        self.begin()
        self.start_some()
        return len(self.monitor.table)

    def begin(self) -> int:
        """start() in parts, for `watch`: the history and the list of agents now, their
        scan by start_some (in budgets, from the loop). Returns how many agents there are."""
        now = self.timeline.now()
        self.breakers.restore(self.history.incident_spans(now - lookback(self.config)), now)
        listed = self.tracker.begin()
        self.beats.begin()
        return listed

    def starting(self) -> bool:
        """Whether agents begin() listed are still to be scanned."""
        return self.tracker.starting()

    def start_some(
        self, budget: float | None = None, before: Callable[[str], None] | None = None
    ) -> int:
        """Scan begin()'s agents for up to `budget` seconds, each after `before(agent)`;
        returns how many it took up."""
        if not self.tracker.starting():
            return 0
        added = self.tracker.start_some(budget, before)
        self.beats.started(added)
        if not self.tracker.starting():
            self.beats.finish()
        return len(added)

    def reload(self, config: Config) -> None:
        """New config, same state: incidents, attempts and counters carry over."""
        self.config = config
        self.executor.config = config
        self.commands.config = config
        self.breakers.fold.dry_run = config.dry_run
        self.breakers.reload(config)
        self.monitor.set_policy(self.policy_for)
        self.beats.reload(config)

    # -- membership and activity: the tracker's, and what the agents' beats make of it -----
    def add_agent(self, agent: str, *, at: float | None = None) -> bool:
        added = self.tracker.add_agent(agent, at=at)
        if added:
            self.beats.added(agent)
        return added

    def observe(self, agent: str, when: float, beat: bool = False) -> None:
        """Genuine activity (`beat`: of heartbeat.json, which is read)."""
        self.beats.activity(agent, when, beat)

    def reconcile(self) -> tuple[int, int]:
        counts = self.tracker.reconcile()
        self.beats.sweep()
        return counts

    def rescan(self) -> None:
        self.tracker.rescan()
        self.beats.sweep()

    def save(self) -> None:
        """Persist what a restart needs (called on a clean stop)."""
        self.history.save_last_activity(dict(self.monitor.table.items()))

    # -- commands -------------------------------------------------------------------------
    def finish_commands(self, wait: bool = False) -> int:
        """Report the commands that ended (with `wait`, as one-shot `check` does, first let
        every pending one end); returns how many rungs were reported."""
        done = self.commands.wait() if wait else self.commands.collect()
        for rung in done:
            self.executor.report_rung(rung)
        return len(done)

    def close_commands(self, timeout: float) -> None:
        """Stop running commands (killed after `timeout`) and report how each one ended."""
        for rung in self.commands.close(timeout):
            self.executor.report_rung(rung)

    # -- time -----------------------------------------------------------------------------
    def step(self, now: float | None = None, budget: float | None = None) -> int:
        """Handle every decision due now; returns how many agents were looked at.

        Detection first, for every due agent, then the actions, oldest first: when a
        thousand agents stall together (an API outage), the last one's stall is not
        reported only after the writes and fsyncs of all the others. `budget`: seconds
        of actions this step may spend; the rest waits for the next step (`pending`), so
        a mass stall's actions never keep the loop from its events and pings, nor the
        stalls that fall due meanwhile from being detected (issue #16). None: all."""
        now = self.timeline.now() if now is None else now
        held_back = self.breakers.tick(now)
        self._read_ahead(now)
        due = self._due(now)
        self._enqueue(self._detect(due, now), now)
        self.breakers.judge(now)
        for agent in held_back:
            try:
                self.executor.reassign(agent, now)
            except Exception:
                self._step_failed(agent, now)
        return len(due) + self._act(now, budget)

    def _read_ahead(self, now: float) -> None:
        """Tell the workspace who falls due within the next READ_AHEAD ticks, once each;
        the window moves a whole tick at a time, so each of the wheel's slots is looked
        through once, not at every step."""
        tick = self.config.tick
        until = (math.floor(now / tick) + READ_AHEAD + 1) * tick
        after = max(now, self._read_until)
        if until > after:
            soon = self.monitor.upcoming(after, until)
            if soon:
                self._workspace.prefetch(soon)
            self._read_until = until

    def pending(self) -> int:
        """How many agents' actions wait for a step with budget left."""
        return len(self._queue)

    def _act(self, now: float, budget: float | None) -> int:
        """Carry out the queued steps, oldest first, until `budget` is spent; between two
        agents, detect the ones that fell due while they ran. Returns how many agents that
        detection looked at."""
        start = now
        looked = 0
        while self._queue:
            (agent, incident, steps, last), at = self._queue.popleft()
            self._waiting.discard(agent)
            if self._current(agent, incident):
                try:
                    for step in steps:
                        self.executor.carry_out(agent, incident, step, at, last)
                except Exception:
                    self._step_failed(agent, at)
            # Every stall that fell due meanwhile is detected before the next action: while
            # stalls come faster than the loop can also act on them (a mass stall), the
            # actions wait for the wave to pass, never the detections for the actions.
            while budget is None or now - start < budget:
                later = self.timeline.now()
                more = self._due(later) if later > now else []
                now = max(now, later)
                if not more:
                    break
                looked += len(more)
                self._enqueue(self._detect(more, later), later)
                self.breakers.judge(later)
            if budget is not None and now - start >= budget:
                break
        return looked

    def _current(self, agent: str, incident: Incident) -> bool:
        """Whether the incident the queued steps were decided for is still open: an agent
        that came back, or was resolved, while they waited gets none of them."""
        open_now = self.monitor.incident(agent)
        return open_now is not None and open_now.opened_at == incident.opened_at

    def _enqueue(self, found: list[_Acting], at: float) -> None:
        for act in found:
            self._queue.append((act, at))
            self._waiting.add(act[0])

    def _detect(self, due: list[str], now: float) -> list[_Acting]:
        """Decide and report the stalls of `due`; returns the steps left to carry out."""
        acting: list[_Acting] = []
        for agent in due:
            try:
                decided = self._decide(agent, now)
            except Exception:
                self._step_failed(agent, now)
                continue
            if decided is not None:
                acting.append(decided)
        return acting

    def _due(self, now: float) -> list[str]:
        """Agents due at `now`; one whose earlier steps still wait is looked at a tick later,
        when they have run (not at once: a long queue must not be walked after every action)."""
        out = []
        for agent in self.monitor.due(now):
            if agent in self._waiting:
                self.monitor.defer(agent, now + self.config.tick)
            else:
                out.append(agent)
        return out

    def _step_failed(self, agent: str, now: float) -> None:
        log.exception("agent_step_failed", agent=agent, retry_in=FAILED_STEP_BACKOFF)
        self.monitor.defer(agent, now + FAILED_STEP_BACKOFF)

    def _decide(self, agent: str, now: float) -> _Acting | None:
        """Re-check the agent's files, run the policy and report its stalls; returns the
        steps left to carry out."""
        # A missed event can only make an agent look older: look at its files before acting.
        if not self.tracker.restat(agent):
            self.tracker.remove_agent(agent)
            return None
        if self.beats.recheck(agent, now):
            return None  # waiting on a human, or done: no stall
        last = self.monitor.table.get(agent)
        if last is None:
            return None
        if self.monitor.incident(agent) is None and self.monitor.due_target(agent) > now:
            # The re-stat found activity the events missed; its timer fired, so re-arm it.
            self.monitor.rearm(agent)
            return None
        lease = self._lease(agent, last)
        opening = self.monitor.incident(agent) is None
        acts = not self.breakers.mutes(agent, now, opening=opening)
        decision = self.monitor.evaluate(agent, now, lease, acting=acts)
        if decision.incident is None or not decision.steps:
            return None
        rest: list[Step] = []
        for step in decision.steps:
            if isinstance(step, StallDetected):
                self.executor.carry_out(agent, decision.incident, step, now, last)
            else:
                rest.append(step)
        return agent, decision.incident, rest, last

    def _lease(self, agent: str, last: float) -> float | None:
        """The busy lease's end on the engine's clock; the agent wrote it as a wall time,
        read as one now (a lease's cap counts from its write, the agent's last activity)."""
        wall = self._workspace.lease(
            agent, self.config.max_busy_lease, self.timeline.to_wall(last)
        )
        return None if wall is None else self.timeline.from_wall(wall)
