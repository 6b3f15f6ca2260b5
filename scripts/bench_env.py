"""What the benchmarks stand on: cached workspaces, a `healer watch` subprocess with its JSON
log, CPU and RSS read from /proc, Prometheus scrapes, writer processes and percentiles."""

from __future__ import annotations

import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = [
    "BENCH",
    "HEALER",
    "ROOT",
    "Daemon",
    "agent_names",
    "build_workspace",
    "hist_quantile",
    "machine",
    "percentile",
    "touch_all",
]

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
HEALER = Path(sys.executable).parent / "healer"
_TICKS = os.sysconf("SC_CLK_TCK")
_LAYOUT_VERSION = "1"


def agent_names(size: int) -> list[str]:
    return [f"Agent-{n}" for n in range(1, size + 1)]


def build_workspace(size: int) -> Path:
    """bench/ws-<size>: one folder per agent shaped like the swarm's (status.json, two
    devlogs, an inbox with a processed/ subfolder and one message). Built once, reused."""
    root = BENCH / f"ws-{size}"
    marker = root / ".bench-complete"
    if marker.is_file() and marker.read_text() == _LAYOUT_VERSION:
        return root
    root.mkdir(parents=True, exist_ok=True)
    for name in agent_names(size):
        folder = root / name
        (folder / "devlogs").mkdir(parents=True, exist_ok=True)
        (folder / "inbox" / "processed").mkdir(parents=True, exist_ok=True)
        status = {"agent_id": name, "status": "ACTIVE_AGENT_MODE",
                  "current_phase": "TASK_EXECUTION", "current_tasks": ["bench task"]}
        (folder / "status.json").write_text(json.dumps(status), encoding="utf-8")
        (folder / "devlogs" / "2025-01-01_session.md").write_text("- start\n", encoding="utf-8")
        (folder / "devlogs" / "bench.md").write_text("", encoding="utf-8")
        (folder / "inbox" / "C2A_WELCOME.md").write_text("# hello\n", encoding="utf-8")
    marker.write_text(_LAYOUT_VERSION)
    return root


def touch_all(root: Path, size: int) -> None:
    """Make every agent look freshly active (status.json mtime = now) before a daemon starts."""
    for name in agent_names(size):
        os.utime(root / name / "status.json")


def devlog_paths(root: Path, size: int) -> list[str]:
    return [str(root / name / "devlogs" / "bench.md") for name in agent_names(size)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def parse_stamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@dataclass
class Daemon:
    """A real `healer watch` subprocess (JSON log on stderr, read by a thread)."""

    root: Path
    heal_after: float
    recover_after: float | None = None
    tick: float = 1.0
    check_interval: float = 30.0
    dry_run: bool = True
    metrics: bool = True
    state_dir: Path | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    spawned: float = 0.0
    started: float | None = None  # seconds from spawn to `watch_started`
    scanned: float | None = None  # ... and to `scan_finished`
    port: int | None = None
    workdir: Path = BENCH  # its config file and working directory

    def start(self, timeout: float = 60.0) -> Daemon:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / f"config-{os.getpid()}-{id(self)}.yml"
        state = self.state_dir or self.workdir / "state"
        config.write_text(
            "overnight:\n  self_healing:\n"
            f"    check_interval: {self.check_interval}\n"
            f"healer:\n  state_dir: {json.dumps(str(state))}\n", encoding="utf-8")
        self._config = config
        argv = [str(HEALER), "--config", str(config), "--workspaces", str(self.root),
                "--log-format", "json", "watch", "--heal-after", str(self.heal_after),
                "--recover-after", str(self.recover_after or self.heal_after * 10),
                "--tick", str(self.tick)]
        if self.dry_run:
            argv.append("--dry-run")
        if self.metrics:
            self.port = free_port()
            argv += ["--metrics-addr", f"127.0.0.1:{self.port}"]
        self._seen = threading.Condition()
        self.spawned = time.monotonic()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, cwd=self.workdir)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        record = self.wait_for("watch_started", timeout)
        self.started = record["_mono"] - self.spawned
        # The agents' scan follows watch_started in the daemon's first steps: every figure
        # is measured from a daemon done with it (the start-up figure reports both).
        self.scanned = self.wait_for("scan_finished", timeout)["_mono"] - self.spawned
        port = next((r.get("port") for r in self.records if r["event"] == "metrics_started"),
                    None)
        if port:
            self.port = int(port)  # the daemon's own word on the port it bound
        return self

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            mono = time.monotonic()
            try:
                record = json.loads(line)
            except ValueError:
                record = {"event": "_text", "text": line.rstrip()}
            if not isinstance(record, dict):
                continue
            record["_mono"] = mono
            with self._seen:
                self.records.append(record)
                self._seen.notify_all()

    def wait_for(self, event: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._seen:
            while True:
                for record in self.records:
                    if record.get("event") == event:
                        return record
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    tail = [r.get("text") or r.get("event") for r in self.records[-5:]]
                    raise RuntimeError(f"no {event} within {timeout} s (log tail: {tail})")
                self._seen.wait(min(left, 0.2))

    def events(self, name: str) -> list[dict[str, Any]]:
        with self._seen:
            return [r for r in self.records if r.get("event") == name]

    def cpu(self) -> float:
        """utime + stime of the daemon process, seconds (all its threads)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return math.nan

    def scrape(self) -> dict[str, float]:
        """The /metrics page as {'name{labels}': value}."""
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                out[key] = float(value)
        return out

    def table(self) -> tuple[dict[str, float], float]:
        """Each agent's last activity as the daemon's table holds it (an upper bound: the
        gauge is silence at scrape time, and the scrape is bracketed by our clock)."""
        metrics = self.scrape()
        after = time.time()
        prefix = 'healer_agent_silence_seconds{agent="'
        return ({k[len(prefix):-2]: after - v for k, v in metrics.items()
                 if k.startswith(prefix)}, after)

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        self._config.unlink(missing_ok=True)

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(len(ordered) * q / 100))
    return ordered[rank - 1]


def hist_quantile(before: dict[str, float], after: dict[str, float], name: str,
                  q: float) -> tuple[float | None, int]:
    """Quantile of a Prometheus histogram over the interval between two scrapes, linearly
    interpolated inside its bucket the way PromQL's histogram_quantile does; and the count."""
    prefix = f'{name}_bucket{{le="'
    buckets = sorted(
        (float(k[len(prefix):-2]), after[k] - before.get(k, 0.0))
        for k in after if k.startswith(prefix))
    total = buckets[-1][1] if buckets else 0
    if not total:
        return None, 0
    rank = q * total
    low, below = 0.0, 0.0
    for bound, cumulative in buckets:
        if cumulative >= rank:
            if math.isinf(bound):
                return low, int(total)
            inside = cumulative - below
            share = (rank - below) / inside if inside else 1.0
            return low + (bound - low) * share, int(total)
        low, below = bound, cumulative
    return low, int(total)


def machine() -> dict[str, Any]:
    mem = next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal:"))
    model = next((line.split(":", 1)[1].strip()
                  for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {
        "nproc": os.cpu_count(), "cpu": model, "memory_gb": round(int(mem) / 1024**2, 1),
        "kernel": platform.release(), "python": platform.python_version(),
        "max_user_watches": int(Path("/proc/sys/fs/inotify/max_user_watches").read_text()),
        "max_queued_events": int(Path("/proc/sys/fs/inotify/max_queued_events").read_text()),
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
    }
