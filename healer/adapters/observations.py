"""What an event says of an agent, shared by both event sources (the inotify reader and the
polling handler): the classifier bound to the config, and the shape of what they emit."""

from __future__ import annotations

import os
from collections.abc import Callable

from healer.core.classify import classify
from healer.core.model import EventKind, FolderEvent, InboxMode

__all__ = ["ACTIVITY", "BEAT", "Classifier", "Emit", "Obs", "make_classifier"]

# What an event says of an agent, as flags: ACTIVITY (the agent's own work) and BEAT (its
# heartbeat.json, which the daemon then reads); one int, so a batch merges them with `|`.
ACTIVITY, BEAT = 1, 2
Obs = tuple[str, int, str | None]  # agent, flags, a path for the self-write ledger or None
Emit = Callable[[list[tuple[str, int]], list[tuple[str, FolderEvent]], float], None]
Classifier = Callable[[str, EventKind, str | None], tuple[Obs, ...]]

_LEDGER_KINDS = (EventKind.CREATED, EventKind.MODIFIED, EventKind.CLOSED_WRITE)


def make_classifier(is_agent: Callable[[str], bool], inbox_mode: InboxMode,
                    ledger_root: str) -> Classifier:
    """classify() bound to the config, with the paths the self-write ledger must vet."""
    prefix = ledger_root + os.sep

    def run(rel: str, kind: EventKind, dest: str | None) -> tuple[Obs, ...]:
        obs = classify(rel, kind, dest=dest, inbox_mode=inbox_mode, is_agent=is_agent)
        check = (prefix + rel if kind in _LEDGER_KINDS and "/inbox/" in rel else None)
        return tuple((o.agent, (ACTIVITY if o.activity else 0) | (BEAT if o.beat else 0), check)
                     for o in obs)

    return run
