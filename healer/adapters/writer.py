"""The only way healer writes into a workspace: atomic, inside the root, never through a
symlink, never over an agent's newer write; each write noted in the ledger of healer's own.

Past ~300 lines because the swap, its undo and the link-if-absent belong together: each
step's correctness depends on what the step before it recorded in the ledger.
"""

from __future__ import annotations

import copy
import os
import stat
import time
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import structlog

from healer.adapters.fsops import (
    Identity,
    check_name,
    exchange,
    fsync_dir,
    identity_of,
    open_dirs,
    oserrors,
    split_relpath,
    unlink_quiet,
    write_temp,
)
from healer.adapters.jsontext import UTF8
from healer.adapters.ledger import SelfWriteLedger
from healer.adapters.statusfile import (
    StatusRead,
    check_encodable,
    encode,
    find_copy,
    read_snapshot,
    salvage,
    still_same,
)
from healer.clock import SystemClock
from healer.core.model import ESCALATION_MARKER, STATUS_FILE, free_name, is_own_temp_name
from healer.errors import ActionError, UnsafePathError, WriteConflictError
from healer.ports import Clock, ReadKind

__all__ = ["SafeWriter", "WriteResult"]

log = structlog.get_logger()

Doc = dict[str, Any]
# A missing file is not healer's to invent; the others are not parsed.
_UNWRITABLE = (ReadKind.MISSING, ReadKind.TOO_LARGE, ReadKind.NOT_REGULAR, ReadKind.IO)


def _utf8(text: str) -> bytes:
    # Message text quotes status.json, where JSON escapes can carry lone surrogates.
    return text.encode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class WriteResult:
    """What update_status wrote (or, in dry-run, would have written), after how many tries."""

    path: Path
    doc: Doc
    tries: int
    backup: Path | None = None
    dry_run: bool = False


class SafeWriter:
    """Writes under `root` only, through directory fds opened with O_NOFOLLOW per component.

    Concurrency with the agent: status.json is swapped in with renameat2(RENAME_EXCHANGE)
    only after checking it still holds the version read (inode, mtime, size and bytes); the
    file swapped out is then checked again and, if the agent wrote in between, swapped
    straight back and the update retried (WriteConflictError after `max_tries`). An agent
    write is thus never lost, though for the microseconds of that second check a reader may
    see healer's version built on the older one. Where RENAME_EXCHANGE is unsupported (some
    network filesystems) a plain rename follows the check, and an agent write landing in that
    one-syscall window would be lost.
    """

    def __init__(
        self,
        root: Path,
        ledger: SelfWriteLedger,
        max_status_bytes: int = 1 << 20,
        dry_run: bool = False,
        *,
        clock: Clock | None = None,
        max_tries: int = 5,
    ) -> None:
        self.root = Path(os.path.abspath(root))
        self.ledger = ledger
        self.max_status_bytes = max_status_bytes
        self.dry_run = dry_run
        self.clock: Clock = clock or SystemClock()
        self.max_tries = max_tries
        self._superuser = os.geteuid() == 0

    # -- public API ---------------------------------------------------------------------

    def read_status(self, agent: str) -> StatusRead:
        """Read and parse status.json; bad content is a result, a symlink is refused."""
        with self._dir(agent, ()) as dfd:
            return self._snapshot(dfd, agent)

    def update_status(
        self, agent: str, transform: Callable[[Doc], Doc], *, backup: bool = False
    ) -> WriteResult:
        """Apply `transform` to status.json atomically, re-reading while the agent rewrites it;
        written back in the text form (codec, byte order mark, line ends) it came in.

        A file healer cannot parse is backed up and left as the agent wrote it (ActionError),
        unless `backup`: a caller that keeps the old file beside it (reset_status) replaces
        the document anyway, from what `salvage` recovers of it.
        """
        path = self.root / agent / STATUS_FILE
        alog = log.bind(agent=agent)
        with self._dir(agent, ()) as dfd:
            for attempt in range(1, self.max_tries + 1):
                snap = self._snapshot(dfd, agent)
                if snap.kind in _UNWRITABLE:
                    raise ActionError(f"not updating {path}: {snap.error}")
                if snap.kind is ReadKind.INVALID:
                    alog.warning("status_unparseable", path=str(path), error=snap.error)
                    if not backup:
                        self._refuse_unreadable(dfd, agent, snap, alog)
                base = snap.doc if snap.doc is not None else salvage(agent, snap.raw)
                new = transform(copy.deepcopy(base))
                if not isinstance(new, dict):
                    raise ActionError(f"status transform returned {type(new).__name__}")
                if self.dry_run:
                    check_encodable(new)
                    return WriteResult(path, new, attempt, dry_run=True)
                data = encode(new, snap.form or UTF8)
                bak = None
                with oserrors(path):
                    if backup or snap.doc is None:
                        bak = self._backup(dfd, agent, snap)
                        alog.info("status_backed_up", path=str(path), backup=str(bak))
                    if self._replace(dfd, path, data, snap, alog):
                        return WriteResult(path, new, attempt, backup=bak)
                alog.info("status_write_conflict", path=str(path), attempt=attempt)
        raise WriteConflictError(
            f"{path} changed under each of {self.max_tries} attempts; left as the agent wrote it"
        )

    def write_new(self, agent: str, relpath: str | os.PathLike[str], text: str) -> Path:
        """Create a new file (e.g. an inbox message); never replaces an existing one."""
        parts = split_relpath(relpath)
        path = self.root.joinpath(agent, *parts)
        if self.dry_run:
            return path
        with self._dir(agent, parts[:-1], create=True) as dfd, oserrors(path):
            if not self._link_new(dfd, path, parts[-1], text):
                raise ActionError(f"{path} already exists; not overwriting it")
        return path

    def write_unique(
        self,
        agent: str,
        folder: str | os.PathLike[str],
        namer: Callable[[Collection[str]], str],
        text: str,
        *,
        tries: int = 20,
    ) -> Path:
        """Create a new file in `folder` named by `namer(existing names)`, e.g. rescue_filename."""
        parts = split_relpath(folder)
        if self.dry_run:
            return self.root.joinpath(agent, *parts, namer(self._listing(agent, parts)))
        folder_path = self.root.joinpath(agent, *parts)
        with self._dir(agent, parts, create=True) as dfd, oserrors(folder_path):
            taken = set(os.listdir(dfd))
            for _ in range(tries):
                name = check_name(namer(taken))
                if self._link_new(dfd, folder_path / name, name, text):
                    return folder_path / name
                taken.add(name)
        raise ActionError(f"no free file name in {self.root.joinpath(agent, *parts)}")

    def write_marker(self, agent: str, text: str) -> Path:
        """Write (or replace) the agent's escalation marker."""
        path = self.root / agent / ESCALATION_MARKER
        if self.dry_run:
            return path
        with self._dir(agent, ()) as dfd, oserrors(path):
            self._replace_own(dfd, path, ESCALATION_MARKER, text)
        return path

    def remove_marker(self, agent: str) -> bool:
        """Remove the escalation marker; False when there was none."""
        path = self.root / agent / ESCALATION_MARKER
        with self._dir(agent, ()) as dfd:
            try:
                os.stat(ESCALATION_MARKER, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                return False
            if self.dry_run:
                return True
            with oserrors(path):
                os.unlink(ESCALATION_MARKER, dir_fd=dfd)
        self.ledger.forget(path)
        return True

    def remove_stale_temps(self, agent: str, min_age: float = 0.0) -> int:
        """Delete temp files a crashed healer left in the agent folder and its inbox.

        `min_age` (seconds, by the files' mtimes) spares the temps of a healer still
        writing, e.g. the daemon's while `check --now` starts beside it."""
        removed = 0
        cutoff = time.time() - min_age  # mtimes are wall-clock time, whatever self.clock is
        for parts in ((), ("inbox",)):
            try:
                with self._dir(agent, parts) as dfd:
                    for name in os.listdir(dfd):
                        if not is_own_temp_name(name):
                            continue
                        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                        if not stat.S_ISREG(st.st_mode) or st.st_mtime > cutoff:
                            continue
                        if not self.dry_run:
                            unlink_quiet(dfd, name)
                            removed += 1
            except (ActionError, OSError):
                continue
        return removed

    # -- directories --------------------------------------------------------------------

    def _dir(
        self, agent: str, parts: Sequence[str], create: bool = False
    ) -> AbstractContextManager[int]:
        """An fd of root/agent/parts (context manager); missing parts are made when `create`."""
        return open_dirs(self.root, [agent, *parts], 1 if create else None)

    def _temp(
        self, dfd: int, name: str, data: bytes, ref: os.stat_result | None
    ) -> tuple[str, os.stat_result]:
        return write_temp(dfd, name, data, ref, chown=self._superuser)

    def _listing(self, agent: str, parts: Sequence[str]) -> set[str]:
        try:
            with self._dir(agent, parts) as dfd:
                return set(os.listdir(dfd))
        except ActionError:
            return set()

    def _snapshot(self, dfd: int, agent: str) -> StatusRead:
        path = self.root / agent / STATUS_FILE
        return read_snapshot(dfd, agent, path, self.max_status_bytes)

    # -- writing ------------------------------------------------------------------------

    def _replace(self, dfd: int, path: Path, data: bytes, snap: StatusRead, alog: Any) -> bool:
        """Put `data` at status.json unless the agent's file changed since `snap`."""
        tmp, st = self._temp(dfd, STATUS_FILE, data, snap.stat)
        prev = self.ledger.get(path)
        # Noted before the check, not between check and swap: on_note may persist (slow),
        # and the watcher must already know the new name when the swap lands.
        self.ledger.note(path, st)
        swapped = False
        try:
            swapped = self._swap_in(dfd, path, tmp, st, snap, alog)
            return swapped
        finally:
            if not swapped:
                self._restore(path, prev)
            unlink_quiet(dfd, tmp)

    def _swap_in(
        self, dfd: int, path: Path, tmp: str, st: os.stat_result, snap: StatusRead, alog: Any
    ) -> bool:
        if not still_same(dfd, STATUS_FILE, snap, self.max_status_bytes):
            return False
        if not exchange(dfd, tmp, STATUS_FILE):
            # No RENAME_EXCHANGE here: an agent write landing between the check above and
            # this rename is lost. The window is one syscall wide.
            os.rename(tmp, STATUS_FILE, src_dir_fd=dfd, dst_dir_fd=dfd)
            fsync_dir(dfd)
            return True
        # `tmp` now names the file we displaced; it must be the one we read. One stat, not
        # a re-read: until this check passes, readers see our file, so keep it short.
        displaced = os.stat(tmp, dir_fd=dfd, follow_symlinks=False)
        if identity_of(displaced) == snap.identity:
            fsync_dir(dfd)
            return True
        self._undo_exchange(dfd, path, tmp, st, alog)
        return False

    def _undo_exchange(
        self, dfd: int, path: Path, tmp: str, ours: os.stat_result, alog: Any
    ) -> None:
        """The agent wrote between check and swap: give its newest write the name back."""
        exchange(dfd, tmp, STATUS_FILE)
        back = os.stat(tmp, dir_fd=dfd, follow_symlinks=False)
        if identity_of(back) != identity_of(ours):
            # It wrote yet again right after our swap, so `tmp` now holds that newest write.
            alog.warning("status_write_race", path=str(path))
            exchange(dfd, tmp, STATUS_FILE)
        fsync_dir(dfd)

    def _restore(self, path: Path, prev: Identity | None) -> None:
        if self.ledger.get(path) != prev:
            self.ledger.put(path, prev)

    def _link(
        self,
        dfd: int,
        path: Path,
        tmp: str,
        name: str,
        st: os.stat_result,
        prev: Identity | None,
    ) -> bool:
        """Give `tmp` the name `name` only if nothing has it (link() fails on an existing name)."""
        self.ledger.note(path, st)
        try:
            os.link(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
        except FileExistsError:
            self._restore(path, prev)
            return False
        except BaseException:
            self._restore(path, prev)
            raise
        fsync_dir(dfd)
        return True

    def _link_new(self, dfd: int, path: Path, name: str, text: str) -> bool:
        tmp, st = self._temp(dfd, name, _utf8(text), None)
        try:
            return self._link(dfd, path, tmp, name, st, self.ledger.get(path))
        finally:
            unlink_quiet(dfd, tmp)

    def _replace_own(self, dfd: int, path: Path, name: str, text: str) -> None:
        """Replace a file only healer writes (the marker); a symlink there is refused."""
        try:
            old: os.stat_result | None = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            old = None
        if old is not None and not stat.S_ISREG(old.st_mode):
            raise UnsafePathError(f"{path} is not a regular file; refusing to replace it")
        tmp, st = self._temp(dfd, name, _utf8(text), old)
        prev = self.ledger.get(path)
        try:
            self.ledger.note(path, st)
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
            fsync_dir(dfd)
        except BaseException:
            self._restore(path, prev)
            unlink_quiet(dfd, tmp)
            raise

    def _refuse_unreadable(self, dfd: int, agent: str, snap: StatusRead, alog: Any) -> NoReturn:
        """Back up a file healer cannot parse and raise: rewriting it from a salvage would
        drop every field the parser could not see."""
        path = self.root / agent / STATUS_FILE
        kept = "left as the agent wrote it"
        if not self.dry_run:
            with oserrors(path):
                bak = self._backup(dfd, agent, snap)
            alog.info("status_backed_up", path=str(path), backup=str(bak))
            kept = f"backed up as {bak.name} and {kept}"
        raise ActionError(f"{path} cannot be parsed ({snap.error}); {kept}")

    def _backup(self, dfd: int, agent: str, snap: StatusRead) -> Path:
        """A byte-exact copy `status.json.bak.<UTC stamp>[_n]` of the version `snap` read,
        or the backup already holding those bytes: each rung must not add another copy."""
        same = find_copy(dfd, f"{STATUS_FILE}.bak.", snap.raw or b"")
        if same is not None:
            return self.root / agent / same
        stamp = datetime.fromtimestamp(self.clock.now(), UTC).strftime("%Y%m%dT%H%M%SZ")
        base = f"{STATUS_FILE}.bak.{stamp}"
        tmp, st = self._temp(dfd, STATUS_FILE, snap.raw or b"", snap.stat)
        taken: set[str] = set()
        try:
            for _ in range(999):
                name = free_name(base, taken, suffix="")
                path = self.root / agent / name
                if self._link(dfd, path, tmp, name, st, self.ledger.get(path)):
                    return path
                taken.add(name)
        finally:
            unlink_quiet(dfd, tmp)
        raise ActionError(f"no free backup name for {self.root / agent / base}")
