"""The scanner on real files: one status.json reader shared with the writer, whatever the text
form, and a status.json symlink read through for activity and the lease, never written."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healer.adapters import jsontext, leases
from healer.adapters import scan as scan_module
from healer.adapters.jsontext import TextForm
from healer.adapters.leases import may_hold_lease
from healer.adapters.ledger import SelfWriteLedger
from healer.adapters.scan import Scanner, StatusLink
from healer.adapters.writer import SafeWriter
from healer.core import statusdoc
from healer.errors import UnsafePathError
from tests.conftest import make_agent

LEASE = "2030-01-01T00:00:00Z"
LEASE_AT = 1_893_456_000.0
FORMS = [
    TextForm(),
    TextForm("utf-8", bom=True, crlf=True),
    TextForm("utf-16-le", bom=True, crlf=True),
    TextForm("utf-16-le"),
    TextForm("utf-16-be", bom=True),
    TextForm("utf-32-le", bom=True),
    TextForm("utf-32-be"),
]


def scanner(root: Path) -> Scanner:
    return Scanner(root, lambda name: name.startswith("Agent-"))


def aged(path: Path, seconds: float) -> float:
    """Set `path`'s mtime (not following a symlink) `seconds` into the past; returns it."""
    when = time.time() - seconds
    os.utime(path, (when, when), follow_symlinks=False)
    return when


class TestOneReader:
    @pytest.mark.parametrize("form", FORMS, ids=TextForm.describe)
    def test_writer_and_lease_read_the_same_document(self, root: Path, form: TextForm) -> None:
        """The lease reader and the writer agree on every form, so the lease of a Windows
        agent holds (the lease used to accept a UTF-8 BOM file the writer called broken)."""
        doc = {"agent_id": "Agent-1", "busy_until": LEASE, "current_tasks": ["a"]}
        make_agent(root, "Agent-1", jsontext.dump(doc, form))
        by_writer = SafeWriter(root, SelfWriteLedger()).read_status("Agent-1")
        by_scanner = scanner(root).read_status("Agent-1")
        assert by_scanner is not None
        assert by_writer.doc == by_scanner.doc == doc
        assert by_writer.form == by_scanner.form == form
        assert scanner(root).lease("Agent-1", 1e12, 0.0) == LEASE_AT

    @pytest.mark.parametrize("raw", [b"{broken", b'\xef\xbb\xbf{"busy_until": "', b"\xff\xfe{}"])
    def test_a_file_neither_can_parse_gives_no_lease(self, root: Path, raw: bytes) -> None:
        make_agent(root, "Agent-1", raw)
        assert SafeWriter(root, SelfWriteLedger()).read_status("Agent-1").kind == "invalid"
        assert scanner(root).lease("Agent-1", 1e12, 0.0) is None

    def test_a_lease_key_spelled_with_escapes_still_holds(self, root: Path) -> None:
        """The reader skips the parse of bytes that cannot hold `busy_until`; a key written
        with JSON escapes can, and must not be skipped."""
        make_agent(root, "Agent-1", b'{"busy\\u005funtil": "' + LEASE.encode() + b'"}')
        assert scanner(root).lease("Agent-1", 1e12, 0.0) == LEASE_AT

    @given(doc=st.dictionaries(st.sampled_from(["busy_until", "busy", "until", "a\u00e9"]),
                               st.sampled_from([LEASE, 1.9e9, "x", None])),
           form=st.sampled_from(FORMS), ascii_only=st.booleans())
    @settings(max_examples=200)
    def test_only_bytes_without_a_lease_are_skipped(
        self, doc: dict[str, object], form: TextForm, ascii_only: bool
    ) -> None:
        """may_hold_lease is False only where the parsed document has no busy_until."""
        text = json.dumps(doc, ensure_ascii=ascii_only)
        raw = jsontext.dump(json.loads(text), form) if not ascii_only else text.encode()
        if not may_hold_lease(raw):
            assert "busy_until" not in json.loads(jsontext.decode(raw)[0])

    def test_the_lease_is_capped_after_the_write(self, root: Path) -> None:
        make_agent(root, "Agent-1", jsontext.dump({"busy_until": LEASE}, FORMS[2]))
        assert scanner(root).lease("Agent-1", 60.0, 1000.0) == 1060.0


@pytest.fixture
def dashboard(tmp_path: Path) -> Path:
    """A dashboard folder outside the root, where the agent's status.json really lives."""
    folder = tmp_path / "dashboard"
    folder.mkdir()
    return folder


def linked_agent(root: Path, target: Path, doc: dict[str, object] | None = None) -> Path:
    folder = make_agent(root, "Agent-1")
    (folder / "status.json").unlink()
    target.write_text(json.dumps(doc or {"agent_id": "Agent-1", "current_tasks": ["t"]}))
    (folder / "status.json").symlink_to(target)
    for path in (folder / "devlogs", folder / "inbox", folder / "status.json", folder):
        aged(path, 1000)
    return folder


class TestSymlinkedStatus:
    def test_writes_behind_the_link_are_activity(self, root: Path, dashboard: Path) -> None:
        """The agent writes through the link, so the target's mtime is its activity (it used
        to count the link's own, which never changes, and flag a busy agent as dead)."""
        linked_agent(root, dashboard / "Agent-1.json")
        found = scanner(root).scan("Agent-1", time.time())
        assert found is not None and found.status_link is StatusLink.FOLLOWED
        assert found.last_activity is not None and found.last_activity > time.time() - 60

    def test_an_old_target_is_old_activity(self, root: Path, dashboard: Path) -> None:
        linked_agent(root, dashboard / "Agent-1.json")
        then = aged(dashboard / "Agent-1.json", 500)
        found = scanner(root).scan("Agent-1", time.time())
        assert found is not None and found.last_activity == pytest.approx(then, abs=1e-3)

    def test_the_lease_is_read_through_the_link(self, root: Path, dashboard: Path) -> None:
        linked_agent(root, dashboard / "Agent-1.json", {"busy_until": LEASE})
        assert scanner(root).lease("Agent-1", 1e12, 0.0) == LEASE_AT

    def test_every_write_through_it_is_refused(self, root: Path, dashboard: Path) -> None:
        """Reading through it is allowed; writing never is, and the target keeps its bytes."""
        target = dashboard / "Agent-1.json"
        linked_agent(root, target)
        before = (target.read_bytes(), target.stat().st_mtime_ns)
        writer = SafeWriter(root, SelfWriteLedger())
        with pytest.raises(UnsafePathError, match="symlink"):
            writer.update_status("Agent-1", lambda d: statusdoc.apply_force_update(d, "x", 1))
        with pytest.raises(UnsafePathError, match="symlink"):
            writer.read_status("Agent-1")
        assert (target.read_bytes(), target.stat().st_mtime_ns) == before
        assert (root / "Agent-1" / "status.json").is_symlink()

    def test_a_link_into_another_agent_is_not_followed(self, root: Path) -> None:
        """Another agent's writes are that agent's activity, not this one's."""
        make_agent(root, "Agent-2", {"busy_until": LEASE})
        folder = linked_agent(root, root / "Agent-2" / "status.json", {"busy_until": LEASE})
        (folder / "status.json").unlink()
        (folder / "status.json").symlink_to("../Agent-2/status.json")
        aged(folder / "status.json", 1000)
        found = scanner(root).scan("Agent-1", time.time())
        assert found is not None and found.status_link is StatusLink.REFUSED
        assert found.last_activity is not None and found.last_activity < time.time() - 900
        assert scanner(root).lease("Agent-1", 1e12, 0.0) is None

    def test_making_or_re_pointing_the_link_is_activity(self, root: Path, dashboard: Path) -> None:
        """The link's own mtime is the agent's too (healer never makes one), even where the
        target is another agent's file and is not followed, or is gone."""
        make_agent(root, "Agent-2")
        folder = linked_agent(root, dashboard / "Agent-1.json")
        aged(dashboard / "Agent-1.json", 1000)
        for target in ("../Agent-2/status.json", str(dashboard / "gone.json")):
            (folder / "status.json").unlink()
            (folder / "status.json").symlink_to(target)
            found = scanner(root).scan("Agent-1", time.time())
            assert found is not None and found.last_activity is not None
            assert found.last_activity > time.time() - 60

    def test_a_link_inside_its_own_folder_is_followed(self, root: Path) -> None:
        folder = make_agent(root, "Agent-1", {"busy_until": LEASE})
        (folder / "status.json").rename(folder / "real.json")
        (folder / "status.json").symlink_to("real.json")
        assert scanner(root).status_link("Agent-1") is StatusLink.FOLLOWED
        assert scanner(root).lease("Agent-1", 1e12, 0.0) == LEASE_AT

    def test_a_dangling_link_is_no_activity_and_no_crash(self, root: Path, dashboard: Path) -> None:
        linked_agent(root, dashboard / "Agent-1.json")
        (dashboard / "Agent-1.json").unlink()
        found = scanner(root).scan("Agent-1", time.time())
        assert found is not None and found.last_activity is not None
        assert found.last_activity < time.time() - 900
        assert scanner(root).lease("Agent-1", 1e12, 0.0) is None

    def test_a_link_to_a_fifo_does_not_block(self, root: Path, dashboard: Path) -> None:
        linked_agent(root, dashboard / "Agent-1.json")
        (dashboard / "Agent-1.json").unlink()
        os.mkfifo(dashboard / "Agent-1.json")
        found = scanner(root).scan("Agent-1", time.time())
        assert found is not None and found.last_activity is not None
        assert found.last_activity < time.time() - 900
        assert scanner(root).lease("Agent-1", 1e12, 0.0) is None

    def test_a_plain_file_has_no_link_note(self, root: Path) -> None:
        make_agent(root, "Agent-1")
        found = scanner(root).scan("Agent-1", time.time())
        assert found is not None and found.status_link is None


class TestListingsKept:
    """A re-stat does not list a folder again when its inode and mtime say nothing came or
    went since a listing taken well after its last change (issue #16)."""

    def _old(self, folder: Path, *files: Path) -> None:
        for path in (*files, folder):
            aged(path, 7200)

    def test_a_file_made_in_a_listed_folder_is_found(self, root: Path) -> None:
        folder = make_agent(root, "Agent-1")
        devlogs = folder / "devlogs"
        self._old(devlogs, folder / "status.json")
        scan = scanner(root)
        before = scan.scan("Agent-1", 1e12)
        assert before is not None
        assert scan.scan("Agent-1", 1e12) == before  # from the kept listing
        (devlogs / "new.md").write_text("x")  # a name came: the folder's mtime moved
        after = scan.scan("Agent-1", 1e12)
        assert after is not None and after.last_activity is not None
        assert before.last_activity is not None and after.last_activity > before.last_activity

    def test_an_append_to_a_listed_file_is_found(self, root: Path) -> None:
        folder = make_agent(root, "Agent-1")
        log = folder / "devlogs" / "a.md"
        log.write_text("x")
        self._old(folder / "devlogs", log, folder / "status.json")
        scan = scanner(root)
        scan.scan("Agent-1", 1e12)
        with log.open("a") as f:
            f.write("more")
        found = scan.scan("Agent-1", 1e12)
        assert found is not None and found.last_activity == log.stat().st_mtime

    def test_a_folder_changed_just_now_is_listed_again(self, root: Path) -> None:
        """Two changes within one tick of the file system's clock share an mtime: a
        listing of a folder changed a moment ago is never kept."""
        folder = make_agent(root, "Agent-1")
        devlogs = folder / "devlogs"
        aged(folder / "status.json", 7200)
        mtime_ns = devlogs.stat().st_mtime_ns  # changed just now (made by make_agent)
        scan = scanner(root)
        scan.scan("Agent-1", 1e12)
        (devlogs / "new.md").write_text("x")
        os.utime(devlogs, ns=(mtime_ns, mtime_ns))  # the same tick: the mtime did not move
        found = scan.scan("Agent-1", 1e12)
        assert found is not None
        assert found.last_activity == (devlogs / "new.md").stat().st_mtime


class TestRootListingKept:
    """The sweep's listing of the root is kept while the root's inode and mtime say no name
    came or went since a settled listing."""

    def test_an_agent_made_or_removed_is_listed(self, root: Path) -> None:
        make_agent(root, "Agent-1")
        aged(root, 7200)
        scan = scanner(root)
        assert scan.agents() == ["Agent-1"]
        assert scan.agents() == ["Agent-1"]  # from the kept listing
        make_agent(root, "Agent-2")
        assert scan.agents() == ["Agent-1", "Agent-2"]
        aged(root, 7200)
        assert scan.agents() == ["Agent-1", "Agent-2"]
        (root / "Agent-1").rename(root / "gone")
        assert scan.agents() == ["Agent-2"]

    def test_a_root_changed_just_now_is_listed_again(self, root: Path) -> None:
        make_agent(root, "Agent-1")
        mtime_ns = root.stat().st_mtime_ns  # changed just now
        scan = scanner(root)
        assert scan.agents() == ["Agent-1"]
        make_agent(root, "Agent-2")
        os.utime(root, ns=(mtime_ns, mtime_ns))  # the same tick: the mtime did not move
        assert scan.agents() == ["Agent-1", "Agent-2"]

    def test_a_new_pattern_lists_again(self, root: Path) -> None:
        make_agent(root, "Agent-1")
        (root / "Worker-1").mkdir()
        aged(root, 7200)
        scan = scanner(root)
        assert scan.agents() == ["Agent-1"]
        scan.is_agent = lambda name: name.startswith("Worker-")
        assert scan.agents() == ["Worker-1"]


class TestPrefetch:
    def test_a_hint_reads_nothing_and_never_hangs_or_follows(self, root: Path, tmp_path: Path
                                                             ) -> None:
        """prefetch only asks the kernel to read ahead: a FIFO, a symlink out of the root,
        a missing folder are passed over without blocking or raising."""
        make_agent(root, "Agent-1")
        fifo = make_agent(root, "Agent-2") / "status.json"
        fifo.unlink()
        os.mkfifo(fifo)
        outside = tmp_path / "outside.json"
        outside.write_text("{}")
        link = make_agent(root, "Agent-3") / "status.json"
        link.unlink()
        link.symlink_to(outside)
        before = os.stat(outside).st_atime_ns
        scanner(root).prefetch(["Agent-1", "Agent-2", "Agent-3", "Agent-404"])
        assert os.stat(outside).st_atime_ns == before
        assert scanner(root).lease("Agent-1", 1e12, 0.0) is None


class TestLeaseReadAhead:
    """prefetch reads the leases of agents about to fall due; lease() then trusts only a
    status.json that is still exactly the version read."""

    @pytest.fixture(autouse=True)
    def settled_at_once(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(leases, "_SETTLED_NS", 0)  # no wait for the file system's clock

    def reads(self, scan: Scanner, monkeypatch: pytest.MonkeyPatch) -> list[str]:
        seen: list[str] = []
        real = scan._read_raw

        def counted(agent: str):  # type: ignore[no-untyped-def]
            seen.append(agent)
            return real(agent)

        monkeypatch.setattr(scan, "_read_raw", counted)
        return seen

    def test_a_lease_read_ahead_costs_no_read_at_the_stall(
            self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        make_agent(root, "Agent-1", {"busy_until": LEASE})
        make_agent(root, "Agent-2", {"status": "idle"})
        scan = scanner(root)
        reads = self.reads(scan, monkeypatch)
        scan.prefetch(["Agent-1", "Agent-2", "Agent-404"])
        assert scan.lease("Agent-1", 1e12, 0.0) == LEASE_AT
        assert scan.lease("Agent-2", 1e12, 0.0) is None
        assert scan.lease("Agent-1", 60.0, 100.0) == 160.0  # the cap: read again, same answer
        assert reads == ["Agent-1"]  # only the second look: each read ahead serves one stall

    def test_a_rewrite_after_the_read_ahead_is_read_again(
            self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Same size, mtime set back: the change time still tells the versions apart."""
        status = make_agent(root, "Agent-1", {"busy_until": LEASE}) / "status.json"
        old = status.stat()
        scan = scanner(root)
        scan.prefetch(["Agent-1"])
        time.sleep(0.02)  # past the file system's clock tick
        later = LEASE.replace("2030", "2031")
        status.write_text(status.read_text().replace(LEASE, later))
        os.utime(status, ns=(old.st_atime_ns, old.st_mtime_ns))
        assert status.stat().st_size == old.st_size
        assert scan.lease("Agent-1", 1e12, 0.0) == LEASE_AT + 365 * 86400

    def test_a_version_still_changing_is_not_kept(
            self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(leases, "_SETTLED_NS", 3600 * 10**9)
        make_agent(root, "Agent-1", {"busy_until": LEASE})
        scan = scanner(root)
        reads = self.reads(scan, monkeypatch)
        scan.prefetch(["Agent-1"])
        assert scan.lease("Agent-1", 1e12, 0.0) == LEASE_AT
        assert reads == ["Agent-1"]

    def test_a_linked_status_is_read_at_the_stall(
            self, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        outside = tmp_path / "Agent-1.json"
        linked_agent(root, outside, {"busy_until": LEASE})
        scan = scanner(root)
        reads = self.reads(scan, monkeypatch)
        scan.prefetch(["Agent-1"])
        assert scan.lease("Agent-1", 1e12, 0.0) == LEASE_AT
        assert reads == ["Agent-1"]


class TestStatsOfTheRestat:
    """The lease and heartbeat reads right after a scan of the same agent use that scan's
    lstats; any other agent, or a moment later, looks again."""

    def lstats(self, monkeypatch: pytest.MonkeyPatch) -> list[str]:
        seen: list[str] = []
        real = os.lstat

        def counted(path, *args, **kwargs):  # type: ignore[no-untyped-def]
            seen.append(os.path.basename(str(path)))
            return real(path, *args, **kwargs)

        monkeypatch.setattr(os, "lstat", counted)
        return seen

    def test_a_decision_after_the_rescan_takes_no_new_lstat(
            self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(leases, "_SETTLED_NS", 0)
        folder = make_agent(root, "Agent-1", {"busy_until": LEASE})
        (folder / "heartbeat.json").write_text('{"state": "working"}')
        scan = scanner(root)
        scan.prefetch(["Agent-1"])
        assert scan.scan("Agent-1", time.time()) is not None
        seen = self.lstats(monkeypatch)
        assert scan.lease("Agent-1", 1e12, 0.0) == LEASE_AT
        assert scan.heartbeat("Agent-1", None).data is not None
        assert "status.json" not in seen and "heartbeat.json" not in seen

    def test_files_missing_at_the_scan_are_missing_for_the_decision(self, root: Path) -> None:
        folder = root / "Agent-1"
        (folder / "devlogs").mkdir(parents=True)
        scan = scanner(root)
        assert scan.scan("Agent-1", time.time()) is not None
        assert scan.lease("Agent-1", 1e12, 0.0) is None
        assert scan.heartbeat("Agent-1", None).identity is None

    def test_another_agent_or_a_later_moment_looks_again(
            self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        make_agent(root, "Agent-1", {"status": "idle"})
        make_agent(root, "Agent-2", {"status": "idle"})
        scan = scanner(root)
        scan.scan("Agent-1", time.time())
        scan.scan("Agent-2", time.time())
        seen = self.lstats(monkeypatch)
        scan.heartbeat("Agent-1", None)
        assert seen == ["heartbeat.json"]  # Agent-2 was scanned last
        scan.scan("Agent-1", time.time())
        clock = time.monotonic_ns() + scan_module._FRESH_NS + 1
        monkeypatch.setattr(scan_module.time, "monotonic_ns", lambda: clock)
        seen.clear()
        scan.heartbeat("Agent-1", None)
        assert seen == ["heartbeat.json"]  # too long ago: looked at again
