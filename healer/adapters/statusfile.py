"""The one reader of an agent's status.json, for the writer and the scanner alike: through a
directory fd, bounded, no-follow unless asked, honest about bad content (a result, never an
exception), and aware of the text form the agent wrote, which healer writes back.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from contextlib import suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from healer.adapters import jsontext
from healer.adapters.fsops import READ_FLAGS, Identity, identity_of, read_all
from healer.adapters.jsontext import UTF8, TextForm
from healer.core.model import STATUS_FILE
from healer.errors import ActionError, UnsafePathError
from healer.ports import ReadKind

__all__ = [
    "ReadKind",
    "StatusRead",
    "TextForm",
    "check_encodable",
    "encode",
    "find_copy",
    "parse_snapshot",
    "read_raw",
    "read_snapshot",
    "salvage",
    "still_same",
]

Doc = dict[str, Any]

_LINKED_FLAGS = READ_FLAGS & ~os.O_NOFOLLOW  # only for a reader that never writes it
_SALVAGED = ("agent_name", "current_mission")
# json.loads accepts nesting about a thousand deep, but copying, comparing and encoding
# such a document recurse in Python and overflow the stack long before; no status.json
# of a real agent comes near this.
MAX_DEPTH = 100


@dataclass(frozen=True)
class StatusRead:
    """One read of status.json; `form` is how its text was written (None if not text),
    `linked` whether it was read through a symlink (only ever for reading)."""

    agent: str
    path: Path
    kind: ReadKind
    doc: Doc | None = None
    error: str | None = None
    raw: bytes | None = None
    identity: Identity | None = None
    stat: os.stat_result | None = None
    form: TextForm | None = None
    linked: bool = False

    @property
    def ok(self) -> bool:
        return self.doc is not None

    @property
    def exists(self) -> bool:
        return self.identity is not None


def _parse(data: bytes) -> tuple[Doc | None, TextForm | None, str | None]:
    try:
        text, form = jsontext.decode(data)
    except UnicodeDecodeError as exc:
        return None, None, f"not {exc.encoding.upper()} text: {exc.reason} at byte {exc.start}"
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return None, form, f"invalid JSON: {exc}"
    if not isinstance(doc, dict):
        return None, form, f"not a JSON object but {type(doc).__name__}"
    if _too_deep(doc, MAX_DEPTH):
        return None, form, f"nested more than {MAX_DEPTH} levels deep"
    return doc, form, None


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


def _open(dfd: int, path: Path, follow: bool) -> tuple[int, bool]:
    """An fd of status.json and whether it came through a symlink (only when `follow`)."""
    try:
        return os.open(STATUS_FILE, READ_FLAGS, dir_fd=dfd), False
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        if not follow:
            raise UnsafePathError(f"{path} is a symlink; refusing it") from exc
    return os.open(STATUS_FILE, _LINKED_FLAGS, dir_fd=dfd), True


def read_snapshot(
    dfd: int, agent: str, path: Path, max_bytes: int, *, follow: bool = False
) -> StatusRead:
    """status.json in the agent folder open as `dfd`. A symlink there is UnsafePathError,
    unless `follow`: then it is read through, for a reader that will never write it."""
    return parse_snapshot(read_raw(dfd, agent, path, max_bytes, follow=follow))


def read_raw(
    dfd: int, agent: str, path: Path, max_bytes: int, *, follow: bool = False
) -> StatusRead:
    """read_snapshot's read without the parse: kind OK with `raw` set (and no `doc` yet)
    when the bytes are in hand; parse_snapshot finishes it. A reader that wants one field
    can look at the bytes first and skip the parse."""

    def result(kind: ReadKind, error: str | None = None, **kw: Any) -> StatusRead:
        return StatusRead(agent, path, kind, error=error, linked=linked, **kw)

    linked = False
    for _ in range(3):
        try:
            fd, linked = _open(dfd, path, follow)
        except FileNotFoundError:
            return result(ReadKind.MISSING, "no status.json")
        except UnsafePathError:
            raise
        except OSError as exc:
            return result(ReadKind.IO, exc.strerror)
        try:
            st = os.fstat(fd)
            ident = identity_of(st)
            if not stat.S_ISREG(st.st_mode):
                return result(ReadKind.NOT_REGULAR, "not a regular file", identity=ident, stat=st)
            if st.st_size > max_bytes:
                too_big = f"{st.st_size} bytes > max_status_bytes"
                return result(ReadKind.TOO_LARGE, too_big, identity=ident, stat=st)
            data = read_all(fd, max_bytes, size_hint=st.st_size)
            settled = identity_of(os.fstat(fd)) == ident
        except OSError as exc:
            return result(ReadKind.IO, exc.strerror)
        finally:
            os.close(fd)
        if settled:
            break  # else an in-place writer was mid-write: read again
    if len(data) > max_bytes:
        return result(ReadKind.TOO_LARGE, "grew past max_status_bytes", identity=ident, stat=st)
    return result(ReadKind.OK, raw=data, identity=ident, stat=st)


def parse_snapshot(read: StatusRead) -> StatusRead:
    """The document of a read_raw result (any other result as it is)."""
    if read.kind is not ReadKind.OK or read.raw is None or read.doc is not None:
        return read
    doc, form, error = _parse(read.raw)
    kind = ReadKind.OK if doc is not None else ReadKind.INVALID
    return replace(read, kind=kind, doc=doc, error=error, form=form)


def still_same(dfd: int, name: str, snap: StatusRead, max_bytes: int) -> bool:
    """Whether `name` still holds exactly the version `snap` read (same inode and bytes)."""
    try:
        fd = os.open(name, READ_FLAGS, dir_fd=dfd)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or identity_of(st) != snap.identity:
            return False
        # Same inode, mtime and size can still hide an in-place rewrite within one
        # timestamp tick; the bytes cannot.
        return read_all(fd, max_bytes, size_hint=st.st_size) == snap.raw
    finally:
        os.close(fd)


def find_copy(dfd: int, prefix: str, data: bytes) -> str | None:
    """The name of a regular file in `dfd` starting with `prefix` and holding exactly `data`."""
    for name in sorted(os.listdir(dfd)):
        if not name.startswith(prefix):
            continue
        try:
            fd = os.open(name, READ_FLAGS, dir_fd=dfd)
        except OSError:
            continue
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and st.st_size == len(data) and (
                read_all(fd, len(data)) == data
            ):
                return name
        finally:
            os.close(fd)
    return None


def encode(doc: Doc, form: TextForm = UTF8) -> bytes:
    """The bytes healer writes for `doc`: JSON, two-space indent, final newline, in `form`
    (the codec, byte order mark and line ends the agent's file came in)."""
    try:
        return jsontext.dump(doc, form)
    except (TypeError, ValueError) as exc:
        raise ActionError(f"status transform produced unserialisable data: {exc}") from exc


def check_encodable(doc: Doc) -> None:
    """What encode() would refuse, refused the same way, without making its bytes: a dry
    run writes nothing, and the indented text is made by json's Python encoder (the C one
    does no indent), which was a third of a dry-run action's cost."""
    try:
        json.dumps(doc, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ActionError(f"status transform produced unserialisable data: {exc}") from exc


def salvage(agent: str, raw: bytes | None) -> Doc:
    """What a broken status.json still tells reliably: the folder's name, a few strings."""
    doc: Doc = {"agent_id": agent}
    data = raw or b""
    text = data.decode(jsontext.detect(data).codec, errors="replace")
    for key in _SALVAGED:
        m = re.search(rf'"{re.escape(key)}"\s*:\s*("(?:[^"\\\n]|\\.)*")', text)
        if m:
            with suppress(ValueError):
                doc[key] = json.loads(m.group(1))
    return doc
