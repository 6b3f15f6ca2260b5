"""Text of what healer drops into a workspace: rescue and reassignment messages, the marker.

Pure builders: the swarm's inbox format (SPEC §4) lives here and nowhere else.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from datetime import UTC, datetime
from typing import Any

from healer.core.model import RESCUE_PREFIX, free_name

__all__ = [
    "escalation_marker",
    "reassignment_message",
    "rescue_filename",
    "rescue_message",
]

SENDER = "healer"


def _header(kind: str, to_agent: str, message_type: str, now_iso: str) -> list[str]:
    return [
        f"# 🚨 INBOX MESSAGE - {kind}",
        f"**From**: {SENDER}",
        f"**To**: {to_agent}",
        "**Priority**: urgent",
        f"**Message Type**: {message_type}",
        f"**Timestamp**: {now_iso}",
        "---",
        "",
    ]


def _seconds(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}".rstrip("0").rstrip(".")


def _task_text(task: Any) -> str:
    if isinstance(task, str):
        return " ".join(task.split())
    # Agents also keep tasks as objects; one JSON line keeps every field readable.
    return json.dumps(task, ensure_ascii=False, sort_keys=False)


def rescue_message(
    agent: str,
    now_iso: str,
    silent_for: float,
    last_activity_iso: str | None,
    tried: Iterable[str],
    advice: str,
) -> str:
    """The rescue message for `agent`: why healer writes, what it tried, what to do next."""
    tried = list(tried)
    lines = _header("RESCUE", agent, "rescue", now_iso)
    lines.append(f"{agent} has been silent for {_seconds(silent_for)} s.")
    lines.append("")
    lines.append(f"- **Last activity**: {last_activity_iso or 'never seen'}")
    if tried:
        lines.append(f"- **Already tried**: {', '.join(tried)}")
    else:
        lines.append("- **Already tried**: nothing yet")
    lines.append("")
    lines.append("## What to do next")
    lines.append("")
    lines.append(advice.strip())
    return "\n".join(lines) + "\n"


def reassignment_message(to_agent: str, from_agent: str, tasks: Iterable[Any], now_iso: str) -> str:
    """The message handing a stalled agent's open tasks to `to_agent`."""
    tasks = list(tasks)
    lines = _header("TASK REASSIGNMENT", to_agent, "task_reassignment", now_iso)
    lines.append(
        f"{from_agent} has stalled; healer reassigns its {len(tasks)} open "
        f"task{'' if len(tasks) == 1 else 's'} to you."
    )
    lines.append("")
    lines.append("## Tasks")
    lines.append("")
    lines.extend(f"- {_task_text(t)}" for t in tasks)
    if not tasks:
        lines.append("- (none)")
    lines.append("")
    lines.append(
        f"Add them to your `current_tasks` when you take them on; {from_agent} "
        "finds them recorded under `healer.reassigned_tasks` when it wakes up."
    )
    return "\n".join(lines) + "\n"


def escalation_marker(agent: str, now_iso: str, attempts: int, actions_tried: Iterable[str]) -> str:
    """Content of `.ESCALATION_REQUIRED`: first line fixed by SPEC §3, then the facts."""
    lines = [
        f"{agent} requires manual intervention.",
        f"Timestamp: {now_iso}",
        f"Recovery attempts: {attempts}",
    ]
    lines.extend(actions_tried)
    return "\n".join(lines) + "\n"


def rescue_filename(now: datetime, existing: Collection[str]) -> str:
    """`HEALER_RESCUE_<YYYYMMDD_HHMMSS>.md`, then `_2`, `_3`… while the name is taken."""
    if now.tzinfo is not None:
        now = now.astimezone(UTC)
    return free_name(f"{RESCUE_PREFIX}{now:%Y%m%d_%H%M%S}", existing)
