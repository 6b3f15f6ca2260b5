"""The watcher: filesystem events in, (agent, time) out through a queue the main loop drains.
inotify through one reader thread (adapters/inotify_reader.py); `--poll` through watchdog's
polling observer. Neither raises into the main loop, which restarts a dead reader."""

from __future__ import annotations

import collections
import ctypes
import errno
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import structlog
from watchdog.observers.polling import PollingObserver

from healer.adapters.inotify_reader import InotifyReader
from healer.adapters.ledger import SelfWriteLedger
from healer.adapters.observations import ACTIVITY, BEAT, Classifier, make_classifier
from healer.adapters.polling import PollingHandler
from healer.adapters.prefetch import PROBE, Prefetch
from healer.core.model import FolderEvent, InboxMode

__all__ = ["Change", "Watcher", "watches_left"]

log = structlog.get_logger()

_IN_ATTRIB = 0x4
_new = tuple.__new__  # a Change from its fields without the NamedTuple's Python __new__
try:
    _LIBC: Any = ctypes.CDLL(None, use_errno=True)
    _LIBC.inotify_init1.argtypes = [ctypes.c_int]
    _LIBC.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
except (OSError, AttributeError):  # no inotify here: the reader will say so at start
    _LIBC = None


class Change(NamedTuple):
    """One thing the main loop must apply: activity of an agent, or an agent folder that
    appeared or went away (`folder`). A tuple: the reader makes one per agent per batch,
    and a frozen dataclass cost three times as much to make."""

    agent: str
    when: float
    activity: bool
    folder: FolderEvent | None = None
    beat: bool = False  # heartbeat.json was written: the daemon reads it


def watches_left(path: Path) -> bool:
    """Whether one more inotify watch can be added for this user, asked of the kernel with a
    probe watch of our own."""
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
    """Recursive watch of the workspace root feeding a deque of Changes.

    The root is watched by its real path, resolved at start and at every restart: under a
    symlinked root (`/srv/ws -> /data/ws`) the folders made at runtime are watched at once."""

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
        self.configured = Path(os.path.abspath(root))  # the path healer writes (and notes) by
        self.root = self.configured
        self._is_agent = is_agent
        self.ledger = ledger
        self._inbox_mode = inbox_mode
        self.poll = poll
        self.poll_interval = poll_interval
        self._clock = clock
        self.changes: collections.deque[Change] = collections.deque()
        self.wake = threading.Event()
        self.overflowed = threading.Event()
        self.restarts = 0
        self._counted = 0  # events of readers since replaced
        self._full = False
        self._reader: InotifyReader | None = None
        self._observer: PollingObserver | None = None
        self._handler: PollingHandler | None = None
        self._prefetch: Prefetch | None = None

    # -- configuration (a reload may change both) -----------------------------------------
    @property
    def is_agent(self) -> Callable[[str], bool]:
        return self._is_agent

    @is_agent.setter
    def is_agent(self, value: Callable[[str], bool]) -> None:
        self._is_agent = value
        self._reconfigure()

    @property
    def inbox_mode(self) -> InboxMode:
        return self._inbox_mode

    @inbox_mode.setter
    def inbox_mode(self, value: InboxMode) -> None:
        self._inbox_mode = value
        self._reconfigure()

    def _reconfigure(self) -> None:
        reader, handler = self._reader, self._handler
        if reader is not None:
            reader.classify = self._classifier()
            reader.is_agent = self._is_agent
            reader.clear_cache()
        if handler is not None:
            handler.classify = self._classifier()
            handler.is_agent = self._is_agent

    def _classifier(self) -> Classifier:
        return make_classifier(self._is_agent, self._inbox_mode, str(self.configured))

    @property
    def events_seen(self) -> int:
        live = self._reader or self._handler
        return self._counted + (live.events if live is not None else 0)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, *, defer: bool = False) -> None:
        """Watch the root and every folder under it; with `defer`, the root only, and each
        agent's folders when watch_agent is called (just before the agent's scan, so what
        it writes is either seen by the scan or an event). A restart watches everything."""
        self._begin(defer)

    def watch_agent(self, agent: str) -> None:
        reader = self._reader
        if reader is not None:
            reader.watch_tree(agent)

    def _begin(self, defer: bool = False) -> None:
        # Resolved again at every (re)start: the link may have been re-pointed.
        self.root = Path(os.path.realpath(self.configured))
        if not self.poll:
            try:
                self._reader = self._new_reader(defer)
                return
            except OSError as exc:
                # Out of inotify watches or instances, or no inotify at all: poll instead.
                log.warning("inotify_unavailable", error=str(exc), fallback="polling")
                self.poll = True
        self._handler = PollingHandler(
            str(self.root), classify_obs=self._classifier(), is_agent=self._is_agent,
            is_own=self._own_path, emit=self._emit, clock=self._clock,
        )
        observer = PollingObserver(timeout=self.poll_interval)
        observer.schedule(self._handler, str(self.root), recursive=True)
        observer.start()
        self._observer = observer

    def _new_reader(self, defer: bool) -> InotifyReader:
        self._full = False
        reader = InotifyReader(
            str(self.root), str(self.configured), classify_obs=self._classifier(),
            is_agent=self._is_agent, is_own=self._own_path, emit=self._emit,
            on_lost=self._overflow, on_full=self._on_full, clock=self._clock,
        )
        try:
            # Watch first (root, then every folder, each before it is listed), then start
            # reading; the caller scans after this returns.
            reader.watch_root()
            self._warm_up()
            if not defer:
                reader.watch_tree("")
            if self._full or not watches_left(self.root):
                raise OSError(errno.ENOSPC, "inotify watch limit reached")
        except BaseException:
            reader.stop(0.1)
            raise
        reader.start()
        return reader

    def _warm_up(self) -> None:
        """On a cold cache the walk and the scan wait on the disk one read at a time; a few
        threads reading ahead (in the walk's order: it takes the last folder first) keep
        the disk busy. On a warm cache none is started."""
        try:
            names = os.listdir(self.root)
        except OSError:
            return
        names.reverse()
        if Prefetch.cold(str(self.root), names):
            self._prefetch = Prefetch(str(self.root), names[PROBE:]).start()

    def _on_full(self) -> None:
        self._full = True
        self.wake.set()  # alive() now says no: the main loop restarts the watcher, polling

    def fall_back_if_full(self) -> bool:
        """Switch to polling once the inotify watch limit is reached (new folders would go
        unwatched); True when it did, and the caller must rescan."""
        if self.poll or (not self._full and watches_left(self.root)):
            return False
        self.restart()
        return True

    def alive(self) -> bool:
        if self._reader is not None:
            return self._reader.alive() and not self._full
        observer = self._observer
        if observer is None or not observer.is_alive():
            return False
        # An emitter stops on its own when the watched root is deleted; the observer lives on.
        return all(emitter.is_alive() for emitter in list(observer.emitters))

    def restart(self) -> None:
        """Replace a dead reader; the caller rescans, since events were lost meanwhile."""
        if self._full and not self.poll:
            log.warning("inotify_unavailable", error="inotify watch limit reached",
                        fallback="polling")
            self.poll = True
        self.stop(timeout=0.5)
        self.restarts += 1
        self._begin()
        log.warning("observer_restarted", restarts=self.restarts, polling=self.poll)

    def stop(self, timeout: float = 1.0) -> None:
        if self._prefetch is not None:
            self._prefetch.stop()
        reader, self._reader = self._reader, None
        observer, self._observer = self._observer, None
        handler, self._handler = self._handler, None
        if handler is not None:
            self._counted += handler.events
        try:
            if reader is not None:
                self._counted += reader.events
                reader.stop(timeout)
            if observer is not None:
                observer.stop()
                observer.join(timeout)
        except Exception as exc:  # stopping must never keep healer from exiting
            log.warning("observer_stop_failed", error=str(exc))

    def close(self) -> None:
        self.stop()

    def _overflow(self) -> None:
        self.overflowed.set()
        self.wake.set()

    # -- the reader thread ----------------------------------------------------------------
    def _emit(self, activity: list[tuple[str, int]], folders: list[tuple[str, FolderEvent]],
              when: float) -> None:
        append = self.changes.append
        for agent, what in folders:
            append(Change(agent, when, False, folder=what))
        for agent, flags in activity:  # one per agent per batch: made the C way, at half
            append(_new(Change, (agent, when, bool(flags & ACTIVITY), None, bool(flags & BEAT))))
        self.wake.set()

    def _own_path(self, path: str) -> bool:
        """A file healer created by link() (an inbox message) shows up as a plain creation;
        the ledger knows it."""
        if self.ledger.get(path) is None:
            return False
        try:
            return self.ledger.is_self(path, os.lstat(path))
        except OSError:
            return False

    def drain(self, limit: int = 100_000) -> list[Change]:
        """Take up to `limit` queued changes (main thread)."""
        pop = self.changes.popleft
        # Only this thread takes from the deque: what len() counts is there to be taken.
        return [pop() for _ in range(min(limit, len(self.changes)))]
