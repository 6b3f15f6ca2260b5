"""What operators read, rendered: the per-agent status table and the stats table (the
data comes from healer.view through healer.wiring)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click

from healer.core.model import Stage

__all__ = ["age", "fit", "live_status", "render_stats", "render_status"]

STAGE_COLORS = {
    Stage.ACTIVE: "green", Stage.BUSY: "blue", Stage.HEALING: "yellow",
    Stage.RECOVERING: "magenta", Stage.ESCALATED: "red", Stage.FLAPPING: "cyan",
    Stage.WAITING: "bright_yellow", Stage.DONE: "bright_black",
}


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 172800:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def fit(text: str, width: int) -> str:
    """`text` cut to `width` in the middle: agent names differ at their ends (Agent-12)."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return f"{text[:head]}~{text[len(text) - (width - 1 - head):]}"


def render_status(data: dict[str, Any], *, color: bool = False) -> str:
    """A table that fits 80 columns."""
    lines = [f"{'AGENT':<20} {'STAGE':<11} {'SILENT':>8} {'ATTEMPTS':>8}  LAST ACTIVITY (UTC)"]
    for row in data["agents"]:
        stage = f"{row['stage']:<11}"
        if color:
            stage = click.style(stage, fg=STAGE_COLORS.get(Stage(row["stage"])))
        last = (row["last_activity"] or "-")[:19].replace("T", " ")
        lines.append(
            f"{fit(row['agent'], 20):<20} {stage} {age(row['silent_for']):>8} "
            f"{row['attempts']:>8}  {last}"
        )
    # Notes below the table, one line each: the columns stay within 80.
    lines += [f"  {fit(r['agent'], 18)}: {r['note']}" for r in data["agents"] if "note" in r]
    # What a waiting agent said it waits for: the line a human needs to act on.
    lines += [fit(f"  {fit(r['agent'], 18)}: waiting: {r['message']}", 80)
              for r in data["agents"] if r["stage"] == Stage.WAITING.value and r.get("message")]
    counts: dict[str, int] = {}
    for row in data["agents"]:
        counts[row["stage"]] = counts.get(row["stage"], 0) + 1
    summary = ", ".join(f"{n} {stage}" for stage, n in sorted(counts.items())) or "no agents"
    lines.append(f"{len(data['agents'])} agents: {summary}")
    return "\n".join(lines)


def render_stats(data: dict[str, Any]) -> str:
    inc = data.get("incidents", {})

    def secs(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}s"

    pending = data.get("pending", data["total_actions"] - data["successful"] - data["failed"])
    lines = [
        f"healing actions   {data['total_actions']:>6}   successful {data['successful']}   "
        f"failed {data['failed']}   pending {pending}",
        f"success rate      {data['success_rate']:>6.1f}%  (settled actions only)",
        f"recovery actions  {data['recovery_actions']:>6}",
        f"incidents         open {inc.get('open', 0)}   recovered {inc.get('recovered', 0)}   "
        f"resolved {inc.get('resolved', 0)}   escalated {inc.get('escalated', 0)}",
        f"MTTD {secs(data.get('mttd_seconds'))}   MTTR {secs(data.get('mttr_seconds'))}",
    ]
    waiting = data.get("waiting") or {}
    if waiting.get("waits"):
        lines.append(f"waits on a human  {waiting['waits']:>6}   open {waiting['open']}   "
                     f"alerted {waiting['alerted']}   time waiting {secs(waiting['seconds'])}")
    if data.get("by_agent"):
        lines.append("")
        lines.append(f"{'AGENT':<20} {'TOTAL':>6} {'OK':>6} {'FAILED':>6}")
        for agent, row in sorted(data["by_agent"].items()):
            lines.append(f"{fit(agent, 20):<20} {row['total']:>6} {row['successful']:>6} "
                         f"{row['failed']:>6}")
    if data.get("recent_actions"):
        lines.append("")
        lines.append("recent actions (UTC)")
        for row in data["recent_actions"][:10]:
            # Recovery actions have no attempt number and no success criterion.
            attempt = row.get("attempt") or "-"
            outcome = row.get("outcome") or "-"
            lines.append(f"  {row['timestamp'][:19].replace('T', ' ')}  {fit(row['agent'], 20):<20}"
                         f" {row['action']:<18} {attempt!s:>2}  {outcome}")
    return "\n".join(lines)


def live_status(snapshot: Callable[[], dict[str, Any]], interval: float) -> None:
    """Redraw the status table until Ctrl-C."""
    try:
        while True:
            table = render_status(snapshot(), color=True)
            click.clear()
            stamp = datetime.now(UTC).strftime("%H:%M:%S")
            click.echo(f"healer status  {stamp} UTC  (Ctrl-C to quit)\n")
            click.echo(table)
            time.sleep(interval)
    except KeyboardInterrupt:
        return
