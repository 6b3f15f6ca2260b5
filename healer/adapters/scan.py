"""Reading a workspace without events: which agents exist, when each was last active (from
mtimes), and its busy lease. Never follows a symlink, never opens anything but status.json."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from healer.core.heartbeat import HEARTBEAT_FILE
from healer.core.model import STATUS_FILE, is_own_temp_name
from healer.core.statusdoc import parse_busy_until

__all__ = ["AgentFiles", "Scanner"]

IsSelf = Callable[[str, os.stat_result], bool]
# A devlogs tree deeper or larger than this is someone else's problem; the newest mtime
# among what was read is still a lower bound, which can only make an agent look older.
_MAX_ENTRIES = 20_000
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class AgentFiles:
    """What a scan found for one agent."""

    agent: str
    last_activity: float | None  # newest genuine mtime, None when there was none
    created: float  # the folder's own change time: the clock start of a new agent


class Scanner:
    def __init__(
        self,
        root: Path,
        is_agent: Callable[[str], bool],
        *,
        inbox_mode: str = "consume",
        is_self: IsSelf = lambda path, st: False,
        max_status_bytes: int = 1 << 20,
    ) -> None:
        self.root = root
        self._root = os.path.abspath(root)
        self.is_agent = is_agent
        self.inbox_mode = inbox_mode
        self.is_self = is_self
        self.max_status_bytes = max_status_bytes

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
        for mtime in self._activity_mtimes(folder):
            if newest is None or mtime > newest:
                newest = mtime
        if newest is not None and newest > now:
            newest = now  # a clock skewed into the future counts as now
        return AgentFiles(agent, newest, min(folder_st.st_mtime, now))

    def _activity_mtimes(self, folder: str) -> Iterator[float]:
        for name in (STATUS_FILE, HEARTBEAT_FILE):
            path = f"{folder}/{name}"
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if not self.is_self(path, st):
                yield st.st_mtime
        yield from self._tree(f"{folder}/devlogs", include_dirs=True, top=True)
        if self.inbox_mode == "any":
            # Not the inbox's own mtime: healer's rescue messages change it too, and a
            # folder's mtime cannot say who wrote. Its files and subfolders can.
            yield from self._tree(f"{folder}/inbox", include_dirs=True, top=False)
        elif self.inbox_mode == "consume":
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
            try:
                with os.scandir(path) as entries:
                    for entry in entries:
                        budget -= 1
                        if budget <= 0:
                            break
                        if is_own_temp_name(entry.name):
                            continue
                        if entry.is_dir(follow_symlinks=False):
                            stack.append((entry.path, True))
                        elif files and entry.is_file(follow_symlinks=False):
                            est = entry.stat(follow_symlinks=False)
                            if not self.is_self(entry.path, est):
                                yield est.st_mtime
            except OSError:
                continue

    def lease(self, agent: str, max_lease: float, written_at: float) -> float | None:
        """End of the agent's busy lease, capped at `max_lease` after `written_at`, the agent's
        last genuine activity (the lease's own write is one). healer's own later rewrites of
        status.json must not stretch the cap, so the file's mtime is not used."""
        path = self.root / agent / STATUS_FILE
        try:
            fd = os.open(path, _READ_FLAGS)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size > self.max_status_bytes:
                return None
            # Sized by the file, not the limit: a huge limit must not allocate a huge buffer.
            data = os.read(fd, min(self.max_status_bytes, max(st.st_size, 1 << 16)) + 1)
        except OSError:
            return None
        finally:
            os.close(fd)
        if b"busy_until" not in data:
            return None
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None
        if not isinstance(doc, dict):
            return None
        until = parse_busy_until(doc)
        if until is None:
            return None
        return min(until, written_at + max_lease)
