"""Shared vocabulary of the core: stages, pipelines, actions, the kinds of events, alerts
and outcomes, and healer's own file names."""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass

__all__ = [
    "ESCALATION_MARKER",
    "HEAL_ACTIONS",
    "RESCUE_PREFIX",
    "STATUS_FILE",
    "TEMP_MARKER",
    "EventKind",
    "FolderEvent",
    "HealAction",
    "InboxMode",
    "IncidentOutcome",
    "Observation",
    "Pipeline",
    "RecoveryAction",
    "Settlement",
    "Stage",
    "Transition",
    "free_name",
    "is_own_temp_name",
    "is_plain_name",
]

STATUS_FILE = "status.json"
ESCALATION_MARKER = ".ESCALATION_REQUIRED"
RESCUE_PREFIX = "HEALER_RESCUE_"
# Every file healer writes is first written under a name containing this marker and then
# renamed into place, so an event whose (source) name carries it is healer's own.
TEMP_MARKER = ".healer-tmp."



# The kinds below are StrEnums: their members are the very strings of the contract (SPEC
# config values, log fields, history columns), so they compare, hash, print and serialise
# as those strings.


class HealAction(enum.StrEnum):
    """The built-in rungs of the healing ladder (SPEC §3)."""

    FORCE_UPDATE = "force_update"
    CLEAR_STUCK_TASKS = "clear_stuck_tasks"
    RESET_STATUS = "reset_status"


class RecoveryAction(enum.StrEnum):
    """The actions of the standard recovery (SPEC §4), as `recovery_action` logs them."""

    RESCUE_MESSAGE = "rescue_message"
    REASSIGN_TASKS = "reassign_tasks"
    ALERT = "alert"


HEAL_ACTIONS: tuple[str, ...] = tuple(HealAction)


class InboxMode(enum.StrEnum):
    """What counts as activity in inbox/ (`healer.activity.inbox`)."""

    CONSUME = "consume"  # the agent taking a message out (the default)
    ANY = "any"
    NONE = "none"


class Transition(enum.StrEnum):
    """What happened to an incident (or to the swarm) that the operator's stack hears of
    (SPEC §4, §14, §17)."""

    STALLED = "stalled"
    ESCALATED = "escalated"
    RECOVERED = "recovered"
    RESOLVED = "resolved"  # an operator's `healer resolve`, or the agent's folder removed
    WAITING = "waiting"
    WAITING_OVER = "waiting_over"  # internal: ends an AgentWaiting alert
    FLAPPING = "flapping"
    FLAPPING_OVER = "flapping_over"
    SWARM_OUTAGE = "swarm_outage"
    SWARM_RECOVERED = "swarm_recovered"


class FolderEvent(enum.StrEnum):
    """An agent folder appearing under the root or going away."""

    ADDED = "added"
    REMOVED = "removed"


class IncidentOutcome(enum.StrEnum):
    """How an incident closed: the agent came back, or an operator (or its folder's
    removal) ended it."""

    RECOVERED = "recovered"
    RESOLVED = "resolved"


class Settlement(enum.StrEnum):
    """A healing action once settled: the agent came back before the next attempt, or not."""

    SUCCESS = "success"
    FAILED = "failed"


def is_own_temp_name(name: str) -> bool:
    """True for the basename of a temp file healer created."""
    return TEMP_MARKER in name


def free_name(stem: str, taken: Collection[str], suffix: str = ".md") -> str:
    """`<stem><suffix>`, then `<stem>_2<suffix>`, `_3`… while the name is taken: the one
    rule for every file healer adds beside others of its kind."""
    name, n = f"{stem}{suffix}", 1
    while name in taken:
        n += 1
        name = f"{stem}_{n}{suffix}"
    return name


def is_plain_name(name: str) -> bool:
    """True for one plain path component: an agent folder's name, a file healer writes."""
    return bool(name) and name not in (".", "..") and "/" not in name and "\0" not in name


class Stage(enum.Enum):
    """Where an agent stands, as `healer status` reports it."""

    ACTIVE = "active"
    WAITING = "waiting"  # on a human, in its own words (heartbeat.json): not a stall
    DONE = "done"  # finished and off duty until its next genuine activity
    HEALING = "healing"
    RECOVERING = "recovering"
    ESCALATED = "escalated"
    BUSY = "busy"
    FLAPPING = "flapping"  # stalls again and again: detected and recorded, not healed


class Pipeline(enum.Enum):
    HEALING = "healing"
    RECOVERY = "recovery"


class EventKind(enum.Enum):
    """What a filesystem event did to a path (watchdog's vocabulary, narrowed)."""

    CREATED = "created"
    MODIFIED = "modified"
    DELETED = "deleted"
    MOVED = "moved"  # a rename seen from both sides: (source, destination)
    ATTRIB = "attrib"  # touch, chmod: an agent touching its status file is alive
    CLOSED_WRITE = "closed_write"


@dataclass(frozen=True, slots=True)
class Observation:
    """One classified event: which agent it belongs to, whether it is the agent's own work,
    and whether it touched the agent's heartbeat.json (what the agent says of itself)."""

    agent: str
    activity: bool
    beat: bool = False
