"""`make run`: healer watching the workspace while a simulated swarm works in it, with
short demo thresholds so detection, healing, recovery, reassignment, escalation and an
agent waiting on a human all show within a minute. Ctrl-C stops both. See --help."""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO

from _demo_tmux import TmuxActor, tmux_available

__all__ = ["build_parser", "main"]

REPO = Path(__file__).resolve().parents[1]
SIMULATOR = REPO / "scripts" / "simulate_swarm.py"
TRANSITIONS = ("stall_detected", "heal_action", "agent_recovered", "recovery_action",
               "agent_escalated", "agent_waiting", "waiting_alert", "agent_waiting_over")
# A child that got the terminal's Ctrl-C stops by itself; only one that did not (the
# demo alone was signalled) needs telling, and SIGKILL is the last resort for a hang.
_GRACE = 1.0
_KILL_AFTER = 5.0
_FIRST_WRITE_WAIT = 5.0

_CAST = """\
  The cast (scripts/simulate_swarm.py):
    Agent-2  stalls; wakes up when healer's rescue message reaches its inbox
    Agent-3  waits on a human (healer beat --state waiting): never healed, one
             waiting alert; 30 s later it gets its answer and works again
    Agent-4  stalls for good: every rung, tasks reassigned, escalated
    Agent-5  stalls and comes back on its own
    Agent-6  takes a 40 s job under a busy_until lease: no healing before it ends
    others   stay healthy"""
_TMUX_CAST = """\
    {agent}  runs in a real tmux pane (private -L socket); at 25 s it hangs at its
             terminal prompt; healer's nudge rung types `continue` into the pane"""
_NO_TMUX = "    (tmux is not installed: the agent in a tmux pane is skipped)"


def _stamp() -> str:
    return datetime.now(UTC).strftime("%H:%M:%S")


def _agents(root: Path) -> list[str]:
    try:
        return sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("Agent-"))
    except OSError:
        return []


def _production_thresholds(config: Path) -> tuple[float, float]:
    # What the config file says; the demo's flags override it only for this run.
    try:
        from healer.config import load_config

        loaded = load_config(config, env={})
        return loaded.heal_after, loaded.recover_after
    except Exception:  # the banner must not stop the demo; healer reports a bad config
        return 120.0, 300.0


def _healer_cmd(args: argparse.Namespace) -> str:
    default = args.workspaces.resolve() == (REPO / "agent_workspaces").resolve()
    return ".venv/bin/healer" + ("" if default else f" --workspaces {args.workspaces}")


def _banner(args: argparse.Namespace, reused: bool, pane_agent: str | None) -> str:
    heal, recover = _production_thresholds(args.config)
    how = "existing, reused" if reused else "seeded just now"
    return "\n".join([
        f"healer demo: a simulated swarm in {args.workspaces}/ ({how})",
        "",
        f"  DEMO THRESHOLDS: heal after {args.heal_after:g} s, recover after "
        f"{args.recover_after:g} s, tick {args.tick:g} s,",
        f"  a waiting agent alerted after {args.waiting_alert_after:g} s",
        f"  (production defaults: {heal:g} s / {recover:g} s, from {args.config})",
        "",
        _CAST,
        _TMUX_CAST.format(agent=pane_agent) if pane_agent else _NO_TMUX,
        "",
        "  Watch for: stall_detected, heal_action, agent_recovered,",
        "             recovery_action (reassign_tasks), agent_escalated,",
        "             agent_waiting, waiting_alert, agent_waiting_over",
        f"  Second terminal: {_healer_cmd(args)} status --watch",
        "  Ctrl-C stops both.",
        "",
    ])


def _demo_config(config: Path, waiting_alert_after: float, folder: Path,
                 nudge: dict[str, object] | None) -> Path:
    """The config file with the demo's `healer.waiting_alert_after` (no flag sets it) and,
    given one, the `nudge` command first in the ladder, in `folder`; the file itself when
    it cannot be read (healer then says why)."""
    try:
        import yaml

        from healer.config import load_config

        doc = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
        if not isinstance(doc, dict):
            return config
        section = doc.get("healer")
        extra: dict[str, object] = {"waiting_alert_after": f"{waiting_alert_after:g}s"}
        if nudge is not None:
            # Only the pane's agent has a window: for the others the nudge fails and
            # the config's own ladder goes on at the next attempt.
            extra["commands"] = {**((section or {}).get("commands") or {}), "nudge": nudge}
            # One attempt more, so every built-in rung still runs after the nudge.
            base = load_config(config, env={})
            extra["ladder"] = ["nudge", *(str(getattr(rung, "value", rung))
                                          for rung in base.ladder)]
            night = doc.get("overnight") if isinstance(doc.get("overnight"), dict) else {}
            healing = night.get("self_healing") if isinstance(night.get("self_healing"),
                                                               dict) else {}
            doc["overnight"] = {**night, "self_healing": {
                **healing, "max_attempts": base.max_attempts + 1}}
        doc["healer"] = {**(section if isinstance(section, dict) else {}), **extra}
    except Exception:  # the demo must not fail where healer would explain
        return config
    derived = folder / config.name
    derived.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return derived


def _echo(out: IO[str], colors: bool, message: str) -> None:
    line = f"{_stamp()} SIM {message}"
    out.write(f"\x1b[2m{line}\x1b[0m\n" if colors else line + "\n")
    out.flush()


def _echo_swarm(stream: IO[str], out: IO[str], colors: bool) -> None:
    """Re-print the simulator's log lines, tagged, so cause and effect read in one column."""
    for raw in stream:
        # The simulator prefixes its local asctime; the console speaks UTC.
        parts = raw.rstrip("\n").split(" ", 2)
        _echo(out, colors,
              parts[2] if len(parts) == 3 and parts[0][:2].isdigit() else raw.rstrip("\n"))


def _wait_first_writes(root: Path, since: float, sim: subprocess.Popen[str],
                       stop: threading.Event) -> None:
    """Start healer only once every agent has written, so a stale seed is not a stall."""
    deadline = time.monotonic() + _FIRST_WRITE_WAIT
    while time.monotonic() < deadline and sim.poll() is None and not stop.is_set():
        agents = _agents(root)
        try:
            if agents and all((root / a / "status.json").stat().st_mtime >= since
                              for a in agents):
                return
        except OSError:
            pass
        time.sleep(0.05)


def _stop(children: list[subprocess.Popen[str]], signalled: bool) -> None:
    alive = [c for c in children if c.poll() is None]
    if signalled:
        deadline = time.monotonic() + _GRACE
        while alive and time.monotonic() < deadline:
            time.sleep(0.05)
            alive = [c for c in alive if c.poll() is None]
    for child in alive:
        child.send_signal(signal.SIGTERM)
    for child in alive:
        try:
            child.wait(timeout=_KILL_AFTER)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _start_actor(actor: TmuxActor | None, colors: bool) -> TmuxActor | None:
    """Start the tmux-pane agent; None (with one printed line) when it cannot start."""
    if actor is None:
        return None
    why = actor.start(lambda line: _echo(sys.stderr, colors, line))
    if why is not None:
        print(f"demo: the agent in a tmux pane is skipped: {why}", flush=True)
        return None
    _echo(sys.stderr, colors, f"{actor.agent} started in tmux -L {actor.socket} "
          f"(TMUX_TMPDIR={actor.env['TMUX_TMPDIR']}), window {actor.agent}")
    return actor


def _supervise(children: list[subprocess.Popen[str]], stop: threading.Event,
               duration: float | None) -> int:
    """Wait for a signal, a child's exit or the end of `duration`; the exit code."""
    deadline = math.inf if duration is None else time.monotonic() + duration
    while not stop.wait(0.1):
        exited = [c for c in children if c.poll() is not None]
        if exited:
            return exited[0].returncode or 0
        if time.monotonic() >= deadline:
            break
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="demo.py", description="Run healer beside a simulated swarm with demo thresholds.")
    parser.add_argument("--workspaces", type=Path, default=Path("agent_workspaces"),
                        help="workspace root; seeded if it holds no agents (agent_workspaces)")
    parser.add_argument("--config", type=Path, default=Path("config/orchestration.yml"),
                        help="healer's config file (config/orchestration.yml)")
    parser.add_argument("--heal-after", type=float, default=5.0, help="demo heal_after (5 s)")
    parser.add_argument("--recover-after", type=float, default=15.0,
                        help="demo recover_after (15 s)")
    parser.add_argument("--tick", type=float, default=0.25, help="demo tick (0.25 s)")
    parser.add_argument("--waiting-alert-after", type=float, default=10.0,
                        help="demo waiting_alert_after (10 s)")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="simulator time scale; its durations are divided by it (1.0)")
    parser.add_argument("--agents", type=int, default=8,
                        help="simulated agents (8); the tmux pane's agent comes after them")
    parser.add_argument("--no-tmux", action="store_true",
                        help="leave out the agent in a tmux pane")
    parser.add_argument("--log-format", choices=("console", "json"), default="console")
    parser.add_argument("--duration", type=float, default=None,
                        help="stop after this many seconds (default: until Ctrl-C)")
    parser.add_argument("--no-banner", action="store_true", help="skip the banner")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    root: Path = args.workspaces
    python = sys.executable
    reused = bool(_agents(root))
    if not reused:
        seed = [python, str(SIMULATOR), "--workspaces", str(root), "--once",
                "--agents", str(args.agents)]
        if subprocess.run(seed, check=False).returncode != 0:
            return 2
    pane_agent = None if args.no_tmux or not tmux_available() else f"Agent-{args.agents + 1}"
    if not args.no_banner:
        print(_banner(args, reused, pane_agent), flush=True)
    elif pane_agent is None and not args.no_tmux:
        print(_NO_TMUX.strip(), flush=True)

    stop = threading.Event()
    signalled: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        signalled.append(signum)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)

    colors = args.log_format == "console" and sys.stderr.isatty()
    since = math.floor(time.time())
    children: list[subprocess.Popen[str]] = []
    echo: threading.Thread | None = None
    scratch = Path(tempfile.mkdtemp(prefix="healer-demo-"))
    actor = None if pane_agent is None else TmuxActor(root, pane_agent, scratch, args.speed)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        # The pane and the config come first: the swarm's clock starts with its process,
        # and healer must be watching before the first stall.
        actor = _start_actor(actor, colors)
        if actor is not None:
            env = {**actor.env, "PYTHONUNBUFFERED": "1"}
        config = _demo_config(args.config, args.waiting_alert_after, scratch,
                              None if actor is None else actor.nudge())
        sim = subprocess.Popen(
            [python, str(SIMULATOR), "--workspaces", str(root), "--agents", str(args.agents),
             "--speed", str(args.speed)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, bufsize=1)
        children.append(sim)
        assert sim.stderr is not None
        echo = threading.Thread(target=_echo_swarm, args=(sim.stderr, sys.stderr, colors),
                                daemon=True)
        echo.start()
        _wait_first_writes(root, since, sim, stop)
        if not stop.is_set() and sim.poll() is None:
            healer = subprocess.Popen(
                [python, "-m", "healer", "--config", str(config),
                 "--workspaces", str(root), "--log-format", args.log_format, "watch",
                 "--heal-after", str(args.heal_after), "--recover-after",
                 str(args.recover_after), "--tick", str(args.tick)],
                stdin=subprocess.DEVNULL, env=env, text=True)
            children.insert(0, healer)
        code = _supervise(children, stop, args.duration)
    finally:
        _stop(children, bool(signalled))
        if actor is not None:
            actor.stop()
        if echo is not None:
            echo.join(timeout=1.0)
        shutil.rmtree(scratch, ignore_errors=True)
    if not args.no_banner:
        print(f"\ndemo stopped; {root}/ is kept and make run reuses it.\n"
              f"History: {_healer_cmd(args)} stats", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
