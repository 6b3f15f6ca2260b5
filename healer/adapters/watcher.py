"""The watchdog observer: events in, (agent, time) out through a queue the main loop drains.
The handler does O(1) work and never raises; the main loop restarts a dead observer."""

from __future__ import annotations

import collections
import ctypes
import errno
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import inotify_move_event_grouper
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from healer.adapters.ledger import SelfWriteLedger
from healer.core.classify import classify
from healer.core.model import EventKind, FolderEvent, InboxMode

__all__ = ["Change", "Watcher", "watches_left"]

log = structlog.get_logger()

_IN_ATTRIB = 0x4
try:
    _LIBC: Any = ctypes.CDLL(None, use_errno=True)
    _LIBC.inotify_init1.argtypes = [ctypes.c_int]
    _LIBC.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
except (OSError, AttributeError):  # no inotify here: watchdog will say so at start
    _LIBC = None

# watchdog holds an IN_MOVED_FROM back for `delay` seconds to pair it with its IN_MOVED_TO,
# and when its reader thread takes that event before the pair arrives it sleeps the whole
# delay, holding up every event behind it: any rename (an atomic replace, sed -i, a
# message filed away) could make every agent's activity land half a second late. The
# kernel queues both halves of a rename together, so a tenth of a second still pairs them.
MOVE_PAIRING_DELAY = 0.1
inotify_move_event_grouper.InotifyMoveEventGrouper.delay = MOVE_PAIRING_DELAY

# What the kernel is asked for. Opens and reads (healer's own reads included) are not.
EVENT_FILTER: list[type[FileSystemEvent]] = [
    FileCreatedEvent, FileModifiedEvent, FileAttribEvent, FileDeletedEvent, FileMovedEvent,
    FileClosedEvent, DirCreatedEvent, DirDeletedEvent, DirMovedEvent,
]
_KINDS: dict[str, EventKind] = {
    "created": EventKind.CREATED,
    "modified": EventKind.MODIFIED,
    "attrib": EventKind.ATTRIB,
    "deleted": EventKind.DELETED,
    "moved": EventKind.MOVED,
    "closed": EventKind.CLOSED_WRITE,
}


@dataclass(frozen=True, slots=True)
class Change:
    """One thing the main loop must apply: activity of an agent, or an agent folder that
    appeared or went away (`folder`)."""

    agent: str
    when: float
    activity: bool
    folder: FolderEvent | None = None
    beat: bool = False  # heartbeat.json was written: the daemon reads it


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: Watcher) -> None:
        self._w = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            self._w._handle(event)
        except Exception:  # a handler exception kills watchdog's thread silently
            self._w.handler_errors += 1
            log.exception("event_handler_error")


class _OverflowLog(logging.Handler):
    """watchdog reports a kernel queue overflow only in its log; listen there."""

    def __init__(self, on_overflow: Callable[[], None]) -> None:
        super().__init__(logging.WARNING)
        self._on_overflow = on_overflow

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self._on_overflow()


def watches_left(path: Path) -> bool:
    """Whether one more inotify watch can be added for this user, asked of the kernel with a
    probe watch of our own (watchdog does not report the folders it failed to watch)."""
    if _LIBC is None:
        return True
    fd = _LIBC.inotify_init1(os.O_CLOEXEC)
    if fd < 0:
        return ctypes.get_errno() != errno.EMFILE
    try:
        wd = _LIBC.inotify_add_watch(fd, os.fsencode(path), _IN_ATTRIB)
        return wd >= 0 or ctypes.get_errno() != errno.ENOSPC
    finally:
        os.close(fd)


class Watcher:
    """Recursive observer of the workspace root feeding a deque of Changes."""

    def __init__(
        self,
        root: Path,
        *,
        is_agent: Callable[[str], bool],
        ledger: SelfWriteLedger,
        inbox_mode: InboxMode = InboxMode.CONSUME,
        poll: bool = False,
        poll_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = Path(os.path.abspath(root))
        self._prefix = str(self.root) + os.sep
        self.is_agent = is_agent
        self.ledger = ledger
        self.inbox_mode = inbox_mode
        self.poll = poll
        self.poll_interval = poll_interval
        self._clock = clock
        self.changes: collections.deque[Change] = collections.deque()
        self.wake = threading.Event()
        self.overflowed = threading.Event()
        self.events_seen = 0
        self.handler_errors = 0
        self.restarts = 0
        self._observer: BaseObserver | None = None
        self._overflow_log = _OverflowLog(self._overflow)
        logging.getLogger("watchdog.observers").addHandler(self._overflow_log)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self._observer = self._new_observer()

    def _new_observer(self) -> BaseObserver:
        if not self.poll:
            try:
                from watchdog.observers.inotify import InotifyObserver

                observer: BaseObserver = InotifyObserver()
                observer.schedule(
                    _Handler(self), str(self.root), recursive=True, event_filter=EVENT_FILTER
                )
                observer.start()
                if not watches_left(self.root):
                    # watchdog skips, silently, every subfolder past the limit.
                    observer.stop()
                    observer.join(1.0)
                    raise OSError(errno.ENOSPC, "inotify watch limit reached")
                return observer
            except OSError as exc:
                # Out of inotify watches or instances, or no inotify at all: poll instead.
                log.warning("inotify_unavailable", error=str(exc), fallback="polling")
                self.poll = True
        observer = PollingObserver(timeout=self.poll_interval)
        observer.schedule(_Handler(self), str(self.root), recursive=True)
        observer.start()
        return observer

    def fall_back_if_full(self) -> bool:
        """Switch to polling once the inotify watch limit is reached (new folders would go
        unwatched); True when it did, and the caller must rescan."""
        if self.poll or watches_left(self.root):
            return False
        log.warning("inotify_unavailable", error="inotify watch limit reached",
                    fallback="polling")
        self.poll = True
        self.restart()
        return True

    def alive(self) -> bool:
        observer = self._observer
        if observer is None or not observer.is_alive():
            return False
        # An emitter stops on its own when the watched root is deleted; the observer lives on.
        return all(emitter.is_alive() for emitter in list(observer.emitters))

    def restart(self) -> None:
        """Replace a dead observer; the caller rescans, since events were lost meanwhile."""
        self.stop(timeout=0.5)
        self.restarts += 1
        self._observer = self._new_observer()
        log.warning("observer_restarted", restarts=self.restarts, polling=self.poll)

    def stop(self, timeout: float = 1.0) -> None:
        observer, self._observer = self._observer, None
        if observer is None:
            return
        try:
            observer.stop()
            observer.join(timeout)
        except Exception as exc:  # stopping must never keep healer from exiting
            log.warning("observer_stop_failed", error=str(exc))

    def close(self) -> None:
        self.stop()
        logging.getLogger("watchdog.observers").removeHandler(self._overflow_log)

    def _overflow(self) -> None:
        self.overflowed.set()
        self.wake.set()

    # -- the observer thread --------------------------------------------------------------
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
        self.events_seen += 1
        src = self._rel(event.src_path)
        dest = self._rel(event.dest_path) if kind is EventKind.MOVED else None
        if src is None and dest is None:
            return
        if event.is_directory and self._folder_change(kind, src, dest, now):
            return
        observations = classify(
            src or "", kind, dest=dest, inbox_mode=self.inbox_mode, is_agent=self.is_agent
        )
        for obs in observations:
            if obs.activity and self._own_file(kind, src, dest):
                continue
            self.changes.append(Change(obs.agent, now, obs.activity, beat=obs.beat))
        if observations and not self.wake.is_set():
            self.wake.set()

    def _folder_change(
        self, kind: EventKind, src: str | None, dest: str | None, now: float
    ) -> bool:
        """Agent folders appearing or going away; True when the event was only that."""
        handled = False
        if src and os.sep not in src and self.is_agent(src):
            if kind in (EventKind.DELETED, EventKind.MOVED):
                self.changes.append(Change(src, now, False, folder=FolderEvent.REMOVED))
                handled = True
            elif kind is EventKind.CREATED:
                self.changes.append(Change(src, now, False, folder=FolderEvent.ADDED))
                handled = True
        if dest and os.sep not in dest and self.is_agent(dest):
            self.changes.append(Change(dest, now, False, folder=FolderEvent.ADDED))
            handled = True
        if handled:
            self.wake.set()
        return handled

    def _own_file(self, kind: EventKind, src: str | None, dest: str | None) -> bool:
        """A file healer created by link() (an inbox message) shows up as a plain creation;
        the ledger knows it. Only creations need the check: every other write healer makes
        is a rename out of a temp name, which the classifier already drops."""
        if kind not in (EventKind.CREATED, EventKind.MODIFIED, EventKind.CLOSED_WRITE):
            return False
        if src is None or "/inbox/" not in src:
            return False  # the only files healer creates in place are inbox messages
        path = self._prefix + src
        if self.ledger.get(path) is None:
            return False
        try:
            return self.ledger.is_self(path, os.lstat(path))
        except OSError:
            return False

    def drain(self, limit: int = 100_000) -> list[Change]:
        """Take up to `limit` queued changes (main thread)."""
        out = []
        pop = self.changes.popleft
        for _ in range(limit):
            try:
                out.append(pop())
            except IndexError:
                break
        return out
