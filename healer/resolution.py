"""`healer resolve`: the operator's acknowledgement of an agent, closing its open incident
as resolved and removing its escalation marker. A running daemon follows it at its next
reconcile sweep."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from healer.config import Config
from healer.core.model import IncidentOutcome, is_plain_name
from healer.errors import UsageError
from healer.ports import IncidentLog, StatusStore

__all__ = ["Resolution", "check_agent_folder", "resolve"]


@dataclass(frozen=True, slots=True)
class Resolution:
    """What a resolve did: the incident closed (its attempts) and whether a marker went."""

    agent: str
    closed: bool
    attempts: int
    marker_removed: bool

    @property
    def anything(self) -> bool:
        return self.closed or self.marker_removed


def check_agent_folder(config: Config, agent: str) -> Path:
    """AGENT must name an existing agent folder directly under the root (UsageError)."""
    if not is_plain_name(agent):
        raise UsageError(f"resolve: {agent!r} is not an agent name")
    if not config.is_agent_name(agent):
        raise UsageError(
            f"resolve: {agent!r} does not match agent_pattern {config.agent_pattern!r}"
        )
    path = config.workspaces / agent
    try:
        st = os.lstat(path)
    except OSError:
        raise UsageError(f"resolve: no agent folder {agent!r} under {config.workspaces}") from None
    if stat.S_ISLNK(st.st_mode):
        raise UsageError(f"resolve: {agent!r} is a symlink, not an agent folder")
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"resolve: {path} is not a directory")
    return path


def resolve(agent: str, history: IncidentLog, files: StatusStore, now: float) -> Resolution:
    """Close `agent`'s open incident as resolved and remove its marker (ActionError when
    the marker cannot be removed)."""
    row = history.open_incident_for(agent)
    if row is not None:
        history.close_incident(row.id, closed_at=now, outcome=IncidentOutcome.RESOLVED)
    marker = files.remove_marker(agent)
    return Resolution(agent, row is not None, row.attempts if row is not None else 0, marker)
