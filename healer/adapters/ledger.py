"""The ledger of healer's own writes: which file versions healer itself put on disk, so
that neither the watcher nor a scan (nor a restart, from the history) takes them for an
agent's activity. Shared by the writer, the scanner and the watcher."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence

from healer.adapters.fsops import Identity, identity_of
from healer.core.model import is_own_temp_name

__all__ = ["SelfWriteLedger"]


class SelfWriteLedger:
    """Which file versions healer itself put on disk, so they never count as activity."""

    is_own_temp_name = staticmethod(is_own_temp_name)

    def __init__(self, on_note: Callable[[str, Identity | None], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, Identity] = {}
        self.on_note = on_note

    @staticmethod
    def key(path: str | os.PathLike[str]) -> str:
        # No resolve(): following links here would let a symlink alias a healer write.
        if (isinstance(path, str) and path[:1] == "/" and path[-1:] != "/"
                and "/." not in path and "//" not in path):
            return path  # already absolute and normal: the scanner's hot path skips the work
        return os.path.normpath(os.path.abspath(os.fspath(path)))

    def note(self, path: str | os.PathLike[str], st: os.stat_result) -> None:
        self._set(self.key(path), identity_of(st))

    def forget(self, path: str | os.PathLike[str]) -> None:
        self._set(self.key(path), None)

    def put(self, path: str | os.PathLike[str], ident: Identity | None) -> None:
        """Set (or with None, drop) the entry directly, e.g. to roll back a failed write."""
        self._set(self.key(path), ident)

    def get(self, path: str | os.PathLike[str]) -> Identity | None:
        with self._lock:
            return self._entries.get(self.key(path))

    def is_self(self, path: str | os.PathLike[str], st: os.stat_result) -> bool:
        """True when the file on disk is exactly the version healer last wrote there."""
        if not self._entries:
            return False
        with self._lock:
            return self._entries.get(self.key(path)) == identity_of(st)

    def entries(self) -> dict[str, Identity]:
        with self._lock:
            return dict(self._entries)

    def load(self, entries: Mapping[str, Sequence[int]]) -> None:
        loaded = {
            self.key(p): (int(v[0]), int(v[1]), int(v[2]))
            for p, v in entries.items()
            if len(v) == 3
        }
        with self._lock:
            self._entries.update(loaded)

    def _set(self, key: str, ident: Identity | None) -> None:
        with self._lock:
            if ident is None:
                self._entries.pop(key, None)
            else:
                self._entries[key] = ident
        if self.on_note is not None:
            self.on_note(key, ident)
