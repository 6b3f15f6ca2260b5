"""The real daemon, real inotify and real files through wall-clock steps (SPEC §14 "Time"):
its wall clock steps by +1 h, -1 h or -10 s (tests/integration/steppedclock), the writers
stamp their files by the stepped clock, as the kernel would. Healthy agents are never
flagged; an agent that stopped before or after the step is flagged on time."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import make_agent
from tests.integration.daemon import running_daemon, watch_args

pytestmark = pytest.mark.integration

HEAL, TICK = 1.5, 0.05
PACE = 0.2  # how often a healthy agent writes
LATE = 1.0  # detection may trail heal_after by a tick plus a loaded machine's scheduling
HEALTHY = [f"Agent-{n}" for n in range(1, 6)]
STEPPED_CLOCK = Path(__file__).resolve().parent / "steppedclock"


class Writers:
    """One thread writing for every agent still in `writing`, each write's mtime set by
    the stepped wall clock; `stopped[agent]` is when (monotonic) it last wrote."""

    def __init__(self, root: Path, agents: list[str]) -> None:
        self.root = root
        self.offset = 0.0
        self.writing = set(agents)
        self.stopped: dict[str, float] = {}
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self._done.wait(PACE):
            n += 1
            with self._lock:
                for agent in sorted(self.writing):
                    path = self.root / agent / "devlogs" / "work.md"
                    path.write_text(f"step {n}\n")
                    stamp = time.time() + self.offset
                    os.utime(path, (stamp, stamp))

    def stop(self, agent: str) -> None:
        with self._lock:
            self.writing.discard(agent)
            self.stopped[agent] = time.monotonic()

    @contextmanager
    def running(self) -> Iterator[Writers]:
        self._thread.start()
        try:
            yield self
        finally:
            self._done.set()
            self._thread.join(2)


@pytest.mark.parametrize("step", [3600.0, -3600.0, -10.0], ids=["+1h", "-1h", "-10s"])
def test_a_wall_clock_step_fires_no_stall_and_delays_none(tmp_path: Path, step: float) -> None:
    root = tmp_path / "ws"
    agents = [*HEALTHY, "Agent-8", "Agent-9"]
    for agent in agents:
        make_agent(root, agent)
    clock_file = tmp_path / "clock-offset"
    clock_file.write_text("0")
    env = {"PYTHONPATH": str(STEPPED_CLOCK), "STEPPED_CLOCK_FILE": str(clock_file)}
    writers = Writers(root, agents)
    with writers.running(), running_daemon(
        root, tmp_path, watch_args(HEAL, 60, TICK), env=env
    ) as daemon:
        time.sleep(2 * PACE)
        writers.stop("Agent-9")  # stops before the step
        time.sleep(0.5)
        writers.offset = step
        clock_file.write_text(str(step))
        daemon.wait_event("wall_clock_stepped", timeout=5)
        time.sleep(0.3)
        writers.stop("Agent-8")  # stops after it
        found = {
            agent: (daemon.wait_event("stall_detected", timeout=HEAL + 5, agent=agent),
                    time.monotonic())
            for agent in ("Agent-9", "Agent-8")
        }
        time.sleep(HEAL)  # the healthy ones go on through several thresholds
        stalls = daemon.events("stall_detected")
    assert {s["agent"] for s in stalls} == {"Agent-8", "Agent-9"}
    for agent, (line, seen) in found.items():
        assert line["silent_for"] == pytest.approx(HEAL, abs=TICK + 0.3), agent
        waited = seen - writers.stopped[agent]
        assert HEAL - PACE <= waited <= HEAL + LATE, (agent, waited)
