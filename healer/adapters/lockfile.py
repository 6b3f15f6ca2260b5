"""One acting healer per workspace: an exclusive flock on a file in the state folder, held
for the holder's life, its pid written in it. Two daemons on one root each take the other's
writes for activity and double every action; the second is refused instead."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import structlog

from healer.errors import StoreError, WorkspaceBusyError

__all__ = ["LOCK_FILE", "WorkspaceLock"]

log = structlog.get_logger()

LOCK_FILE = "healer.lock"  # in config.state_path, beside the history


class WorkspaceLock:
    """Held until `release()` (or the process's end: the kernel drops a dead holder's
    flock, so a crash never leaves a stale lock behind, unlike a pid file alone)."""

    def __init__(self, path: Path, fd: int | None) -> None:
        self.path = path
        self._fd = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    @classmethod
    def acquire(cls, state_path: Path, role: str) -> WorkspaceLock:
        """Take the lock without waiting; WorkspaceBusyError names the pid that holds it.
        `role` (`watch`, `check --now`) is written beside the pid for the next one's error."""
        path = state_path / LOCK_FILE
        try:
            state_path.mkdir(mode=0o700, parents=True, exist_ok=True)
            # No O_TRUNC: the holder's pid must survive a rival's open. Close-on-exec: a
            # command healer runs (a restart that leaves the agent in the background) must
            # not inherit the lock and hold it after healer is gone.
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot open the lock {path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise WorkspaceBusyError(
                f"another healer ({holder}) already acts on this workspace; "
                f"refusing to run a second one beside it (lock {path})"
            ) from None
        except OSError as exc:
            # A state folder on a filesystem without flock (some NFS): run as before the
            # lock existed rather than not at all, and say so.
            os.close(fd)
            log.warning("workspace_lock_unavailable", path=str(path), error=str(exc))
            return cls(path, None)
        try:
            os.fchmod(fd, 0o600)  # like the history's files, whatever the umask
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {role}\n".encode(), 0)
        except OSError as exc:  # held all the same; a rival's error says "pid unknown"
            log.warning("workspace_lock_pid_not_written", path=str(path), error=str(exc))
        return cls(path, fd)

    def release(self) -> None:
        """Let go; the file stays (removing it would let a rival lock a new one while a
        third still waits on the old)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _holder(fd: int) -> str:
    """`pid N (role)` from the lock file, or what can be said when it holds no pid yet."""
    try:
        text = os.pread(fd, 256, 0).decode(errors="replace").split()
    except OSError:
        text = []
    if not text or not text[0].isdigit():
        return "pid unknown"
    role = " ".join(text[1:])
    return f"pid {text[0]}, {role}" if role else f"pid {text[0]}"
