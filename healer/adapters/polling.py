"""`--poll` (or no inotify to be had): watchdog's polling observer's events, classified the
way the inotify reader classifies its own and handed over through the same callback."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import structlog
from watchdog.events import FileSystemEvent, FileSystemEventHandler

from healer.adapters.observations import Classifier, Emit
from healer.core.model import EventKind, FolderEvent

__all__ = ["PollingHandler"]

log = structlog.get_logger()

_KINDS: dict[str, EventKind] = {
    "created": EventKind.CREATED,
    "modified": EventKind.MODIFIED,
    "attrib": EventKind.ATTRIB,
    "deleted": EventKind.DELETED,
    "moved": EventKind.MOVED,
    "closed": EventKind.CLOSED_WRITE,
}


class PollingHandler(FileSystemEventHandler):
    """One event at a time from the polling observer's thread; never raises into it (an
    exception there kills watchdog's thread silently)."""

    def __init__(self, root: str, *, classify_obs: Classifier, is_agent: Callable[[str], bool],
                 is_own: Callable[[str], bool], emit: Emit, clock: Callable[[], float]) -> None:
        self._prefix = root + os.sep
        self.classify = classify_obs  # replaced on a config reload, as the reader's is
        self.is_agent = is_agent
        self._is_own = is_own
        self._emit = emit
        self._clock = clock
        self.events = 0
        self.errors = 0

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            self._handle(event)
        except Exception:
            self.errors += 1
            log.exception("event_handler_error")

    def _rel(self, path: Any) -> str | None:
        text = os.fsdecode(path)
        if text.startswith(self._prefix):
            return text[len(self._prefix):]
        return None

    def _handle(self, event: FileSystemEvent) -> None:
        kind = _KINDS.get(event.event_type)
        if kind is None or (event.is_directory and kind is EventKind.MODIFIED):
            return  # opens, close-without-write, and a parent's mtime echo of a child's event
        now = self._clock()
        self.events += 1
        src = self._rel(event.src_path)
        dest = self._rel(event.dest_path) if kind is EventKind.MOVED else None
        if src is None and dest is None:
            return
        folders = self._folders(kind, src, dest) if event.is_directory else []
        activity: dict[str, int] = {}
        if not folders:
            for agent, act, check in self.classify(src or "", kind, dest):
                if act and check is not None and self._is_own(check):
                    continue  # a message healer linked into an inbox: a plain creation
                activity[agent] = activity.get(agent, 0) | act
        if activity or folders:
            self._emit(list(activity.items()), folders, now)

    def _folders(self, kind: EventKind, src: str | None,
                 dest: str | None) -> list[tuple[str, FolderEvent]]:
        """Agent folders appearing or going away (none when the event is about another
        folder)."""
        out = []
        if src and os.sep not in src and self.is_agent(src):
            if kind in (EventKind.DELETED, EventKind.MOVED):
                out.append((src, FolderEvent.REMOVED))
            elif kind is EventKind.CREATED:
                out.append((src, FolderEvent.ADDED))
        if dest and os.sep not in dest and self.is_agent(dest):
            out.append((dest, FolderEvent.ADDED))
        return out
