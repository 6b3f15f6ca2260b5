"""Shared vocabulary of the core: stages, pipelines, actions, and healer's own file names."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "ESCALATION_MARKER",
    "HEAL_ACTIONS",
    "RECOVERY_ACTIONS",
    "RESCUE_PREFIX",
    "STATUS_FILE",
    "TEMP_MARKER",
    "EventKind",
    "Observation",
    "Pipeline",
    "Stage",
    "is_own_temp_name",
]

STATUS_FILE = "status.json"
ESCALATION_MARKER = ".ESCALATION_REQUIRED"
RESCUE_PREFIX = "HEALER_RESCUE_"
# Every file healer writes is first written under a name containing this marker and then
# renamed into place, so an event whose (source) name carries it is healer's own.
TEMP_MARKER = ".healer-tmp."

HEAL_ACTIONS = ("force_update", "clear_stuck_tasks", "reset_status")
RECOVERY_ACTIONS = ("rescue_message", "reassign_tasks", "alert")


def is_own_temp_name(name: str) -> bool:
    """True for the basename of a temp file healer created."""
    return TEMP_MARKER in name


class Stage(enum.Enum):
    """Where an agent stands, as `healer status` reports it."""

    ACTIVE = "active"
    HEALING = "healing"
    RECOVERING = "recovering"
    ESCALATED = "escalated"
    BUSY = "busy"


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
    """One classified event: which agent it belongs to and whether it is the agent's own work."""

    agent: str
    activity: bool
