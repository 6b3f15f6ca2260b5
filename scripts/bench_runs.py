"""The measurements behind `make bench`, one function per figure; each returns plain data
for results.json. Daemons run as real `healer watch` subprocesses, in --dry-run unless the
figure needs healer's writes (the replay)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import timeit
from pathlib import Path
from typing import Any

from bench_env import (
    BENCH,
    HEALER,
    Daemon,
    agent_names,
    build_workspace,
    hist_quantile,
    parse_stamp,
    percentile,
    touch_all,
)
from bench_load import burst, paced_writers, poll_cycle, poller_cost, staggered

__all__ = ["beat_wall", "check_wall", "core_cost", "detection", "event_cost", "footprint",
           "ingestion", "overflow", "poller", "replay_trace", "startup"]

IDLE_WINDOW = 31.0  # long enough for one sweep at the default check_interval of 30 s
FAR = 86400.0  # a threshold no agent reaches during an idle measurement


def _agent(path: str) -> str:
    return Path(path).parts[-3]


def _wait_until(wall: float) -> None:
    delay = wall - time.time()
    if delay > 0:
        time.sleep(delay)


def _first_stalls(daemon: Daemon) -> dict[str, float]:
    first: dict[str, float] = {}
    for record in daemon.events("stall_detected"):
        if record.get("pipeline") == "healing":
            first.setdefault(record["agent"], parse_stamp(record["timestamp"]))
    return first


def footprint(size: int) -> dict[str, Any]:
    """Start-up to watch_started, RSS and idle CPU, with 5 s sweeps and with the default."""
    root = build_workspace(size)
    fast = Daemon(root, heal_after=FAR, recover_after=2 * FAR, check_interval=5.0).start()
    slow = Daemon(root, heal_after=FAR, recover_after=2 * FAR, check_interval=30.0).start()
    try:
        t0, cpu_fast0, cpu_slow0 = time.monotonic(), fast.cpu(), slow.cpu()
        time.sleep(IDLE_WINDOW)
        elapsed = time.monotonic() - t0
        cpu_fast, cpu_slow = fast.cpu() - cpu_fast0, slow.cpu() - cpu_slow0
        sweeps = [d.scrape().get("healer_reconcile_sweeps_total", -1.0) for d in (fast, slow)]
        rss = max(fast.rss_mb(), slow.rss_mb())
    finally:
        fast.stop()
        slow.stop()
    return {
        "agents": size, "startup_s": fast.started, "startup_s_second_run": slow.started,
        "rss_mb": rss, "window_s": elapsed,
        "idle_cpu_pct_sweep5": 100 * cpu_fast / elapsed,
        "idle_cpu_pct_sweep30": 100 * cpu_slow / elapsed,
        "cpu_s_per_hour_sweep5": cpu_fast / elapsed * 3600,
        "cpu_s_per_hour_sweep30": cpu_slow / elapsed * 3600,
        "sweeps": {"check_interval_5": sweeps[0], "check_interval_30": sweeps[1]},
    }


def poller(size: int) -> dict[str, Any]:
    """The swarm's polling detector on the same workspace, measured in-process."""
    root = build_workspace(size)
    cost = poller_cost(root, agent_names(size))
    out: dict[str, Any] = {"agents": size, **cost}
    for interval in (30.0, 1.0):
        key = f"interval_{int(interval)}"
        out[key] = {
            # The stall crosses the threshold right after a check: found one interval later,
            # plus the time the next cycle takes to reach that agent (at worst all of it).
            "worst_lag_s": interval + cost["wall_per_cycle"],
            "cpu_s_per_hour": cost["cpu_per_cycle"] * 3600 / interval,
            "cpu_pct": 100 * min(1.0, cost["cpu_per_cycle"] / interval),
        }
    return out


def ingestion(size: int, rates: list[int], duration: float = 3.0,
              heal_after: float = 4.0, tick: float = 0.25) -> dict[str, Any]:
    """Writers append at each rate in turn; a rate passes when the writers reached it, the
    table reflected every agent's last write within 2 s, no queue overflowed, and no agent
    was declared stalled before heal_after past its last write."""
    root = build_workspace(size)
    paths = [str(root / a / "devlogs" / "bench.md") for a in agent_names(size)]
    steps: list[dict[str, Any]] = []
    latency: dict[str, Any] = {}
    for rate in rates:
        touch_all(root, size)
        with Daemon(root, heal_after=heal_after, tick=tick).start() as daemon:
            before = daemon.scrape()
            written, achieved, last = paced_writers(paths, rate, duration)
            stopped = time.time()
            behind: list[str] = []
            caught_up: float | None = None
            while True:
                table, at = daemon.table()
                behind = [p for p, t in last.items() if table.get(_agent(p), 0.0) < t]
                if not behind:
                    caught_up = at - stopped
                    break
                if time.time() > stopped + 2.0:
                    break
                time.sleep(0.05)
            after = daemon.scrape()
            if rate == 1000:
                p50, n = hist_quantile(before, after, "healer_event_lag_seconds", 0.50)
                p99, _ = hist_quantile(before, after, "healer_event_lag_seconds", 0.99)
                latency = {"rate": rate, "samples": n, "p50_ms": p50 and p50 * 1000,
                           "p99_ms": p99 and p99 * 1000}
            _wait_until(max(last.values()) + heal_after + tick + 1.0)
            first = _first_stalls(daemon)
            early = [p for p, t in last.items()
                     if _agent(p) in first and first[_agent(p)] < t + heal_after - 0.005]
            missing = [p for p in last if _agent(p) not in first]
            overflowed = bool(daemon.events("event_queue_overflow"))
            seen = after.get("healer_events_ingested_total", 0.0) - before.get(
                "healer_events_ingested_total", 0.0)
        ok = (achieved >= 0.95 * rate and not behind and not early and not missing
              and not overflowed)
        steps.append({"target": rate, "written": written, "achieved": round(achieved),
                      "events_seen": seen, "behind": len(behind), "caught_up_s": caught_up,
                      "early": len(early), "undetected": len(missing),
                      "overflow": overflowed, "ok": ok})
        if not ok:
            break
    best = max((s["target"] for s in steps if s["ok"]), default=0)
    return {"agents": size, "duration_s": duration, "steps": steps,
            "max_zero_loss_rate": best, "latency_1000": latency}


def event_cost(size: int = 1_000, rate: int = 5_000, duration: float = 10.0) -> dict[str, Any]:
    """Daemon CPU per inotify event it ingested while writers append at `rate` over `size`
    agents (the idle cost of the same window, measured first, is taken out)."""
    root = build_workspace(size)
    paths = [str(root / a / "devlogs" / "bench.md") for a in agent_names(size)]
    touch_all(root, size)
    with Daemon(root, heal_after=FAR, recover_after=2 * FAR, tick=0.5).start() as daemon:
        time.sleep(1.0)  # let start-up's tail (the metrics thread, first sweep) settle
        cpu0, t0 = daemon.cpu(), time.monotonic()
        time.sleep(duration / 2)
        idle_rate = (daemon.cpu() - cpu0) / (time.monotonic() - t0)
        before, cpu0, t0 = daemon.scrape(), daemon.cpu(), time.monotonic()
        written, achieved, _last = paced_writers(paths, rate, duration)
        time.sleep(0.5)  # the tail of the queue
        cpu, wall = daemon.cpu() - cpu0, time.monotonic() - t0
        after = daemon.scrape()
    seen = after.get("healer_events_ingested_total", 0.0) - before.get(
        "healer_events_ingested_total", 0.0)
    busy = max(0.0, cpu - idle_rate * wall)
    return {"agents": size, "rate": rate, "achieved": round(achieved), "written": written,
            "events": int(seen), "cpu_s": round(cpu, 3), "idle_cpu_s": round(idle_rate * wall, 3),
            "us_per_event": busy / seen * 1e6 if seen else None,
            "cpu_pct": 100 * cpu / wall}


def drop_caches() -> bool:
    """Empty the page, dentry and inode caches (root only): what a daemon meets at boot."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def startup(size: int) -> dict[str, Any]:
    """Spawn to watch_started (every folder watched) and to scan_finished (every agent's
    timer set) on a cold cache, then again warm; the poller's first cycle (it knows
    nothing before it) the same two ways."""
    root = build_workspace(size)
    out: dict[str, Any] = {"agents": size, "cold_cache": drop_caches()}
    for key in ("cold", "warm"):
        with Daemon(root, heal_after=FAR, recover_after=2 * FAR, metrics=False).start() as d:
            out[f"{key}_s"] = d.started  # watching: every folder, every event from here
            out[f"{key}_scanned_s"] = d.scanned  # every agent's timer set
    names = agent_names(size)
    for key in ("poller_cold_s", "poller_warm_s"):
        if key == "poller_cold_s" and not drop_caches():
            continue
        t0 = time.perf_counter()
        poll_cycle(root, names)
        out[key] = time.perf_counter() - t0
    return out


def beat_wall(runs: int = 20) -> dict[str, Any] | None:
    """`healer beat` wall time from scripts/bench_beat.py, when that script exists."""
    script = Path(__file__).resolve().parent / "bench_beat.py"
    if not script.is_file():
        return None
    done = subprocess.run([sys.executable, str(script), "--json", "--runs", str(runs)],
                          capture_output=True, text=True, check=False, cwd=BENCH)
    if done.returncode != 0:
        return {"error": (done.stderr or done.stdout).strip()[-300:]}
    try:
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": f"unreadable output: {done.stdout[-300:]!r}"}
    return result


def detection(size: int, heal_after: float, tick: float = 1.0,
              spread: float = 2.0) -> dict[str, Any]:
    """Each agent writes once, at staggered times, then stays silent: lag of stall_detected
    beyond mtime + heal_after."""
    root = build_workspace(size)
    paths = [str(root / a / "devlogs" / "bench.md") for a in agent_names(size)]
    touch_all(root, size)  # none silent at start
    with Daemon(root, heal_after=heal_after, tick=tick).start() as daemon:
        # ... and every agent active again after the daemon's scan: on a cold cache that
        # takes most of heal_after, and agents touched only before it would be silent.
        touch_all(root, size)
        mtimes = staggered(paths, spread)
        _wait_until(max(mtimes.values()) + heal_after + tick + 1.0 + size / 2000)
        first = _first_stalls(daemon)
    lags = [first[_agent(p)] - (m + heal_after) for p, m in mtimes.items() if _agent(p) in first]
    return {"agents": size, "heal_after": heal_after, "tick": tick, "spread_s": spread,
            "detected": len(lags), "undetected": size - len(lags),
            "early": sum(1 for lag in lags if lag < 0),
            "lag_p50_ms": _ms(percentile(lags, 50)), "lag_p99_ms": _ms(percentile(lags, 99)),
            "lag_max_ms": _ms(max(lags) if lags else None),
            "lag_min_ms": _ms(min(lags) if lags else None)}


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def overflow(size: int, writes: int = 20_000) -> dict[str, Any]:
    """Freeze the daemon, queue more events than the kernel keeps, thaw it: time until its
    table holds every agent's last write."""
    root = build_workspace(size)
    paths = [str(root / a / "devlogs" / "bench.md") for a in agent_names(size)]
    touch_all(root, size)
    with Daemon(root, heal_after=FAR, recover_after=2 * FAR, tick=0.25).start() as daemon:
        t0 = time.perf_counter()
        daemon.scrape()
        scrape_s = time.perf_counter() - t0
        daemon.signal(signal.SIGSTOP)
        try:
            last = burst(paths, writes)
        finally:
            resumed = time.time()
            daemon.signal(signal.SIGCONT)
        right: float | None = None
        behind = len(last)
        while time.time() < resumed + 30:
            table, at = daemon.table()
            behind = sum(1 for p, t in last.items() if table.get(_agent(p), 0.0) < t)
            if not behind:
                right = at - resumed
                break
            time.sleep(0.05)
        time.sleep(0.5)  # the warning may still be on its way through the log pipe
        overflowed = bool(daemon.events("event_queue_overflow"))
    return {"agents": size, "writes": writes, "events_queued": 2 * writes,
            "overflow_seen": overflowed, "right_after_s": right, "still_behind": behind,
            "scrape_s": scrape_s}


def core_cost(size: int = 10_000, calls: int = 200_000) -> dict[str, Any]:
    """ns per call of Monitor.observe on a populated monitor, and per event of the inotify
    reader's in-place classification of a batch (the read itself is not in it)."""
    from healer.adapters.ledger import SelfWriteLedger
    from healer.adapters.watcher import Watcher
    from healer.core.monitor import Monitor
    from healer.core.policy import Policy

    policy = Policy(heal_after=120.0, recover_after=300.0, max_attempts=3,
                    ladder=("force_update", "clear_stuck_tasks", "reset_status"))
    names = agent_names(size)
    monitor = Monitor(lambda _agent: policy, 1.0, 0.0)
    for name in names:
        monitor.add(name, 0.0)
    pairs = [(names[i % size], 1.0 + i * 1e-6) for i in range(calls)]
    observe = monitor.observe

    def run_observe() -> None:
        for agent, when in pairs:
            observe(agent, when)

    def run_empty() -> None:
        for _agent_name, _when in pairs:
            pass

    observe_s = min(timeit.repeat(run_observe, number=1, repeat=3))
    loop_s = min(timeit.repeat(run_empty, number=1, repeat=3))
    root = build_workspace(100)
    watcher = Watcher(root, is_agent=lambda n: n.startswith("Agent-"), ledger=SelfWriteLedger())
    watcher.start()
    reader = watcher._reader
    assert reader is not None
    wds = [reader._by_path[f"{name}/devlogs"] for name in names[:100]]
    # Batches as a busy swarm gives them: an append is IN_MODIFY then IN_CLOSE_WRITE, each
    # as watchdog parses it off the buffer (inotify_reader.read_raw): wd, mask, cookie, name.
    batches: list[list[Any]] = [
        [(wds[(b * 50 + k // 2) % 100], 0x2 if k % 2 == 0 else 0x8, 0, b"bench.md")
         for k in range(100)] for b in range(calls // 400)]

    def run_handler() -> None:
        watcher.changes.clear()
        for batch in batches:
            reader._batch(batch)

    handler_s = min(timeit.repeat(run_handler, number=1, repeat=3))
    watcher.close()
    return {"agents": size, "calls": calls,
            "observe_ns": observe_s / calls * 1e9,
            "observe_ns_net_of_loop": (observe_s - loop_s) / calls * 1e9,
            "handler_ns": handler_s / sum(len(b) for b in batches) * 1e9}


def check_wall(size: int) -> dict[str, Any]:
    """Wall time of a `healer check --json` subprocess over the workspace (median of 3)."""
    root = build_workspace(size)
    config = BENCH / "config-check.yml"
    config.write_text(f"healer:\n  state_dir: {BENCH / 'state-check'}\n", encoding="utf-8")
    argv = [str(HEALER), "--config", str(config), "--workspaces", str(root), "check", "--json"]
    walls = []
    code = None
    for _ in range(3):
        t0 = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, cwd=BENCH, check=False)
        walls.append(time.perf_counter() - t0)
        code = done.returncode
        if code not in (0, 1):
            raise RuntimeError(f"healer check failed ({code}): {done.stderr[-500:]}")
    t0 = time.perf_counter()
    subprocess.run([str(HEALER), "--version"], capture_output=True, check=False)
    return {"agents": size, "wall_s": sorted(walls)[1], "exit_code": code,
            "interpreter_and_import_s": time.perf_counter() - t0}


def replay_trace(seconds: float, heal_after: float = 1.0, tick: float = 0.05,
                 start: float = 0.0, length: float | None = None,
                 tolerance: float = 0.5, workdir: Path = BENCH) -> dict[str, Any]:
    """Replay the real trace (or a window of it) compressed into `seconds` of wall time
    against a real, healing daemon, and score its stall detections.

    The truth is what was written and when: each write's wall time is recorded as it lands,
    so a burst the writer could not keep up with (709 events in one trace second) shifts
    the silences it really produced, not healer's score. A silence up to one tick past the
    threshold may end before the tick that would catch it, and one a hair under it may look
    longer to healer's clock than to ours: those are too close to call and left out.
    """
    import replay as rp

    events = rp.load_trace(rp.DEFAULT_TRACE)
    window, chosen = rp.select(events, start, length)
    compress = (window.end - window.start) / seconds
    root = workdir / "replay-ws"
    state = workdir / "replay-state"
    for path in (root, state):
        shutil.rmtree(path, ignore_errors=True)
    root.mkdir(parents=True)
    written: list[rp.Event] = []
    original = rp._write_event

    def recording(root_: Path, event: Any, seq: int, stats: Any, known: set[str]) -> None:
        if event.agent not in known:  # its folder appears now: the agent's clock starts
            written.append(rp.Event(time.time(), event.agent, "inbox"))
        original(root_, event, seq, stats, known)
        written.append(rp.Event(time.time(), event.agent, event.source))

    origin: list[float] = []
    rp._write_event = recording
    try:
        with Daemon(root, heal_after=heal_after, recover_after=3 * heal_after, tick=tick,
                    dry_run=False, metrics=False, state_dir=state,
                    workdir=workdir).start() as daemon:
            stats = rp.replay(root, chosen, window, compress, threading.Event(), True,
                              origin.append)
            end = time.time()
            time.sleep(tick + 0.3)
            detected = _all_stalls(daemon)
    finally:
        rp._write_event = original
    wall = rp.Window(origin[0], end)
    slack = 0.02  # our clock against the daemon's, per write
    certain = rp.expected_stalls(written, heal_after + tick + slack, wall)
    close = [s for s in rp.expected_stalls(written, heal_after - slack, wall)
             if s.length <= heal_after + tick + slack]
    # A detection of a too-close-to-call silence is neither a hit nor a false alarm.
    kept = [(a, t) for a, t in detected
            if not any(s.agent == a and abs(t - (s.start + heal_after)) <= tolerance
                       for s in close)]
    result = rp.score([rp.Silence(s.agent, s.start, s.end, s.start + heal_after)
                       for s in certain], kept, tolerance, wall.end)
    for key in ("lag_p50", "lag_p99", "lag_max"):
        value = result[key]
        result[key] = None if value is None else round(value * 1000, 1)
    scheduled = rp.expected_stalls(chosen, heal_after * compress, window)
    result.update(events=stats.events, wall_s=round(end - origin[0], 1), compress=round(compress),
                  heal_after_wall=heal_after, tick=tick, tolerance_wall=tolerance,
                  too_close_to_call=len(close), expected_by_schedule=len(scheduled),
                  writer_late_max_ms=round(stats.late_max * 1000, 1),
                  trace_days=round((window.end - window.start) / 86400, 2))
    return result


def _all_stalls(daemon: Daemon) -> list[tuple[str, float]]:
    return [(r["agent"], parse_stamp(r["timestamp"])) for r in daemon.events("stall_detected")
            if r.get("pipeline") == "healing"]


def cleanup() -> None:
    for path in (BENCH / "state", BENCH / "state-check"):
        shutil.rmtree(path, ignore_errors=True)
    os.makedirs(BENCH, exist_ok=True)
