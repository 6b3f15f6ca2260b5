"""Busy leases read ahead of the stalls that need them.

Before it acts on a stall the engine reads the agent's busy lease from status.json: a
folder open, a file open, a read, two closes. When 10,000 agents stall together (a model
API down) those reads were a fifth of each agent's cost, paid while every other stalled
agent waited to be reported (issue #16). The engine knows a tick or two ahead who falls
due, so the reads happen then, in the loop's quiet moments, and the stall itself costs no
read: a status.json still exactly the version read (same inode, size, mtime and change
time, by the re-stat's own lstat of it) holds the same lease. Anything else (a newer
write, a symlink, a file read while it was still changing) is read again at the stall, as
before.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from contextlib import suppress

from healer.adapters.fsops import DIR_FLAGS, READ_FLAGS, read_all
from healer.core.model import STATUS_FILE, is_plain_name

__all__ = ["LeaseAhead", "may_hold_lease", "open_agent_folder"]

# A version changed within the last second may change again within the file system's
# clock tick, keeping its times: only a settled one is remembered (git's "racily clean").
_SETTLED_NS = 1_000_000_000
_CHUNK = 256  # files hinted to the kernel together, then read: their disk reads overlap
_KEPT_MAX = 100_000  # agents read ahead and not yet stalled (each stall takes its own)

_Key = tuple[int, int, int, int, int]


def may_hold_lease(raw: bytes) -> bool:
    """False only for bytes that cannot hold a `busy_until` key: UTF-8 (no NUL, which
    UTF-16 and UTF-32 have in every ASCII letter) without the name and without a \\u
    escape that could spell it. Most status.json files have no lease: no parse for them."""
    return b"busy_until" in raw or b"\\u" in raw or b"\x00" in raw


def open_agent_folder(root: str, agent: str) -> int | None:
    """A descriptor of root/agent, None if that is no plain name or no real folder: O_NOFOLLOW
    on the last component, what open_dirs does for root/agent, in one open (at 10,000
    stalling agents every system call shows)."""
    return _open_in(root, agent, "", DIR_FLAGS)


def _open_in(root: str, agent: str, tail: str, flags: int) -> int | None:
    """os.open of root/agent + `tail`; None if `agent` is no plain name or the open fails."""
    if not is_plain_name(agent):
        return None
    try:
        return os.open(f"{root}/{agent}{tail}", flags)
    except OSError:
        return None


def _key(st: os.stat_result) -> _Key:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class LeaseAhead:
    """The leases of agents about to fall due; `until_of(agent, raw)` reads one from the
    bytes of a status.json that may hold it (may_hold_lease)."""

    def __init__(self, root: str, max_bytes: int,
                 until_of: Callable[[str, bytes], float | None]) -> None:
        self._root = root
        self._max = max_bytes
        self._until_of = until_of
        self._kept: dict[str, tuple[_Key, float | None]] = {}

    def read(self, agents: list[str]) -> None:
        """Read these agents' leases now. Each chunk is first hinted to the kernel
        (POSIX_FADV_WILLNEED), so on a cold cache the disk reads them side by side."""
        for at in range(0, len(agents), _CHUNK):
            opened = [(agent, fd) for agent in agents[at:at + _CHUNK]
                      if (fd := self._open(agent)) is not None]
            for _, fd in opened:
                with suppress(OSError):
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
            settled = time.time_ns() - _SETTLED_NS
            for agent, fd in opened:
                try:
                    self._read(agent, fd, settled)
                except OSError:
                    pass  # read again at the stall, where an error has its own answer
                finally:
                    os.close(fd)
        if len(self._kept) > _KEPT_MAX:
            self._kept.clear()  # agents that came back before their stall: start over

    def take(self, agent: str, looked: os.stat_result | None = None
             ) -> tuple[bool, float | None]:
        """(True, the lease's end or None) when status.json is still the version read
        ahead; (False, None) when it must be read now. `looked`: status.json's lstat,
        taken a moment ago by the caller (the re-stat before the stall)."""
        kept = self._kept.pop(agent, None)
        if kept is None:
            return False, None
        try:
            st = looked if looked is not None else os.lstat(f"{self._root}/{agent}/{STATUS_FILE}")
        except OSError:
            return False, None
        return (True, kept[1]) if _key(st) == kept[0] else (False, None)

    def _open(self, agent: str) -> int | None:
        """status.json of `agent`, not followed if it is a symlink (a linked status.json is
        read at the stall). The folder is not opened first, as the scanner's read does (two
        system calls of seven): what is read here is used only for the version of the file
        the re-stat at the stall finds, after that re-stat found the folder a real one."""
        return _open_in(self._root, agent, f"/{STATUS_FILE}", READ_FLAGS)

    def _read(self, agent: str, fd: int, settled: int) -> None:
        st = os.fstat(fd)
        if (not stat.S_ISREG(st.st_mode) or st.st_size > self._max
                or max(st.st_mtime_ns, st.st_ctime_ns) >= settled):
            return
        raw = read_all(fd, self._max, size_hint=st.st_size)
        if len(raw) != st.st_size:
            return  # changed while read: its new times will not match either
        self._kept[agent] = (_key(st), self._until_of(agent, raw) if may_hold_lease(raw)
                             else None)
