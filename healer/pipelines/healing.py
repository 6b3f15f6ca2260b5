"""The healing ladder's rungs, applied through the safe writer. Applying a rung is not
success: that is decided later, by the agent coming back (SPEC §3)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from healer.core import statusdoc
from healer.core.isotime import iso
from healer.core.model import HealAction
from healer.errors import ActionError
from healer.pipelines.messages import rescue_filename, rescue_message
from healer.ports import StatusStore

__all__ = ["ADVICE", "ActionOutcome", "Context", "apply_rung", "drop_rescue"]

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
    """An action applied (`ok`) or not (`error` says why); applying is not success.
    `detail` says what it did (a reassignment: to whom, how many tasks)."""

    action: str
    ok: bool
    error: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


def drop_rescue(writer: StatusStore, ctx: Context, advice: str) -> str:
    """Write a rescue message into the agent's inbox; returns its file name."""
    text = rescue_message(
        ctx.agent, iso(ctx.now), ctx.silent_for, iso(ctx.last_activity), ctx.tried, advice
    )
    moment = datetime.fromtimestamp(ctx.now, UTC)
    path = writer.write_unique(
        ctx.agent, "inbox", lambda taken: rescue_filename(moment, taken), text
    )
    return path.name


def apply_rung(writer: StatusStore, action: str, ctx: Context) -> ActionOutcome:
    """Run one rung; errors become a failed outcome, never an exception."""
    try:
        rung = HealAction(action)
    except ValueError:
        return ActionOutcome(action, False, f"unknown healing action {action!r}")
    now = iso(ctx.now)
    try:
        match rung:
            case HealAction.FORCE_UPDATE:
                writer.update_status(
                    ctx.agent, lambda d: statusdoc.apply_force_update(d, now, ctx.attempt)
                )
            case HealAction.CLEAR_STUCK_TASKS:
                writer.update_status(ctx.agent, lambda d: _cleared(d, now, ctx.attempt))
                drop_rescue(writer, ctx, ADVICE[action])
            case HealAction.RESET_STATUS:
                writer.update_status(
                    ctx.agent,
                    lambda d: statusdoc.apply_reset_status(d, now, ctx.attempt),
                    backup=True,
                )
                drop_rescue(writer, ctx, ADVICE[action])
    except ActionError as exc:
        return ActionOutcome(action, False, str(exc))
    except OSError as exc:
        return ActionOutcome(action, False, f"{type(exc).__name__}: {exc}")
    return ActionOutcome(action, True)


def _cleared(doc: dict[str, Any], now: str, attempt: int) -> dict[str, Any]:
    new, _moved = statusdoc.apply_clear_stuck_tasks(doc, now, attempt)
    return new
