"""The healing ladder's rungs, applied through the safe writer. Applying a rung is not
success: that is decided later, by the agent coming back (SPEC §3)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from healer.adapters.writer import SafeWriter
from healer.clock import iso
from healer.core import statusdoc
from healer.errors import ActionError
from healer.pipelines.messages import rescue_filename, rescue_message

__all__ = ["ActionOutcome", "Context", "apply_rung", "drop_rescue"]

ADVICE = {
    "clear_stuck_tasks": (
        "healer moved your `current_tasks` to `healer.cleared_tasks` in status.json (nothing "
        "was dropped). Re-read status.json, pick the next task, and write status.json or a "
        "devlog entry so healer sees you are working again."
    ),
    "reset_status": (
        "healer reset status.json to the default state; the previous file is saved beside it "
        "as status.json.bak.<stamp>. Re-read it, restore what you need, and write status.json "
        "or a devlog entry."
    ),
    "recovery": (
        "Your open tasks may be handed to another agent (see `healer.reassigned_tasks` in your "
        "status.json). If you are working, write status.json or a devlog entry; if you are on "
        "a long job, set `busy_until` in status.json."
    ),
}


@dataclass(frozen=True, slots=True)
class Context:
    """What an action needs to know about the stall it answers."""

    agent: str
    now: float
    attempt: int
    silent_for: float
    last_activity: float
    tried: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    action: str
    ok: bool
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def drop_rescue(writer: SafeWriter, ctx: Context, advice: str) -> str:
    """Write a rescue message into the agent's inbox; returns its file name."""
    text = rescue_message(
        ctx.agent, iso(ctx.now), ctx.silent_for, iso(ctx.last_activity), ctx.tried, advice
    )
    moment = datetime.fromtimestamp(ctx.now, UTC)
    path = writer.write_unique(
        ctx.agent, "inbox", lambda taken: rescue_filename(moment, taken), text
    )
    return path.name


def apply_rung(writer: SafeWriter, action: str, ctx: Context) -> ActionOutcome:
    """Run one rung; errors become a failed outcome, never an exception."""
    now = iso(ctx.now)
    detail: dict[str, Any] = {}
    try:
        if action == "force_update":
            writer.update_status(
                ctx.agent, lambda d: statusdoc.apply_force_update(d, now, ctx.attempt)
            )
        elif action == "clear_stuck_tasks":
            moved: list[Any] = []

            def clear(doc: dict[str, Any]) -> dict[str, Any]:
                new, tasks = statusdoc.apply_clear_stuck_tasks(doc, now, ctx.attempt)
                moved[:] = tasks
                return new

            writer.update_status(ctx.agent, clear)
            detail["cleared"] = len(moved)
            detail["rescue"] = drop_rescue(writer, ctx, ADVICE[action])
        elif action == "reset_status":
            result = writer.update_status(
                ctx.agent,
                lambda d: statusdoc.apply_reset_status(d, now, ctx.attempt),
                backup=True,
            )
            detail["backup"] = result.backup.name if result.backup else None
            detail["rescue"] = drop_rescue(writer, ctx, ADVICE[action])
        else:
            raise ActionError(f"unknown healing action {action!r}")
    except ActionError as exc:
        return ActionOutcome(action, False, str(exc), detail)
    except OSError as exc:
        return ActionOutcome(action, False, f"{type(exc).__name__}: {exc}", detail)
    return ActionOutcome(action, True, None, detail)
