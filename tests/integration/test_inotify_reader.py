"""The watcher's inotify reader on real files and real inotify: every guarantee the main loop
relies on (new folders, renames, overflow, own writes, a dead reader, the watch limit, a
symlinked root), asserted on the Changes it hands over."""

from __future__ import annotations

import errno
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from watchdog.observers.inotify_c import InotifyFD

from healer.adapters import inotify_reader, prefetch
from healer.adapters.ledger import SelfWriteLedger
from healer.adapters.prefetch import Prefetch
from healer.adapters.watcher import Change, Watcher
from healer.adapters.writer import SafeWriter
from healer.core.model import FolderEvent, InboxMode
from tests.conftest import make_agent
from tests.integration.daemon import poll_until

pytestmark = pytest.mark.integration

SOON = 2.0  # a generous bound for what must be seen at once (the reader waits <= 20 ms)


def is_agent(name: str) -> bool:
    return name.startswith("Agent-")


@pytest.fixture
def ledger() -> SelfWriteLedger:
    return SelfWriteLedger()


@pytest.fixture
def watch(root: Path, ledger: SelfWriteLedger) -> Iterator[Watcher]:
    watcher = Watcher(root, is_agent=is_agent, ledger=ledger, inbox_mode=InboxMode.CONSUME)
    watcher.start()
    yield watcher
    watcher.close()


class Seen:
    """Every Change the watcher handed over so far, drained as a test asks."""

    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher
        self.changes: list[Change] = []

    def pull(self) -> list[Change]:
        self.changes += self.watcher.drain()
        return self.changes

    def wait(self, agent: str, *, activity: bool | None = None,
             folder: FolderEvent | None = None,
             timeout: float = SOON) -> Change:
        def match() -> Change | None:
            for c in self.pull():
                if c.agent == agent and (activity is None or c.activity is activity) and (
                        folder is None or c.folder == folder):
                    return c
            return None

        assert poll_until(lambda: match() is not None, timeout), (
            f"no change {agent} activity={activity} folder={folder}: {self.changes}")
        found = match()
        assert found is not None
        return found

    def activity(self, agent: str) -> list[Change]:
        return [c for c in self.pull() if c.agent == agent and c.activity]

    def settle(self, quiet: float = 0.2) -> None:
        """Wait until nothing new arrives for `quiet` seconds, then forget what came."""
        time.sleep(quiet)
        while self.watcher.drain():
            time.sleep(quiet)
        self.changes.clear()


@pytest.fixture
def seen(watch: Watcher) -> Seen:
    return Seen(watch)


class TestActivity:
    def test_an_append_is_activity_of_its_agent_stamped_when_read(
        self, root: Path, watch: Watcher, seen: Seen
    ) -> None:
        folder = make_agent(root, "Agent-1")
        seen.settle()
        before = time.time()
        with (folder / "devlogs" / "log.md").open("a") as fh:
            fh.write("- step\n")
        change = seen.wait("Agent-1", activity=True)
        assert before <= change.when <= time.time()
        assert watch.events_seen >= 2  # IN_MODIFY and IN_CLOSE_WRITE at least

    def test_mail_arriving_is_not_activity_but_consuming_it_is(
        self, root: Path, seen: Seen
    ) -> None:
        folder = make_agent(root, "Agent-1")
        (folder / "inbox" / "processed").mkdir()
        seen.settle()
        (folder / "inbox" / "msg.md").write_text("# hi\n")
        tmp = folder / "inbox" / ".msg2.md.part"
        tmp.write_text("# hi\n")
        os.rename(tmp, folder / "inbox" / "msg2.md")  # a sender's rename: delivery
        seen.wait("Agent-1", activity=False)
        time.sleep(0.2)
        assert not seen.activity("Agent-1")
        os.rename(folder / "inbox" / "msg.md", folder / "inbox" / "processed" / "msg.md")
        seen.wait("Agent-1", activity=True)

    def test_a_message_moved_out_of_the_tree_is_consumed_at_once(
        self, root: Path, tmp_path: Path, seen: Seen
    ) -> None:
        """A rename whose other half never comes is not held back waiting for it, and
        the events behind it are not either."""
        folder = make_agent(root, "Agent-1")
        other = make_agent(root, "Agent-2")
        (folder / "inbox" / "msg.md").write_text("# hi\n")
        seen.settle()
        t0 = time.monotonic()
        os.rename(folder / "inbox" / "msg.md", tmp_path / "msg.md")
        (other / "status.json").write_text("{}")
        seen.wait("Agent-1", activity=True)
        seen.wait("Agent-2", activity=True)
        assert time.monotonic() - t0 < 0.5


class TestNewFolders:
    def test_a_deferred_start_watches_each_agent_when_asked(
        self, root: Path, ledger: SelfWriteLedger
    ) -> None:
        """issue #16: `healer watch` is ready once the root is watched; each agent's folders
        are watched just before its scan. Until then its writes are the scan's to see; after,
        they are events, down to its deepest folder; a folder made meanwhile is watched."""
        (make_agent(root, "Agent-1") / "devlogs" / "2026").mkdir()
        make_agent(root, "Agent-2")
        watcher = Watcher(root, is_agent=is_agent, ledger=ledger, inbox_mode=InboxMode.CONSUME)
        watcher.start(defer=True)
        seen = Seen(watcher)
        try:
            (root / "Agent-1" / "devlogs" / "early.md").write_text("- before its watch\n")
            seen.settle()
            assert not seen.activity("Agent-1")
            watcher.watch_agent("Agent-1")
            (root / "Agent-1" / "devlogs" / "2026" / "deep.md").write_text("- watched now\n")
            seen.wait("Agent-1", activity=True)
            (root / "Agent-3").mkdir()  # the root's own watch: taken up at once
            (root / "Agent-3" / "devlogs").mkdir()
            (root / "Agent-3" / "devlogs" / "a.md").write_text("- one\n")
            seen.wait("Agent-3", activity=True)
            (root / "Agent-2" / "devlogs" / "x.md").write_text("- not yet watched\n")
            seen.settle()
            assert not seen.activity("Agent-2")
        finally:
            watcher.close()

    def test_a_folder_made_at_runtime_is_added_and_its_first_write_seen(
        self, root: Path, seen: Seen
    ) -> None:
        folder = root / "Agent-7"
        folder.mkdir()
        (folder / "devlogs").mkdir()
        (folder / "devlogs" / "first.md").write_text("- one\n")
        seen.wait("Agent-7", folder=FolderEvent.ADDED)
        seen.wait("Agent-7", activity=True)
        seen.settle()
        with (folder / "devlogs" / "first.md").open("a") as fh:
            fh.write("- two\n")
        seen.wait("Agent-7", activity=True)

    def test_a_deep_tree_made_at_once_is_watched_to_its_leaves(
        self, root: Path, seen: Seen
    ) -> None:
        make_agent(root, "Agent-1")
        seen.settle()
        deep = root / "Agent-1" / "devlogs" / "2025" / "06" / "30"
        os.makedirs(deep)  # mkdir -p: the inner folders exist before their watch can
        (deep / "log.md").write_text("start\n")
        seen.wait("Agent-1", activity=True)
        seen.settle()
        with (deep / "log.md").open("a") as fh:
            fh.write("more\n")
        seen.wait("Agent-1", activity=True)

    def test_a_tree_moved_in_from_outside_is_added_and_watched(
        self, root: Path, tmp_path: Path, seen: Seen
    ) -> None:
        staged = make_agent(tmp_path / "staging", "Agent-4")
        shutil.move(str(staged), str(root / "Agent-4"))
        seen.wait("Agent-4", folder=FolderEvent.ADDED)
        seen.settle()
        with (root / "Agent-4" / "devlogs" / "log.md").open("a") as fh:
            fh.write("- moved in, then written\n")
        seen.wait("Agent-4", activity=True)

    def test_an_agent_folder_renamed_keeps_its_watches_under_the_new_name(
        self, root: Path, seen: Seen
    ) -> None:
        make_agent(root, "Agent-1")
        seen.settle()
        os.rename(root / "Agent-1", root / "Agent-2")
        seen.wait("Agent-1", folder=FolderEvent.REMOVED)
        seen.wait("Agent-2", folder=FolderEvent.ADDED)
        seen.settle()
        (root / "Agent-2" / "status.json").write_text("{}")
        change = seen.wait("Agent-2", activity=True)
        assert not [c for c in seen.pull() if c.agent == "Agent-1" and c is not change]

    def test_a_folder_moved_out_is_removed_and_no_longer_reported(
        self, root: Path, tmp_path: Path, seen: Seen
    ) -> None:
        make_agent(root, "Agent-1")
        seen.settle()
        os.rename(root / "Agent-1", tmp_path / "gone")
        seen.wait("Agent-1", folder=FolderEvent.REMOVED)
        (tmp_path / "gone" / "status.json").write_text("{}")
        time.sleep(0.3)
        assert not seen.activity("Agent-1")


class TestOwnWrites:
    def test_healers_atomic_status_write_is_not_activity(
        self, root: Path, ledger: SelfWriteLedger, seen: Seen
    ) -> None:
        make_agent(root, "Agent-1")
        seen.settle()
        writer = SafeWriter(root, ledger, 1 << 20, False)
        writer.update_status("Agent-1", lambda doc: {**doc, "status": "healed"})
        writer.write_marker("Agent-1", "escalated\n")
        time.sleep(0.3)
        assert not seen.activity("Agent-1")

    def test_a_message_healer_linked_into_an_inbox_is_not_activity_even_if_mail_counts(
        self, root: Path, ledger: SelfWriteLedger
    ) -> None:
        folder = make_agent(root, "Agent-1")
        watcher = Watcher(root, is_agent=is_agent, ledger=ledger, inbox_mode=InboxMode.ANY)
        watcher.start()
        try:
            seen = Seen(watcher)
            seen.settle()
            SafeWriter(root, ledger).write_new("Agent-1", "inbox/RESCUE.md", "# rescue\n")
            time.sleep(0.3)
            assert not seen.activity("Agent-1")
            (folder / "inbox" / "from-a-peer.md").write_text("# hi\n")
            seen.wait("Agent-1", activity=True)  # and any other mail still counts
        finally:
            watcher.close()

    def test_a_rename_split_across_two_reads_is_still_healers_own(
        self, root: Path, ledger: SelfWriteLedger, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The two halves of a rename may land in different reads: the second then looks
        like a creation from outside, and the ledger still knows healer's file."""
        folder = make_agent(root, "Agent-1")
        status = folder / "status.json"
        ledger.note(str(status), os.lstat(status))
        monkeypatch.setattr(inotify_reader.InotifyReader, "start", lambda self: None)
        watcher = Watcher(root, is_agent=is_agent, ledger=ledger)
        watcher.start()  # watching; this test hands the reader its reads
        try:
            reader = watcher._reader
            assert reader is not None
            wd = reader._by_path["Agent-1"]
            reader._batch([(wd, 0x80, 4242, b"status.json")])  # IN_MOVED_TO
            assert not [c for c in watcher.drain() if c.activity]
            status.write_text('{"agent": "wrote it"}')  # no longer healer's version
            reader._batch([(wd, 0x80, 4243, b"status.json")])
            assert [c for c in watcher.drain() if c.activity and c.agent == "Agent-1"]
        finally:
            watcher.close()


class TestOverflow:
    def test_lost_events_are_said_and_folders_made_meanwhile_are_watched(
        self, root: Path, ledger: SelfWriteLedger, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
        folder = make_agent(root, "Agent-1")
        monkeypatch.setattr(inotify_reader.InotifyReader, "start", lambda self: None)
        watcher = Watcher(root, is_agent=is_agent, ledger=ledger)
        watcher.start()  # watching, not yet reading: the kernel queue fills up
        try:
            path = folder / "devlogs" / "flood.md"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            try:
                for n in range(limit + 1000):  # alternate, so the kernel merges none
                    os.write(fd, b"x")
                    os.utime(path) if n % 2 else None
            finally:
                os.close(fd)
            late = root / "Agent-2"
            late.mkdir()  # its creation is among the events lost
            (late / "devlogs").mkdir()
            reader = watcher._reader
            assert reader is not None
            reader._thread.start()
            assert poll_until(watcher.overflowed.is_set, 5.0), "no overflow reported"
            assert watcher.wake.is_set()
            seen = Seen(watcher)
            seen.settle()
            with (late / "devlogs" / "log.md").open("a") as fh:
                fh.write("- after the overflow\n")
            seen.wait("Agent-2", activity=True)
        finally:
            watcher.close()


class TestLifecycle:
    def test_a_dead_reader_is_seen_and_restarted(
        self, root: Path, watch: Watcher, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        reader = watch._reader
        assert reader is not None and watch.alive()

        def broken(fd: InotifyFD) -> list[inotify_reader.Raw]:
            raise OSError(errno.EIO, "read failed")

        monkeypatch.setattr(inotify_reader, "read_raw", broken)
        (make_agent(root, "Agent-1") / "status.json").write_text("{}")  # wakes the read
        assert poll_until(lambda: not watch.alive(), SOON), "the dead reader looks alive"
        monkeypatch.undo()
        watch.restart()
        assert watch.alive() and watch.restarts == 1 and watch._reader is not reader
        seen = Seen(watch)
        seen.settle()
        (root / "Agent-1" / "status.json").write_text('{"n": 1}')
        seen.wait("Agent-1", activity=True)

    def test_a_deleted_root_makes_the_reader_not_alive(self, root: Path, watch: Watcher) -> None:
        shutil.rmtree(root)
        assert poll_until(lambda: not watch.alive(), SOON)

    def test_the_watch_limit_reached_at_runtime_means_polling(
        self, root: Path, watch: Watcher, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        reader = watch._reader
        assert reader is not None
        real = reader._fd.add_callback

        def full(path: bytes, *args: Any) -> Any:
            if b"Agent-9" in path:
                raise OSError(errno.ENOSPC, "inotify watch limit reached")
            return real(path, *args)

        monkeypatch.setattr(reader._fd, "add_callback", full)
        make_agent(root, "Agent-9")
        assert poll_until(lambda: not watch.alive(), SOON), "a full watch table went unseen"
        watch.restart()  # what the main loop does when alive() says no
        assert watch.poll and watch.alive()


class TestSymlinkedRoot:
    def test_folders_made_under_a_linked_root_are_watched_at_once(
        self, tmp_path: Path, ledger: SelfWriteLedger
    ) -> None:
        real = tmp_path / "data" / "ws"
        real.mkdir(parents=True)
        link = tmp_path / "srv-ws"
        link.symlink_to(real, target_is_directory=True)
        watcher = Watcher(link, is_agent=is_agent, ledger=ledger)
        watcher.start()
        try:
            assert watcher.root == real.resolve()
            seen = Seen(watcher)
            folder = link / "Agent-3"  # made through the link, as agents would
            folder.mkdir()
            (folder / "inbox").mkdir()
            (folder / "inbox" / "task.md").write_text("# do it\n")
            seen.wait("Agent-3", folder=FolderEvent.ADDED)
            seen.settle()
            (folder / "inbox" / "task.md").unlink()  # an inbox-only agent's consume
            seen.wait("Agent-3", activity=True)
        finally:
            watcher.close()

    def test_a_re_pointed_link_is_resolved_again_on_restart(
        self, tmp_path: Path, ledger: SelfWriteLedger
    ) -> None:
        first, second = tmp_path / "a", tmp_path / "b"
        first.mkdir()
        second.mkdir()
        link = tmp_path / "ws"
        link.symlink_to(first, target_is_directory=True)
        watcher = Watcher(link, is_agent=is_agent, ledger=ledger)
        watcher.start()
        try:
            link.unlink()
            link.symlink_to(second, target_is_directory=True)
            watcher.restart()  # what the daemon's _follow_root does on a new identity
            assert watcher.root == second.resolve()
            make_agent(link, "Agent-5")
            Seen(watcher).wait("Agent-5", folder=FolderEvent.ADDED)
        finally:
            watcher.close()


class TestColdStart:
    def test_a_warm_tree_starts_no_read_ahead(
        self, root: Path, ledger: SelfWriteLedger, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for n in range(1, 9):
            make_agent(root, f"Agent-{n}")
        # Just written, so cached; the bound is loosened so a loaded machine cannot look
        # like a disk read.
        monkeypatch.setattr(prefetch, "WARM_FOLDER", 0.01)
        assert not Prefetch.cold(str(root), sorted(os.listdir(root)))
        watcher = Watcher(root, is_agent=is_agent, ledger=ledger)
        watcher.start()
        try:
            assert watcher._prefetch is None
        finally:
            watcher.close()

    def test_a_cold_tree_is_read_ahead_and_still_watched_whole(
        self, root: Path, ledger: SelfWriteLedger, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for n in range(1, 21):
            make_agent(root, f"Agent-{n}")
        monkeypatch.setattr(prefetch, "WARM_FOLDER", 0.0)  # any read counts as the disk's
        watcher = Watcher(root, is_agent=is_agent, ledger=ledger)
        watcher.start()
        try:
            warm = watcher._prefetch
            assert warm is not None
            assert poll_until(lambda: not warm.running(), SOON)
            reader = watcher._reader
            assert reader is not None
            assert {f"Agent-{n}/devlogs" for n in range(1, 21)} <= set(reader._by_path)
            seen = Seen(watcher)
            (root / "Agent-20" / "status.json").write_text("{}")
            seen.wait("Agent-20", activity=True)
        finally:
            watcher.close()

    def test_the_read_ahead_lists_every_folder_and_stops_when_told(self, root: Path) -> None:
        for n in range(1, 5):
            (make_agent(root, f"Agent-{n}") / "inbox" / "processed").mkdir()
        walker = Prefetch(str(root), [])
        assert walker._walk(str(root / "Agent-1")) == 4  # the agent, devlogs, inbox, processed
        walker.stop()
        assert walker._walk(str(root / "Agent-2")) == 0


class TestPolling:
    def test_the_polling_observer_keeps_the_same_rules(
        self, root: Path, ledger: SelfWriteLedger
    ) -> None:
        """--poll: a new folder is added, a write is activity, healer's own message is not
        (even where any mail counts), and a peer's message is."""
        watcher = Watcher(root, is_agent=is_agent, ledger=ledger, inbox_mode=InboxMode.ANY,
                          poll=True, poll_interval=0.1)
        watcher.start()
        try:
            assert watcher._reader is None and watcher.alive()
            seen = Seen(watcher)
            folder = make_agent(root, "Agent-6")
            seen.wait("Agent-6", folder=FolderEvent.ADDED)
            seen.settle()
            SafeWriter(root, ledger).write_new("Agent-6", "inbox/RESCUE.md", "# rescue\n")
            time.sleep(0.4)
            assert not seen.activity("Agent-6")
            (folder / "inbox" / "from-a-peer.md").write_text("# hi\n")
            seen.wait("Agent-6", activity=True)
            assert watcher.events_seen > 0
        finally:
            watcher.close()
