"""The standard recovery pipeline (SPEC §4): a rescue message and the reassignment of the
stalled agent's open tasks to the least-loaded active agent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from healer.adapters.writer import SafeWriter
from healer.clock import iso
from healer.core import statusdoc
from healer.errors import ActionError
from healer.pipelines.healing import ADVICE, ActionOutcome, Context, drop_rescue
from healer.pipelines.messages import reassignment_message

__all__ = ["MAX_CANDIDATES", "reassign_tasks", "rescue"]

# Reading every agent's status.json to find the least loaded one would cost a read per
# agent per reassignment at 10,000 agents; the most recently active few are the ones
# that can take work now anyway.
MAX_CANDIDATES = 64


def rescue(writer: SafeWriter, ctx: Context) -> ActionOutcome:
    try:
        name = drop_rescue(writer, ctx, ADVICE["recovery"])
    except (ActionError, OSError) as exc:
        return ActionOutcome("rescue_message", False, str(exc))
    return ActionOutcome("rescue_message", True, None, {"rescue": name})


def _least_loaded(writer: SafeWriter, candidates: Sequence[str]) -> str | None:
    best: tuple[int, int, str] | None = None
    for rank, agent in enumerate(candidates[:MAX_CANDIDATES]):
        try:
            read = writer.read_status(agent)
        except (ActionError, OSError):
            continue
        if read.doc is None:
            continue
        key = (statusdoc.task_count(read.doc), rank, agent)
        if best is None or key < best:
            best = key
    return best[2] if best else None


def reassign_tasks(
    writer: SafeWriter, ctx: Context, candidates: Sequence[str]
) -> ActionOutcome:
    """Hand the open tasks to the active agent with the fewest `current_tasks`.

    The message reaches the new owner before the move is recorded in the stalled agent's
    file, so a crash in between duplicates a task rather than losing it.
    """
    try:
        read = writer.read_status(ctx.agent)
        if read.doc is None:
            raise ActionError(f"status.json of {ctx.agent} unreadable: {read.error or read.kind}")
        tasks = statusdoc.open_tasks(read.doc)
        if not tasks:
            return ActionOutcome("reassign_tasks", True, None, {"tasks": 0})
        target = _least_loaded(writer, [c for c in candidates if c != ctx.agent])
        if target is None:
            raise ActionError("no active agent to take the tasks")
        text = reassignment_message(target, ctx.agent, tasks, iso(ctx.now))
        moment = iso(ctx.now)
        stamp = moment.replace("-", "").replace(":", "")[:15]
        message = writer.write_unique(
            target,
            "inbox",
            lambda taken: _free_name(f"HEALER_REASSIGN_{ctx.agent}_{stamp}", taken),
            text,
        )
        moved = list(tasks)

        def record(doc: dict[str, Any]) -> dict[str, Any]:
            return statusdoc.record_reassigned(doc, moved, target, moment)

        writer.update_status(ctx.agent, record)
    except (ActionError, OSError) as exc:
        return ActionOutcome("reassign_tasks", False, str(exc))
    return ActionOutcome(
        "reassign_tasks", True, None, {"tasks": len(moved), "to": target, "message": message.name}
    )


def _free_name(stem: str, taken: Any) -> str:
    name, n = f"{stem}.md", 1
    while name in taken:
        n += 1
        name = f"{stem}_{n}.md"
    return name
