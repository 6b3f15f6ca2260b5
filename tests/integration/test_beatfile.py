"""Reading heartbeat.json for the daemon, on real files: once per version, capped, never
through a symlink, never blocked by a FIFO, never an exception."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from healer.adapters.beatfile import MAX_HEARTBEAT_BYTES, read_heartbeat, write_heartbeat
from healer.adapters.scan import Scanner

BEAT = b'{"state": "waiting", "at": "2026-12-01T10:00:00Z", "message": "approve?"}\n'


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "Agent-1").mkdir()
    return tmp_path


class TestReadHeartbeat:
    def test_a_beat_is_read_once_per_version(self, root: Path) -> None:
        write_heartbeat(root, "Agent-1", BEAT)
        first = read_heartbeat(root, "Agent-1")
        assert first.data == BEAT and first.error is None and first.identity is not None
        st = (root / "Agent-1" / "heartbeat.json").stat()
        assert first.mtime == st.st_mtime
        again = read_heartbeat(root, "Agent-1", first.identity)
        assert (again.identity, again.data, again.error) == (first.identity, None, None)
        write_heartbeat(root, "Agent-1", BEAT.replace(b"waiting", b"working"))
        changed = read_heartbeat(root, "Agent-1", first.identity)
        assert changed.identity != first.identity and b"working" in (changed.data or b"")

    def test_none_is_nothing(self, root: Path) -> None:
        assert read_heartbeat(root, "Agent-1") == read_heartbeat(root, "Agent-9")
        assert read_heartbeat(root, "Agent-1").identity is None

    def test_a_symlink_is_not_followed(self, root: Path, tmp_path: Path) -> None:
        secret = tmp_path / "secret.json"
        secret.write_bytes(BEAT)
        (root / "Agent-1" / "heartbeat.json").symlink_to(secret)
        read = read_heartbeat(root, "Agent-1")
        assert read.data is None and read.error is not None and "symlink" in read.error
        assert read.identity is not None  # the link's own version: not looked at again

    def test_a_symlinked_agent_folder_is_not_entered(self, root: Path, tmp_path: Path) -> None:
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        (elsewhere / "heartbeat.json").write_bytes(BEAT)
        (root / "Agent-2").symlink_to(elsewhere)
        read = read_heartbeat(root, "Agent-2")
        assert read.data is None and read.error is not None

    def test_a_fifo_does_not_block(self, root: Path) -> None:
        os.mkfifo(root / "Agent-1" / "heartbeat.json")
        read = read_heartbeat(root, "Agent-1")
        assert read.data is None and "not a regular file" in (read.error or "")

    def test_a_file_past_the_cap_is_not_read(self, root: Path) -> None:
        (root / "Agent-1" / "heartbeat.json").write_bytes(b" " * (MAX_HEARTBEAT_BYTES + 1))
        read = read_heartbeat(root, "Agent-1")
        assert read.data is None and "larger than" in (read.error or "")

    def test_an_unreadable_file_is_a_reason_not_an_exception(self, root: Path) -> None:
        if os.geteuid() == 0:
            pytest.skip("root reads any file")
        path = root / "Agent-1" / "heartbeat.json"
        path.write_bytes(BEAT)
        path.chmod(0)
        read = read_heartbeat(root, "Agent-1")
        assert read.data is None and "cannot read" in (read.error or "")

    def test_the_scanner_reads_it_for_the_engine(self, root: Path) -> None:
        write_heartbeat(root, "Agent-1", BEAT)
        scanner = Scanner(root, lambda name: name.startswith("Agent-"))
        assert scanner.heartbeat("Agent-1", None).data == BEAT
