"""`make bench`: healer against the swarm's polling detector, at 100, 1,000 and 10,000 agents,
plus a replay of the real activity trace. Prints a table, writes bench/results.json and the
figures block of docs/BENCHMARKS.md. A benchmark, not a test: CI does not run it."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_runs as runs
from bench_env import BENCH, ROOT, build_workspace, machine

__all__ = ["main", "render", "targets"]

SIZES = (100, 1_000, 10_000)
RATES = [1_000, 2_500, 5_000, 7_500, 10_000, 15_000, 20_000, 30_000]
DOC = ROOT / "docs" / "BENCHMARKS.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def _timed(name: str, fn: Callable[[], Any]) -> Any:
    t0 = time.monotonic()
    print(f"  {name} ...", end="", flush=True)
    value = fn()
    print(f" {time.monotonic() - t0:.1f} s", flush=True)
    return value


def collect(sizes: Sequence[int], replay_seconds: float) -> dict[str, Any]:
    runs.cleanup()
    results: dict[str, Any] = {"machine": machine(), "sizes": list(sizes)}
    for size in sizes:
        _timed(f"workspace {size}", lambda s=size: build_workspace(s))
    results["footprint"] = [_timed(f"footprint {s}", lambda s=s: runs.footprint(s))
                            for s in sizes]
    results["poller"] = [_timed(f"poller {s}", lambda s=s: runs.poller(s)) for s in sizes]
    results["core"] = _timed("core cost", runs.core_cost)
    results["check"] = _timed(f"check {sizes[-1]}", lambda: runs.check_wall(sizes[-1]))
    mid = 1_000 if 1_000 in sizes else sizes[-1]
    results["ingestion"] = _timed(f"ingestion {mid}", lambda: runs.ingestion(mid, RATES))
    results["detection"] = [
        _timed(f"detection {s}", lambda s=s: runs.detection(s, 10.0 if s >= 10_000 else 5.0))
        for s in sizes]
    results["overflow"] = [_timed(f"overflow {s}", lambda s=s: runs.overflow(s))
                           for s in sizes if s >= 1_000]
    results["replay"] = _timed("replay", lambda: runs.replay_trace(replay_seconds))
    return results


def _at(rows: Sequence[dict[str, Any]], size: int) -> dict[str, Any]:
    return next((r for r in rows if r["agents"] == size), {})


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def targets(r: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(target, required, measured, met) for every target of the issue."""
    big = max(r["sizes"])
    foot = _at(r["footprint"], big)
    det = r["detection"]
    worst_det = max((d for d in det if d["lag_p99_ms"] is not None),
                    key=lambda d: d["lag_p99_ms"], default=None)
    lat = r["ingestion"].get("latency_1000") or {}
    thousand = _at(r["footprint"], 1_000)
    poll_1k = _at(r["poller"], 1_000)
    ratio = None
    if thousand and poll_1k:
        ratio = thousand["cpu_s_per_hour_sweep30"] / poll_1k["interval_1"]["cpu_s_per_hour"]
    rows: list[tuple[str, str, str, bool | None]] = []

    def add(name: str, need: str, got: Any, ok: bool | None, unit: str = "") -> None:
        rows.append((name, need, f"{_fmt(got)}{unit}" if got is not None else "n/a", ok))

    best = r["ingestion"]["max_zero_loss_rate"]
    add("zero-loss ingestion", ">= 20,000 writes/s", best, best >= 20_000, " writes/s")
    p99 = lat.get("p99_ms")
    add("event->table p99 at 1,000 writes/s", "<= 5 ms", p99,
        None if p99 is None else p99 <= 5.0, " ms")
    if worst_det:
        bound = worst_det["tick"] * 1000 + 50
        add(f"detection lag p99 ({worst_det['agents']:,} agents, tick "
            f"{worst_det['tick']} s)", f"<= {bound:,.0f} ms", worst_det["lag_p99_ms"],
            worst_det["lag_p99_ms"] <= bound, " ms")
    add(f"start-up, {big:,} agents", "<= 5 s", foot.get("startup_s"),
        foot.get("startup_s", 99) <= 5.0, " s")
    add(f"RSS, {big:,} agents", "<= 120 MB", foot.get("rss_mb"),
        foot.get("rss_mb", 1e9) <= 120.0, " MB")
    idle = foot.get("idle_cpu_pct_sweep30")
    add(f"idle CPU, {big:,} agents (check_interval 30 s)", "<= 0.5 % of a core", idle,
        None if idle is None else idle <= 0.5, " %")
    idle5 = foot.get("idle_cpu_pct_sweep5")
    add(f"idle CPU, {big:,} agents (check_interval 5 s)", "<= 0.5 % of a core", idle5,
        None if idle5 is None else idle5 <= 0.5, " %")
    add(f"check over {r['check']['agents']:,} agents", "<= 2 s", r["check"]["wall_s"],
        r["check"]["wall_s"] <= 2.0, " s")
    add("core cost per event (Monitor.observe)", "<= 1 us (1,000 ns)",
        r["core"]["observe_ns"], r["core"]["observe_ns"] <= 1000, " ns")
    add("idle CPU vs the 1 s poller, 1,000 agents", "<= 1/10", ratio,
        None if ratio is None else ratio <= 0.1)
    rep = r["replay"]
    add("replay precision / recall", "1.0 / 1.0",
        f"{rep['precision']:.3f} / {rep['recall']:.3f}",
        rep["precision"] == 1.0 and rep["recall"] == 1.0)
    return rows


def render(r: dict[str, Any]) -> str:
    """The generated part of docs/BENCHMARKS.md (Markdown)."""
    m = r["machine"]
    out = [f"Last run: {m['date']} on {m['nproc']} cores ({m['cpu']}), {m['memory_gb']} GB, "
           f"Linux {m['kernel']}, Python {m['python']}; inotify max_user_watches "
           f"{m['max_user_watches']:,}, max_queued_events {m['max_queued_events']:,}.", "",
           "### Targets", "", "| target | required | measured | met |", "|---|---|---|---|"]
    for name, need, got, ok in targets(r):
        out.append(f"| {name} | {need} | {got} | {'yes' if ok else 'no' if ok is False else '-'} |")
    out += ["", "### healer against the polling detector", "",
            "| agents | detector | worst-case detection lag | CPU s per hour | start-up | RSS |",
            "|---|---|---|---|---|---|"]
    for size in r["sizes"]:
        foot, poll = _at(r["footprint"], size), _at(r["poller"], size)
        det = _at(r["detection"], size)
        lag = f"{det['lag_max_ms'] / 1000:.3f} s beyond the threshold" if det.get(
            "lag_max_ms") is not None else "n/a"
        out.append(f"| {size:,} | healer (tick 1 s, sweep 30 s) | {lag} | "
                   f"{foot['cpu_s_per_hour_sweep30']:.2f} | {foot['startup_s']:.2f} s | "
                   f"{foot['rss_mb']:.0f} MB |")
        out.append(f"| {size:,} | healer (sweep 5 s) | same | "
                   f"{foot['cpu_s_per_hour_sweep5']:.2f} | | |")
        for interval in (30, 1):
            p = poll[f"interval_{interval}"]
            out.append(f"| {size:,} | poller, every {interval} s | {p['worst_lag_s']:.3f} s | "
                       f"{p['cpu_s_per_hour']:.2f} | | |")
    out += ["", "### Detection lag beyond the threshold", "",
            "| agents | heal_after | tick | detected | early | p50 | p99 | max |",
            "|---|---|---|---|---|---|---|---|"]
    for d in r["detection"]:
        out.append(f"| {d['agents']:,} | {d['heal_after']} s | {d['tick']} s | "
                   f"{d['detected']:,}/{d['agents']:,} | {d['early']} | {_fmt(d['lag_p50_ms'], 1)}"
                   f" ms | {_fmt(d['lag_p99_ms'], 1)} ms | {_fmt(d['lag_max_ms'], 1)} ms |")
    ing = r["ingestion"]
    out += ["", f"### Ingestion ({ing['agents']:,} agents, {ing['duration_s']} s per rate, "
            "two writer processes)", "",
            "| target writes/s | achieved | events seen | table right after | behind | "
            "early stalls | overflow | zero loss |", "|---|---|---|---|---|---|---|---|"]
    for s in ing["steps"]:
        caught = f"{s['caught_up_s'] * 1000:.0f} ms" if s["caught_up_s"] is not None else "> 2 s"
        out.append(f"| {s['target']:,} | {s['achieved']:,} | {int(s['events_seen']):,} | "
                   f"{caught} | {s['behind']} | {s['early']} | {s['overflow']} | "
                   f"{'yes' if s['ok'] else 'no'} |")
    lat = ing.get("latency_1000") or {}
    out += ["", f"Event->table latency at 1,000 writes/s (healer_event_lag_seconds, "
            f"{_fmt(lat.get('samples'))} batches): p50 {_fmt(lat.get('p50_ms'), 3)} ms, "
            f"p99 {_fmt(lat.get('p99_ms'), 3)} ms.", "",
            "### Inotify queue overflow", "",
            "| agents | appends while frozen | events queued | overflow seen | "
            "table right after thaw | scrape time |", "|---|---|---|---|---|---|"]
    for o in r["overflow"]:
        right = f"{o['right_after_s']:.3f} s" if o["right_after_s"] is not None else "never"
        out.append(f"| {o['agents']:,} | {o['writes']:,} | {o['events_queued']:,} | "
                   f"{o['overflow_seen']} | {right} | {o['scrape_s'] * 1000:.0f} ms |")
    core, chk = r["core"], r["check"]
    out += ["", "### Per-event cost and `healer check`", "",
            f"- `Monitor.observe` on a monitor of {core['agents']:,} agents: "
            f"{core['observe_ns']:.0f} ns per call ({core['observe_ns_net_of_loop']:.0f} ns "
            f"net of the loop); the watcher's handler (`Watcher._handle`, classify included): "
            f"{core['handler_ns']:.0f} ns per event.",
            f"- `healer check --json` over {chk['agents']:,} agents: {chk['wall_s']:.2f} s wall "
            f"(of which {chk['interpreter_and_import_s']:.2f} s is `healer --version`: "
            "interpreter and imports).", ""]
    rep = r["replay"]
    out += ["### Real-trace replay", "",
            f"{rep['events']:,} events, {rep['trace_days']} days of trace in {rep['wall_s']:.0f} s "
            f"wall (x{rep['compress']:,}); heal_after {rep['heal_after_wall']} s wall "
            f"(= {rep['heal_after_wall'] * rep['compress'] / 3600:.1f} h of trace), tick "
            f"{rep['tick']} s, tolerance {rep['tolerance_wall']} s wall.", "",
            f"- expected {rep['expected']}, detected {rep['detected']}, matched "
            f"{rep['matched']}, missed {rep['missed']}, false positives "
            f"{rep['false_positives']}",
            f"- precision {rep['precision']:.3f}, recall {rep['recall']:.3f}",
            f"- lag beyond the exact moment (wall): p50 {_fmt(rep['lag_p50'], 1)} ms, p99 "
            f"{_fmt(rep['lag_p99'], 1)} ms, max {_fmt(rep['lag_max'], 1)} ms; the replay "
            f"writer ran up to {rep['writer_late_max_ms']} ms behind schedule."]
    return "\n".join(out) + "\n"


def _table(r: dict[str, Any]) -> str:
    rows = targets(r)
    width = max(len(name) for name, *_ in rows)
    lines = [f"{'target':{width}}  {'required':22}  {'measured':20}  met"]
    for name, need, got, ok in rows:
        lines.append(f"{name:{width}}  {need:22}  {got:20}  "
                     f"{'yes' if ok else 'NO' if ok is False else '-'}")
    return "\n".join(lines)


def write_doc(r: dict[str, Any]) -> None:
    text = DOC.read_text(encoding="utf-8") if DOC.is_file() else f"{BEGIN}\n{END}\n"
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    DOC.write_text(f"{head}{BEGIN}\n{render(r)}{END}{tail}", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.py", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--replay-seconds", type=float, default=120.0,
                        help="wall seconds the whole trace is compressed into (120)")
    parser.add_argument("--no-doc", action="store_true", help="leave docs/BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    print("healer benchmarks (bench/results.json, docs/BENCHMARKS.md)", flush=True)
    results = collect(sorted(args.sizes), args.replay_seconds)
    results["total_s"] = time.monotonic() - t0
    BENCH.mkdir(exist_ok=True)
    (BENCH / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    print()
    print(render(results) if args.no_doc else _table(results))
    if not args.no_doc:
        write_doc(results)
    print(f"\ntotal {results['total_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
