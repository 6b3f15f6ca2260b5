"""Load generators for the benchmarks, each in its own process so it does not share the
bench's interpreter lock: paced devlog appenders, a staggered one-write-per-agent pass, a
burst, and the polling detector the swarm used before healer."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["burst", "paced_writers", "poll_cycle", "poller_cost", "staggered"]

_LINE = b"- bench entry\n"


def _append(path: str) -> None:
    # What an agent does: open, append one line, close (IN_MODIFY + IN_CLOSE_WRITE).
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, _LINE)
    finally:
        os.close(fd)


def _paced(share: int, paths: Sequence[str], rate: float, start: float, duration: float,
           out: Any) -> None:
    last: dict[int, float] = {}
    written = 0
    count = len(paths)
    while time.time() < start:
        time.sleep(0.0005)
    end = start + duration
    now = time.time()
    while now < end:
        due = int((now - start) * rate)
        while written < due:
            i = written % count
            last[i] = time.time()  # a lower bound of the write's time
            _append(paths[i])
            written += 1
        time.sleep(0.0002)
        now = time.time()
    out.put((share, written, time.time() - start, last))


def paced_writers(paths: Sequence[str], rate: float, duration: float,
                  procs: int = 2) -> tuple[int, float, dict[str, float]]:
    """Append to `paths` round-robin at `rate` writes/s in total for `duration` seconds.
    Returns (writes, achieved writes/s, {path: time of its last write})."""
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    start = time.time() + 0.3
    shares = [list(paths[k::procs]) for k in range(procs)]
    workers = [ctx.Process(target=_paced, args=(k, share, rate / procs, start, duration, out))
               for k, share in enumerate(shares)]
    for w in workers:
        w.start()
    # Results come in the order the writers finish: each says which share it wrote.
    results = [out.get() for _ in workers]
    for w in workers:
        w.join()
    written = sum(r[1] for r in results)
    elapsed = max(r[2] for r in results)
    last = {shares[k][i]: t for k, _n, _e, times in results for i, t in times.items()}
    return written, written / elapsed, last


def _staggered(paths: Sequence[str], start: float, spread: float, out: Any) -> None:
    mtimes: dict[str, float] = {}
    step = spread / max(1, len(paths))
    for i, path in enumerate(paths):
        due = start + i * step
        delay = due - time.time()
        if delay > 0:
            time.sleep(delay)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, _LINE)
            mtimes[path] = os.fstat(fd).st_mtime
        finally:
            os.close(fd)
    out.put(mtimes)


def staggered(paths: Sequence[str], spread: float) -> dict[str, float]:
    """One append per path, spread evenly over `spread` seconds; {path: mtime after it}."""
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    proc = ctx.Process(target=_staggered, args=(paths, time.time() + 0.2, spread, out))
    proc.start()
    mtimes: dict[str, float] = out.get()
    proc.join()
    return mtimes


def burst(paths: Sequence[str], writes: int) -> dict[str, float]:
    """`writes` appends round-robin as fast as possible (in this process); last write times."""
    last: dict[str, float] = {}
    count = len(paths)
    for n in range(writes):
        path = paths[n % count]
        last[path] = time.time()
        _append(path)
    return last


def poll_cycle(root: Path, agents: Sequence[str]) -> dict[str, float]:
    """One check of the polling detector: stat every agent's activity files (status.json,
    every devlog, the inbox and its subfolders) and keep the newest mtime per agent."""
    newest: dict[str, float] = {}
    for agent in agents:
        folder = os.path.join(root, agent)
        best = 0.0
        with contextlib.suppress(OSError):
            best = os.stat(os.path.join(folder, "status.json")).st_mtime
        stack = [os.path.join(folder, "devlogs"), os.path.join(folder, "inbox")]
        while stack:
            path = stack.pop()
            try:
                with os.scandir(path) as entries:
                    for entry in entries:
                        st = entry.stat(follow_symlinks=False)
                        best = max(best, st.st_mtime)
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
            except OSError:
                continue
        newest[agent] = best
    return newest


def poller_cost(root: Path, agents: Sequence[str], min_seconds: float = 1.0,
                min_cycles: int = 3) -> dict[str, float]:
    """CPU and wall seconds of one poll cycle, averaged over enough cycles (in-process)."""
    poll_cycle(root, agents)  # warm the dentry and inode caches, as a long-running poller has
    cycles = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    while cycles < min_cycles or time.perf_counter() - wall0 < min_seconds:
        poll_cycle(root, agents)
        cycles += 1
    return {"cycles": cycles, "cpu_per_cycle": (time.process_time() - cpu0) / cycles,
            "wall_per_cycle": (time.perf_counter() - wall0) / cycles}
