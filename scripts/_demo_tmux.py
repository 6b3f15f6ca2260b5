"""The demo's tmux actor: a private tmux server (`-L` socket under a scratch folder), one
pane running scripts/tmux_agent.py, and the `nudge` command that types into that pane."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["SESSION", "TmuxActor", "tmux_available"]

AGENT_SCRIPT = Path(__file__).resolve().parent / "tmux_agent.py"
SESSION = "healer-demo"
# Staggered after the simulator's stalls (10 s) so its incident stands alone.
STALL_AFTER = 25.0
_TIMEOUT = 10.0


def tmux_available() -> bool:
    """Whether a tmux binary is on PATH."""
    return shutil.which("tmux") is not None


class TmuxActor:
    """Starts, echoes and kills the tmux-pane agent; `env` is what tmux and healer need."""

    def __init__(self, root: Path, agent: str, scratch: Path, speed: float) -> None:
        self.root, self.agent, self.speed = root, agent, speed
        self.socket = f"healer-demo-{os.getpid()}"
        self.log = scratch / "tmux_agent.log"
        # TMUX names the caller's own server; the demo's server is only ever the -L one.
        self.env = {k: v for k, v in os.environ.items() if k != "TMUX"}
        self.env["TMUX_TMPDIR"] = str(scratch)
        self._stop = threading.Event()
        self._tail: threading.Thread | None = None

    def tmux(self) -> list[str]:
        return ["tmux", "-L", self.socket]

    def nudge(self) -> dict[str, object]:
        """The `healer.commands.nudge` entry: type `continue` + Enter into the agent's pane."""
        return {"run": [*self.tmux(), "send-keys", "-t", f"{SESSION}:{{agent}}",
                        "continue", "Enter"], "timeout": "10s"}

    def start(self, echo: Callable[[str], None]) -> str | None:
        """Start the server and the pane; None on success, else why not."""
        self.log.touch()
        command = [*self.tmux(), "new-session", "-d", "-s", SESSION, "-n", self.agent,
                   "-x", "120", "-y", "30", sys.executable, str(AGENT_SCRIPT),
                   "--workspaces", str(self.root.resolve()), "--agent", self.agent,
                   "--stall-after", f"{STALL_AFTER:g}", "--speed", f"{self.speed:g}",
                   "--log", str(self.log)]
        try:
            done = subprocess.run(command, env=self.env, capture_output=True, text=True,
                                  timeout=_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return str(exc)
        if done.returncode != 0:
            return done.stderr.strip() or f"tmux exited {done.returncode}"
        self._tail = threading.Thread(target=self._follow, args=(echo,), daemon=True)
        self._tail.start()
        return None

    def stop(self) -> None:
        """Kill the demo's tmux server (and so the pane's agent): nothing is left running."""
        self._stop.set()
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run([*self.tmux(), "kill-server"], env=self.env, capture_output=True,
                           timeout=_TIMEOUT, check=False)
        if self._tail is not None:
            self._tail.join(timeout=1.0)

    def _follow(self, echo: Callable[[str], None]) -> None:
        with open(self.log, encoding="utf-8") as lines:
            while not self._stop.is_set():
                line = lines.readline()
                if line:
                    echo(line.rstrip("\n"))
                else:
                    time.sleep(0.05)
