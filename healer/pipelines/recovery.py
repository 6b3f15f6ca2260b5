"""The standard recovery pipeline (SPEC §4): a rescue message and the reassignment of the
stalled agent's open tasks to the least-loaded active agent."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from healer.core import statusdoc
from healer.core.isotime import iso
from healer.core.model import RecoveryAction, free_name
from healer.errors import ActionError
from healer.pipelines.healing import ADVICE, ActionOutcome, Context, drop_rescue
from healer.pipelines.messages import reassignment_message
from healer.ports import StatusStore

__all__ = ["MAX_CANDIDATES", "reassign_tasks", "rescue"]

# Reading every agent's status.json to find the least loaded one would cost a read per
# agent per reassignment at 10,000 agents; the most recently active few are the ones
# that can take work now anyway.
MAX_CANDIDATES = 64


def rescue(writer: StatusStore, ctx: Context) -> ActionOutcome:
    try:
        drop_rescue(writer, ctx, ADVICE["recovery"])
    except (ActionError, OSError) as exc:
        return ActionOutcome(RecoveryAction.RESCUE_MESSAGE, False, str(exc))
    return ActionOutcome(RecoveryAction.RESCUE_MESSAGE, True)


def _least_loaded(writer: StatusStore, candidates: Sequence[str]) -> str | None:
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
    writer: StatusStore, ctx: Context, candidates: Sequence[str]
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
            return ActionOutcome(RecoveryAction.REASSIGN_TASKS, True)
        target = _least_loaded(writer, [c for c in candidates if c != ctx.agent])
        if target is None:
            raise ActionError("no active agent to take the tasks")
        moment = iso(ctx.now)
        text = reassignment_message(target, ctx.agent, tasks, moment)
        stamp = f"{datetime.fromtimestamp(ctx.now, UTC):%Y%m%dT%H%M%S}"
        writer.write_unique(
            target,
            "inbox",
            lambda taken: free_name(f"HEALER_REASSIGN_{ctx.agent}_{stamp}", taken),
            text,
        )
        moved = list(tasks)

        def record(doc: dict[str, Any]) -> dict[str, Any]:
            return statusdoc.record_reassigned(doc, moved, target, moment)

        writer.update_status(ctx.agent, record)
    except (ActionError, OSError) as exc:
        return ActionOutcome(RecoveryAction.REASSIGN_TASKS, False, str(exc))
    return ActionOutcome(RecoveryAction.REASSIGN_TASKS, True)
