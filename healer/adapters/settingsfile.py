"""Reading and atomically replacing an agent CLI's settings file (`healer hooks --install`):
temp in the same folder, fsync, rename, and never over a version written since it was read."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from healer.adapters.beatfile import write_new
from healer.adapters.fsops import (
    READ_FLAGS,
    Identity,
    fsync_dir,
    identity_of,
    oserrors,
    read_all,
    unlink_quiet,
)
from healer.errors import UsageError

__all__ = ["MAX_SETTINGS_BYTES", "SettingsRead", "read_settings", "replace_settings"]

MAX_SETTINGS_BYTES = 4 << 20


@dataclass(frozen=True, slots=True)
class SettingsRead:
    """One version of the file: its bytes (None when there is no file yet) and identity."""

    data: bytes | None
    identity: Identity | None
    mode: int = 0o644


def _identity(path: Path) -> Identity | None:
    try:
        return identity_of(os.lstat(path))
    except FileNotFoundError:
        return None


def read_settings(path: Path) -> SettingsRead:
    """The file as it is now. A symlink or a non-file is refused: replacing it by rename would
    cut the link (a dotfiles checkout, say), so the operator names the real file instead."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return SettingsRead(None, None)
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise UsageError(f"{path} is a symlink to {os.readlink(path)}; pass that file instead")
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{path} is not a regular file")
    with oserrors(path):
        fd = os.open(path, READ_FLAGS)
        try:
            st = os.fstat(fd)
            data = read_all(fd, MAX_SETTINGS_BYTES)
        finally:
            os.close(fd)
    if len(data) > MAX_SETTINGS_BYTES:
        raise UsageError(f"{path} is larger than {MAX_SETTINGS_BYTES >> 20} MiB")
    return SettingsRead(data, identity_of(st), stat.S_IMODE(st.st_mode))


def _parent_fd(path: Path) -> int:
    parent = path.parent
    if not parent.exists() and parent.parent.is_dir():
        os.mkdir(parent, 0o755)  # a project's .claude/ folder, on its first settings file
    return os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def replace_settings(path: Path, data: bytes, read: SettingsRead) -> bool:
    """Put `data` at `path`; False (nothing written) if the file changed since `read`."""
    with oserrors(path):
        dfd = _parent_fd(path)
        try:
            tmp = f".{path.name}.{os.urandom(6).hex()}.tmp"
            try:
                write_new(dfd, tmp, data, read.mode)
                # The CLI itself rewrites its settings (an "always allow" answer); a change
                # between the read and here would be lost, so the caller merges again.
                if _identity(path) != read.identity:
                    unlink_quiet(dfd, tmp)
                    return False
                os.rename(tmp, path.name, src_dir_fd=dfd, dst_dir_fd=dfd)
            except BaseException:
                unlink_quiet(dfd, tmp)
                raise
            fsync_dir(dfd)
        finally:
            os.close(dfd)
    return True
