"""The safe writer on real files: fixtures survive, symlinks are refused, agents never lose."""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from healer.adapters import fsops, jsontext
from healer.adapters import writer as writer_mod
from healer.adapters.jsontext import TextForm
from healer.adapters.ledger import SelfWriteLedger
from healer.adapters.writer import SafeWriter
from healer.core import statusdoc as sd
from healer.core.model import TEMP_MARKER
from healer.errors import ActionError, UnsafePathError, WriteConflictError
from healer.pipelines.messages import rescue_filename
from healer.testing import FakeClock
from tests.conftest import STATUS_DIR

MALFORMED = STATUS_DIR / "Agent-1_9b3d8b004.json"
FIXTURES = sorted(STATUS_DIR.glob("*.json"))
PARSEABLE = [p for p in FIXTURES if p != MALFORMED]
NOW = "2026-01-20T10:00:00Z"
Doc = dict[str, Any]


@pytest.fixture
def ledger() -> SelfWriteLedger:
    return SelfWriteLedger()


@pytest.fixture
def writer(root: Path, ledger: SelfWriteLedger) -> SafeWriter:
    return SafeWriter(root, ledger, clock=FakeClock(1_768_903_200.0))  # 2026-01-20T10:00:00Z


def agent_dir(root: Path, name: str = "Agent-1", status: bytes | None = None) -> Path:
    folder = root / name
    (folder / "inbox").mkdir(parents=True)
    (folder / "devlogs").mkdir()
    if status is not None:
        (folder / "status.json").write_bytes(status)
    return folder


def agent_write(path: Path, doc: Doc) -> None:
    """How a well-behaved agent rewrites its status: temp file and rename."""
    tmp = path.with_name(f".agent-tmp-{threading.get_ident()}")
    tmp.write_text(json.dumps(doc), encoding="utf-8")
    os.replace(tmp, path)


def temps_in(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if TEMP_MARKER in p.name]


class BusyAgent:
    """An agent rewriting its status every ~1 ms, checking each time that its last write is
    still there, plus a reader checking every read parses; used as a context manager."""

    def __init__(self, status: Path) -> None:
        self.status = status
        self.stop = threading.Event()
        self.problems: list[str] = []
        self.transients = 0
        self.written = 0
        agent_write(status, {"agent_id": "Agent-1", "seq": 0})
        self.threads = [threading.Thread(target=self._agent), threading.Thread(target=self._read)]

    def __enter__(self) -> BusyAgent:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(5)

    def seq_on_disk(self) -> int:
        return int(json.loads(self.status.read_bytes())["seq"])

    def _restored(self, seq: int) -> bool:
        # Healer may show its swapped-in file for the microseconds it takes to see that
        # the swap raced this agent and undo it; lost means it stays.
        for _ in range(100):
            if self.seq_on_disk() == seq:
                return True
            threading.Event().wait(0.001)
        return False

    def _agent(self) -> None:
        seq = 0
        while not self.stop.is_set():
            current = json.loads(self.status.read_bytes())
            if current["seq"] != seq:
                self.transients += 1
                if not self._restored(seq):
                    self.problems.append(f"agent wrote {seq}, found {current['seq']}")
                current = json.loads(self.status.read_bytes())
            seq += 1
            agent_write(self.status, {**current, "seq": seq})
            self.written = seq
            self.stop.wait(0.001)

    def _read(self) -> None:
        while not self.stop.is_set():
            try:
                json.loads(self.status.read_bytes())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                self.problems.append(f"torn read: {exc}")


TRANSFORMS: dict[str, Callable[[Doc], Doc]] = {
    "force_update": lambda d: sd.apply_force_update(d, NOW, 1),
    "clear_stuck_tasks": lambda d: sd.apply_clear_stuck_tasks(d, NOW, 2)[0],
    "reset_status": lambda d: sd.apply_reset_status(d, NOW, 3),
    "record_reassigned": lambda d: sd.record_reassigned(d, sd.open_tasks(d), "Agent-5", NOW),
}


class TestFixturesSurvive:
    @pytest.mark.parametrize("name", sorted(TRANSFORMS))
    @pytest.mark.parametrize("fixture", PARSEABLE, ids=lambda p: p.name)
    def test_transform_write_keeps_unknown_fields(
        self, writer: SafeWriter, root: Path, fixture: Path, name: str
    ) -> None:
        """Each transform written to disk equals the transform of the original: nothing else
        changed, no task vanished, and reset leaves a byte-exact backup."""
        raw = fixture.read_bytes()
        folder = agent_dir(root, status=raw)
        original = json.loads(raw)
        result = writer.update_status("Agent-1", TRANSFORMS[name], backup=name == "reset_status")
        on_disk = json.loads((folder / "status.json").read_bytes())
        assert on_disk == TRANSFORMS[name](original) == result.doc
        if name == "reset_status":
            assert result.backup is not None and result.backup.read_bytes() == raw
        else:
            assert result.backup is None
            assert list(on_disk)[: len(original)] == list(original)
        assert temps_in(folder) == []


# How Windows tools write JSON: Notepad's UTF-8 with a BOM, PowerShell 5's UTF-16 LE with a
# BOM (Out-File), CRLF line ends, and the rarer UTF-16 BE and UTF-32 forms.
WINDOWS_FORMS = [
    TextForm("utf-8", bom=True),
    TextForm("utf-8", bom=True, crlf=True),
    TextForm("utf-8", crlf=True),
    TextForm("utf-16-le", bom=True, crlf=True),
    TextForm("utf-16-le"),
    TextForm("utf-16-be", bom=True),
    TextForm("utf-16-be"),
    TextForm("utf-32-le", bom=True),
    TextForm("utf-32-be"),
]


class TestWindowsText:
    @pytest.mark.parametrize("name", sorted(TRANSFORMS))
    @pytest.mark.parametrize("form", WINDOWS_FORMS, ids=TextForm.describe)
    def test_every_field_and_the_form_are_kept(
        self, writer: SafeWriter, root: Path, form: TextForm, name: str
    ) -> None:
        """A real status.json written in a Windows form is read, transformed with every field
        kept, and written back in the same codec, BOM and line ends; no backup is needed.
        (It used to be called unparseable and replaced by a salvage of three fields.)"""
        original = json.loads(PARSEABLE[0].read_bytes())
        folder = agent_dir(root, status=jsontext.dump(original, form))
        read = writer.read_status("Agent-1")
        assert read.kind == "ok" and read.doc == original and read.form == form
        result = writer.update_status("Agent-1", TRANSFORMS[name], backup=name == "reset_status")
        data = (folder / "status.json").read_bytes()
        assert data == jsontext.dump(TRANSFORMS[name](original), form)
        text, written_form = jsontext.decode(data)
        assert written_form == form and json.loads(text) == result.doc
        if name != "reset_status":
            assert result.backup is None
            assert list(result.doc)[: len(original)] == list(original)
            kept = {k: v for k, v in original.items() if k not in ("current_tasks", "healer",
                                                                  "healing_applied")}
            assert kept.items() <= result.doc.items()

    @pytest.mark.parametrize("form", WINDOWS_FORMS[:4], ids=TextForm.describe)
    def test_not_its_codec_is_unparseable_and_named(
        self, writer: SafeWriter, root: Path, form: TextForm
    ) -> None:
        """Bytes that are not valid in the codec their first bytes announce are not guessed
        at: unreadable, with the codec and the byte in the error."""
        good = jsontext.dump({"a": "é"}, form)
        bad = good[: len(good) // 2] + b"\xff\xfe\xff" + good[len(good) // 2 :]
        agent_dir(root, status=bad)
        read = writer.read_status("Agent-1")
        assert read.kind == "invalid"
        assert read.error is not None and read.error.startswith(f"not {form.codec.upper()} text")


class TestMalformed:
    def test_backed_up_byte_exact_and_left_as_written(
        self, writer: SafeWriter, root: Path, ledger: SelfWriteLedger
    ) -> None:
        """Invalid JSON is copied byte-for-byte to status.json.bak.<stamp>, then refused: a
        salvage would drop every field the parser could not see (it used to replace it)."""
        raw = MALFORMED.read_bytes()
        folder = agent_dir(root, status=raw)
        with pytest.raises(ActionError, match=r"cannot be parsed \(invalid JSON.*backed up as "
                           r"status\.json\.bak\.20260120T100000Z and left as the agent wrote"):
            writer.update_status("Agent-1", TRANSFORMS["force_update"])
        backup = folder / "status.json.bak.20260120T100000Z"
        assert backup.read_bytes() == raw
        assert (folder / "status.json").read_bytes() == raw
        assert ledger.is_self(backup, backup.stat())

    def test_each_attempt_on_the_same_bytes_reuses_the_backup(
        self, writer: SafeWriter, root: Path
    ) -> None:
        """Three rungs on one unreadable file make one backup, not three."""
        folder = agent_dir(root, status=b"{broken")
        for _ in range(3):
            with pytest.raises(ActionError, match=r"bak\.20260120T100000Z and left"):
                writer.update_status("Agent-1", TRANSFORMS["clear_stuck_tasks"])
        assert sorted(p.name for p in folder.glob("status.json.bak.*")) == [
            "status.json.bak.20260120T100000Z"
        ]

    def test_a_backing_up_caller_replaces_it_from_the_salvage(
        self, writer: SafeWriter, root: Path
    ) -> None:
        """reset_status (which asks for a backup) still resets an unreadable file: its job
        is replacing the document, and the old one is kept beside it."""
        raw = MALFORMED.read_bytes()
        folder = agent_dir(root, status=raw)
        result = writer.update_status("Agent-1", TRANSFORMS["reset_status"], backup=True)
        assert result.backup is not None and result.backup.read_bytes() == raw
        doc = json.loads((folder / "status.json").read_bytes())
        assert doc["agent_id"] == "Agent-1"
        assert doc["agent_name"] == "Integration & Core Systems Specialist"
        assert doc["status"] == "ACTIVE_AGENT_MODE" and doc["current_tasks"] == []

    def test_second_backup_in_same_second_gets_a_new_name(
        self, writer: SafeWriter, root: Path
    ) -> None:
        """A taken backup name is never overwritten."""
        folder = agent_dir(root, status=b"{broken")
        with pytest.raises(ActionError):
            writer.update_status("Agent-1", TRANSFORMS["force_update"])
        (folder / "status.json").write_bytes(b"[1, 2")
        with pytest.raises(ActionError, match=r"bak\.20260120T100000Z_2 and left"):
            writer.update_status("Agent-1", TRANSFORMS["force_update"])
        assert (folder / "status.json.bak.20260120T100000Z").read_bytes() == b"{broken"
        assert (folder / "status.json.bak.20260120T100000Z_2").read_bytes() == b"[1, 2"

    def test_never_overwritten_when_backup_fails(
        self, writer: SafeWriter, root: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """If the backup cannot be made, the broken file stays exactly as it was."""
        raw = MALFORMED.read_bytes()
        folder = agent_dir(root, status=raw)

        def no_link(*args: Any, **kwargs: Any) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "link", no_link)
        with pytest.raises(ActionError, match="No space left"):
            writer.update_status("Agent-1", TRANSFORMS["force_update"])
        assert (folder / "status.json").read_bytes() == raw
        assert sorted(p.name for p in folder.iterdir()) == ["devlogs", "inbox", "status.json"]

    def test_read_status_reports_without_raising(self, writer: SafeWriter, root: Path) -> None:
        """Bad content is a result, never an exception."""
        folder = agent_dir(root, status=MALFORMED.read_bytes())
        assert writer.read_status("Agent-1").kind == "invalid"
        for data, kind in [(b"\xff\xfe{}", "invalid"), (b"[1]", "invalid"), (b"{}", "ok")]:
            (folder / "status.json").write_bytes(data)
            read = writer.read_status("Agent-1")
            assert read.kind == kind and read.raw == data
            assert read.identity is not None


class TestContainment:
    def test_symlinked_status_is_refused(self, writer: SafeWriter, root: Path) -> None:
        """A status.json symlink pointing outside is neither read nor written through."""
        outside = root.parent / "outside.json"
        outside.write_text('{"secret": 1}')
        folder = agent_dir(root)
        (folder / "status.json").symlink_to(outside)
        with pytest.raises(UnsafePathError):
            writer.update_status("Agent-1", TRANSFORMS["force_update"])
        with pytest.raises(UnsafePathError):
            writer.read_status("Agent-1")
        assert outside.read_text() == '{"secret": 1}'
        assert (folder / "status.json").is_symlink()

    def test_symlinked_agent_folder_is_refused(self, writer: SafeWriter, root: Path) -> None:
        """An agent folder that is a symlink is refused for every kind of write."""
        real = root.parent / "elsewhere"
        (real / "inbox").mkdir(parents=True)
        (real / "status.json").write_text('{"a": 1}')
        (root / "Agent-9").symlink_to(real)
        with pytest.raises(UnsafePathError):
            writer.update_status("Agent-9", TRANSFORMS["force_update"])
        with pytest.raises(UnsafePathError):
            writer.write_new("Agent-9", "inbox/x.md", "hi")
        with pytest.raises(UnsafePathError):
            writer.write_marker("Agent-9", "x")
        assert (real / "status.json").read_text() == '{"a": 1}'
        assert sorted(p.name for p in real.rglob("*")) == ["inbox", "status.json"]

    def test_symlinked_inbox_is_refused(self, writer: SafeWriter, root: Path) -> None:
        """A symlinked inbox is never written into, even when the name is computed."""
        folder = root / "Agent-2"
        folder.mkdir()
        target = root.parent / "target"
        target.mkdir()
        (folder / "inbox").symlink_to(target)
        with pytest.raises(UnsafePathError):
            writer.write_new("Agent-2", "inbox/x.md", "hi")
        with pytest.raises(UnsafePathError):
            writer.write_unique("Agent-2", "inbox", lambda t: "y.md", "hi")
        assert list(target.iterdir()) == []

    @pytest.mark.parametrize(
        ("agent", "relpath"),
        [
            ("Agent-1", "../Agent-2/inbox/x.md"),
            ("Agent-1", "inbox/../../x.md"),
            ("Agent-1", "/etc/x.md"),
            ("Agent-1", "inbox//x.md"),
            ("..", "x.md"),
            ("Agent-1/inbox", "x.md"),
        ],
    )
    def test_escaping_paths_are_refused(
        self, writer: SafeWriter, root: Path, agent: str, relpath: str
    ) -> None:
        """`..`, absolute paths and slashes in names never reach the filesystem."""
        agent_dir(root)
        agent_dir(root, "Agent-2")
        before = sorted(p for p in root.parent.rglob("*"))
        with pytest.raises(UnsafePathError):
            writer.write_new(agent, relpath, "hi")
        assert sorted(p for p in root.parent.rglob("*")) == before

    def test_marker_symlink_is_refused(self, writer: SafeWriter, root: Path) -> None:
        """The escalation marker is not written through a planted symlink."""
        folder = agent_dir(root)
        victim = root.parent / "victim"
        victim.write_text("keep")
        (folder / ".ESCALATION_REQUIRED").symlink_to(victim)
        with pytest.raises(UnsafePathError):
            writer.write_marker("Agent-1", "Agent-1 requires manual intervention.\n")
        assert victim.read_text() == "keep"


class TestConcurrency:
    @pytest.fixture
    def fast_switching(self) -> Iterator[None]:
        old = sys.getswitchinterval()
        sys.setswitchinterval(1e-4)  # interleave threads far more often than by default
        yield
        sys.setswitchinterval(old)

    @pytest.mark.usefixtures("fast_switching")
    def test_agent_writes_are_never_lost(self, writer: SafeWriter, root: Path) -> None:
        """With an agent rewriting status.json every ~1 ms, 50 updates never clobber its
        latest write, and a reader never sees half-written JSON."""
        folder = agent_dir(root)
        busy = BusyAgent(folder / "status.json")
        applied = conflicts = 0
        with busy:
            for i in range(50):
                try:
                    result = writer.update_status("Agent-1", lambda d, i=i: {**d, "healer": i})
                    applied += 1
                    assert result.doc["healer"] == i
                except WriteConflictError:
                    conflicts += 1
                latest = busy.written
                if busy.seq_on_disk() < latest:
                    busy.problems.append(f"after update {i}: disk behind the agent's {latest}")
                busy.stop.wait(0.0005)
        assert busy.problems == []
        assert applied + conflicts == 50 and applied > 0
        assert busy.written > 10, "the agent must really have been writing meanwhile"
        assert busy.seq_on_disk() == busy.written
        assert busy.transients <= 10
        assert temps_in(folder) == []

    def test_agent_write_during_transform_is_kept(self, writer: SafeWriter, root: Path) -> None:
        """A rewrite between read and rename makes healer re-read and apply on top of it."""
        folder = agent_dir(root, status=b'{"seq": 0}')
        calls: list[Doc] = []

        def transform(doc: Doc) -> Doc:
            calls.append(doc)
            if len(calls) == 1:
                agent_write(folder / "status.json", {"seq": 1})
            return {**doc, "mark": True}

        result = writer.update_status("Agent-1", transform)
        assert result.tries == 2 and calls == [{"seq": 0}, {"seq": 1}]
        assert json.loads((folder / "status.json").read_bytes()) == {"seq": 1, "mark": True}

    def test_gives_up_rather_than_clobber(self, writer: SafeWriter, root: Path) -> None:
        """An agent that rewrites on every try wins; healer raises WriteConflictError."""
        folder = agent_dir(root, status=b'{"seq": 0}')
        seq = [0]

        def transform(doc: Doc) -> Doc:
            seq[0] += 1
            agent_write(folder / "status.json", {"seq": seq[0]})
            return {**doc, "mark": True}

        with pytest.raises(WriteConflictError):
            writer.update_status("Agent-1", transform)
        assert json.loads((folder / "status.json").read_bytes()) == {"seq": 5}
        assert temps_in(folder) == []

    @pytest.mark.parametrize("extra_writes", [1, 2])
    def test_write_inside_the_last_window_is_restored(
        self, writer: SafeWriter, root: Path, monkeypatch: pytest.MonkeyPatch, extra_writes: int
    ) -> None:
        """An agent write landing between the final check and the swap (and even one more
        right after the swap) is put back, then healer retries on top of the newest."""
        folder = agent_dir(root, status=b'{"seq": 0}')
        status = folder / "status.json"
        real = fsops.exchange
        state = {"calls": 0}

        def racing_exchange(dfd: int, a: str, b: str) -> bool:
            state["calls"] += 1
            if state["calls"] == 1:
                agent_write(status, {"seq": 1})
            done = real(dfd, a, b)
            if state["calls"] == 1 and extra_writes == 2:
                agent_write(status, {"seq": 2})
            return done

        monkeypatch.setattr(writer_mod, "exchange", racing_exchange)
        result = writer.update_status("Agent-1", lambda d: {**d, "mark": True})
        assert result.tries == 2
        assert json.loads(status.read_bytes()) == {"seq": extra_writes, "mark": True}
        assert temps_in(folder) == []

    def test_plain_rename_fallback(
        self, writer: SafeWriter, root: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Where RENAME_EXCHANGE is unavailable the update still lands atomically."""
        monkeypatch.setattr(fsops, "_RENAMEAT2", None)
        folder = agent_dir(root, status=b'{"a": 1}')
        writer.update_status("Agent-1", lambda d: {**d, "b": 2})
        assert json.loads((folder / "status.json").read_bytes()) == {"a": 1, "b": 2}


class TestFailures:
    def test_enospc_leaves_no_temp(
        self, writer: SafeWriter, root: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A full disk fails the action cleanly: no temp file, the old file intact."""
        folder = agent_dir(root, status=b'{"a": 1}')

        def full(fd: int, data: Any) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "write", full)
        with pytest.raises(ActionError, match="No space left"):
            writer.update_status("Agent-1", TRANSFORMS["force_update"])
        with pytest.raises(ActionError, match="No space left"):
            writer.write_new("Agent-1", "inbox/m.md", "hello")
        monkeypatch.undo()
        assert (folder / "status.json").read_bytes() == b'{"a": 1}'
        assert temps_in(folder) == []
        assert list((folder / "inbox").iterdir()) == []

    @pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
    def test_refused_create_is_an_action_error(
        self, writer: SafeWriter, root: Path, monkeypatch: pytest.MonkeyPatch, code: int
    ) -> None:
        """A read-only or forbidden folder becomes an ActionError naming the file."""
        folder = agent_dir(root, status=b'{"a": 1}')
        real_open = os.open

        def guarded(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
            if flags & os.O_CREAT:
                raise OSError(code, os.strerror(code))
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", guarded)
        with pytest.raises(ActionError, match=os.strerror(code)):
            writer.update_status("Agent-1", TRANSFORMS["force_update"])
        monkeypatch.undo()
        assert (folder / "status.json").read_bytes() == b'{"a": 1}'

    @pytest.mark.skipif(os.geteuid() == 0, reason="permission bits do not stop root")
    def test_read_only_directory(self, writer: SafeWriter, root: Path) -> None:
        """chmod 0555 on the agent folder: the write fails, nothing is left behind."""
        folder = agent_dir(root, status=b'{"a": 1}')
        folder.chmod(0o555)
        try:
            with pytest.raises(ActionError):
                writer.update_status("Agent-1", TRANSFORMS["force_update"])
        finally:
            folder.chmod(0o755)
        assert temps_in(folder) == []

    def test_too_large_is_not_parsed_or_written(self, root: Path, ledger: SelfWriteLedger) -> None:
        """A status.json over max_status_bytes is reported and left alone."""
        folder = agent_dir(root, status=b'{"pad": "' + b"x" * 200 + b'"}')
        small = SafeWriter(root, ledger, max_status_bytes=100)
        assert small.read_status("Agent-1").kind == "too_large"
        with pytest.raises(ActionError, match="max_status_bytes"):
            small.update_status("Agent-1", TRANSFORMS["force_update"])
        assert len((folder / "status.json").read_bytes()) == 211

    def test_fifo_does_not_hang(self, writer: SafeWriter, root: Path) -> None:
        """A FIFO planted as status.json is reported, not opened for a blocking read."""
        folder = agent_dir(root)
        os.mkfifo(folder / "status.json")
        assert writer.read_status("Agent-1").kind == "not_regular"
        with pytest.raises(ActionError):
            writer.update_status("Agent-1", TRANSFORMS["force_update"])

    def test_missing_status_is_not_invented(self, writer: SafeWriter, root: Path) -> None:
        """No status.json: the action fails instead of creating one for the agent."""
        folder = agent_dir(root)
        assert writer.read_status("Agent-1").kind == "missing"
        with pytest.raises(ActionError):
            writer.update_status("Agent-1", TRANSFORMS["force_update"])
        assert not (folder / "status.json").exists()


class TestFiles:
    def test_mode_is_kept_and_new_files_are_0644(self, writer: SafeWriter, root: Path) -> None:
        """A replaced status keeps its mode; new inbox files are 0644."""
        folder = agent_dir(root, status=b'{"a": 1}')
        (folder / "status.json").chmod(0o640)
        writer.update_status("Agent-1", TRANSFORMS["force_update"])
        assert stat.S_IMODE((folder / "status.json").stat().st_mode) == 0o640
        path = writer.write_new("Agent-1", "inbox/m.md", "hello")
        assert stat.S_IMODE(path.stat().st_mode) == 0o644

    def test_rescue_names_get_suffixes(self, writer: SafeWriter, root: Path) -> None:
        """Rescues in the same second never overwrite each other."""
        folder = agent_dir(root)
        (folder / "inbox" / "HEALER_RESCUE_20260120_100000.md").write_text("agent's copy")
        now = datetime(2026, 1, 20, 10, 0, 0, tzinfo=UTC)
        paths = [
            writer.write_unique("Agent-1", "inbox", lambda t: rescue_filename(now, t), f"m{i}")
            for i in range(2)
        ]
        assert [p.name for p in paths] == [
            "HEALER_RESCUE_20260120_100000_2.md",
            "HEALER_RESCUE_20260120_100000_3.md",
        ]
        assert [p.read_text() for p in paths] == ["m0", "m1"]
        assert (folder / "inbox" / "HEALER_RESCUE_20260120_100000.md").read_text() == (
            "agent's copy"
        )

    def test_write_new_never_overwrites(self, writer: SafeWriter, root: Path) -> None:
        """An existing file keeps its content; the call fails."""
        folder = agent_dir(root)
        (folder / "inbox" / "m.md").write_text("old")
        with pytest.raises(ActionError, match="already exists"):
            writer.write_new("Agent-1", "inbox/m.md", "new")
        assert (folder / "inbox" / "m.md").read_text() == "old"
        assert temps_in(folder) == []

    def test_missing_inbox_is_created(self, writer: SafeWriter, root: Path) -> None:
        """An agent without an inbox still gets its message."""
        (root / "Agent-3").mkdir()
        path = writer.write_new("Agent-3", "inbox/m.md", "hi")
        assert path.read_text() == "hi"

    def test_marker_write_and_remove(
        self, writer: SafeWriter, root: Path, ledger: SelfWriteLedger
    ) -> None:
        """The marker is written, replaced, noted as healer's own, and removed once."""
        folder = agent_dir(root)
        writer.write_marker("Agent-1", "one\n")
        path = writer.write_marker("Agent-1", "two\n")
        assert path.read_text() == "two\n" and ledger.is_self(path, path.stat())
        assert writer.remove_marker("Agent-1") is True
        assert writer.remove_marker("Agent-1") is False
        assert not (folder / ".ESCALATION_REQUIRED").exists()
        assert ledger.get(path) is None

    def test_dry_run_touches_nothing(self, root: Path, ledger: SelfWriteLedger) -> None:
        """In dry-run every call says what it would do and the disk stays as it was."""
        folder = agent_dir(root, status=MALFORMED.read_bytes())
        (folder / ".ESCALATION_REQUIRED").write_text("x")
        before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        dry = SafeWriter(root, ledger, dry_run=True)
        result = dry.update_status("Agent-1", TRANSFORMS["reset_status"], backup=True)
        assert result.dry_run and result.doc["status"] == "ACTIVE_AGENT_MODE"
        assert dry.write_new("Agent-1", "inbox/m.md", "x") == folder / "inbox" / "m.md"
        dry.write_marker("Agent-1", "y")
        assert dry.remove_marker("Agent-1") is True
        assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
        assert ledger.entries() == {}

    @pytest.mark.parametrize("bad", [{1, 2}, float("nan"), "\ud800"])
    def test_dry_run_refuses_what_a_real_run_refuses(
        self, root: Path, ledger: SelfWriteLedger, bad: object
    ) -> None:
        """The dry run does not make the bytes; what it says of them is the real run's."""
        folder = agent_dir(root, status=b'{"agent_id": "Agent-1"}')
        outcomes = []
        for dry in (True, False):
            try:
                SafeWriter(root, ledger, dry_run=dry).update_status(
                    "Agent-1", lambda d: {**d, "x": bad})
                outcomes.append("written")
            except ActionError as exc:
                outcomes.append(str(exc))
        assert outcomes[0] == outcomes[1]
        if isinstance(bad, set):
            assert "unserialisable" in outcomes[0]
        else:  # NaN and a lone surrogate are written, as json.dumps writes them
            assert outcomes[0] == "written"
        assert (folder / "status.json").exists()

    def test_stale_temps_are_swept(self, writer: SafeWriter, root: Path) -> None:
        """Temp files a crash left behind are removed; the agent's files are not."""
        folder = agent_dir(root, status=b"{}")
        (folder / f".status.json{TEMP_MARKER}abc").write_text("half")
        (folder / "inbox" / f".m.md{TEMP_MARKER}def").write_text("half")
        assert writer.remove_stale_temps("Agent-1") == 2
        assert temps_in(folder) == [] and (folder / "status.json").exists()


class TestLedger:
    def test_recognises_own_write_until_the_agent_writes(
        self, writer: SafeWriter, root: Path, ledger: SelfWriteLedger
    ) -> None:
        """is_self holds for healer's version and stops holding once the agent rewrites."""
        folder = agent_dir(root, status=b'{"a": 1}')
        status = folder / "status.json"
        assert not ledger.is_self(status, status.stat())
        writer.update_status("Agent-1", TRANSFORMS["force_update"])
        assert ledger.is_self(status, status.stat())
        agent_write(status, {"a": 2})
        assert not ledger.is_self(status, status.stat())

    def test_entries_round_trip_and_callback(self, tmp_path: Path) -> None:
        """Entries survive a save/load through JSON, and every change is reported."""
        seen: list[tuple[str, Any]] = []
        ledger = SelfWriteLedger(on_note=lambda p, i: seen.append((p, i)))
        f = tmp_path / "f"
        f.write_text("x")
        ledger.note(f, f.stat())
        restored = SelfWriteLedger()
        restored.load(json.loads(json.dumps(ledger.entries())))
        assert restored.is_self(f, f.stat())
        ledger.forget(f)
        assert seen == [(str(f), fsops.identity_of(f.stat())), (str(f), None)]

    def test_temp_names(self) -> None:
        """healer's temp names are recognised by name, the agent's are not."""
        assert SelfWriteLedger.is_own_temp_name(f".status.json{TEMP_MARKER}0a1b2c")
        assert not SelfWriteLedger.is_own_temp_name(".status.json.tmp")
