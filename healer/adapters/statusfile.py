"""Reading one agent's status.json through a directory fd: bounded, no-follow, and honest
about bad content (a result, never an exception); plus the JSON encoding healer writes.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from healer.adapters.fsops import Identity, identity_of, read_all
from healer.core.model import STATUS_FILE
from healer.errors import ActionError, UnsafePathError
from healer.ports import ReadKind

__all__ = ["StatusRead", "encode", "parse_doc", "read_snapshot", "salvage", "still_same"]

Doc = dict[str, Any]

# O_NONBLOCK: a FIFO planted as status.json must not hang the daemon on open().
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_SALVAGED = ("agent_name", "current_mission")
# json.loads accepts nesting about a thousand deep, but copying, comparing and encoding
# such a document recurse in Python and overflow the stack long before; no status.json
# of a real agent comes near this.
MAX_DEPTH = 100


@dataclass(frozen=True)
class StatusRead:
    """One read of status.json; `kind` says what it found."""

    agent: str
    path: Path
    kind: ReadKind
    doc: Doc | None = None
    error: str | None = None
    raw: bytes | None = None
    identity: Identity | None = None
    stat: os.stat_result | None = None

    @property
    def ok(self) -> bool:
        return self.doc is not None

    @property
    def exists(self) -> bool:
        return self.identity is not None


def parse_doc(data: bytes) -> tuple[Doc | None, str | None]:
    """The one rule for what a status.json holds: a JSON object in UTF-8, not too deep;
    else None and why."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8: {exc}"
    except (ValueError, RecursionError) as exc:
        return None, f"invalid JSON: {exc}"
    if not isinstance(doc, dict):
        return None, f"not a JSON object but {type(doc).__name__}"
    if _too_deep(doc, MAX_DEPTH):
        return None, f"nested more than {MAX_DEPTH} levels deep"
    return doc, None


def _too_deep(doc: Any, limit: int) -> bool:
    """Whether containers nest past `limit` levels (iterative: the check must not recurse)."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value
        for child in children:
            if isinstance(child, dict | list):
                if depth >= limit:
                    return True
                stack.append((child, depth + 1))
    return False


def read_snapshot(dfd: int, agent: str, path: Path, max_bytes: int) -> StatusRead:
    """status.json in the agent folder open as `dfd`; a symlink there is UnsafePathError."""

    def result(kind: ReadKind, error: str | None = None, **kw: Any) -> StatusRead:
        return StatusRead(agent, path, kind, error=error, **kw)

    for _ in range(3):
        try:
            fd = os.open(STATUS_FILE, _READ_FLAGS, dir_fd=dfd)
        except FileNotFoundError:
            return result(ReadKind.MISSING, "no status.json")
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafePathError(f"{path} is a symlink; refusing it") from exc
            return result(ReadKind.IO, exc.strerror)
        try:
            st = os.fstat(fd)
            ident = identity_of(st)
            if not stat.S_ISREG(st.st_mode):
                return result(ReadKind.NOT_REGULAR, "not a regular file", identity=ident, stat=st)
            if st.st_size > max_bytes:
                too_big = f"{st.st_size} bytes > max_status_bytes"
                return result(ReadKind.TOO_LARGE, too_big, identity=ident, stat=st)
            data = read_all(fd, max_bytes)
            settled = identity_of(os.fstat(fd)) == ident
        except OSError as exc:
            return result(ReadKind.IO, exc.strerror)
        finally:
            os.close(fd)
        if settled:
            break  # else an in-place writer was mid-write: read again
    if len(data) > max_bytes:
        return result(ReadKind.TOO_LARGE, "grew past max_status_bytes", identity=ident, stat=st)
    doc, error = parse_doc(data)
    kind = ReadKind.OK if doc is not None else ReadKind.INVALID
    return result(kind, error, doc=doc, raw=data, identity=ident, stat=st)


def still_same(dfd: int, name: str, snap: StatusRead, max_bytes: int) -> bool:
    """Whether `name` still holds exactly the version `snap` read (same inode and bytes)."""
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=dfd)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or identity_of(st) != snap.identity:
            return False
        # Same inode, mtime and size can still hide an in-place rewrite within one
        # timestamp tick; the bytes cannot.
        return read_all(fd, max_bytes) == snap.raw
    finally:
        os.close(fd)


def encode(doc: Doc) -> bytes:
    """The bytes healer writes for `doc`: UTF-8 JSON, two-space indent, final newline."""
    try:
        text = json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
    except (TypeError, ValueError) as exc:
        raise ActionError(f"status transform produced unserialisable data: {exc}") from exc
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates survive json.loads; only \u escapes can write them back.
        return (json.dumps(doc, ensure_ascii=True, indent=2) + "\n").encode("ascii")


def salvage(agent: str, raw: bytes | None) -> Doc:
    """What a broken status.json still tells reliably: the folder's name, a few strings."""
    doc: Doc = {"agent_id": agent}
    text = (raw or b"").decode("utf-8", errors="replace")
    for key in _SALVAGED:
        m = re.search(rf'"{re.escape(key)}"\s*:\s*("(?:[^"\\\n]|\\.)*")', text)
        if m:
            with suppress(ValueError):
                doc[key] = json.loads(m.group(1))
    return doc
