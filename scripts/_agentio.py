"""How the swarm's agents touch their folders: status.json, devlogs, inbox messages.

Shared by the simulator and the trace replayer; stdlib only, so both run without healer.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "AGENT_NAMES",
    "COMPLETED_PREFIX",
    "RESCUE_PREFIX",
    "STATUS_FILE",
    "agent_name",
    "append_devlog",
    "consume_message",
    "drop_message",
    "ensure_agent",
    "initial_status",
    "local_stamp",
    "pending_messages",
    "read_status",
    "rescue_messages",
    "update_status",
    "write_status",
]

STATUS_FILE = "status.json"
RESCUE_PREFIX = "HEALER_RESCUE_"
COMPLETED_PREFIX = "✅ COMPLETED: "
# healer marks its own temp files with this; an agent must never produce such a name.
_HEALER_TEMP_MARKER = ".healer-tmp."

AGENT_NAMES = {
    1: "Integration & Core Systems Specialist",
    2: "Architecture & Design Specialist",
    3: "Infrastructure & DevOps Specialist",
    4: "Captain (Strategic Oversight)",
    5: "Business Intelligence Specialist",
    6: "Coordination & Communication Specialist",
    7: "Web Development Specialist",
    8: "SSOT & System Integration Specialist",
}


def agent_name(agent_id: str) -> str:
    """The swarm's role title for Agent-N (a generic one past the eight known roles)."""
    try:
        number = int(agent_id.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return "Swarm Agent"
    return AGENT_NAMES.get(number, "General Purpose Specialist")


def local_stamp(when: float | None = None) -> str:
    """`last_updated` as the swarm writes it: local time, no zone, seconds precision."""
    return datetime.fromtimestamp(time.time() if when is None else when).strftime(
        "%Y-%m-%d %H:%M:%S"
    )


def initial_status(agent_id: str, mission: str, tasks: Iterable[str],
                   when: float | None = None) -> dict[str, Any]:
    """A fresh status.json body with the field set the real agents use."""
    return {
        "agent_id": agent_id,
        "agent_name": agent_name(agent_id),
        "status": "ACTIVE_AGENT_MODE",
        "current_phase": "TASK_EXECUTION",
        "last_updated": local_stamp(when),
        "current_mission": mission,
        "mission_priority": "HIGH",
        "current_tasks": list(tasks),
        "completed_tasks": [],
        "cycle_count": 0,
    }


def ensure_agent(root: Path, agent_id: str) -> Path:
    """Create the agent's folder layout if missing; never removes anything."""
    folder = root / agent_id
    (folder / "devlogs").mkdir(parents=True, exist_ok=True)
    (folder / "inbox" / "processed").mkdir(parents=True, exist_ok=True)
    return folder


def read_status(folder: Path) -> dict[str, Any] | None:
    """The parsed status.json, or None when it is missing, unreadable or not an object."""
    try:
        data = json.loads((folder / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_status(folder: Path, data: dict[str, Any]) -> None:
    """Atomically replace status.json: temp file in the same folder, fsync, rename.

    The temp name is the agent's own (".status.json.<pid>.<ns>.tmp"), never healer's marker.
    """
    target = folder / STATUS_FILE
    temp = folder / f".{STATUS_FILE}.{os.getpid()}.{time.monotonic_ns()}.tmp"
    payload = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    try:
        with open(temp, "w", encoding="utf-8") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def update_status(folder: Path, mutate: Callable[[dict[str, Any]], None],
                  fallback: dict[str, Any] | None = None) -> dict[str, Any]:
    """Re-read status.json, apply `mutate`, write it back atomically.

    Re-reading right before the write keeps whatever healer added meanwhile
    (`healing_applied`, `healer`, ...); a missing or broken file starts from `fallback`.
    """
    data = read_status(folder)
    if data is None:
        data = dict(fallback or {})
    mutate(data)
    write_status(folder, data)
    return data


def append_devlog(folder: Path, name: str, text: str) -> Path:
    """Append one entry to devlogs/<name> (created on first use)."""
    path = folder / "devlogs" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text if text.endswith("\n") else text + "\n")
    return path


def drop_message(folder: Path, name: str, sender: str, body: str,
                 priority: str = "normal", kind: str = "text") -> Path:
    """Write a message into the agent's inbox, as another agent or the captain would.

    A plain create-and-write (how the swarm's messaging delivers); never a rescue name.
    """
    if name.startswith(RESCUE_PREFIX) or _HEALER_TEMP_MARKER in name:
        raise ValueError(f"{name!r} is a name only healer may write")
    inbox = folder / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    path = inbox / name
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    text = (
        f"# 📨 INBOX MESSAGE - {kind.upper()}\n"
        f"**From**: {sender}\n**To**: {folder.name}\n**Priority**: {priority}\n"
        f"**Message Type**: {kind}\n**Timestamp**: {stamp}\n---\n{body}\n"
    )
    with open(path, "x", encoding="utf-8") as handle:
        handle.write(text)
    return path


def pending_messages(folder: Path) -> list[Path]:
    """Unconsumed messages at the top of the inbox, oldest name first."""
    inbox = folder / "inbox"
    try:
        entries = sorted(inbox.iterdir())
    except OSError:
        return []
    return [p for p in entries if p.is_file() and p.suffix in (".md", ".json")
            and _HEALER_TEMP_MARKER not in p.name]


def rescue_messages(folder: Path) -> list[Path]:
    """healer's unconsumed rescue messages in this agent's inbox."""
    return [p for p in pending_messages(folder) if p.name.startswith(RESCUE_PREFIX)]


def consume_message(folder: Path, message: Path) -> Path | None:
    """Read a message and move it to inbox/processed/ (the agent's own inbox activity).

    Returns the new path, or None when the message vanished first.
    """
    processed = folder / "inbox" / "processed"
    processed.mkdir(parents=True, exist_ok=True)
    target = processed / message.name
    if target.exists():
        target = processed / f"{message.stem}_{time.monotonic_ns()}{message.suffix}"
    try:
        os.replace(message, target)
    except FileNotFoundError:
        return None
    return target
