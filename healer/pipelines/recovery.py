"""The standard recovery pipeline (SPEC §4): a rescue message and the reassignment of the
stalled agent's open tasks to the least-loaded active agent, its load counting what healer
itself already sent it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from healer.core import statusdoc
from healer.core.isotime import iso
from healer.core.model import RecoveryAction, free_name
from healer.errors import ActionError, StoreError
from healer.pipelines.healing import ADVICE, ActionOutcome, Context, drop_rescue
from healer.pipelines.messages import reassignment_message
from healer.ports import Identity, StatusStore

__all__ = ["MAX_CANDIDATES", "SentTasks", "reassign_tasks", "rescue"]

log = structlog.get_logger()

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


class SentTasks(Protocol):
    """The tasks healer itself handed each agent, kept in the history (the Store, or the
    engine's History that pauses a failing one)."""

    def tasks_sent(self, to_agent: str, to_status: Identity) -> int: ...

    def record_reassignment(
        self, *, ts: float, from_agent: str, to_agent: str, tasks: int, to_status: Identity | None
    ) -> None: ...


def _sent_to(sent: SentTasks | None, agent: str, status: Identity | None) -> int:
    if sent is None or status is None:
        return 0
    try:
        return sent.tasks_sent(agent, status)
    except StoreError as exc:
        # The history is bookkeeping: without it the pick falls back to the files alone.
        log.warning("reassign_load_unknown", agent=agent, error=str(exc))
        return 0


def _least_loaded(
    writer: StatusStore, candidates: Sequence[str], sent: SentTasks | None
) -> tuple[str, Identity | None] | None:
    """The candidate holding the fewest tasks: the open ones in its status.json, plus those
    healer sent it since that file last changed (the agent has not taken them up in it)."""
    best: tuple[int, int, str] | None = None
    status: dict[str, Identity | None] = {}
    for rank, agent in enumerate(candidates[:MAX_CANDIDATES]):
        try:
            read = writer.read_status(agent)
        except (ActionError, OSError):
            continue
        if read.doc is None:
            continue
        status[agent] = read.identity
        load = statusdoc.task_count(read.doc) + _sent_to(sent, agent, read.identity)
        key = (load, rank, agent)
        if best is None or key < best:
            best = key
    return (best[2], status[best[2]]) if best else None


def reassign_tasks(
    writer: StatusStore, ctx: Context, candidates: Sequence[str], sent: SentTasks | None = None
) -> ActionOutcome:
    """Hand the open tasks to the least-loaded active agent (see `_least_loaded`); without
    `sent`, only the files say who holds what, and one agent may receive everything.

    The message reaches the new owner before the move is recorded in the stalled agent's
    file, so a crash in between duplicates a task rather than losing it. A readable file
    with no open task is `ok` with `tasks: 0`: nothing was left to hand on.
    """
    try:
        read = writer.read_status(ctx.agent)
        if read.doc is None:
            raise ActionError(f"status.json of {ctx.agent} unreadable: {read.error or read.kind}")
        tasks = statusdoc.open_tasks(read.doc)
        if not tasks:
            return ActionOutcome(RecoveryAction.REASSIGN_TASKS, True, None, {"tasks": 0})
        picked = _least_loaded(writer, [c for c in candidates if c != ctx.agent], sent)
        if picked is None:
            raise ActionError("no active agent to take the tasks")
        target, target_status = picked
        moment = iso(ctx.now)
        text = reassignment_message(target, ctx.agent, tasks, moment)
        stamp = f"{datetime.fromtimestamp(ctx.now, UTC):%Y%m%dT%H%M%S}"
        message = writer.write_unique(
            target,
            "inbox",
            lambda taken: free_name(f"HEALER_REASSIGN_{ctx.agent}_{stamp}", taken),
            text,
        )
        moved = list(tasks)
        if sent is not None and not writer.dry_run:
            try:
                sent.record_reassignment(
                    ts=ctx.now, from_agent=ctx.agent, to_agent=target, tasks=len(moved),
                    to_status=target_status,
                )
            except StoreError as exc:
                log.warning("reassignment_not_recorded", agent=ctx.agent, error=str(exc))

        def record(doc: dict[str, Any]) -> dict[str, Any]:
            return statusdoc.record_reassigned(doc, moved, target, moment)

        writer.update_status(ctx.agent, record)
    except (ActionError, OSError) as exc:
        return ActionOutcome(RecoveryAction.REASSIGN_TASKS, False, str(exc))
    detail = {"tasks": len(moved), "to": target, "message": message.name}
    return ActionOutcome(RecoveryAction.REASSIGN_TASKS, True, None, detail)
