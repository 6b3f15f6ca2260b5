"""Replay the swarm's activity trace into a workspace, time-compressed, and score healer on it.

Subcommands: `analyze` (describe the trace), `write` (replay a window), `score` (compare
healer's stall_detected log lines with the silences the trace says it must find).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from itertools import groupby, pairwise
from pathlib import Path
from typing import Any

from _agentio import (
    append_devlog,
    drop_message,
    initial_status,
    local_stamp,
    update_status,
)

__all__ = [
    "DEFAULT_TRACE",
    "Event",
    "ReplayStats",
    "Silence",
    "Window",
    "analyze",
    "detections_from_log",
    "expected_stalls",
    "load_trace",
    "main",
    "replay",
    "score",
    "select",
]

DEFAULT_TRACE = Path(
    os.environ.get("HEALER_TRACE")
    or Path(__file__).resolve().parents[1] / "tests/data/dreamos_activity_trace.jsonl"
)
SOURCES = ("status", "devlog", "inbox")


@dataclass(frozen=True, slots=True)
class Event:
    """One trace line: at trace time `t` (epoch seconds) `agent` touched `source`."""

    t: float
    agent: str
    source: str


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open span [start, end) of trace time."""

    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Silence:
    """A gap in an agent's genuine activity longer than the threshold, in trace time."""

    agent: str
    start: float
    end: float
    detect_at: float  # start + threshold: when a perfect detector fires

    @property
    def length(self) -> float:
        return self.end - self.start


@dataclass
class ReplayStats:
    events: int = 0
    agents: int = 0
    status: int = 0
    devlog: int = 0
    inbox: int = 0
    late_max: float = 0.0  # worst lateness of a write behind its scheduled wall time


def load_trace(path: Path) -> list[Event]:
    """Parse the JSONL trace, sorted by time (stable, so same-second order is kept)."""
    events: list[Event] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
                event = Event(float(raw["t"]), str(raw["agent"]), str(raw["source"]))
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: not a trace event ({exc})") from exc
            if event.source not in SOURCES:
                raise ValueError(f"{path}:{number}: unknown source {event.source!r}")
            events.append(event)
    events.sort(key=lambda e: e.t)
    return events


def select(events: Sequence[Event], start: float = 0.0,
           length: float | None = None) -> tuple[Window, list[Event]]:
    """The window `length` trace seconds long, `start` seconds after the first event."""
    if not events:
        raise ValueError("the trace is empty")
    begin = events[0].t + start
    end = begin + length if length is not None else events[-1].t + 1
    return Window(begin, end), [e for e in events if begin <= e.t < end]


def _is_activity(event: Event, inbox_counts: bool) -> bool:
    # A trace inbox event is replayed as new mail, which SPEC §1 does not count by default.
    return event.source != "inbox" or inbox_counts


def expected_stalls(events: Sequence[Event], threshold: float, window: Window,
                    inbox_counts: bool = False) -> list[Silence]:
    """Every silence longer than `threshold` that a perfect detector reports in `window`.

    An agent's clock starts at its first event in the window (of any source): the replay
    creates its folder then, and a new agent's clock starts when its folder appears.
    Silences run between consecutive genuine activity events and from the last one to
    the window end; a gap of exactly `threshold` is not a stall.
    """
    by_agent: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        if window.start <= event.t < window.end:
            by_agent[event.agent].append(event)
    found: list[Silence] = []
    for agent, mine in by_agent.items():
        mine.sort(key=lambda e: e.t)
        marks = [mine[0].t, *(e.t for e in mine if _is_activity(e, inbox_counts)), window.end]
        for begin, finish in pairwise(marks):
            if finish - begin > threshold:
                found.append(Silence(agent, begin, finish, begin + threshold))
    found.sort(key=lambda s: (s.detect_at, s.agent))
    return found


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # nearest-rank: ceil(n*q/100)
    return ordered[int(rank) - 1]


def score(expected: Sequence[Silence], detected: Sequence[tuple[str, float]],
          tolerance: float, horizon: float | None = None) -> dict[str, Any]:
    """Match detections to expected stalls per agent, within `tolerance` of `detect_at`.

    Times share one unit (trace seconds in `main`). A detection too far from any expected
    stall is a false positive and leaves that stall missed. Unmatched detections after
    `horizon` are ignored: past the window end every agent goes quiet. Lags are
    detection minus `detect_at`, over matched pairs.
    """
    pending: dict[str, list[float]] = defaultdict(list)
    for agent, when in detected:
        pending[agent].append(when)
    for times in pending.values():
        times.sort()
    lags: list[float] = []
    for silence in sorted(expected, key=lambda s: s.detect_at):
        times = pending.get(silence.agent, [])
        hit = next((t for t in times if abs(t - silence.detect_at) <= tolerance), None)
        if hit is not None:
            times.remove(hit)
            lags.append(hit - silence.detect_at)
    false_pos = sum(1 for times in pending.values() for t in times
                    if horizon is None or t <= horizon)
    matched = len(lags)
    counted = matched + false_pos
    return {
        "expected": len(expected),
        "detected": counted,
        "matched": matched,
        "missed": len(expected) - matched,
        "false_positives": false_pos,
        "precision": matched / counted if counted else 1.0,
        "recall": matched / len(expected) if expected else 1.0,
        "lag_p50": _percentile(lags, 50),
        "lag_p99": _percentile(lags, 99),
        "lag_max": max(lags) if lags else None,
    }


def detections_from_log(lines: Sequence[str], pipeline: str = "healing"
                        ) -> list[tuple[str, float]]:
    """(agent, wall epoch) of every `stall_detected` of `pipeline` in healer's JSON log."""
    found: list[tuple[str, float]] = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue  # console lines or partial writes: not the JSON log
        if not isinstance(record, dict) or record.get("event") != "stall_detected":
            continue
        if record.get("pipeline") != pipeline:
            continue
        stamp = datetime.fromisoformat(str(record["timestamp"]))
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        found.append((str(record["agent"]), stamp.timestamp()))
    return found


def _write_event(root: Path, event: Event, seq: int, stats: ReplayStats,
                 known: set[str]) -> None:
    folder = root / event.agent
    if event.agent not in known:
        folder.mkdir(parents=True, exist_ok=True)  # lazily: the agent's clock starts here
        known.add(event.agent)
        stats.agents += 1
    if event.source == "status":
        def touch(data: dict[str, Any]) -> None:
            data["last_updated"] = local_stamp(event.t)
            count = data.get("cycle_count")
            data["cycle_count"] = count + 1 if isinstance(count, int) else 1

        fallback = initial_status(event.agent, "Replayed from the activity trace", [], event.t)
        update_status(folder, touch, fallback)
        stats.status += 1
    elif event.source == "devlog":
        day = datetime.fromtimestamp(event.t).strftime("%Y-%m-%d")
        append_devlog(folder, f"{day}_replay.md", f"- {local_stamp(event.t)} devlog entry {seq}")
        stats.devlog += 1
    else:
        drop_message(folder, f"C2A_REPLAY_{int(event.t)}_{seq}.md", "Agent-4",
                     f"Replayed message {seq} from the activity trace.")
        stats.inbox += 1


def replay(root: Path, events: Sequence[Event], window: Window, compress: float,
           stop: threading.Event, wait_end: bool = True,
           on_start: Callable[[float], None] | None = None) -> ReplayStats:
    """Write `events` into `root`, each at wall time start + (t - window.start) / compress.

    Deadlines come from one monotonic origin, so lateness never accumulates and events
    that share a trace second land together. `on_start` gets the wall-clock origin.
    """
    stats = ReplayStats()
    known: set[str] = set()
    origin = time.monotonic()
    if on_start is not None:
        on_start(time.time())
    seq = 0
    for t, group in groupby(events, key=lambda e: e.t):
        if not window.start <= t < window.end:
            continue
        due = origin + (t - window.start) / compress
        if stop.wait(max(0.0, due - time.monotonic())):
            return stats
        stats.late_max = max(stats.late_max, time.monotonic() - due)
        for event in group:
            seq += 1
            _write_event(root, event, seq, stats, known)
            stats.events += 1
    if wait_end:
        stop.wait(max(0.0, origin + (window.end - window.start) / compress - time.monotonic()))
    return stats


def analyze(events: Sequence[Event], top: int = 10) -> dict[str, Any]:
    """Counts per agent and source, the burstiest seconds and the longest silences."""
    if not events:
        return {"events": 0}
    window = Window(events[0].t, events[-1].t + 1)
    per_agent = Counter(e.agent for e in events)
    silences = expected_stalls(events, 0.0, window)
    silences.sort(key=lambda s: s.length, reverse=True)
    return {
        "events": len(events),
        "span_days": round((window.end - window.start) / 86400, 2),
        "first": datetime.fromtimestamp(window.start, UTC).isoformat(),
        "per_agent": dict(per_agent.most_common()),
        "per_source": dict(Counter(e.source for e in events).most_common()),
        "per_agent_source": {a: dict(Counter(e.source for e in events if e.agent == a))
                             for a in per_agent},
        "busiest_seconds": Counter(e.t for e in events).most_common(5),
        # heal_after 120 s replayed at the default --compress 3600 is 5 days of trace
        "silences_longer_than_hours": {
            str(h): sum(1 for s in silences if s.length > h * 3600) for h in (1, 24, 120)},
        "longest_silences": [
            {"agent": s.agent, "from": datetime.fromtimestamp(s.start, UTC).isoformat(),
             "hours": round(s.length / 3600, 1)} for s in silences[:top]],
    }


def _print_analysis(report: dict[str, Any]) -> None:
    print(f"{report['events']} events over {report.get('span_days')} days "
          f"from {report.get('first')}")
    print("per source: " + ", ".join(f"{k} {v}" for k, v in report["per_source"].items()))
    for agent, sources in sorted(report["per_agent_source"].items()):
        detail = ", ".join(f"{k} {v}" for k, v in sorted(sources.items()))
        print(f"  {agent:9} {report['per_agent'][agent]:5}  ({detail})")
    print("busiest seconds: " + ", ".join(
        f"{datetime.fromtimestamp(t, UTC):%Y-%m-%d %H:%M:%S} x{n}"
        for t, n in report["busiest_seconds"]))
    print("silences longer than N hours (status/devlog only): " + ", ".join(
        f"{h} h: {n}" for h, n in report["silences_longer_than_hours"].items()))
    print("longest silences (status/devlog only):")
    for item in report["longest_silences"]:
        print(f"  {item['agent']:9} {item['hours']:8.1f} h  from {item['from']}")


def _cmd_analyze(args: argparse.Namespace) -> int:
    report = analyze(load_trace(args.trace), args.top)
    if args.json:
        print(json.dumps(report))
    else:
        _print_analysis(report)
    return 0


def _cmd_write(args: argparse.Namespace) -> int:
    events = load_trace(args.trace)
    window, chosen = select(events, args.start, args.window)
    root: Path = args.workspaces
    if root.is_dir() and any(root.glob("Agent-*")):
        print(f"replay.py: {root} already holds agents; replay needs an empty root "
              "so every agent's clock starts with the trace", file=sys.stderr)
        return 2
    root.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "event": "replay_started", "workspaces": str(root), "trace": str(args.trace),
        "trace_start": window.start, "trace_end": window.end, "compress": args.compress,
        "heal_after_wall": args.heal_after_wall, "inbox_counts": args.inbox_counts,
        "events": len(chosen), "wall_seconds": (window.end - window.start) / args.compress,
    }

    def started(wall: float) -> None:
        meta["wall_start"] = wall
        line = json.dumps(meta)
        if args.meta is not None:
            args.meta.write_text(line + "\n", encoding="utf-8")
        print(line, flush=True)

    stop = _stop_on_signals()
    stats = replay(root, chosen, window, args.compress, stop, not args.no_wait_end, started)
    print(json.dumps({"event": "replay_finished", "interrupted": stop.is_set(),
                      **asdict(stats)}), flush=True)
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    meta = _read_meta(args.meta)
    compress = float(meta["compress"])
    heal_after = args.heal_after_wall or float(meta["heal_after_wall"])
    inbox_counts = args.inbox_counts or bool(meta.get("inbox_counts"))
    trace = args.trace or Path(meta["trace"])
    window = Window(float(meta["trace_start"]), float(meta["trace_end"]))
    events = [e for e in load_trace(trace) if window.start <= e.t < window.end]
    expected = expected_stalls(events, heal_after * compress, window, inbox_counts)
    wall_start = float(meta["wall_start"])
    lines = args.log.read_text(encoding="utf-8").splitlines()
    detected = [(agent, window.start + (wall - wall_start) * compress)
                for agent, wall in detections_from_log(lines)]
    result = score(expected, detected, args.tolerance_wall * compress, window.end)
    for key in ("lag_p50", "lag_p99", "lag_max"):  # report lags in wall seconds
        value = result[key]
        result[key] = None if value is None else round(value / compress, 3)
    result.update(heal_after_wall=heal_after, tolerance_wall=args.tolerance_wall,
                  compress=compress)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"expected {result['expected']} stalls, detected {result['detected']}: "
              f"matched {result['matched']}, missed {result['missed']}, "
              f"false positives {result['false_positives']}")
        print(f"precision {result['precision']:.3f}  recall {result['recall']:.3f}  "
              f"lag p50 {result['lag_p50']} s  p99 {result['lag_p99']} s  "
              f"max {result['lag_max']} s (wall)")
    ok = result["precision"] >= args.min_precision and result["recall"] >= args.min_recall
    return 0 if ok else 1


def _read_meta(path: Path) -> dict[str, Any]:
    # Accept the file --meta wrote or the whole stdout of `write`.
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "wall_start" in record:
            return record
    raise ValueError(f"{path}: no replay_started line with wall_start")


def _stop_on_signals() -> threading.Event:
    import signal

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _not_negative(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be zero or more, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="replay.py", description=__doc__,
        epilog="Time mapping: wall = wall_start + (t - trace_start) / compress. healer's "
               "heal_after is in wall seconds, so it covers heal_after * compress seconds "
               "of trace (120 s at 3600 = 5 days).")
    sub = parser.add_subparsers(dest="command", required=True)
    p_an = sub.add_parser("analyze", help="events per agent and source, longest silences")
    p_an.add_argument("--trace", type=Path, default=DEFAULT_TRACE)
    p_an.add_argument("--top", type=int, default=10)
    p_an.add_argument("--json", action="store_true")
    p_an.set_defaults(func=_cmd_analyze)
    p_wr = sub.add_parser("write", help="replay a window of the trace into a workspace")
    p_wr.add_argument("--workspaces", type=Path, required=True, help="an empty root")
    p_wr.add_argument("--trace", type=Path, default=DEFAULT_TRACE)
    p_wr.add_argument("--compress", type=_positive, default=3600.0,
                      help="trace seconds per wall second (3600)")
    p_wr.add_argument("--start", type=_not_negative, default=0.0,
                      help="trace seconds after the first event to start at (0)")
    p_wr.add_argument("--window", type=_positive, default=None,
                      help="trace seconds to replay (default: to the end)")
    p_wr.add_argument("--heal-after-wall", type=_positive, default=120.0,
                      help="the heal_after healer runs with, recorded for `score` (120)")
    p_wr.add_argument("--inbox-counts", action="store_true",
                      help="healer runs with healer.activity.inbox=any")
    p_wr.add_argument("--meta", type=Path, default=None, help="also write the start line here")
    p_wr.add_argument("--no-wait-end", action="store_true",
                      help="exit after the last event instead of at the window end")
    p_wr.set_defaults(func=_cmd_write)
    p_sc = sub.add_parser("score", help="precision, recall and lag of healer's detections")
    p_sc.add_argument("--log", type=Path, required=True, help="healer's --log-format json log")
    p_sc.add_argument("--meta", type=Path, required=True, help="the start line from `write`")
    p_sc.add_argument("--trace", type=Path, default=None, help="default: as in the meta")
    p_sc.add_argument("--heal-after-wall", type=_positive, default=None)
    p_sc.add_argument("--inbox-counts", action="store_true")
    p_sc.add_argument("--tolerance-wall", type=_positive, default=2.0,
                      help="how far from the exact moment a detection still counts (2 s)")
    p_sc.add_argument("--min-precision", type=_not_negative, default=0.0)
    p_sc.add_argument("--min-recall", type=_not_negative, default=0.0)
    p_sc.add_argument("--json", action="store_true")
    p_sc.set_defaults(func=_cmd_score)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse reports usage errors by exiting with 2
        return int(exc.code or 0)
    try:
        code: int = args.func(args)
    except (OSError, ValueError, KeyError) as exc:
        print(f"replay.py {args.command}: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
