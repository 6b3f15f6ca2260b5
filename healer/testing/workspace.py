"""An agent workspace in memory: a WorkspaceReader and a StatusStore without files."""

from __future__ import annotations

import collections
import copy
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from healer.core.statusdoc import parse_busy_until
from healer.errors import ActionError
from healer.ports import Doc, Identity, ReadKind

__all__ = ["MemoryStatusStore", "MemoryWorkspace"]


@dataclass(frozen=True, slots=True)
class _Read:
    kind: ReadKind
    doc: Doc | None = None
    error: str | None = None
    identity: Identity | None = None


@dataclass(frozen=True, slots=True)
class _Written:
    backup: Path | None = None


class MemoryStatusStore:
    """A StatusStore in memory: each agent's status doc (None: missing), the files healer
    dropped (`files[agent]` maps `folder/name` to text) and escalation markers."""

    def __init__(self) -> None:
        self.docs: dict[str, Doc | None] = {}
        self.files: dict[str, dict[str, str]] = collections.defaultdict(dict)
        self.markers: dict[str, str] = {}
        self.backups: dict[str, list[Doc]] = collections.defaultdict(list)
        self.dry_run = False  # the memory store always writes
        self._version = 0

    def read_status(self, agent: str) -> _Read:
        doc = self.docs.get(agent)
        if doc is None:
            return _Read(ReadKind.MISSING, error="no status.json")
        return _Read(ReadKind.OK, copy.deepcopy(doc), identity=(id(doc), self._version, 0))

    def update_status(
        self, agent: str, transform: Callable[[Doc], Doc], *, backup: bool = False
    ) -> _Written:
        doc = self.docs.get(agent)
        if doc is None:
            raise ActionError(f"not updating {agent}/status.json: no status.json")
        self.docs[agent] = transform(copy.deepcopy(doc))
        self._version += 1
        if not backup:
            return _Written()
        self.backups[agent].append(doc)
        return _Written(Path(agent, f"status.json.bak.{len(self.backups[agent])}"))

    def write_unique(
        self, agent: str, folder: str, namer: Callable[[Collection[str]], str], text: str
    ) -> Path:
        taken = {key.rsplit("/", 1)[1] for key in self.files[agent] if key.startswith(folder)}
        name = namer(taken)
        self.files[agent][f"{folder}/{name}"] = text
        return Path(agent, folder, name)

    def write_marker(self, agent: str, text: str) -> Path:
        self.markers[agent] = text
        return Path(agent, ".ESCALATION_REQUIRED")

    def remove_marker(self, agent: str) -> bool:
        return self.markers.pop(agent, None) is not None

    def remove_stale_temps(self, agent: str, min_age: float) -> int:
        return 0  # nothing in memory is ever left half written


@dataclass(frozen=True, slots=True)
class _Scan:
    last_activity: float | None
    created: float
    status_link: None = None  # no symlinks in memory


@dataclass(frozen=True, slots=True)
class _Beat:
    identity: Identity | None = None
    mtime: float | None = None
    data: bytes | None = None
    error: str | None = None


class MemoryWorkspace:
    """A WorkspaceReader in memory: agents with their last genuine activity and heartbeat;
    their status docs (and busy leases) live in `files`, a MemoryStatusStore."""

    def __init__(self, files: MemoryStatusStore | None = None) -> None:
        self.files = files if files is not None else MemoryStatusStore()
        self.prefetched: list[str] = []  # the hints of Engine's read-ahead, in order
        self._agents: dict[str, tuple[float | None, float]] = {}  # last activity, created
        self._beats: dict[str, tuple[bytes, float, int]] = {}  # data, mtime, version
        self._versions = 0
        self.beat_reads = 0  # reads of a heartbeat's content (not of a known version)

    def add(self, agent: str, last_activity: float | None, *, created: float = 0.0,
            doc: Doc | None = None) -> None:
        self._agents[agent] = (last_activity, created)
        self.files.docs[agent] = doc if doc is not None else {"agent_id": agent}

    def touch(self, agent: str, when: float) -> None:
        """The agent wrote something of its own at `when`."""
        self._agents[agent] = (when, self._agents[agent][1])

    def write_beat(self, agent: str, data: bytes | str, when: float) -> None:
        """The agent wrote heartbeat.json at `when`, which is also its activity."""
        self._versions += 1
        raw = data.encode() if isinstance(data, str) else data
        self._beats[agent] = (raw, when, self._versions)
        self.touch(agent, when)

    def remove(self, agent: str) -> None:
        self._agents.pop(agent, None)
        self._beats.pop(agent, None)
        self.files.docs.pop(agent, None)

    def agents(self) -> list[str]:
        return sorted(self._agents)

    def scan(self, agent: str, now: float) -> _Scan | None:
        if agent not in self._agents:
            return None
        last, created = self._agents[agent]
        return _Scan(None if last is None else min(last, now), min(created, now))

    def lease(self, agent: str, max_lease: float, written_at: float) -> float | None:
        doc = self.files.docs.get(agent)
        until = parse_busy_until(doc) if doc is not None else None
        return None if until is None else min(until, written_at + max_lease)

    def prefetch(self, agents: list[str]) -> None:
        self.prefetched.extend(agents)

    def heartbeat(self, agent: str, known: Identity | None) -> _Beat:
        entry = self._beats.get(agent)
        if entry is None:
            return _Beat()
        data, mtime, version = entry
        identity = (version, int(mtime * 1e9), len(data))
        if identity == known:
            return _Beat(identity, mtime)
        self.beat_reads += 1
        return _Beat(identity, mtime, data)
