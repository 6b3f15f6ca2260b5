"""The wall time of `healer beat` as a process, the way a hook pays it on every tool call:
plain, and with `--hook claude-code` reading a PreToolUse payload on stdin. Prints the median
and p95 of each (milliseconds; and its CPU time, which a loaded machine does not inflate),
or JSON with --json. A benchmark, not a test."""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["PAYLOAD", "main", "measure"]

AGENT = "Agent-1"
TARGET_MS = 150.0  # issue #13: a hook runs on every tool call
PAYLOAD = json.dumps({
    "session_id": "bench-session",
    "transcript_path": "/tmp/bench/transcript.jsonl",
    "cwd": "/tmp/bench",
    "permission_mode": "default",
    "hook_event_name": "PreToolUse",
    "tool_name": "Bash",
    "tool_input": {"command": "make test", "description": "Run the tests"},
    "tool_use_id": "toolu_bench",
}).encode()


def _healer() -> list[str]:
    exe = Path(sys.executable).with_name("healer")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "healer"]


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(argv: Sequence[str], runs: int, stdin: bytes | None = None,
            env: dict[str, str] | None = None) -> dict[str, float]:
    """Median and p95 wall time, and median CPU time, in ms, of `runs` runs of `argv`
    (after one warm-up run)."""
    times, cpu = [], []
    for i in range(runs + 1):
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        done = subprocess.run(argv, input=stdin, capture_output=True, env=env, check=False)
        elapsed = (time.perf_counter() - t0) * 1000.0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr!r}")
        if i:
            times.append(elapsed)
            cpu.append((after.ru_utime + after.ru_stime - used.ru_utime - used.ru_stime) * 1e3)
    return {"median_ms": round(statistics.median(times), 1),
            "p95_ms": round(_percentile(times, 0.95), 1),
            "cpu_median_ms": round(statistics.median(cpu), 1), "runs": runs}


def main(args: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=40, help="runs per variant (default 40)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    opts = parser.parse_args(args)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEALER_")}
    with tempfile.TemporaryDirectory(prefix="healer-bench-beat-") as tmp:
        root = Path(tmp) / "ws"
        (root / AGENT).mkdir(parents=True)
        head = [*_healer(), "--workspaces", str(root), "beat", AGENT]
        results: dict[str, Any] = {
            "beat": measure(head, opts.runs, env=env),
            "beat --hook claude-code": measure([*head, "--hook", "claude-code"], opts.runs,
                                               stdin=PAYLOAD, env=env),
            "target_ms": TARGET_MS,
        }
    if opts.json:
        print(json.dumps(results))
        return 0
    print(f"healer beat wall time, {opts.runs} runs each (target: median under {TARGET_MS:g} ms)")
    for name in ("beat", "beat --hook claude-code"):
        row = results[name]
        print(f"  healer {name:<24} median {row['median_ms']:6.1f} ms"
              f"   p95 {row['p95_ms']:6.1f} ms   cpu {row['cpu_median_ms']:6.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
