"""An agent's heartbeat.json: written for `healer beat` atomically (temp in the same folder,
fsync, rename), inside the root, never through a symlink; read by the daemon the same way, a
capped number of bytes. The beat is the agent's own write, so its temp name must not carry
healer's marker, or the daemon would take the rename for its own."""

from __future__ import annotations

import errno
import os
import stat
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from healer.core.heartbeat import HEARTBEAT_FILE
from healer.errors import ActionError, UnsafePathError

__all__ = [
    "MAX_HEARTBEAT_BYTES", "TEMP_SUFFIX", "BeatFile", "read_heartbeat", "write_heartbeat",
    "write_new",
]

TEMP_SUFFIX = ".beat-tmp"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NEW_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO put in its place must not hang the daemon's loop on open().
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# A beat is a line (healer beat caps its message at 300 characters); anything this large
# is not one, and is not read.
MAX_HEARTBEAT_BYTES = 64 * 1024
# Not fsops: its import (secrets, the renameat2 probe) would cost each beat ~10 ms, for a
# walk one folder deep.


def _agent_dir(root: Path | str, agent: str) -> int:
    """An fd of root/agent, opened from the root's fd without following a symlink."""
    if not agent or agent in (".", "..") or "/" in agent or "\0" in agent:
        raise UnsafePathError(f"refusing path component {agent!r}")
    try:
        root_fd = os.open(root, _DIR_FLAGS)
    except OSError as exc:
        raise ActionError(f"cannot open workspace root {root}: {exc.strerror}") from exc
    try:
        return os.open(agent, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=root_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafePathError(f"{Path(root, agent)} is not a real folder; refusing to write"
                                  ) from exc
        raise ActionError(f"cannot open {Path(root, agent)}: {exc.strerror}") from exc
    finally:
        os.close(root_fd)


def _existing_mode(dfd: int, where: Path) -> int:
    """The mode to keep: the current heartbeat.json's, 0644 for a first beat."""
    try:
        st = os.stat(HEARTBEAT_FILE, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return 0o644
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(f"{where} is a symlink; refusing to write")
    if not stat.S_ISREG(st.st_mode):
        raise ActionError(f"{where} is not a regular file")
    return stat.S_IMODE(st.st_mode)


def write_new(dfd: int, name: str, data: bytes, mode: int) -> None:
    """Create `name` in the folder open as `dfd` (never an existing file, never through a
    link), write all of `data`, set `mode` and fsync it: the first half of a safe replace."""
    fd = os.open(name, _NEW_FLAGS, 0o600, dir_fd=dfd)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(dfd: int, where: Path, data: bytes) -> None:
    mode = _existing_mode(dfd, where)
    tmp = f".{HEARTBEAT_FILE}.{os.urandom(6).hex()}{TEMP_SUFFIX}"
    try:
        write_new(dfd, tmp, data, mode)
        # rename() replaces the name itself: a symlink swapped in meanwhile is replaced,
        # never followed.
        os.rename(tmp, HEARTBEAT_FILE, src_dir_fd=dfd, dst_dir_fd=dfd)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp, dir_fd=dfd)
        raise
    try:
        os.fsync(dfd)
    except OSError as exc:
        # Some filesystems cannot fsync a folder; the rename is atomic all the same.
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise


def write_heartbeat(root: Path, agent: str, data: bytes) -> None:
    """Replace `root/agent/heartbeat.json` with `data`, or raise ActionError naming the file."""
    dfd = _agent_dir(root, agent)
    where = root / agent / HEARTBEAT_FILE
    try:
        _write(dfd, where, data)
    except OSError as exc:
        raise ActionError(f"cannot write {where}: {exc.strerror or exc}") from exc
    finally:
        os.close(dfd)


Identity = tuple[int, int, int]  # inode, mtime (ns), size: one version of the file


@dataclass(frozen=True, slots=True)
class BeatFile:
    """One look at heartbeat.json. `identity` None: there is none. `data` None: the version
    is the one already known (not read again), or it could not be read (`error` says why)."""

    identity: Identity | None = None
    mtime: float | None = None
    data: bytes | None = None
    error: str | None = None


def _identity(st: os.stat_result) -> Identity:
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _read_open(dfd: int, known: Identity | None) -> BeatFile:
    try:
        fd = os.open(HEARTBEAT_FILE, _READ_FLAGS, dir_fd=dfd)
    except FileNotFoundError:
        return BeatFile()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return BeatFile(error="heartbeat.json is a symlink: healer does not read it")
        return BeatFile(error=f"cannot read heartbeat.json: {exc.strerror}")
    try:
        st = os.fstat(fd)
        ident = _identity(st)
        if ident == known:
            return BeatFile(ident, st.st_mtime)
        if not stat.S_ISREG(st.st_mode):
            return BeatFile(ident, st.st_mtime, error="heartbeat.json is not a regular file")
        if st.st_size > MAX_HEARTBEAT_BYTES:
            return BeatFile(ident, st.st_mtime, error=(
                f"heartbeat.json is larger than {MAX_HEARTBEAT_BYTES} bytes: not read"))
        data = os.read(fd, MAX_HEARTBEAT_BYTES + 1)
    except OSError as exc:
        return BeatFile(error=f"cannot read heartbeat.json: {exc.strerror}")
    finally:
        os.close(fd)
    if len(data) > MAX_HEARTBEAT_BYTES:  # it grew while being read
        return BeatFile(ident, st.st_mtime, error=(
            f"heartbeat.json is larger than {MAX_HEARTBEAT_BYTES} bytes: not read"))
    return BeatFile(ident, st.st_mtime, data)


def read_heartbeat(root: Path | str, agent: str, known: Identity | None = None,
                   looked: os.stat_result | None = None) -> BeatFile:
    """`root/agent/heartbeat.json`, read unless its version is `known`. Never follows a
    symlink (neither the agent's folder nor the file), never blocks on a FIFO, never raises.
    `looked`: its lstat, taken a moment ago by the caller (a re-stat), instead of another."""
    path = f"{root}/{agent}/{HEARTBEAT_FILE}"
    try:
        # The cheap look first: most events and sweeps find the version already known.
        st = looked if looked is not None else os.lstat(path)
    except OSError:
        return BeatFile()
    if stat.S_ISLNK(st.st_mode):
        return BeatFile(_identity(st), st.st_mtime,
                        error="heartbeat.json is a symlink: healer does not read it")
    if _identity(st) == known:
        return BeatFile(known, st.st_mtime)
    try:
        dfd = _agent_dir(root, agent)
    except ActionError as exc:  # UnsafePathError too: a folder swapped for a symlink
        return BeatFile(error=str(exc))
    try:
        return _read_open(dfd, known)
    finally:
        os.close(dfd)
