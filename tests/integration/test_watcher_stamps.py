"""When the watcher says a change happened: the kernel's change time, not the handling time,
and never a content time a rename or `cp -p` carried over from the past."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from healer.adapters.watcher import MAX_EVENT_LAG, Watcher
from healer.adapters.writer import SelfWriteLedger


@pytest.fixture
def watcher(root: Path) -> Iterator[Watcher]:
    """A watcher that is never started: only its stamping is under test."""
    w = Watcher(root, is_agent=lambda name: name.startswith("Agent-"), ledger=SelfWriteLedger())
    yield w
    w.close()


class TestWrittenAt:
    def test_a_change_handled_late_is_stamped_when_it_happened(
        self, root: Path, watcher: Watcher
    ) -> None:
        (root / "Agent-1").mkdir()
        (root / "Agent-1" / "status.json").write_text("{}")
        written = os.lstat(root / "Agent-1" / "status.json").st_ctime
        handled = written + 0.8  # the observer thread got to it late
        assert watcher._written_at("Agent-1/status.json", handled) == written

    def test_a_rename_counts_at_the_rename_not_at_the_contents_write(
        self, root: Path, watcher: Watcher
    ) -> None:
        inbox = root / "Agent-1" / "inbox"
        (inbox / "processed").mkdir(parents=True)
        (inbox / "msg.md").write_text("# hello\n")
        os.utime(inbox / "msg.md", (time.time() - 1.0, time.time() - 1.0))
        os.rename(inbox / "msg.md", inbox / "processed" / "msg.md")
        now = time.time()
        stamp = watcher._written_at("Agent-1/inbox/processed/msg.md", now)
        assert now - 0.1 <= stamp <= now

    def test_a_copied_past_mtime_is_not_taken_for_the_writes_time(
        self, root: Path, watcher: Watcher
    ) -> None:
        (root / "Agent-1").mkdir()
        status = root / "Agent-1" / "status.json"
        status.write_text("{}")
        os.utime(status, (time.time() - 3600, time.time() - 3600))  # as cp -p leaves it
        now = time.time()
        assert watcher._written_at("Agent-1/status.json", now) >= now - 0.1

    def test_an_implausible_change_time_is_replaced_by_now(
        self, root: Path, watcher: Watcher
    ) -> None:
        (root / "Agent-1").mkdir()
        (root / "Agent-1" / "status.json").write_text("{}")
        changed = os.lstat(root / "Agent-1" / "status.json").st_ctime
        w = watcher
        late = changed + MAX_EVENT_LAG + 1
        assert w._written_at("Agent-1/status.json", late) == late
        early = changed - 5  # a clock that stepped back since the write
        assert w._written_at("Agent-1/status.json", early) == early

    def test_a_vanished_file_counts_now(
        self, root: Path, watcher: Watcher
    ) -> None:
        assert watcher._written_at("Agent-1/inbox/gone.md", 123.0) == 123.0
