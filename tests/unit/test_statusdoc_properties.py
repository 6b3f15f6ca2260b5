"""Property tests of status.json handling: any content, through the statusdoc transforms, the
SafeWriter and Scanner.lease, is healed, refused with an ActionError, or ignored; never a crash."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from healer.adapters import jsontext
from healer.adapters.ledger import SelfWriteLedger
from healer.adapters.scan import Scanner
from healer.adapters.statusfile import MAX_DEPTH, encode
from healer.adapters.writer import SafeWriter
from healer.core import statusdoc
from healer.core.model import is_own_temp_name
from healer.errors import ActionError
from healer.pipelines import recovery
from healer.pipelines.healing import Context
from tests.conftest import MALFORMED_FIXTURE, STATUS_FIXTURES, make_agent

NOW = "2025-01-01T00:00:00Z"
OWNED = {"current_tasks", "healing_applied", "healer"}  # keys the transforms may change

text = st.text(st.characters(codec=None, exclude_categories=()), max_size=10)  # surrogates too
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**300, max_value=10**330),
    st.floats(allow_nan=True, allow_infinity=True), text,
    st.sampled_from(["✅ COMPLETED: x", "[x] done", "⏳ PENDING", "", " ", "2030-01-01T00:00:00Z",
                     "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "z", "Z"]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=15,
)
special = st.fixed_dictionaries({}, optional={
    "current_tasks": json_values, "busy_until": json_values, "healing_applied": json_values,
    "healer": json_values | st.fixed_dictionaries({}, optional={
        "cleared_tasks": json_values, "reassigned_tasks": json_values}),
    "agent_id": json_values, "current_mission": json_values,
})
documents = st.builds(lambda a, b: {**a, **b}, st.dictionaries(text, json_values, max_size=4),
                      special)


def dumps(value: Any) -> str:
    """A comparable rendering (NaN != NaN, so documents are compared as text)."""
    return json.dumps(value, sort_keys=True, default=repr)


def nested(depth: int) -> bytes:
    return b'{"current_tasks": ["t"], "x": ' + b"[" * depth + b"]" * depth + b"}"


class TestTransforms:
    @settings(max_examples=200, deadline=None)
    @given(doc=documents, attempt=st.integers(1, 5))
    @example(doc={"busy_until": 10**400}, attempt=1)
    @example(doc={"current_tasks": "\ud800", "healer": 3}, attempt=1)
    def test_every_transform_accepts_any_document(self, doc: dict[str, Any], attempt: int) -> None:
        """Wrong types for current_tasks, busy_until, healing_applied and healer are kept or
        wrapped, never a crash; the input is untouched; the output encodes and keeps the
        agent's other keys."""
        before = dumps(doc)
        forced = statusdoc.apply_force_update(doc, NOW, attempt)
        cleared, moved = statusdoc.apply_clear_stuck_tasks(doc, NOW, attempt)
        reset = statusdoc.apply_reset_status(doc, NOW, attempt)
        reassigned = statusdoc.record_reassigned(doc, statusdoc.open_tasks(doc), "Agent-2", NOW)
        assert dumps(doc) == before
        for new in (forced, cleared, reset, reassigned):
            assert isinstance(new, dict)
            assert json.loads(encode(new)) is not None
        for new in (forced, cleared, reassigned):
            for key in set(doc) - OWNED:
                assert dumps(new[key]) == dumps(doc[key])
        if "current_tasks" in doc:  # moved, not dropped
            assert cleared["current_tasks"] == [] and len(moved) >= 0
            if moved:
                kept = cleared["healer"]["cleared_tasks"][-len(moved):]
                assert dumps([entry["task"] for entry in kept]) == dumps(moved)
        else:
            assert "current_tasks" not in cleared and moved == []
        assert statusdoc.task_count(doc) >= 0
        until = statusdoc.parse_busy_until(doc)
        assert until is None or math.isfinite(until)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


def fixture_bytes() -> list[bytes]:
    return [path.read_bytes() for path in STATUS_FIXTURES]


# Every form a Windows tool writes: UTF-8 with a BOM, UTF-16 and UTF-32 either way round,
# with or without a BOM, with CRLF line ends.
forms = st.builds(
    jsontext.TextForm,
    st.sampled_from(["utf-8", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"]),
    st.booleans(),
    st.booleans(),
)
contents = st.one_of(
    documents.map(lambda d: json.dumps(d).encode()),
    st.tuples(documents, forms).map(lambda pair: jsontext.dump(*pair)),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=64),
    st.sampled_from(fixture_bytes()).flatmap(
        lambda raw: st.integers(0, len(raw)).map(lambda cut: raw[:cut])),  # torn real files
    st.just(b""),
)


def heal_once(root: Path, raw: bytes) -> None:
    """force_update through the SafeWriter, then the lease, on a status.json holding `raw`."""
    shutil.rmtree(root, ignore_errors=True)
    folder = make_agent(root, "Agent-1", raw)
    writer = SafeWriter(root, SelfWriteLedger())
    try:
        writer.update_status("Agent-1", lambda d: statusdoc.apply_force_update(d, NOW, 1))
    except ActionError:
        # Refused: left exactly as it was, and a byte-exact backup made first.
        assert (folder / "status.json").read_bytes() == raw
        assert [b.read_bytes() for b in folder.glob("status.json.bak.*")] == [raw]
    else:
        data = (folder / "status.json").read_bytes()
        after = json.loads(data)  # json.loads detects UTF-16/32 and a BOM on bytes too
        assert isinstance(after, dict) and after["healing_applied"][-1]["action"] == "force_update"
        assert not list(folder.glob("status.json.bak.*"))
        original = json.loads(raw)
        assert isinstance(original, dict) and set(original) <= set(after)
        before, now = jsontext.detect(raw), jsontext.detect(data)
        assert (now.codec, now.bom) == (before.codec, before.bom)  # written back in its form
    assert not [p for p in folder.iterdir() if is_own_temp_name(p.name)]
    lease = Scanner(root, lambda name: True).lease("Agent-1", 1800.0, 0.0)
    assert lease is None or lease <= 1800.0


class TestThroughTheWriter:
    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(raw=contents)
    @example(raw=b'{"busy_until": 1' + b"0" * 400 + b"}")
    @example(raw=b'{"current_tasks": ["\\ud800"]}')
    @example(raw=b"\xff\xfe{}")
    @example(raw=b'\xef\xbb\xbf{"a": 1}\r\n')
    @example(raw='{"a": "\u00e9"}'.encode("utf-16-le"))
    @example(raw='\ufeff{"a": [1]}'.encode("utf-32-be"))
    @example(raw=nested(600))
    def test_any_bytes_are_healed_or_refused(self, scratch: Path, raw: bytes) -> None:
        """Arbitrary JSON, torn real fixtures, non-UTF-8 bytes, an empty file: healed with the
        agent's keys kept, or backed up byte-exactly first, or left alone; no temp remains."""
        heal_once(scratch / "ws", raw)

    def test_the_real_malformed_fixture_is_backed_up_and_left_as_written(
        self, tmp_path: Path
    ) -> None:
        heal_once(tmp_path / "ws", MALFORMED_FIXTURE.read_bytes())
        folder = tmp_path / "ws" / "Agent-1"
        assert (folder / "status.json").read_bytes() == MALFORMED_FIXTURE.read_bytes()

    @pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 600, 100_000])
    def test_deep_nesting_is_treated_as_unreadable(self, tmp_path: Path, depth: int) -> None:
        """JSON nested past MAX_DEPTH (100k nested lists: a RecursionError in the parser;
        600: fine for the parser, fatal for copying) is backed up, never crashes."""
        heal_once(tmp_path / "ws", nested(depth))
        folder = tmp_path / "ws" / "Agent-1"
        assert [b.read_bytes() for b in folder.glob("status.json.bak.*")] == [nested(depth)]

    def test_deep_nesting_cannot_crash_reassignment(self, tmp_path: Path) -> None:
        """Reassignment reads the stalled agent's tasks: a too-deep file is a failed action."""
        root = tmp_path / "ws"
        make_agent(root, "Agent-1", nested(600))
        make_agent(root, "Agent-2")
        ctx = Context("Agent-1", time.time(), 0, 500.0, time.time() - 500)
        outcome = recovery.reassign_tasks(SafeWriter(root, SelfWriteLedger()), ctx, ["Agent-2"])
        assert not outcome.ok and "nested" in (outcome.error or "")

    def test_lone_surrogate_task_is_reassigned(self, tmp_path: Path) -> None:
        """A task written as a JSON \\ud800 escape reaches the new owner's inbox as text."""
        root = tmp_path / "ws"
        make_agent(root, "Agent-1", b'{"current_tasks": ["fix \\ud800 bug"]}')
        make_agent(root, "Agent-2", {"current_tasks": []})
        ctx = Context("Agent-1", time.time(), 0, 500.0, time.time() - 500)
        outcome = recovery.reassign_tasks(SafeWriter(root, SelfWriteLedger()), ctx, ["Agent-2"])
        assert outcome.ok, outcome.error
        (message,) = (root / "Agent-2" / "inbox").iterdir()
        assert "fix \\ud800 bug" in message.read_text(encoding="utf-8")

    def test_a_50_mib_file_is_never_parsed(self, tmp_path: Path) -> None:
        """Past max_status_bytes: neither healed nor read for a lease, though it holds one."""
        root = tmp_path / "ws"
        folder = make_agent(root, "Agent-1", b"{}")
        with open(folder / "status.json", "wb") as f:
            f.write(b'{"busy_until": "2999-01-01T00:00:00Z", "pad": "')
            f.write(b"x" * (50 << 20))
            f.write(b'"}')
        before = os.stat(folder / "status.json")
        writer = SafeWriter(root, SelfWriteLedger())
        with pytest.raises(ActionError, match="max_status_bytes"):
            writer.update_status("Agent-1", lambda d: statusdoc.apply_force_update(d, NOW, 1))
        assert Scanner(root, lambda name: True).lease("Agent-1", 1800.0, 0.0) is None
        assert os.stat(folder / "status.json").st_mtime_ns == before.st_mtime_ns

    def test_a_directory_where_status_json_should_be(self, tmp_path: Path) -> None:
        """status.json as a folder: reported, refused, no lease, and the scan still works."""
        root = tmp_path / "ws"
        folder = make_agent(root, "Agent-1", b"{}")
        (folder / "status.json").unlink()
        (folder / "status.json").mkdir()
        writer = SafeWriter(root, SelfWriteLedger())
        assert writer.read_status("Agent-1").kind == "not_regular"
        with pytest.raises(ActionError):
            writer.update_status("Agent-1", lambda d: statusdoc.apply_force_update(d, NOW, 1))
        scanner = Scanner(root, lambda name: True)
        assert scanner.lease("Agent-1", 1800.0, 0.0) is None
        assert scanner.scan("Agent-1", time.time()) is not None
        assert (folder / "status.json").is_dir()

    def test_a_huge_integer_lease_is_no_lease(self, tmp_path: Path) -> None:
        """busy_until: 1e400 as a JSON integer is not a time (it overflowed a float before)."""
        root = tmp_path / "ws"
        make_agent(root, "Agent-1", b'{"busy_until": 1' + b"0" * 400 + b"}")
        assert Scanner(root, lambda name: True).lease("Agent-1", 1800.0, 0.0) is None

    def test_a_huge_size_limit_does_not_size_the_read(self, tmp_path: Path) -> None:
        """max_status_bytes far past memory: the lease read is sized by the file, not the limit."""
        root = tmp_path / "ws"
        make_agent(root, "Agent-1", b'{"busy_until": 100}')
        scanner = Scanner(root, lambda name: True, max_status_bytes=1 << 62)
        assert scanner.lease("Agent-1", 1800.0, 0.0) == 100.0
