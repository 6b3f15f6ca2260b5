"""Soaks (`make soak`, not `make test`): 10,000 agents under a flooding writer within the
memory bound, and the inotify watch limit reached at start (polling takes over)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.integration.daemon import DaemonProcess, at, running_daemon, watch_args

pytestmark = pytest.mark.soak

AGENTS = int(os.environ.get("SOAK_AGENTS", "10000"))
SECONDS = float(os.environ.get("SOAK_SECONDS", "120"))
RSS_BOUND_MB = 120.0  # the daemon's resident memory at 10,000 agents, flood included
QUIET_HEAL = 15.0  # the quiet agent's own heal_after; everyone else's is an hour
TICK = 0.5
SLACK = 2 * TICK + 1.0  # detection lands within a tick; the rest is a loaded 2-core box
MAX_WATCHES = Path("/proc/sys/fs/inotify/max_user_watches")


def name(i: int) -> str:
    return f"Agent-{i:05d}"


def build(root: Path, count: int) -> None:
    for i in range(count):
        folder = root / name(i)
        (folder / "devlogs").mkdir(parents=True)
        (folder / "inbox").mkdir()
        (folder / "status.json").write_text(f'{{"agent_id": "{name(i)}", "current_tasks": []}}')


def config_text(quiet: str) -> str:
    return (f"healer:\n  agents:\n    {quiet}: {{heal_after: {QUIET_HEAL}, "
            f"recover_after: 3600}}\n")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@contextmanager
def flooding(path: Path) -> Iterator[list[int]]:
    """A thread rewriting one agent's devlog and status.json as fast as it can."""
    stop = threading.Event()
    writes = [0]

    def flood() -> None:
        while not stop.is_set():
            (path / "devlogs" / "flood.md").write_text(str(writes[0]))
            if writes[0] % 10 == 0:
                (path / "status.json").write_text(f'{{"n": {writes[0]}}}')
            writes[0] += 1

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    try:
        yield writes
    finally:
        stop.set()
        thread.join(5)


def quiet_cycles(daemon: DaemonProcess, quiet: Path, until: float) -> list[float]:
    """Touch the quiet agent, let it stall, measure each detection's lateness, repeat."""
    late: list[float] = []
    seen = 0
    while time.time() + QUIET_HEAL + SLACK < until:
        (quiet / "devlogs" / "note.md").write_text(str(time.time()))
        wrote = os.stat(quiet / "devlogs" / "note.md").st_mtime
        agent = quiet.name

        def fresh_stall(line: dict[str, object], agent: str = agent, n: int = seen) -> bool:
            return (line.get("event") == "stall_detected" and line.get("agent") == agent
                    and len(daemon.events("stall_detected", agent=agent)) > n)

        stall = daemon.wait_for(fresh_stall, QUIET_HEAL + 30, what="the quiet agent's stall")
        seen = len(daemon.events("stall_detected", agent=agent))
        late.append(at(stall) - (wrote + QUIET_HEAL))
    return late


class TestTenThousandAgents:
    def test_memory_bound_and_no_missed_stall_under_a_flood(self, tmp_path: Path) -> None:
        """10,000 agents, one writing flat out for SOAK_SECONDS: RSS stays under
        RSS_BOUND_MB, and the quiet agent's every stall is detected within SLACK."""
        root = tmp_path / "ws"
        build(root, AGENTS)
        quiet = root / name(AGENTS // 2)
        args = watch_args(3600.0, 7200.0, TICK)
        with running_daemon(root, tmp_path, args, config_text=config_text(quiet.name),
                            start_timeout=300) as daemon:
            peak = rss_mb(daemon.pid)
            sampling = threading.Event()

            def sample() -> None:
                nonlocal peak
                while not sampling.wait(0.5):
                    peak = max(peak, rss_mb(daemon.pid))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            with flooding(root / name(1)) as writes:
                late = quiet_cycles(daemon, quiet, time.time() + SECONDS)
            sampling.set()
            sampler.join(2)
        print(f"\n{AGENTS} agents, {writes[0]} flood writes: peak RSS {peak:.0f} MB, "
              f"stall detection late by at most {max(late, default=0):.2f} s")
        assert writes[0] > 10_000, "the flood did not flood"
        assert late and max(late) < SLACK, late
        assert peak < RSS_BOUND_MB, f"peak RSS {peak:.0f} MB"
        assert not daemon.events("stall_detected", agent=name(1))


@contextmanager
def watch_limit(value: int) -> Iterator[None]:
    """Lower the system-wide inotify watch limit; always restored."""
    try:
        old = MAX_WATCHES.read_text()
        MAX_WATCHES.write_text(str(value))
    except OSError as exc:
        pytest.skip(f"cannot set {MAX_WATCHES}: {exc}")
    try:
        yield
    finally:
        MAX_WATCHES.write_text(old)


class TestInotifyLimit:
    def test_polling_takes_over_and_keeps_working(self, tmp_path: Path) -> None:
        """Too few inotify watches for the tree: `inotify_unavailable` with fallback polling,
        then a new agent is still seen without waiting for the sweep, a busy agent never
        stalls and the quiet one's stall is on time. The limit is restored at once (it is
        system-wide)."""
        root = tmp_path / "ws"
        count = min(AGENTS, 2000)
        build(root, count)
        quiet = root / name(count // 2)
        with watch_limit(200):
            daemon_cm = running_daemon(root, tmp_path, watch_args(3600.0, 7200.0, TICK),
                                       config_text=config_text(quiet.name), start_timeout=300)
            daemon = daemon_cm.__enter__()
        try:
            started = daemon.events("watch_started")[0]
            assert started["polling"] is True
            assert daemon.events("inotify_unavailable")
            with flooding(root / name(1)):
                (root / "Agent-new").mkdir()
                daemon.wait_event("agent_added", timeout=10, agent="Agent-new")
                late = quiet_cycles(daemon, quiet, time.time() + max(40.0, SECONDS / 3))
            assert late and max(late) < SLACK + 1.0, late  # a poll pass adds up to a second
            assert not daemon.events("stall_detected", agent=name(1))
        except BaseException as exc:
            daemon_cm.__exit__(type(exc), exc, exc.__traceback__)
            raise
        daemon_cm.__exit__(None, None, None)

    def test_limit_reached_while_running_switches_to_polling(self, tmp_path: Path) -> None:
        """The limit reached after start (more folders than watches): the sweep's probe
        notices, logs `inotify_unavailable`, and polling sees new folders from then on."""
        root = tmp_path / "ws"
        build(root, 200)
        config = "overnight:\n  self_healing: {check_interval: 1}\n"
        with running_daemon(root, tmp_path, watch_args(3600.0, 7200.0, TICK),
                            config_text=config, start_timeout=120) as daemon:
            assert daemon.events("watch_started")[0]["polling"] is False
            with watch_limit(1):
                daemon.wait_event("inotify_unavailable", timeout=10)
            (root / "Agent-late").mkdir()
            added = daemon.wait_event("agent_added", timeout=5, agent="Agent-late")
            assert added
