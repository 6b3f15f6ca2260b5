"""Operator commands in the engine (SPEC §13, §17): a ladder rung naming a command is handed
to the runner and its agent held until the command ends; `on:` commands run as their
transition's alert goes out; the loop drains the results, logged and recorded here."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from healer.config import Config
from healer.core.commands import CommandKind, CommandRequest, CommandResult, CommandSpec
from healer.core.isotime import iso
from healer.core.model import Pipeline, Transition
from healer.core.monitor import Monitor
from healer.core.policy import Incident
from healer.history import History
from healer.pipelines.healing import ActionOutcome, Context
from healer.ports import Clock, CommandRunner

__all__ = ["HOLD", "RESULT_SLACK", "Commanding", "RungDone"]

log = structlog.get_logger()

# While a rung's command runs, its agent's next decision is held this far ahead (at least),
# renewed while the command is pending: the runner gives every run a result, but a run may
# first wait its turn behind others for longer than any one timeout.
HOLD = 60.0
# A run ends at most this long after its timeout: SIGTERM, SIGKILL after the runner's 2 s
# grace, then 5 s for a leader that outlives SIGKILL; plus a margin.
RESULT_SLACK = 10.0


@dataclass(frozen=True, slots=True)
class RungDone:
    """A command rung's outcome, for the executor to report as the attempt's heal_action."""

    agent: str
    attempt: int
    outcome: ActionOutcome


@dataclass(slots=True)
class _Pending:
    """A submitted run and what its result is recorded against."""

    request: CommandRequest
    kind: CommandKind
    incident_id: int | None
    action_id: int | None = None
    opened_at: float | None = None  # a rung's incident, which the result may release
    hold_until: float = 0.0


class Commanding:
    """Submits rungs and hooks to the runner and turns its results into log lines, history
    rows and released attempts. Without a runner (`check` that does not act) nothing runs."""

    def __init__(
        self,
        config: Config,
        clock: Clock,
        monitor: Monitor,
        history: History,
        runner: CommandRunner | None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._monitor = monitor
        self._history = history
        self._runner = runner
        self._pending: dict[int, _Pending] = {}  # id(request) -> the run, until its result
        self._closed_keys: dict[str, tuple[str, int | None]] = {}

    # -- the executor's side --------------------------------------------------------------
    def is_rung(self, action: str) -> bool:
        """True when the ladder's `action` names a command rather than a built-in rung."""
        return action in self.config.commands

    def start_rung(self, incident: Incident, ctx: Context, action: str) -> RungDone | None:
        """Submit the rung's command and hold the agent until it ends: None, its outcome
        comes from collect(). An outcome at once when it is not run (--dry-run, no runner)."""
        agent, attempt = ctx.agent, ctx.attempt
        row_id = self._history.id_of(agent)
        request = self._request(self.config.commands[action], agent, Transition.STALLED,
                                attempt, ctx.silent_for, self._key(agent, incident, row_id))
        # History first: a crash while the command runs must find the attempt on record, or
        # a restart would run it again; the run's outcome is added to the action at its end.
        self._history.update(agent, attempts=attempt, last_attempt_at=ctx.now)
        action_id = self._history.record_action(
            agent, Pipeline.HEALING, action, attempt, True, None, ctx.now
        )
        if self.config.dry_run:
            return RungDone(agent, attempt, ActionOutcome(action, True,
                                                          detail={"argv": request.argv()}))
        pending = _Pending(request, CommandKind.RUNG, row_id, action_id, incident.opened_at)
        if self._runner is None:
            return self._finish(pending, _not_run(request, ctx.now), ctx.now)
        pending.hold_until = ctx.now + request.spec.timeout + self._hold()
        self._pending[id(request)] = pending
        self._monitor.defer(agent, pending.hold_until)
        log.info("command_started", agent=agent, command=action, attempt=attempt,
                 timeout=request.spec.timeout)
        self._runner.submit(request)
        return None

    def on_transition(
        self, agent: str, transition: Transition, details: Mapping[str, Any] | None = None
    ) -> int:
        """Run the `on:` commands of `transition` for `agent` ("" for the swarm); returns how
        many were submitted; under --dry-run they are logged only. Called where the alert
        leaves the fold (healer.fold), so they are folded and muted with it."""
        names = self.config.on.get(transition.value, ())
        remembered = self._closed_keys.pop(agent, None)
        if not names:
            return 0
        details = details or {}
        incident = self._monitor.incident(agent) if agent else None
        row_id = self._history.id_of(agent) if agent else None
        key = self._key(agent, incident, row_id) if agent else ""
        if remembered is not None and not key:
            key, row_id = remembered
        now = self._clock.monotonic()  # engine time: the monitor and the history speak it
        silent_for = details.get("silent_for")
        if silent_for is None and incident is not None:
            silent_for = now - incident.silence_start
        attempt = details.get("attempts", incident.attempts if incident is not None else 0)
        submitted = 0
        for name in names:
            request = self._request(self.config.commands[name], agent, transition,
                                    int(attempt), float(silent_for or 0.0), key)
            if self.config.dry_run:
                log.info("hook_ran", agent=agent, transition=transition.value, command=name,
                         ok=True, dry_run=True, argv=request.argv())
                continue
            pending = _Pending(request, CommandKind.HOOK, row_id)
            if self._runner is None:
                self._finish(pending, _not_run(request, now), now)
                continue
            self._pending[id(request)] = pending
            log.info("command_started", agent=agent, command=name,
                     transition=transition.value, timeout=request.spec.timeout)
            self._runner.submit(request)
            submitted += 1
        return submitted

    def remember(self, agent: str, incident: Incident) -> None:
        """The agent's incident is about to close: its `recovered` commands, which run after
        the close, still name it in HEALER_INCIDENT."""
        row_id = self._history.id_of(agent)
        self._closed_keys[agent] = (self._key(agent, incident, row_id), row_id)

    # -- the loop's side ------------------------------------------------------------------
    def collect(self) -> list[RungDone]:
        """Handle every result ready: a hook's is logged here, a rung's is returned for the
        executor to report. The agents of rungs still running stay held."""
        if self._runner is None:
            return []
        now = self._clock.monotonic()  # engine time: the monitor and the history speak it
        done: list[RungDone] = []
        for result in self._runner.drain():
            pending = self._pending.pop(id(result.request), None)
            if pending is not None:
                rung = self._finish(pending, result, now)
                if rung is not None:
                    done.append(rung)
        self._renew(now)
        return done

    @property
    def pending(self) -> int:
        """Runs submitted and not finished yet."""
        return len(self._pending)

    def wait(self, timeout: float | None = None) -> list[RungDone]:
        """For one-shot `check --now`: collect until every run has ended, or for at most
        `timeout` (default: as long as the runs pending could take, in turn)."""
        if self._runner is None:
            return []
        if timeout is None:
            timeout = self._longest_wait()
        deadline = self._clock.monotonic() + timeout
        done = self.collect()
        while self._pending:
            left = deadline - self._clock.monotonic()
            if left <= 0 or not self._clock.wait(self._runner.wake, left):
                break
            self._runner.wake.clear()
            done += self.collect()
        return done + self.collect()

    def close(self, timeout: float) -> list[RungDone]:
        """Stop the runner (what still runs after `timeout` is killed) and collect the last
        results, so every run started is logged."""
        if self._runner is None:
            return []
        self._runner.close(timeout)
        return self.collect()

    # -- helpers --------------------------------------------------------------------------
    def _finish(self, pending: _Pending, result: CommandResult, now: float) -> RungDone | None:
        req = result.request
        self._history.record_command(result, pending.kind, pending.incident_id,
                                     pending.action_id)
        fields = result.log_fields()
        if pending.kind is CommandKind.HOOK:
            level = logging.INFO if result.ok else logging.WARNING
            log.log(level, "hook_ran", agent=req.agent, transition=req.transition,
                    command=req.spec.name, **fields)
            return None
        if pending.opened_at is not None and self._monitor.attempt_ended(
            req.agent, pending.opened_at, req.attempt, now
        ):
            # A restart, too, must count the attempt's heal_after from the command's end.
            self._history.update(req.agent, last_attempt_at=now)
        detail = {k: v for k, v in fields.items() if k not in ("ok", "error")}
        return RungDone(req.agent, req.attempt,
                        ActionOutcome(req.spec.name, result.ok, result.error, detail))

    def _renew(self, now: float) -> None:
        hold = self._hold()
        for pending in self._pending.values():
            if pending.kind is not CommandKind.RUNG or pending.hold_until - now > hold / 2:
                continue
            agent = pending.request.agent
            incident = self._monitor.incident(agent)
            if incident is None or incident.opened_at != pending.opened_at:
                continue  # that incident is over: a new one of the agent is not held
            pending.hold_until = now + hold
            self._monitor.defer(agent, pending.hold_until)

    def _hold(self) -> float:
        # Renewed at half of it, and the loop comes round at least once a tick.
        return max(HOLD, 4 * self.config.tick)

    def _longest_wait(self) -> float:
        runs = list(self._pending.values())
        if not runs:
            return 0.0
        rounds = math.ceil(len(runs) / max(1, self.config.commands_parallel))
        return rounds * max(p.request.spec.timeout for p in runs) + RESULT_SLACK

    def _key(self, agent: str, incident: Incident | None, row_id: int | None) -> str:
        """HEALER_INCIDENT: the durable id, else a key stable for the incident's life."""
        if row_id is not None:
            return str(row_id)
        return f"{agent}@{iso(incident.opened_at)}" if incident is not None else ""

    def _request(
        self, spec: CommandSpec, agent: str, transition: Transition, attempt: int,
        silent_for: float, key: str,
    ) -> CommandRequest:
        root = self.config.workspaces.absolute()
        return CommandRequest(spec, agent, str(root / agent) if agent else "", str(root),
                              transition.value, attempt, silent_for, key)


def _not_run(request: CommandRequest, now: float) -> CommandResult:
    return CommandResult(request, ok=False, exit_code=None, duration=0.0,
                         error="not run: no command runner here", ended_at=now)
