"""File primitives for the writer: directory walks that never follow a symlink, fd-relative
temp files, and an atomic swap of two names (renameat2 RENAME_EXCHANGE) where available.
"""

from __future__ import annotations

import ctypes
import errno
import os
import secrets
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from healer.core.model import TEMP_MARKER, is_plain_name
from healer.errors import ActionError, UnsafePathError

__all__ = [
    "DIR_FLAGS",
    "READ_FLAGS",
    "Identity",
    "check_name",
    "exchange",
    "fsync_dir",
    "identity_of",
    "no_subfolders",
    "open_dirs",
    "oserrors",
    "read_all",
    "split_relpath",
    "unlink_quiet",
    "write_temp",
]

Identity = tuple[int, int, int]

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# A file healer reads and does not follow: O_NONBLOCK, so a FIFO planted in its place
# cannot hang the daemon on open().
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_NEW_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_RENAME_EXCHANGE = 2


def identity_of(st: os.stat_result) -> Identity:
    """What tells one version of a file from another: inode, mtime (ns) and size."""
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _load_renameat2() -> Any:
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_RENAMEAT2 = _load_renameat2()


def check_name(name: str) -> str:
    """`name` if it is one plain path component, else UnsafePathError."""
    if not is_plain_name(name):
        raise UnsafePathError(f"refusing path component {name!r}")
    return name


def split_relpath(relpath: str | os.PathLike[str]) -> list[str]:
    """The components of a relative path; absolute paths, `..`, `.` and `//` are refused."""
    text = os.fspath(relpath)
    if os.path.isabs(text):
        raise UnsafePathError(f"refusing absolute path {text!r}")
    return [check_name(part) for part in text.split("/")]


@contextmanager
def oserrors(path: Path) -> Iterator[None]:
    """Turn the OS's refusal (ENOSPC, EROFS, EACCES…) into an ActionError naming the file."""
    try:
        yield
    except OSError as exc:
        raise ActionError(f"cannot write {path}: {exc.strerror or exc}") from exc


@contextmanager
def open_dirs(root: Path, names: Sequence[str], create_from: int | None = None) -> Iterator[int]:
    """An fd of root/names…, each step opened with O_NOFOLLOW from its parent's fd, so a
    symlink swapped in at any moment still cannot lead outside root. Components from index
    `create_from` on are created when missing."""
    for name in names:
        check_name(name)
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise ActionError(f"cannot open workspace root {root}: {exc.strerror}") from exc
    try:
        where = root
        for i, name in enumerate(names):
            where = where / name
            create = create_from is not None and i >= create_from
            child = _open_dir(fd, name, where, create)
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def _open_dir(parent: int, name: str, where: Path, create: bool) -> int:
    try:
        return os.open(name, DIR_FLAGS, dir_fd=parent)
    except FileNotFoundError as exc:
        if not create:
            raise ActionError(f"{where} does not exist") from exc
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                raise UnsafePathError(f"{where} is a symlink; refusing to write") from exc
        raise ActionError(f"cannot open {where}: {exc.strerror}") from exc
    try:
        with suppress(FileExistsError):
            os.mkdir(name, 0o755, dir_fd=parent)
    except OSError as exc:
        raise ActionError(f"cannot create {where}: {exc.strerror}") from exc
    return _open_dir(parent, name, where, create=False)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def no_subfolders(st: os.stat_result) -> bool:
    """A folder's link count is 2 plus its subfolders on the file systems that keep it
    (ext4, xfs, tmpfs); btrfs and others say 1, and must be listed to know."""
    return st.st_nlink == 2


def read_all(fd: int, limit: int, size_hint: int | None = None) -> bytes:
    """Up to limit + 1 bytes, so a caller can tell "exactly at the limit" from "past it".

    `size_hint` is the size fstat gave for a regular file: the first read asks for one
    byte more, and a shorter answer holding all of it is the end of the file, so a small
    file costs one small read instead of two of 64 KiB (each read allocates its buffer in
    full). A file that grew meanwhile is read on; its new size tells the caller's fstat."""
    chunks: list[bytes] = []
    total = 0
    want = 1 << 16 if size_hint is None else max(size_hint + 1, 512)
    while total <= limit:
        ask = min(want, limit + 1 - total)
        chunk = os.read(fd, ask)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if size_hint is not None and len(chunk) < ask and total >= size_hint:
            break  # short, and all fstat promised: the end of the file
        want = 1 << 16
    return b"".join(chunks)


def unlink_quiet(dfd: int, name: str) -> None:
    with suppress(OSError):
        os.unlink(name, dir_fd=dfd)


def fsync_dir(dfd: int) -> None:
    try:
        os.fsync(dfd)
    except OSError as exc:
        # Some filesystems cannot fsync a directory; the rename itself is still atomic.
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise


def exchange(dfd: int, a: str, b: str) -> bool:
    """Atomically swap two names in one directory; False where the kernel or fs cannot."""
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(dfd, os.fsencode(a), dfd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), b)


def write_temp(
    dfd: int, name: str, data: bytes, ref: os.stat_result | None, chown: bool
) -> tuple[str, os.stat_result]:
    """A fully written, fsynced `.<name>.healer-tmp.<random>` beside `name`, with `ref`'s
    mode (0644 without one) and, when `chown`, `ref`'s (or the folder's) owner."""
    while True:
        tmp = f".{name}{TEMP_MARKER}{secrets.token_hex(6)}"
        try:
            fd = os.open(tmp, _NEW_FLAGS, 0o600, dir_fd=dfd)
            break
        except FileExistsError:
            continue
    try:
        try:
            _write_all(fd, data)
            mode = 0o644 if ref is None else stat.S_IMODE(ref.st_mode)
            os.fchmod(fd, mode)
            if chown:
                owner = ref or os.fstat(dfd)
                # A root-owned file in the agent's folder could lock the agent out of it.
                with suppress(OSError):
                    os.fchown(fd, owner.st_uid, owner.st_gid)
            os.fsync(fd)
            return tmp, os.fstat(fd)
        finally:
            os.close(fd)
    except BaseException:
        unlink_quiet(dfd, tmp)
        raise
