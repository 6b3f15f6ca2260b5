"""One thread over watchdog's inotify layer: read a batch, classify each event in place, hand
the batch to the main loop. No emitter, no move-pairing queue, no dispatcher. Past 300 lines
because the fast path and the slow one (renames, new folders, the root, overflow) share one
table of watches and its rules, and are only right read together."""

from __future__ import annotations

import errno
import os
import threading
import time
import warnings
from collections.abc import Callable
from contextlib import suppress

import structlog
from watchdog.observers.inotify_c import (
    DEFAULT_EVENT_BUFFER_SIZE,
    CallbackId,
    InotifyEvent,
    InotifyFD,
    Mask,
    WatchDescriptor,
)

from healer.adapters.fsops import no_subfolders
from healer.adapters.observations import Classifier, Emit, Obs
from healer.core.model import EventKind, FolderEvent

__all__ = ["COALESCE", "COALESCE_MAX", "MASK", "InotifyReader", "Raw", "read_raw"]

log = structlog.get_logger()

_MODIFY, _ATTRIB, _CLOSE_WRITE = 0x2, 0x4, 0x8
_MOVED_FROM, _MOVED_TO, _CREATE, _DELETE = 0x40, 0x80, 0x100, 0x200
_DELETE_SELF, _MOVE_SELF, _UNMOUNT, _Q_OVERFLOW, _IGNORED = 0x400, 0x800, 0x2000, 0x4000, 0x8000
_ONLYDIR, _DONT_FOLLOW, _ISDIR = 0x01000000, 0x02000000, 0x40000000
# What the kernel is asked for: writes, metadata, names coming and going. Opens and reads
# (healer's own reads included) are not. The root is watched by its real path, so
# IN_DONT_FOLLOW never leaves a symlinked root watching the link instead of the folder.
MASK = (_MODIFY | _ATTRIB | _CLOSE_WRITE | _MOVED_FROM | _MOVED_TO | _CREATE | _DELETE
        | _DELETE_SELF | _ONLYDIR | _DONT_FOLLOW)
_MASK = Mask(MASK)
# Anything but a plain file event takes the slow path (watches, moves, the root, overflow).
_SLOW = _MOVED_FROM | _MOVED_TO | _DELETE_SELF | _MOVE_SELF | _UNMOUNT | _Q_OVERFLOW | _IGNORED
_KIND = {_MODIFY: EventKind.MODIFIED, _ATTRIB: EventKind.ATTRIB,
         _CLOSE_WRITE: EventKind.CLOSED_WRITE, _CREATE: EventKind.CREATED,
         _DELETE: EventKind.DELETED}
# After each read the reader waits before the next, so events are read (and the loop woken)
# in batches: a wake-up costs far more than an event. The wait grows with the batch, from
# 1 ms to 20 ms past ~5,000 events/s: far under a tick (and the stall re-stat covers it).
COALESCE = 0.001
COALESCE_MAX = 0.020
COALESCE_PER_EVENT = 0.0002
# A batch this large means the kernel queue had more: a rename's IN_MOVED_FROM ending it
# waits for the next read (at once), rather than being taken for a deletion.
_BACKLOG = 1024
_CACHE_MAX = 65_536

# One event as watchdog parses it off the buffer: wd, mask, cookie, name.
Raw = tuple[WatchDescriptor, Mask, int, bytes]


def read_raw(fd: InotifyFD) -> list[Raw]:
    """InotifyFD.read_events without its InotifyEvent per event: a frozen dataclass each,
    the largest single cost of an event on the fast path (1.5 of ~2 us of parsing). The
    same two watchdog steps it takes (the read, which honours close(); the parse), the same
    filter (IN_Q_OVERFLOW is the one global event kept). watchdog is pinned below 8."""
    buffer = fd._read_event_buffer(DEFAULT_EVENT_BUFFER_SIZE)
    return [raw for raw in InotifyFD._parse_event_buffer(buffer)
            if raw[0] != -1 or raw[1] & _Q_OVERFLOW]


def _no_subfolders(path: str) -> bool:
    """fsops.no_subfolders of `path`, stat'd once watched: a subfolder made since is an event."""
    with suppress(OSError):
        return no_subfolders(os.stat(path, follow_symlinks=False))
    return False


class InotifyReader:
    """Watches `real_root` recursively on one InotifyFD; `emit(activity, folders, when)`
    receives each batch's observations, `on_lost()` an overflow, `on_full()` ENOSPC."""

    def __init__(self, real_root: str, ledger_root: str, *, classify_obs: Classifier,
            is_agent: Callable[[str], bool],
            is_own: Callable[[str], bool],
            emit: Emit, on_lost: Callable[[], None], on_full: Callable[[], None],
            clock: Callable[[], float]) -> None:
        self._root = real_root
        self._ledger_root = ledger_root
        self.classify = classify_obs  # replaced on a config reload (then clear_cache)
        self.is_agent = is_agent
        self._is_own = is_own
        self._emit = emit
        self._on_lost = on_lost
        self._on_full = on_full
        self._clock = clock
        self._fd = InotifyFD()
        self._id = CallbackId(id(self))
        self._paths: dict[int, str] = {}  # wd -> folder relative to the root ("" = root)
        self._by_path: dict[str, int] = {}
        self._cache: dict[Raw, tuple[Obs, ...]] = {}
        self._moves: dict[int, tuple[str, bool]] = {}  # cookie -> (source, is_dir)
        self._moved_wds: dict[int, list[tuple[int, str]]] = {}  # cookie -> subtree watches
        self._carry: list[Raw] = []
        self.root_wd: int | None = None
        self.root_lost = False
        self.events = 0
        self.batches = 0
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="healer-inotify", daemon=True)

    # -- watches --------------------------------------------------------------------------
    def watch_root(self) -> None:
        """The root's own watch, synchronously: from here on no new agent folder is missed."""
        self.root_wd = self._add(self._root, "")

    def watch_tree(self, rel: str, found: list[tuple[str, bool]] | None = None) -> None:
        """Watch `rel` and every folder under it, each before it is listed, so nothing
        created in it is missed; with `found`, collect (path, is_dir) of what was there."""
        with warnings.catch_warnings():
            # Watching a folder again returns its watch; watchdog warns of the overwrite.
            warnings.simplefilter("ignore", RuntimeWarning)
            self._walk(rel, found)

    def _walk(self, rel: str, found: list[tuple[str, bool]] | None) -> None:
        stack = [(os.path.join(self._root, rel) if rel else self._root, rel)]
        while stack:
            path, here = stack.pop()
            if here and self._add(path, here) is None:
                continue
            if found is None and here and _no_subfolders(path):
                continue  # watched, with nothing under it to watch: half a swarm's folders
            try:
                with os.scandir(path) as entries:
                    for entry in entries:
                        sub = f"{here}/{entry.name}" if here else entry.name
                        is_dir = entry.is_dir(follow_symlinks=False)
                        if is_dir:
                            stack.append((entry.path, sub))
                        if found is not None:
                            found.append((sub, is_dir))
            except OSError:
                continue  # gone or unreadable meanwhile: its parent's events still come

    def _add(self, path: str, rel: str) -> int | None:
        try:
            wd = int(self._fd.add_callback(os.fsencode(path), _MASK, self, self._id))
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EMFILE):
                self._on_full()
                if not rel:
                    raise
            elif not rel:
                raise
            return None
        if wd < 0:  # EACCES: watchdog returns no descriptor and no error
            return None
        if wd in self._paths:
            self._unmap(wd)
        self._paths[wd] = rel
        self._by_path[rel] = wd
        return wd

    def _unmap(self, wd: int) -> None:
        old = self._paths.pop(wd, None)
        if old is not None and self._by_path.get(old) == wd:
            del self._by_path[old]

    def _subtree(self, rel: str) -> list[tuple[int, str]]:
        prefix, paths = rel + "/", list(self._paths.items())  # the main thread may add some
        return [(wd, p) for wd, p in paths if p == rel or p.startswith(prefix)]

    # The WatchCallback side: InotifyFD calls these from handle_event (on this thread).
    def on_event(self, event: InotifyEvent) -> None:  # events come from read_raw instead
        pass

    def on_watch_deleted(self, wd: WatchDescriptor) -> None:
        self._unmap(int(wd))
        self._cache.clear()
        if wd == self.root_wd:
            self.root_lost = True

    def on_queue_overflow(self) -> None:
        pass  # handled in _batch, once, before the main loop is told

    # -- the thread -----------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive() and not self.root_lost

    def stop(self, timeout: float) -> None:
        self._stopping = True
        self._fd.close()  # wakes the blocked read through watchdog's kill pipe
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def clear_cache(self) -> None:
        self._cache = {}

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:  # the main loop sees alive() false, restarts it and rescans
            log.exception("observer_failed")

    def _loop(self) -> None:
        while not self._stopping:
            events = read_raw(self._fd)
            if self._stopping:
                return
            if events:
                try:
                    self._batch(events)
                except Exception:  # one odd event must not kill the reader
                    log.exception("event_handler_error")
            time.sleep(min(COALESCE_MAX, max(COALESCE, len(events) * COALESCE_PER_EVENT)))

    def _batch(self, events: list[Raw]) -> None:
        now = self._clock()
        self.events += len(events)
        if self._carry:
            events = self._carry + events
            self._carry = []
        self.batches += 1
        activity: dict[str, int] = {}
        folders: list[tuple[str, FolderEvent]] = []
        paths, cache, is_own = self._paths, self._cache, self._is_own
        last = len(events) - 1
        for i, raw in enumerate(events):
            wd, mask, _cookie, raw_name = raw
            if mask & _SLOW or mask & _ISDIR:
                if (i == last and mask & _MOVED_FROM and last + 1 >= _BACKLOG
                        and not mask & _ISDIR):
                    self._carry.append(raw)
                    continue
                self._slow(InotifyEvent(*raw), activity, folders)
                continue
            hit = cache.get(raw)  # a file event's cookie is 0: the event is its own key
            if hit is None:
                base = paths.get(wd)
                kind = _KIND.get(mask & 0x3FF)
                if base is None or kind is None or not raw_name:
                    continue
                name = os.fsdecode(raw_name)
                hit = self.classify(f"{base}/{name}" if base else name, kind, None)
                if len(cache) >= _CACHE_MAX:
                    cache.clear()
                cache[raw] = hit
            for agent, act, check in hit:
                if act and check is not None and is_own(check):
                    continue
                activity[agent] = activity.get(agent, 0) | act
        self._flush_moves(activity, folders)
        if activity or folders:
            self._emit(list(activity.items()), folders, now)

    # -- the slow path: folders, renames, the root, overflow --------------------------------
    def _slow(self, ev: InotifyEvent, activity: dict[str, int],
              folders: list[tuple[str, FolderEvent]]) -> None:
        mask = ev.mask
        if mask & (_Q_OVERFLOW | _IGNORED | _DELETE_SELF | _MOVE_SELF | _UNMOUNT):
            self._watch_event(ev)
            return
        base = self._paths.get(ev.wd)
        if base is None or not ev.name:
            return
        name = os.fsdecode(ev.name)
        rel = f"{base}/{name}" if base else name
        is_dir = bool(mask & _ISDIR)
        if mask & _MOVED_FROM:
            self._moves[ev.cookie] = (rel, is_dir)
            if is_dir:
                moved = self._subtree(rel)
                for wd, _ in moved:
                    self._unmap(wd)
                self._moved_wds[ev.cookie] = moved
                self._cache.clear()
            return
        if mask & _MOVED_TO:
            self._moved_to(ev.cookie, rel, is_dir, activity, folders)
            return
        kind = _KIND.get(mask & 0x3FF)
        if kind is None or (kind is EventKind.ATTRIB and is_dir):
            return
        if is_dir and kind is EventKind.CREATED:
            self._new_folder(rel, activity, folders)
            return
        if is_dir and "/" not in rel and kind is EventKind.DELETED:
            self._folder(rel, FolderEvent.REMOVED, activity, folders)
            return
        self._note(rel, kind, None, activity)

    def _watch_event(self, ev: InotifyEvent) -> None:
        """Events of the queue or of a watch itself, not of a name in a folder."""
        if ev.mask & _Q_OVERFLOW:
            self._overflow()
        elif ev.mask & _IGNORED:
            self._fd.handle_event(ev)  # watchdog's book-keeping, then on_watch_deleted
        elif ev.wd == self.root_wd:
            self.root_lost = True  # the root itself deleted, moved away or unmounted

    def _moved_to(self, cookie: int, rel: str, is_dir: bool, activity: dict[str, int],
                  folders: list[tuple[str, FolderEvent]]) -> None:
        src_dir = self._moves.pop(cookie, None)
        src = src_dir[0] if src_dir else None
        if not is_dir:
            if src is None:  # from outside the tree, or the pair was lost: a creation
                self._note(rel, EventKind.CREATED, None, activity, ledger_any=True)
            else:
                self._note(src, EventKind.MOVED, rel, activity)
            return
        moved = self._moved_wds.pop(cookie, None)
        if src is not None and "/" not in src:
            self._folder(src, FolderEvent.REMOVED, activity, folders)
        found: list[tuple[str, bool]] = []
        if moved:  # renamed inside the tree: the same watches, under the new name
            for wd, old in moved:
                new = rel + old[len(src or ""):]
                self._unmap(wd)
                self._paths[wd] = new
                self._by_path[new] = wd
        else:
            self.watch_tree(rel, found)
        self._cache.clear()
        self._arrived(rel, src, found, activity, folders)

    def _flush_moves(self, activity: dict[str, int],
                     folders: list[tuple[str, FolderEvent]]) -> None:
        """Renames whose other half never came: moved out of the tree, so a deletion."""
        for cookie, (src, is_dir) in self._moves.items():
            moved = self._moved_wds.pop(cookie, None)
            if moved:
                self._fd.remove_callbacks([(WatchDescriptor(wd), self._id) for wd, _ in moved])
            if is_dir and "/" not in src:
                self._folder(src, FolderEvent.REMOVED, activity, folders)
            else:
                self._note(src, EventKind.DELETED, None, activity)
        self._moves.clear()

    def _new_folder(self, rel: str, activity: dict[str, int],
                    folders: list[tuple[str, FolderEvent]]) -> None:
        found: list[tuple[str, bool]] = []
        self.watch_tree(rel, found)
        self._cache.clear()
        self._arrived(rel, None, found, activity, folders)

    def _arrived(self, rel: str, src: str | None, found: list[tuple[str, bool]],
                 activity: dict[str, int], folders: list[tuple[str, FolderEvent]]) -> None:
        if "/" not in rel:
            self._folder(rel, FolderEvent.ADDED, activity, folders)
        elif src is not None:
            self._note(src, EventKind.MOVED, rel, activity)
        else:
            self._note(rel, EventKind.CREATED, None, activity)
        # What was written before the watches were in place is reported as created now.
        for path, _ in found:
            self._note(path, EventKind.CREATED, None, activity, ledger_any=True)

    def _folder(self, agent: str, what: FolderEvent, activity: dict[str, int],
                folders: list[tuple[str, FolderEvent]]) -> None:
        if not self.is_agent(agent):
            return
        if activity:  # keep the order: what happened before the folder event goes first
            self._emit(list(activity.items()), folders[:], self._clock())
            activity.clear()
            folders.clear()
        folders.append((agent, what))

    def _note(self, rel: str, kind: EventKind, dest: str | None, activity: dict[str, int],
              *, ledger_any: bool = False) -> None:
        for agent, act, check in self.classify(rel, kind, dest):
            if act and ledger_any and check is None:
                check = os.path.join(self._ledger_root, dest or rel)
            if act and check is not None and self._is_own(check):
                continue
            activity[agent] = activity.get(agent, 0) | act

    def _overflow(self) -> None:
        """Events were lost, folder creations among them: watch what is not watched yet
        (adding a watch twice returns the same one), then let the main loop rescan."""
        self._moves.clear()
        self._moved_wds.clear()
        self._cache.clear()
        self.watch_tree("")
        self._on_lost()

