"""Shared fixtures: a fake clock, a workspace built from the real fixtures, a config."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from healer.config import Config
from healer.testing import FakeClock

# The real swarm's files and activity trace live in the repository (tests/fixtures, tests/data):
# a plain clone runs the whole suite. Absent data is an error, never a skip.
TESTS = Path(__file__).resolve().parent
FIXTURES = TESTS / "fixtures" / "dreamos"
STATUS_DIR = FIXTURES / "status"
STATUS_FIXTURES = sorted(STATUS_DIR.glob("*.json"))
MALFORMED_FIXTURE = STATUS_DIR / "Agent-1_9b3d8b004.json"
TRACE = TESTS / "data" / "dreamos_activity_trace.jsonl"
if len(STATUS_FIXTURES) < 38 or not MALFORMED_FIXTURE.is_file() or not TRACE.is_file():
    raise RuntimeError(f"test data missing under {TESTS}: fixtures/ and data/ ship with the repo")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config(workspaces=tmp_path / "ws", heal_after=2.0, recover_after=5.0, tick=0.1)


def make_agent(root: Path, name: str, status: dict[str, object] | bytes | None = None) -> Path:
    """An agent folder laid out as the swarm does it."""
    folder = root / name
    (folder / "devlogs").mkdir(parents=True, exist_ok=True)
    (folder / "inbox").mkdir(exist_ok=True)
    if status is None:
        status = {"agent_id": name, "status": "ACTIVE_AGENT_MODE", "current_tasks": ["task"]}
    data = status if isinstance(status, bytes) else json.dumps(status, indent=2).encode()
    (folder / "status.json").write_bytes(data)
    return folder


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An empty workspace root."""
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A workspace with one agent per real status fixture's agent (latest file wins)."""
    root = tmp_path / "ws"
    root.mkdir()
    for path in STATUS_FIXTURES:
        agent = path.name.split("_", 1)[0]
        make_agent(root, agent, b"{}")
        shutil.copyfile(path, root / agent / "status.json")
    return root


def agents_at(root: Path, when: float, *names: str) -> Path:
    """Agent folders under `root` (made if missing) whose files were last touched at `when`
    (a fake clock's now, say): their silence starts there."""
    root.mkdir(exist_ok=True)
    for name in names:
        folder = make_agent(root, name)
        for path in (folder / "status.json", folder / "devlogs", folder / "inbox", folder):
            os.utime(path, (when, when))
    return root
