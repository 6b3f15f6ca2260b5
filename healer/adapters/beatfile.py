"""Writing an agent's heartbeat.json for `healer beat`: atomic (temp in the same folder, fsync,
rename), inside the root, never through a symlink. The beat is the agent's own write, so its
temp name must not carry healer's marker, or the daemon would take the rename for its own."""

from __future__ import annotations

import errno
import os
import stat
from contextlib import suppress
from pathlib import Path

from healer.core.heartbeat import HEARTBEAT_FILE
from healer.errors import ActionError, UnsafePathError

__all__ = ["TEMP_SUFFIX", "write_heartbeat"]

TEMP_SUFFIX = ".beat-tmp"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NEW_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# Not fsops: its import (secrets, the renameat2 probe) would cost each beat ~10 ms, for a
# walk one folder deep.


def _agent_dir(root: Path, agent: str) -> int:
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
            raise UnsafePathError(f"{root / agent} is not a real folder; refusing to write"
                                  ) from exc
        raise ActionError(f"cannot open {root / agent}: {exc.strerror}") from exc
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


def _write(dfd: int, where: Path, data: bytes) -> None:
    mode = _existing_mode(dfd, where)
    tmp = f".{HEARTBEAT_FILE}.{os.urandom(6).hex()}{TEMP_SUFFIX}"
    fd = os.open(tmp, _NEW_FLAGS, 0o600, dir_fd=dfd)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
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
