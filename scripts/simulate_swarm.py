"""A simulated agent swarm writing into a workspace the way the real agents do.

Roles by agent number: 2 recovers when nudged, 3 waits on a human (says so with `healer
beat`), 4 never recovers, 5 recovers on its own, 6 takes a long job under a busy lease;
every other agent is healthy. See --help.
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _agentio import (
    COMPLETED_PREFIX,
    append_devlog,
    consume_message,
    drop_message,
    ensure_agent,
    initial_status,
    local_stamp,
    pending_messages,
    read_status,
    rescue_messages,
    update_status,
    write_status,
)

__all__ = ["ROLES", "SimAgent", "Swarm", "Timings", "main", "role_for"]

log = logging.getLogger("simulate_swarm")

HEALTHY, NUDGE, DEAD, SELF, BUSY, WAIT = "healthy", "nudge", "dead", "self", "busy", "wait"
ROLES = {
    HEALTHY: "writes status.json every few seconds, appends devlogs, consumes its inbox",
    NUDGE: "stalls at --stall-after; resumes --nudge-delay after a new HEALER_RESCUE_*.md "
    "appears in its inbox (moves it to inbox/processed/, writes status.json)",
    DEAD: "stalls at --stall-after and never writes again",
    SELF: "stalls at --stall-after, comes back on its own after --self-silence",
    BUSY: "at --stall-after writes busy_until = now + --lease, stays quiet until then, resumes",
    WAIT: "at --stall-after asks a human (`healer beat --state waiting`), writes nothing "
    "for --wait-for, then gets its answer (`healer beat`) and resumes",
}
# Fixed by agent number so a demo always shows the same cast.
_SPECIAL_ROLES = {2: NUDGE, 3: WAIT, 4: DEAD, 5: SELF, 6: BUSY}
# What the waiting agent asks; a permission prompt is what real agents wait on most.
_QUESTION = "approve: git push --force origin main?"
_BEAT_TIMEOUT = 10.0
_POLL = 0.05  # how often a stalled agent looks at its inbox, in wall seconds
_MAX_TASK_LINES = 12

_MISSIONS = [
    "SSOT consolidation: merge duplicate services into the unified core",
    "Test coverage push: raise coverage on the messaging and status modules",
    "V2 compliance refactor: split oversized modules below 300 lines",
    "Repository cleanup ahead of the public audit",
    "Discord devlog automation and swarm coordination",
    "Dashboard metrics pipeline for the captain's weekly report",
]
_TASKS = [
    "Refactor messaging_core.py into smaller modules",
    "Add tests for status_reader edge cases",
    "Review Agent-{peer} PR for the unified config loader",
    "Consolidate duplicate logging helpers",
    "Update devlog index and post summary to Discord",
    "Verify CI pipeline after dependency bump",
    "Document the inbox message format",
    "Fix flaky integration test in the queue processor",
    "Migrate tools/ scripts to the unified CLI",
    "Audit orchestration.yml for stale keys",
]


def role_for(number: int) -> str:
    """The role of Agent-<number>."""
    return _SPECIAL_ROLES.get(number, HEALTHY)


@dataclass(frozen=True)
class Timings:
    """Simulated durations in seconds; `speed` divides every one of them."""

    interval: float = 2.0
    stall_after: float = 10.0
    self_silence: float = 12.0
    nudge_delay: float = 1.0
    lease: float = 40.0
    wait_for: float = 30.0
    speed: float = 1.0

    def wall(self, seconds: float) -> float:
        return seconds / self.speed


@dataclass
class SimAgent:
    """One agent's state machine; `step(now)` does whatever is due at `now` (sim-relative)."""

    agent_id: str
    folder: Path
    role: str
    timings: Timings
    rng: random.Random
    peers: list[str]
    send: Callable[[str, str, str], None]
    beat: Callable[[str, Sequence[str]], None] = lambda agent, args: None
    phase: str = "active"
    next_at: float = 0.0
    stall_at: float = math.inf
    resume_at: float = math.inf
    seen_rescues: set[str] = field(default_factory=set)
    writes: list[float] = field(default_factory=list)
    pending_tasks: list[str] = field(default_factory=list)
    polled_at: float = -math.inf
    cycles: int = 0

    def __post_init__(self) -> None:
        if self.role != HEALTHY:
            self.stall_at = self.timings.wall(self.timings.stall_after)

    def wake_at(self) -> float:
        if self.phase == "active":
            return min(self.next_at, self.stall_at)
        if self.phase == "stalled" and self.role == NUDGE:
            return self.polled_at + _POLL
        return self.resume_at

    def step(self, now: float) -> None:
        if self.phase == "active" and now >= self.stall_at:
            self._stall(now)
        if self.phase == "active" and now >= self.next_at:
            self._work(now)
        elif self.phase == "stalled" and self.role == NUDGE:
            self._look_for_rescue(now)
        elif self.phase in ("stalled", "waking", "busy", "waiting") and now >= self.resume_at:
            self._resume(now)

    def _stall(self, now: float) -> None:
        self.stall_at = math.inf
        if self.role == BUSY:
            self.phase = "busy"
            lease = self.timings.wall(self.timings.lease)
            self.resume_at = now + lease
            until = datetime.fromtimestamp(time.time() + lease, UTC)
            self._write(now, phase="LONG_RUNNING_OPERATION",
                        extra={"busy_until": until.isoformat(timespec="seconds")})
            log.info("%s busy until %s (long job)", self.agent_id, until.isoformat())
            return
        if self.role == WAIT:
            self.phase = "waiting"
            self.resume_at = now + self.timings.wall(self.timings.wait_for)
            self.beat(self.agent_id, ["--state", "waiting", "--message", _QUESTION])
            log.info("%s waits on a human (healer beat --state waiting)", self.agent_id)
            return
        self.phase = "stalled"
        if self.role == SELF:
            self.resume_at = now + self.timings.wall(self.timings.self_silence)
        elif self.role == NUDGE:
            self.seen_rescues = {p.name for p in rescue_messages(self.folder)}
        log.info("%s stalled (%s)", self.agent_id, self.role)

    def _look_for_rescue(self, now: float) -> None:
        self.polled_at = now
        fresh = [p for p in rescue_messages(self.folder) if p.name not in self.seen_rescues]
        if fresh:
            self.phase = "waking"
            self.resume_at = now + self.timings.wall(self.timings.nudge_delay)
            log.info("%s got %s, waking up", self.agent_id, fresh[0].name)

    def _resume(self, now: float) -> None:
        if self.phase == "waiting":
            self.beat(self.agent_id, [])  # working: the human answered
            log.info("%s got its answer, working again (healer beat)", self.agent_id)
        self.phase = "active"
        self.resume_at = math.inf
        consumed = [m.name for m in pending_messages(self.folder)
                    if consume_message(self.folder, m) is not None]

        def resumed(data: dict[str, Any]) -> None:
            data.pop("busy_until", None)
            moved = (data.get("healer") or {}).get("reassigned_tasks") or []
            # healer handed these to someone else; doing them twice would be waste
            tasks = data.get("current_tasks")
            if isinstance(tasks, list) and moved:
                data["current_tasks"] = [t for t in tasks if t not in moved]

        self._write(now, phase="TASK_EXECUTION", mutate=resumed)
        append_devlog(self.folder, self._devlog_name(),
                      f"- {local_stamp()} resumed after {self.role} pause; "
                      f"consumed {len(consumed)} message(s)")
        log.info("%s resumed (%s)", self.agent_id, self.role)
        self._schedule(now)

    def _work(self, now: float) -> None:
        self.cycles += 1
        for message in pending_messages(self.folder):
            if consume_message(self.folder, message) is not None:
                self.pending_tasks.append(f"Follow up on inbox message {message.stem}")

        def progress(data: dict[str, Any]) -> None:
            tasks = data.get("current_tasks")
            tasks = tasks if isinstance(tasks, list) else []
            open_idx = [i for i, t in enumerate(tasks)
                        if isinstance(t, str) and not t.startswith(("✅", COMPLETED_PREFIX))]
            if open_idx and self.rng.random() < 0.35:
                i = open_idx[0]
                done = data.get("completed_tasks")
                data["completed_tasks"] = [*(done if isinstance(done, list) else []), tasks[i]]
                tasks[i] = COMPLETED_PREFIX + tasks[i]
            if len(open_idx) < 3 or self.rng.random() < 0.2:
                tasks.append(self._new_task())
            while len(tasks) > _MAX_TASK_LINES:
                done_idx = next((i for i, t in enumerate(tasks)
                                 if isinstance(t, str) and t.startswith(COMPLETED_PREFIX)), 0)
                tasks.pop(done_idx)
            data["current_tasks"] = tasks

        self._write(now, phase="TASK_EXECUTION", mutate=progress)
        if self.cycles % 3 == 1:
            append_devlog(self.folder, self._devlog_name(),
                          f"- {local_stamp()} cycle {self.cycles}: progress on current tasks")
        if self.peers and self.rng.random() < 0.15:
            peer = self.rng.choice(self.peers)
            self.send(peer, self.agent_id, f"Coordination ping from {self.agent_id}: "
                      f"please review cycle {self.cycles} handoff.")
        self._schedule(now)

    def _schedule(self, now: float) -> None:
        jitter = self.rng.uniform(0.5, 1.5)
        self.next_at = now + self.timings.wall(self.timings.interval) * jitter

    def _new_task(self) -> str:
        peer = self.rng.choice(self.peers) if self.peers else self.agent_id
        return self.rng.choice(_TASKS).replace("Agent-{peer}", peer)

    def _write(self, now: float, phase: str, extra: dict[str, Any] | None = None,
               mutate: Callable[[dict[str, Any]], None] | None = None) -> None:
        fallback = initial_status(self.agent_id, _MISSIONS[0], [])

        def apply(data: dict[str, Any]) -> None:
            data.setdefault("agent_id", self.agent_id)
            data["status"] = "ACTIVE_AGENT_MODE"
            data["current_phase"] = phase
            data["last_updated"] = local_stamp()
            count = data.get("cycle_count")
            data["cycle_count"] = count + 1 if isinstance(count, int) else 1
            if self.pending_tasks:
                tasks = data.get("current_tasks")
                data["current_tasks"] = [*(tasks if isinstance(tasks, list) else []),
                                         *self.pending_tasks]
                self.pending_tasks = []
            if mutate is not None:
                mutate(data)
            data.update(extra or {})

        update_status(self.folder, apply, fallback)
        self.writes.append(now)

    def _devlog_name(self) -> str:
        return f"{datetime.now().strftime('%Y-%m-%d')}_{self.agent_id}_session.md"


class Swarm:
    """The whole cast; `step()` runs what is due and says how long to wait for more."""

    def __init__(self, root: Path, agents: int, seed: int, timings: Timings,
                 clock: Callable[[], float] = time.monotonic,
                 healer: Sequence[str] | None = None) -> None:
        self.root = root
        self.timings = timings
        self._clock = clock
        self._t0 = clock()
        self._messages = 0
        # How the waiting agent runs `healer beat` (None: it only pretends, for tests).
        self._healer = list(healer) if healer is not None else None
        ids = [f"Agent-{n}" for n in range(1, agents + 1)]
        self.agents: dict[str, SimAgent] = {}
        for number, agent_id in enumerate(ids, start=1):
            self.agents[agent_id] = SimAgent(
                agent_id=agent_id, folder=root / agent_id, role=role_for(number),
                timings=timings, rng=random.Random(f"{seed}:{agent_id}"),
                peers=[a for a in ids if a != agent_id], send=self._send, beat=self._beat)

    def now(self) -> float:
        return self._clock() - self._t0

    def seed_state(self, fresh: bool) -> None:
        """Create missing folders; write status.json where missing (or everywhere if fresh)."""
        self.root.mkdir(parents=True, exist_ok=True)
        for number, (agent_id, agent) in enumerate(self.agents.items(), start=1):
            ensure_agent(self.root, agent_id)
            if fresh or read_status(agent.folder) is None:
                tasks = [agent._new_task() for _ in range(3)]
                tasks.insert(1, COMPLETED_PREFIX + "Onboarding checklist")
                mission = _MISSIONS[(number - 1) % len(_MISSIONS)]
                write_status(agent.folder, initial_status(agent_id, mission, tasks))
                append_devlog(agent.folder, agent._devlog_name(),
                              f"# {agent_id} session log\n- {local_stamp()} session started")

    def step(self) -> float:
        now = self.now()
        for agent in self.agents.values():
            if agent.wake_at() <= now:
                agent.step(now)
        upcoming = min(a.wake_at() for a in self.agents.values())
        return max(0.0, min(_POLL, upcoming - self.now()))

    def run(self, stop: threading.Event, duration: float | None = None) -> None:
        deadline = math.inf if duration is None else self.now() + duration
        while not stop.is_set() and self.now() < deadline:
            wait = self.step()
            stop.wait(min(wait, max(0.0, deadline - self.now())))

    def _beat(self, agent: str, args: Sequence[str]) -> None:
        """`healer beat AGENT ARGS`, as an agent's hook runs it."""
        if self._healer is None:
            return
        command = [*self._healer, "--workspaces", str(self.root), "beat", agent, *args]
        try:
            done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, timeout=_BEAT_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("%s: healer beat did not run: %s", agent, exc)
            return
        if done.returncode != 0:
            log.warning("%s: healer beat exited %d: %s", agent, done.returncode,
                        done.stderr.strip())

    def _send(self, to: str, sender: str, body: str) -> None:
        self._messages += 1
        stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
        name = f"A2A_{sender.upper().replace('-', '')}_{stamp}_{self._messages}.md"
        drop_message(self.root / to, name, sender, body)


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 10_000:
        raise argparse.ArgumentTypeError(f"must be between 1 and 10000, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    cast = "\n".join(f"  {name:8} {text}" for name, text in ROLES.items())
    parser = argparse.ArgumentParser(
        prog="simulate_swarm.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Simulate a swarm of agents writing into a workspace.",
        epilog=f"roles: Agent-2 nudge, Agent-3 wait, Agent-4 dead, Agent-5 self, "
               f"Agent-6 busy, all others healthy\n{cast}\n\nAll durations are divided by "
               f"--speed.")
    parser.add_argument("--workspaces", type=Path, required=True, help="workspace root")
    parser.add_argument("--agents", type=_count, default=6, help="number of agents (6)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (1)")
    parser.add_argument("--duration", type=_positive, default=None,
                        help="stop after this many wall seconds (default: until signalled)")
    parser.add_argument("--speed", type=_positive, default=1.0, help="time scale (1.0)")
    parser.add_argument("--interval", type=_positive, default=2.0,
                        help="healthy write period, jittered x0.5..1.5 (2 s)")
    parser.add_argument("--stall-after", type=_positive, default=10.0,
                        help="when the stalling roles go quiet (10 s)")
    parser.add_argument("--self-silence", type=_positive, default=12.0,
                        help="how long the self-recovering agent stays quiet (12 s)")
    parser.add_argument("--nudge-delay", type=_positive, default=1.0,
                        help="delay between a rescue message and the nudged agent's write (1 s)")
    parser.add_argument("--lease", type=_positive, default=40.0,
                        help="length of the busy agent's long job (40 s)")
    parser.add_argument("--wait-for", type=_positive, default=30.0,
                        help="how long the waiting agent waits for its human (30 s)")
    parser.add_argument("--healer", default=None,
                        help="the healer command the waiting agent beats with "
                        "(default: this Python's -m healer)")
    parser.add_argument("--once", action="store_true",
                        help="write a fresh initial state for every agent and exit")
    parser.add_argument("--quiet", action="store_true", help="log warnings only")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse reports usage errors by exiting with 2
        return int(exc.code or 0)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(message)s", stream=sys.stderr)
    timings = Timings(interval=args.interval, stall_after=args.stall_after,
                      self_silence=args.self_silence, nudge_delay=args.nudge_delay,
                      lease=args.lease, wait_for=args.wait_for, speed=args.speed)
    healer = args.healer.split() if args.healer else [sys.executable, "-m", "healer"]
    swarm = Swarm(args.workspaces, args.agents, args.seed, timings, healer=healer)
    try:
        swarm.seed_state(fresh=args.once)
    except OSError as exc:
        print(f"simulate_swarm.py: cannot write {args.workspaces}: {exc}", file=sys.stderr)
        return 2
    if args.once:
        return 0
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        swarm.run(stop, args.duration)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
