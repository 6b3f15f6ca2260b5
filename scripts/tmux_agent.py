"""The demo's agent in a real tmux pane: works (status.json, devlog), then hangs reading
its terminal, as a coding agent does at a prompt, until a line is typed into the pane
(healer's `nudge` rung); then it works on. Stdlib only. See --help."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from _agentio import append_devlog, ensure_agent, initial_status, local_stamp, update_status

__all__ = ["build_parser", "main"]

_MISSION = "Interactive session in a tmux pane, answering its own prompts"
_TASKS = ["Rebase the feature branch onto main", "Answer the reviewer's questions"]


class PaneAgent:
    """One agent's folder and the lines it logs (to `log`, which the demo echoes)."""

    def __init__(self, root: Path, agent_id: str, log: Path | None) -> None:
        self.agent_id = agent_id
        self.folder = ensure_agent(root, agent_id)
        self._log = log
        self._devlog = f"{datetime.now().strftime('%Y-%m-%d')}_{agent_id}_session.md"

    def say(self, message: str) -> None:
        line = f"{self.agent_id} {message}"
        print(line, flush=True)  # the pane itself, for whoever attaches to it
        if self._log is not None:
            with open(self._log, "a", encoding="utf-8") as out:
                out.write(line + "\n")

    def write(self, phase: str, note: str) -> None:
        def apply(data: dict[str, Any]) -> None:
            data["status"] = "ACTIVE_AGENT_MODE"
            data["current_phase"] = phase
            data["last_updated"] = local_stamp()
            count = data.get("cycle_count")
            data["cycle_count"] = count + 1 if isinstance(count, int) else 1

        update_status(self.folder, apply, initial_status(self.agent_id, _MISSION, _TASKS))
        append_devlog(self.folder, self._devlog, f"- {local_stamp()} {note}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tmux_agent.py",
        description="An agent that hangs on its terminal until a line is typed into it.")
    parser.add_argument("--workspaces", type=Path, required=True, help="workspace root")
    parser.add_argument("--agent", default="Agent-9", help="its folder name (Agent-9)")
    parser.add_argument("--interval", type=float, default=2.0, help="write period (2 s)")
    parser.add_argument("--stall-after", type=float, default=25.0,
                        help="when it hangs reading its terminal (25 s)")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="time scale; its durations are divided by it (1.0)")
    parser.add_argument("--log", type=Path, default=None,
                        help="also append its log lines to this file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not (args.interval > 0 and args.stall_after > 0 and args.speed > 0):
        print("tmux_agent.py: --interval, --stall-after and --speed must be positive",
              file=sys.stderr)
        return 2
    agent = PaneAgent(args.workspaces, args.agent, args.log)
    interval = args.interval / args.speed
    stall_at = time.monotonic() + args.stall_after / args.speed
    agent.write("TASK_EXECUTION", "session started in a tmux pane")
    hung = False
    try:
        while True:
            time.sleep(interval)
            if not hung and time.monotonic() >= stall_at:
                hung = True
                agent.say("waits at its terminal prompt (tmux pane), writes nothing")
                line = input("continue? ")
                agent.say(f"got {line.strip()!r} typed into its pane, working again")
                agent.write("TASK_EXECUTION", f"resumed: {line.strip()!r} typed at the prompt")
                continue
            agent.write("TASK_EXECUTION", "progress on current tasks")
    except (EOFError, KeyboardInterrupt):  # the pane closed or the demo stopped
        return 0


if __name__ == "__main__":
    sys.exit(main())
