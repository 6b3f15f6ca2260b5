"""Reading a workspace without events: which agents exist, when each was last active (from
mtimes), and its busy lease. Follows no symlink but an agent's status.json, and that one
only to read it; never opens anything but status.json. Past 300 lines because the re-stat
before a stall, the listings it keeps and the lstats it lends the lease and heartbeat reads
that follow it are one look at an agent's files, only right read together."""

from __future__ import annotations

import enum
import os
import stat
import sys
import time
from collections.abc import Callable
from contextlib import suppress
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
# The lstats of a scan (status.json, heartbeat.json) are used again by the lease and the
# heartbeat read that follow it before a stall, instead of two more system calls, when the
# same agent's and no older than this: the same moment, as far as a decision can tell.
_FRESH_NS = 2_000_000
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
        # The root's last settled listing: ((dev, inode, mtime_ns), the is_agent it used,
        # the agents): a reload's new pattern lists again.
        self._root_listing: tuple[tuple[int, int, int], Callable[[str], bool],
                                  tuple[str, ...]] | None = None
        # The last scan's lstats: (agent, when, status.json's, heartbeat.json's).
        self._looked: tuple[str, int, os.stat_result | None, os.stat_result | None] | None = (
            None)
        # folder path -> (inode, mtime_ns, folder names, file names, files listed)
        self._listings: dict[str, tuple[int, int, tuple[str, ...], tuple[str, ...], bool]] = {}
        self._leases = LeaseAhead(self._root, max_status_bytes, self._until_of)

    def agents(self) -> list[str]:
        """Agent folders under the root: real directories (not symlinks) matching the pattern.

        The reconcile sweep asks every check_interval; a root whose inode and mtime are
        those of its last listing (a settled one, by the listings' rule) has had no name
        come or go, and is not listed again: one stat, not 10,000 entries matched."""
        try:
            st = os.stat(self._root)
        except OSError:
            st = None
        if st is not None:
            key = (st.st_dev, st.st_ino, st.st_mtime_ns)
            kept = self._root_listing
            if kept is not None and kept[0] == key and kept[1] is self.is_agent:
                return list(kept[2])
        try:
            with os.scandir(self.root) as entries:
                names = sorted(
                    e.name for e in entries
                    if self.is_agent(e.name) and e.is_dir(follow_symlinks=False)
                )
        except FileNotFoundError:
            return []
        if st is not None and st.st_mtime_ns < time.time_ns() - _SETTLED_NS:
            self._root_listing = (key, self.is_agent, tuple(names))
        return names

    def scan(self, agent: str, now: float) -> AgentFiles | None:
        """The newest genuine activity of `agent`, clamped to `now`; None if it is gone."""
        # Plain strings, not pathlib, and no generators: at 10,000 agents this is the
        # start-up time, and before each stall the re-stat of a mass stall (issue #16).
        folder = f"{self._root}/{agent}"
        try:
            folder_st = os.lstat(folder)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat.S_ISDIR(folder_st.st_mode):
            return None
        link: list[StatusLink] = []
        newest = self._newest(agent, folder, link)
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

    def _status_mtime(self, agent: str, status: str, link: list[StatusLink]
                      ) -> tuple[float | None, os.stat_result | None]:
        """status.json's mtime if it is the agent's activity, and its lstat."""
        try:
            st = os.lstat(status)
        except OSError:
            return None, None
        if not stat.S_ISLNK(st.st_mode):
            return (None if self.is_self(status, st) else st.st_mtime), st
        # healer never makes a link, so the link's own mtime (made, re-pointed) is the agent's.
        kind = self.status_link(agent) or StatusLink.FOLLOWED
        link.append(kind)
        if kind is not StatusLink.FOLLOWED:
            return st.st_mtime, st
        try:
            # Read-only: the target's mtime is the agent's write through the link, and healer
            # never writes there, so nothing of its own can be behind it.
            target = os.stat(status)
        except OSError:
            return st.st_mtime, st  # dangling: only the link itself
        if not stat.S_ISREG(target.st_mode):
            return st.st_mtime, st
        return max(st.st_mtime, target.st_mtime), st

    def _newest(self, agent: str, folder: str, link: list[StatusLink]) -> float | None:
        """The newest of the mtimes that are the agent's activity (None: none)."""
        newest, status_st = self._status_mtime(agent, f"{folder}/{STATUS_FILE}", link)
        beat_st: os.stat_result | None = None
        with suppress(OSError):
            # healer never writes heartbeat.json, so every version of it is the agent's.
            beat_st = os.lstat(f"{folder}/{HEARTBEAT_FILE}")
        if beat_st is not None and (newest is None or beat_st.st_mtime > newest):
            newest = beat_st.st_mtime
        self._looked = (agent, time.monotonic_ns(), status_st, beat_st)
        newest = self._tree(f"{folder}/devlogs", newest, top=True)
        if self.inbox_mode == InboxMode.ANY:
            # Not the inbox's own mtime: healer's rescue messages change it too, and a
            # folder's mtime cannot say who wrote. Its files and subfolders can.
            newest = self._tree(f"{folder}/inbox", newest, top=False)
        elif self.inbox_mode == InboxMode.CONSUME:
            # A message filed into a subfolder changes that subfolder's mtime; the top of
            # the inbox also changes when mail arrives, so it cannot tell us anything.
            newest = self._tree(f"{folder}/inbox", newest, top=False, files=False)
        return newest

    def _tree(
        self, top_dir: str, newest: float | None, *, top: bool, files: bool = True
    ) -> float | None:
        """`newest`, or a newer mtime of the folders (`top`: `top_dir`'s own too) and, with
        `files`, the regular files under `top_dir` that are not healer's own."""
        budget = _MAX_ENTRIES
        stack = [(top_dir, top)]
        lstat, is_reg, is_self = os.lstat, stat.S_ISREG, self.is_self
        while stack and budget > 0:
            path, count_self = stack.pop()
            try:
                st = lstat(path)
            except OSError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                continue
            if count_self and (newest is None or st.st_mtime > newest):
                newest = st.st_mtime
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
                    est = lstat(file)
                except OSError:
                    continue  # gone since the listing
                mtime = est.st_mtime
                if (newest is None or mtime > newest) and is_reg(est.st_mode) and not is_self(
                        file, est):
                    newest = mtime
        return newest

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
        fresh = self._fresh(agent)
        if fresh is not None and fresh[0] is None:
            return None  # no status.json a moment ago: no lease
        known, until = self._leases.take(agent, None if fresh is None else fresh[0])
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
        fresh = self._fresh(agent)
        if fresh is not None and fresh[1] is None:
            return BeatFile()  # none a moment ago
        # a str root: no Path built per agent
        return read_heartbeat(self._root, agent, known, None if fresh is None else fresh[1])

    def _fresh(self, agent: str) -> tuple[os.stat_result | None, os.stat_result | None] | None:
        """The last scan's lstats of status.json and heartbeat.json (None where there was
        none) if that scan was of `agent` just now (_FRESH_NS); None: look again."""
        looked = self._looked
        if looked is None or looked[0] != agent or time.monotonic_ns() - looked[1] > _FRESH_NS:
            return None
        return looked[2], looked[3]
