"""Reading a workspace without events: which agents exist, when each was last active (from
mtimes), and its busy lease. Follows no symlink but an agent's status.json, and that one
only to read it; never opens anything but status.json."""

from __future__ import annotations

import enum
import os
import stat
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from healer.adapters.beatfile import BeatFile, Identity, read_heartbeat
from healer.adapters.fsops import no_subfolders
from healer.adapters.leases import LeaseAhead, may_hold_lease, open_agent_folder
from healer.adapters.statusfile import ReadKind, StatusRead, parse_snapshot, read_raw
from healer.core.heartbeat import HEARTBEAT_FILE
from healer.core.model import STATUS_FILE, InboxMode, is_own_temp_name
from healer.core.statusdoc import parse_busy_until
from healer.errors import UnsafePathError

__all__ = ["AgentFiles", "Scanner", "StatusLink"]

IsSelf = Callable[[str, os.stat_result], bool]
# A devlogs tree deeper or larger than this is someone else's problem; the newest mtime
# among what was read is still a lower bound, which can only make an agent look older.
_MAX_ENTRIES = 20_000
# A re-stat before each stall lists an agent's folders again; a folder that has not changed
# since its last listing (same inode and mtime) is not listed again, its files only stat'd:
# at 10,000 agents stalling at once, a listing is five syscalls per folder (issue #16).
_LISTING_MAX = 64  # names; a larger folder is listed each time, not kept
_LISTINGS_MAX = 100_000
_SETTLED_NS = 1_000_000_000
_Listing = tuple[tuple[str, ...], tuple[str, ...]]


class StatusLink(enum.Enum):
    """An agent's status.json that is a symlink, and what healer makes of it."""

    # Pointing at a dashboard folder, say: the agent's writes land behind the link, so
    # healer reads them (a stat for activity, the lease) and still never writes through it.
    FOLLOWED = "status.json is a symlink: healer reads it, never writes it"
    # Pointing into another agent's folder: its writes are that agent's, not this one's.
    REFUSED = "status.json links to another agent: ignored, never written"


@dataclass(frozen=True, slots=True)
class AgentFiles:
    """What a scan found for one agent."""

    agent: str
    last_activity: float | None  # newest genuine mtime, None when there was none
    created: float  # the folder's own change time: the clock start of a new agent
    status_link: StatusLink | None = None  # None: status.json is no symlink


class Scanner:
    def __init__(
        self,
        root: Path,
        is_agent: Callable[[str], bool],
        *,
        inbox_mode: InboxMode = InboxMode.CONSUME,
        is_self: IsSelf = lambda path, st: False,
        max_status_bytes: int = 1 << 20,
    ) -> None:
        self.root = root
        self._root = os.path.abspath(root)
        self.is_agent = is_agent
        self.inbox_mode = inbox_mode
        self.is_self = is_self
        self.max_status_bytes = max_status_bytes
        # folder path -> (inode, mtime_ns, folder names, file names, files listed)
        self._listings: dict[str, tuple[int, int, tuple[str, ...], tuple[str, ...], bool]] = {}
        self._leases = LeaseAhead(self._root, max_status_bytes, self._until_of)

    def agents(self) -> list[str]:
        """Agent folders under the root: real directories (not symlinks) matching the pattern."""
        try:
            with os.scandir(self.root) as entries:
                return sorted(
                    e.name for e in entries
                    if self.is_agent(e.name) and e.is_dir(follow_symlinks=False)
                )
        except FileNotFoundError:
            return []

    def scan(self, agent: str, now: float) -> AgentFiles | None:
        """The newest genuine activity of `agent`, clamped to `now`; None if it is gone."""
        # Plain strings, not pathlib: at 10,000 agents this loop is the start-up time.
        folder = f"{self._root}/{agent}"
        try:
            folder_st = os.lstat(folder)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat.S_ISDIR(folder_st.st_mode):
            return None
        newest: float | None = None
        link: list[StatusLink] = []
        for mtime in self._activity_mtimes(agent, folder, link):
            if newest is None or mtime > newest:
                newest = mtime
        if newest is not None and newest > now:
            newest = now  # a clock skewed into the future counts as now
        return AgentFiles(agent, newest, min(folder_st.st_mtime, now), link[0] if link else None)

    def status_link(self, agent: str) -> StatusLink | None:
        """Whether the agent's status.json is a symlink healer reads through, or refuses."""
        path = f"{self._root}/{agent}/{STATUS_FILE}"
        try:
            if not stat.S_ISLNK(os.lstat(path).st_mode):
                return None
        except OSError:
            return None
        real = os.path.realpath(path)
        root = os.path.realpath(self._root) + os.sep
        if real.startswith(root):
            owner = real[len(root):].split(os.sep, 1)[0]
            if owner != agent and self.is_agent(owner):
                return StatusLink.REFUSED
        return StatusLink.FOLLOWED

    def _status_mtime(self, agent: str, status: str, link: list[StatusLink]) -> float | None:
        try:
            st = os.lstat(status)
        except OSError:
            return None
        if not stat.S_ISLNK(st.st_mode):
            return None if self.is_self(status, st) else st.st_mtime
        # healer never makes a link, so the link's own mtime (made, re-pointed) is the agent's.
        kind = self.status_link(agent) or StatusLink.FOLLOWED
        link.append(kind)
        if kind is not StatusLink.FOLLOWED:
            return st.st_mtime
        try:
            # Read-only: the target's mtime is the agent's write through the link, and healer
            # never writes there, so nothing of its own can be behind it.
            target = os.stat(status)
        except OSError:
            return st.st_mtime  # dangling: only the link itself
        return max(st.st_mtime, target.st_mtime) if stat.S_ISREG(target.st_mode) else st.st_mtime

    def _activity_mtimes(
        self, agent: str, folder: str, link: list[StatusLink]
    ) -> Iterator[float]:
        mtime = self._status_mtime(agent, f"{folder}/{STATUS_FILE}", link)
        if mtime is not None:
            yield mtime
        try:
            # healer never writes heartbeat.json, so every version of it is the agent's.
            beat: os.stat_result | None = os.lstat(f"{folder}/{HEARTBEAT_FILE}")
        except OSError:
            beat = None
        if beat is not None:
            yield beat.st_mtime
        yield from self._tree(f"{folder}/devlogs", include_dirs=True, top=True)
        if self.inbox_mode == InboxMode.ANY:
            # Not the inbox's own mtime: healer's rescue messages change it too, and a
            # folder's mtime cannot say who wrote. Its files and subfolders can.
            yield from self._tree(f"{folder}/inbox", include_dirs=True, top=False)
        elif self.inbox_mode == InboxMode.CONSUME:
            # A message filed into a subfolder changes that subfolder's mtime; the top of
            # the inbox also changes when mail arrives, so it cannot tell us anything.
            yield from self._tree(f"{folder}/inbox", include_dirs=True, top=False, files=False)

    def _tree(
        self, top_dir: str, *, include_dirs: bool, top: bool, files: bool = True
    ) -> Iterator[float]:
        budget = _MAX_ENTRIES
        stack = [(top_dir, top)]
        while stack and budget > 0:
            path, count_self = stack.pop()
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                continue
            if include_dirs and count_self:
                yield st.st_mtime
            if not files and no_subfolders(st):
                continue  # no subfolder (the link count says, where kept): nothing to list
            listed = self._listed(path, st, files)
            if listed is None:
                listed = self._list(path, st, files, budget)
            dirs, regular = listed
            budget -= len(dirs) + len(regular)
            stack.extend((f"{path}/{name}", True) for name in dirs)
            for name in regular:
                file = f"{path}/{name}"
                try:
                    est = os.lstat(file)
                except OSError:
                    continue  # gone since the listing
                if stat.S_ISREG(est.st_mode) and not self.is_self(file, est):
                    yield est.st_mtime

    def _listed(self, path: str, st: os.stat_result, files: bool) -> _Listing | None:
        """The names a listing of `path` found, if the folder has not changed since."""
        known = self._listings.get(path)
        if known is None or known[0] != st.st_ino or known[1] != st.st_mtime_ns:
            return None
        if files and known[4] is False:
            return None  # listed for its folders only
        return known[2], known[3]

    def _list(self, path: str, st: os.stat_result, files: bool, budget: int) -> _Listing:
        dirs: list[str] = []
        regular: list[str] = []
        complete = True
        try:
            with os.scandir(path) as entries:
                for entry in entries:
                    budget -= 1
                    if budget <= 0:
                        complete = False
                        break
                    if is_own_temp_name(entry.name):
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        dirs.append(sys.intern(entry.name))
                    elif files and entry.is_file(follow_symlinks=False):
                        regular.append(sys.intern(entry.name))
        except OSError:
            return (), ()
        listing = (tuple(dirs), tuple(regular))
        # A folder's mtime moves when a name in it comes or goes, but within one tick of the
        # file system's clock two changes share it: only a listing taken well after the
        # last change is kept (as git keeps its index entries "racily clean").
        small = complete and len(dirs) + len(regular) <= _LISTING_MAX
        if small and st.st_mtime_ns < time.time_ns() - _SETTLED_NS:
            if len(self._listings) >= _LISTINGS_MAX:
                self._listings.clear()  # folders of agents long gone: start over
            self._listings[path] = (st.st_ino, st.st_mtime_ns, *listing, files)
        return listing

    def read_status(self, agent: str) -> StatusRead | None:
        """status.json as the writer's own reader sees it, read through a followed symlink;
        None when the folder cannot be opened or the link is refused."""
        read = self._read_raw(agent)
        return None if read is None else parse_snapshot(read)

    def _read_raw(self, agent: str) -> StatusRead | None:
        dfd = open_agent_folder(self._root, agent)
        if dfd is None:
            return None
        try:
            path = Path(f"{self._root}/{agent}/{STATUS_FILE}")
            try:
                return read_raw(dfd, agent, path, self.max_status_bytes)
            except UnsafePathError:  # a symlink: read through it only if it is followed
                if self.status_link(agent) is not StatusLink.FOLLOWED:
                    return None
                try:
                    return read_raw(dfd, agent, path, self.max_status_bytes, follow=True)
                except UnsafePathError:
                    return None
        finally:
            os.close(dfd)

    def lease(self, agent: str, max_lease: float, written_at: float) -> float | None:
        """End of the agent's busy lease, capped at `max_lease` after `written_at`, the agent's
        last genuine activity (the lease's own write is one). healer's own later rewrites of
        status.json must not stretch the cap, so the file's mtime is not used."""
        known, until = self._leases.take(agent)
        if not known:
            read = self._read_raw(agent)
            if read is None or read.raw is None or not may_hold_lease(read.raw):
                return None
            until = self._until_of(agent, read.raw, read)
        return None if until is None else min(until, written_at + max_lease)

    def _until_of(self, agent: str, raw: bytes, read: StatusRead | None = None) -> float | None:
        if read is None:
            read = StatusRead(agent, Path(self._root, agent, STATUS_FILE), ReadKind.OK, raw=raw)
        doc = parse_snapshot(read).doc
        return None if doc is None else parse_busy_until(doc)

    def prefetch(self, agents: list[str]) -> None:
        """Read these agents' busy leases now (LeaseAhead): they fall due within a tick or
        two, and their stall then costs one lstat of status.json instead of its read. When
        thousands stall at once, those reads were the loop's wait (on a cold cache, for
        the disk)."""
        self._leases.read(agents)

    def heartbeat(self, agent: str, known: Identity | None) -> BeatFile:
        """The agent's heartbeat.json, read unless its version is `known`."""
        return read_heartbeat(self._root, agent, known)  # a str: no Path built per agent
