"""Pure transforms of a parsed status.json for the healing and recovery actions.

A task is *finished* when: a string starts with a check mark (✅ ✔ ☑) or ``[x]``; or a
string carries a status word COMPLETED / COMPLETE / DONE (any case) at its start, after a
``:`` / ``-`` separator or right after ✅, followed by the end, ``:``, ``-``, ``(`` or
``[`` ("Batch 10 - COMPLETE: …", "Phase 1: ✅ COMPLETE - …", "COMPLETED: …"); or a
dict's ``status`` / ``state`` is complete, completed, done, finished or closed, or its
``completed`` / ``done`` is true.
Everything else is open ("Analysis complete ✅, awaiting Phase 2", "⏳ PENDING: …");
``null`` and blank strings are not tasks. Every function returns a new dict and keeps
every key it does not own, in its original order.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from healer.core.isotime import iso

__all__ = [
    "DEFAULT_STATUS",
    "apply_clear_stuck_tasks",
    "apply_force_update",
    "apply_reset_status",
    "as_iso",
    "is_finished",
    "open_tasks",
    "parse_busy_until",
    "record_reassigned",
    "task_count",
]

Doc = dict[str, Any]
Now = str | datetime

DEFAULT_STATUS: Doc = {
    "status": "ACTIVE_AGENT_MODE",
    "current_phase": "TASK_EXECUTION",
    "current_tasks": [],
}
# Identity fields a reset keeps: the swarm's tooling looks agents up by them.
_KEPT_ON_RESET = ("agent_id", "agent_name", "current_mission")

_CHECK_MARKS = ("✅", "✔", "☑", "[x]", "[X]")
_DONE_WORD = r"(?:COMPLETED|COMPLETE|DONE)"
_STATUS_WORD = re.compile(
    r"(?:^[^\w]*|[:\-–—]\s*|✅\s*)" + _DONE_WORD + r"\b(?=\s*(?:$|[:\-–—(\[]))",
    re.IGNORECASE,
)
_FINISHED_STATES = frozenset({"complete", "completed", "done", "finished", "closed"})


def as_iso(now: Now) -> str:
    """An ISO 8601 UTC string for `now` (strings are taken as already formatted)."""
    return now if isinstance(now, str) else iso(now, "seconds")


def is_finished(task: Any) -> bool:
    """Whether a `current_tasks` item is done, by the rule in the module docstring."""
    if isinstance(task, str):
        text = task.strip()
        return text.startswith(_CHECK_MARKS) or _STATUS_WORD.search(text) is not None
    if isinstance(task, dict):
        for key in ("status", "state"):
            value = task.get(key)
            if isinstance(value, str) and value.strip().lower() in _FINISHED_STATES:
                return True
        return task.get("completed") is True or task.get("done") is True
    return False


def _is_task(item: Any) -> bool:
    return item is not None and not (isinstance(item, str) and not item.strip())


def _tasks_of(value: Any) -> list[Any]:
    """`current_tasks` as a list: agents also wrote a single string or object there."""
    if value is None:
        return []
    if isinstance(value, list):
        return list(value)
    return [value]


def _healing_entry(action: str, now: Now, attempt: int) -> Doc:
    return {
        "timestamp": as_iso(now),
        "action": action,
        "reason": "stall_recovery",
        "attempt": attempt,
    }


def _append_healing(doc: Doc, entry: Doc) -> None:
    old = doc.get("healing_applied")
    if old is None:
        doc["healing_applied"] = [entry]
    elif isinstance(old, list):
        old.append(entry)
    else:
        # Not ours to reinterpret: keep the agent's value as the first element.
        doc["healing_applied"] = [old, entry]


def _healer_section(doc: Doc) -> Doc:
    section = doc.get("healer")
    if isinstance(section, dict):
        return section
    fresh: Doc = {} if section is None else {"agent_value": section}
    doc["healer"] = fresh
    return fresh


def _healer_list(doc: Doc, key: str) -> list[Any]:
    section = _healer_section(doc)
    value = section.get(key)
    if isinstance(value, list):
        return value
    fresh: list[Any] = [] if value is None else [value]
    section[key] = fresh
    return fresh


def _move_current_tasks(doc: Doc, now: Now, attempt: int) -> list[Any]:
    if "current_tasks" not in doc:
        return []
    moved = _tasks_of(doc["current_tasks"])
    if moved:
        cleared = _healer_list(doc, "cleared_tasks")
        when = as_iso(now)
        cleared.extend({"task": t, "cleared_at": when, "attempt": attempt} for t in moved)
    doc["current_tasks"] = []
    return moved


def apply_force_update(doc: Doc, now_iso: Now, attempt: int) -> Doc:
    """Append a force_update entry to `healing_applied`; `last_updated` is never forged."""
    new = copy.deepcopy(doc)
    _append_healing(new, _healing_entry("force_update", now_iso, attempt))
    return new


def apply_clear_stuck_tasks(doc: Doc, now_iso: Now, attempt: int) -> tuple[Doc, list[Any]]:
    """Move `current_tasks` into `healer.cleared_tasks`; returns the new doc and moved items."""
    new = copy.deepcopy(doc)
    moved = _move_current_tasks(new, now_iso, attempt)
    _append_healing(new, _healing_entry("clear_stuck_tasks", now_iso, attempt))
    return new, moved


def apply_reset_status(doc: Doc, now_iso: Now, attempt: int) -> Doc:
    """The default status, keeping identity, `healing_applied` and the `healer` section.

    Tasks still in `current_tasks` are moved to `healer.cleared_tasks` first, so a ladder
    without clear_stuck_tasks cannot drop them; the caller backs up the full old file.
    """
    old = copy.deepcopy(doc)
    _move_current_tasks(old, now_iso, attempt)
    new: Doc = {k: old[k] for k in _KEPT_ON_RESET if k in old}
    new.update(copy.deepcopy(DEFAULT_STATUS))
    if "healing_applied" in old:
        new["healing_applied"] = old["healing_applied"]
    _append_healing(new, _healing_entry("reset_status", now_iso, attempt))
    if "healer" in old:
        new["healer"] = old["healer"]
    return new


def _reassigned(doc: Doc) -> list[Any]:
    section = doc.get("healer")
    if not isinstance(section, dict):
        return []
    entries = section.get("reassigned_tasks")
    if not isinstance(entries, list):
        return []
    return [e["task"] for e in entries if isinstance(e, dict) and "task" in e]


def _cleared(doc: Doc) -> list[Any]:
    section = doc.get("healer")
    if not isinstance(section, dict):
        return []
    entries = section.get("cleared_tasks")
    if not isinstance(entries, list):
        return []
    return [e["task"] if isinstance(e, dict) and "task" in e else e for e in entries]


def _unique_open(items: Iterable[Any], exclude: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if _is_task(item) and not is_finished(item) and item not in exclude and item not in out:
            out.append(item)
    return out


def open_tasks(doc: Doc) -> list[Any]:
    """Open items of `current_tasks` and `healer.cleared_tasks` not yet reassigned, deduplicated."""
    items = _tasks_of(doc.get("current_tasks")) + _cleared(doc)
    return _unique_open(items, _reassigned(doc))


def record_reassigned(doc: Doc, tasks: Iterable[Any], to_agent: str, now_iso: Now) -> Doc:
    """Note under `healer.reassigned_tasks` that `tasks` went to `to_agent`."""
    new = copy.deepcopy(doc)
    entries = _healer_list(new, "reassigned_tasks")
    when = as_iso(now_iso)
    entries.extend({"task": copy.deepcopy(t), "to": to_agent, "timestamp": when} for t in tasks)
    return new


def task_count(doc: Doc) -> int:
    """How many open tasks an agent holds in `current_tasks` (its load, for reassignment)."""
    return len(_unique_open(_tasks_of(doc.get("current_tasks")), _reassigned(doc)))


def parse_busy_until(doc: Doc) -> float | None:
    """Epoch seconds of `busy_until` (ISO 8601; Z, offsets, naive = UTC; or a number)."""
    value = doc.get("busy_until")
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            seconds = float(value)  # JSON integers have no bound; floats have one
        except OverflowError:
            return None
        return seconds if math.isfinite(seconds) else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text[-1:] in ("z", "Z"):
        text = text[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(text)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return when.timestamp()
    except (ValueError, OverflowError, OSError):
        return None
