"""`healer watch` end to end: the real daemon in a subprocess, real writers on real files,
assertions on its JSON log. Times are wall-clock epoch seconds, as the daemon logs them."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from healer.core.model import ESCALATION_MARKER
from tests.conftest import make_agent
from tests.integration.daemon import (
    STOP_TIMEOUT,
    DaemonProcess,
    LogLine,
    at,
    poll_until,
    running_daemon,
    watch_args,
)

pytestmark = pytest.mark.integration

HEAL = 0.6
TICK = 0.05
# One tick plus what a loaded two-core machine needs to schedule the daemon's wake-up,
# its re-stat of the agent and the log write.
ALLOWANCE = TICK + 0.15
PACE = 0.1  # how often a live writer writes
WRITE_FOR = 1.5  # longer than HEAL: a healthy writer outlives several thresholds

# (agent folder, write number, scratch dir outside the tree) -> the file whose mtime is the write
Op = Callable[[Path, int, Path], Path]


# -- the writers agents and their neighbours really use ----------------------------------
def atomic_replace(folder: Path, n: int, _scratch: Path) -> Path:
    tmp = folder / f"status.json.{n}.tmp"
    tmp.write_text(json.dumps({"agent_id": folder.name, "n": n}))
    os.rename(tmp, folder / "status.json")
    return folder / "status.json"


def sed_in_place(folder: Path, n: int, _scratch: Path) -> Path:
    path = folder / "status.json"
    subprocess.run(["sed", "-i", f's/"n": [0-9]*/"n": {n}/', str(path)], check=True)
    return path


def cp_over(folder: Path, n: int, scratch: Path) -> Path:
    src = scratch / f"{folder.name}-cp.json"
    src.write_text(json.dumps({"agent_id": folder.name, "n": n}))
    subprocess.run(["cp", str(src), str(folder / "status.json")], check=True)
    return folder / "status.json"


def mv_from_outside(folder: Path, n: int, scratch: Path) -> Path:
    # Written outside the watched tree just before the move: the event is a bare creation.
    src = scratch / f"{folder.name}-{n}.json"
    src.write_text(json.dumps({"agent_id": folder.name, "n": n}))
    subprocess.run(["mv", str(src), str(folder / "status.json")], check=True)
    return folder / "status.json"


def append_devlog(folder: Path, n: int, _scratch: Path) -> Path:
    path = folder / "devlogs" / "session.md"
    with path.open("a") as fh:
        fh.write(f"- step {n}\n")
    return path


def touch_status(folder: Path, _n: int, _scratch: Path) -> Path:
    subprocess.run(["touch", str(folder / "status.json")], check=True)
    return folder / "status.json"


def utime_status(folder: Path, _n: int, _scratch: Path) -> Path:
    # utimensat without an open: the only event is IN_ATTRIB (FileAttribEvent).
    os.utime(folder / "status.json")
    return folder / "status.json"


def through_outside_link(folder: Path, n: int, scratch: Path) -> Path:
    # inotify reports a write to the watch on the directory it was made through: a write
    # via a hard link outside the tree raises no event at all, only the mtime moves. The
    # daemon must find it by the re-stat before a stall, and still detect the stall after.
    link = scratch / f"{folder.name}-link.json"
    if not link.exists():
        os.link(folder / "status.json", link)
    with link.open("r+") as fh:
        fh.write(json.dumps({"agent_id": folder.name, "n": n}))
    return folder / "status.json"


WRITERS: dict[str, Op] = {
    "atomic_replace": atomic_replace,
    "sed_in_place": sed_in_place,
    "cp_over": cp_over,
    "mv_from_outside": mv_from_outside,
    "append_devlog": append_devlog,
    "touch_status": touch_status,
    "utime_status": utime_status,
    "through_outside_link": through_outside_link,
}


class Writer(threading.Thread):
    """Runs `op` every `pace` seconds until `stop_at`; `last` is the mtime its last write
    left, i.e. the agent's last genuine activity."""

    def __init__(self, folder: Path, op: Op, scratch: Path, pace: float = PACE) -> None:
        super().__init__(name=f"writer-{folder.name}", daemon=True)
        self.folder, self.op, self.scratch, self.pace = folder, op, scratch, pace
        self.stop_at = float("inf")
        self.last: float | None = None
        self.writes = 0
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            while time.time() < self.stop_at and not self._halt.is_set():
                path = self.op(self.folder, self.writes, self.scratch)
                self.last = os.stat(path).st_mtime
                self.writes += 1
                self._halt.wait(self.pace)
        except BaseException as exc:  # surfaced by finish()
            self.error = exc

    def finish(self, timeout: float = 10.0) -> float:
        self.join(timeout)
        assert not self.is_alive(), f"{self.name} did not stop"
        if self.error is not None:
            raise self.error
        assert self.last is not None, f"{self.name} never wrote"
        return self.last

    def halt(self) -> None:
        self._halt.set()
        self.join(10)


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    path = tmp_path / "outside"
    path.mkdir()
    return path


@pytest.fixture
def writers() -> Iterator[list[Writer]]:
    """Writers a test starts; any still running when it ends are halted."""
    started: list[Writer] = []
    yield started
    for writer in started:
        writer.halt()


def agent(root: Path, name: str) -> Path:
    return make_agent(root, name, {"agent_id": name, "n": 0, "current_tasks": ["task"]})


def stalls(daemon: DaemonProcess, name: str, pipeline: str = "healing") -> list[LogLine]:
    return daemon.events("stall_detected", agent=name, pipeline=pipeline)


def wait_stall(daemon: DaemonProcess, name: str, timeout: float = HEAL + 3.0) -> float:
    return at(daemon.wait_event("stall_detected", timeout, agent=name, pipeline="healing"))


def assert_on_time(name: str, detected: float, last: float, threshold: float = HEAL) -> float:
    """Detection landed no earlier than the threshold and within ALLOWANCE after it."""
    late = detected - last - threshold
    assert late >= 0, f"{name}: stall flagged {-late:.3f}s before {threshold}s of silence"
    assert late <= ALLOWANCE, f"{name}: stall flagged {late:.3f}s after the threshold"
    return late


def write_once(folder: Path) -> float:
    return os.stat(atomic_replace(folder, 1, folder)).st_mtime


# -- 1, 2: detection timing and healthy writers ------------------------------------------
class TestDetection:
    def test_each_real_writer_keeps_its_agent_alive_and_its_stall_lands_within_a_tick(
        self, tmp_path, root, scratch, writers
    ):
        """Every kind of write keeps an agent alive while it goes on; once it stops, the
        stall is logged between heal_after and heal_after + one tick (+ scheduling)."""
        names = {kind: f"Agent-{i}" for i, kind in enumerate(WRITERS, start=1)}
        for kind, name in names.items():
            writers.append(Writer(agent(root, name), WRITERS[kind], scratch))
        for writer in writers:
            writer.start()
        with running_daemon(root, tmp_path) as daemon:
            stop = time.time() + WRITE_FOR
            for i, writer in enumerate(writers):
                writer.stop_at = stop + 0.02 * i  # staggered: distinct deadlines
            lasts = {kind: w.finish() for kind, w in zip(names, writers, strict=True)}
            detected = {kind: wait_stall(daemon, names[kind]) for kind in names}
        lateness = {}
        for kind, name in names.items():
            assert len(stalls(daemon, name)) == 1, f"{kind}: flagged while writing"
            lateness[kind] = assert_on_time(kind, detected[kind], lasts[kind])
        print("stall lateness past heal_after (s):",
              {k: round(v, 3) for k, v in lateness.items()})

    def test_an_agent_writing_every_fifth_of_a_second_is_never_flagged(
        self, tmp_path, root, scratch, writers
    ):
        """A steady writer outlives four thresholds unflagged, while a silent neighbour in
        the same run is flagged and escalated (so the daemon was detecting)."""
        busy = agent(root, "Agent-1")
        writers.append(Writer(busy, append_devlog, scratch, pace=0.2))
        writers.append(Writer(busy, atomic_replace, scratch, pace=0.2))
        for writer in writers:
            writer.start()
        with running_daemon(root, tmp_path) as daemon:
            silent = agent(root, "Agent-2")
            last = write_once(silent)
            assert_on_time("silent", wait_stall(daemon, silent.name), last)
            # The neighbour's ladder is the clock: it escalates 4 x heal_after after its
            # write, all the while the busy agent keeps writing.
            daemon.wait_event("agent_escalated", 4 * HEAL + 2, agent=silent.name)
            assert stalls(daemon, busy.name) == []
            for writer in writers:
                writer.halt()
        assert not daemon.events("stall_detected", agent=busy.name)
        assert all(w.writes >= 10 for w in writers)


# -- 3: agents that appear at runtime ----------------------------------------------------
class TestNewAgents:
    def test_a_folder_created_at_runtime_is_added_tracked_from_its_first_write_and_flagged(
        self, tmp_path, root, scratch, writers
    ):
        """mkdir then write at once (nested devlogs too): agent_added, no stall while it
        writes, a stall on time after; a new folder left empty is flagged from its mtime."""
        with running_daemon(root, tmp_path) as daemon:
            busy = root / "Agent-7"
            os.mkdir(busy)
            (busy / "status.json").write_text('{"n": 0}')
            os.makedirs(busy / "devlogs" / "2025" / "06")
            (busy / "devlogs" / "2025" / "06" / "log.md").write_text("start\n")

            def deep_append(folder: Path, n: int, _s: Path) -> Path:
                path = folder / "devlogs" / "2025" / "06" / "log.md"
                with path.open("a") as fh:
                    fh.write(f"{n}\n")
                return path

            writers.append(Writer(busy, atomic_replace, scratch))
            writers.append(Writer(busy, deep_append, scratch))
            stop = time.time() + WRITE_FOR
            for writer in writers:
                writer.stop_at = stop
                writer.start()
            empty = root / "Agent-8"
            os.mkdir(empty)
            born = os.stat(empty).st_mtime
            daemon.wait_event("agent_added", 2.0, agent="Agent-7")
            daemon.wait_event("agent_added", 2.0, agent="Agent-8")
            assert_on_time("empty new agent", wait_stall(daemon, "Agent-8"), born)
            last = max(w.finish() for w in writers)
            assert_on_time("new agent", wait_stall(daemon, "Agent-7"), last)
        assert len(stalls(daemon, "Agent-7")) == 1

    def test_under_a_symlinked_root_a_new_inbox_only_agent_is_watched_at_once(self, tmp_path):
        """/srv/ws -> /data/ws: a folder made after start is added at once (not by the
        30 s sweep), and its agent's first act, consuming a message, is activity then."""
        real = tmp_path / "data" / "ws"
        real.mkdir(parents=True)
        link = tmp_path / "srv-ws"
        link.symlink_to(real, target_is_directory=True)
        with running_daemon(link, tmp_path) as daemon:
            folder = link / "Agent-3"
            (folder / "inbox").mkdir(parents=True)
            (folder / "inbox" / "task.md").write_text("# do it\n")
            daemon.wait_event("agent_added", 2.0, agent="Agent-3")
            time.sleep(HEAL / 2)  # a stall counted from the folder would now come early
            (folder / "inbox" / "task.md").unlink()
            consumed = time.time()
            assert_on_time("linked-root agent", wait_stall(daemon, "Agent-3"), consumed)


# -- 4: mail is not activity, consuming it is --------------------------------------------
class TestInbox:
    def test_receiving_mail_is_not_activity_but_filing_it_away_is(
        self, tmp_path, root, writers
    ):
        """Mail dropped every 0.1 s does not keep its reader alive; an agent that moves
        each message to inbox/processed/ is alive until it stops doing so."""

        def deliver(folder: Path, n: int, _scratch: Path) -> Path:
            # Half the senders write in place, half rename a temp name into place.
            if n % 2:
                (folder / "inbox" / f"msg_{n}.md").write_text(f"# message {n}\n")
            else:
                tmp = folder / "inbox" / f".msg_{n}.md.part"
                tmp.write_text(f"# message {n}\n")
                os.rename(tmp, folder / "inbox" / f"msg_{n}.md")
            return folder / "status.json"  # the agent's own file is untouched

        def deliver_and_consume(folder: Path, n: int, scratch: Path) -> Path:
            deliver(folder, n, scratch)
            name = f"msg_{n}.md"
            os.rename(folder / "inbox" / name, folder / "inbox" / "processed" / name)
            return folder / "inbox" / "processed"

        with running_daemon(root, tmp_path) as daemon:
            reader, consumer = agent(root, "Agent-1"), agent(root, "Agent-2")
            (consumer / "inbox" / "processed").mkdir()
            last_reader = write_once(reader)
            for folder, op in ((reader, deliver), (consumer, deliver_and_consume)):
                writers.append(Writer(folder, op, tmp_path))
            stop = time.time() + WRITE_FOR
            for writer in writers:
                writer.stop_at = stop
                writer.start()
            assert_on_time("mail reader", wait_stall(daemon, reader.name), last_reader)
            last_consumer = writers[1].finish()
            writers[0].finish()
            assert writers[0].writes >= 10
            assert_on_time("consumer", wait_stall(daemon, consumer.name), last_consumer)
        assert len(stalls(daemon, consumer.name)) == 1


# -- 5: more events than the kernel queue holds ------------------------------------------
BURST_AGENTS = 40
BURST_WRITES = 40_000  # one IN_MODIFY each: far more than the kernel queue's 16,384


class TestBurst:
    def test_after_an_event_flood_no_agent_is_flagged_early_and_none_is_lost(
        self, tmp_path, root, scratch, writers
    ):
        """A flood past the kernel's queue ends with a correct table: every flooded agent
        is flagged, once, and only heal_after after its own last write; a canary writing
        through and after the flood is not flagged while it writes, and is flagged after
        (events the overflow dropped must not leave its timer spent: Monitor.rearm)."""
        limit = Path("/proc/sys/fs/inotify/max_queued_events")
        queued = int(limit.read_text()) if limit.exists() else 16_384
        with running_daemon(root, tmp_path) as daemon:
            # Created after start, so a slow start-up cannot flag them before the flood.
            folders = [agent(root, f"Agent-{i}") for i in range(1, BURST_AGENTS + 1)]
            canary = agent(root, "Agent-99")
            writers.append(Writer(canary, atomic_replace, scratch))
            writers[0].start()
            # Frozen while the flood is written, so the kernel queue surely overflows: a
            # reader that keeps up with bare writes would otherwise never meet the case.
            os.kill(daemon.proc.pid, signal.SIGSTOP)
            try:
                lasts = burst(folders, BURST_WRITES)
            finally:
                os.kill(daemon.proc.pid, signal.SIGCONT)
            writers[0].stop_at = time.time() + 1.0
            last_canary = writers[0].finish()
            detected = {f.name: wait_stall(daemon, f.name, timeout=10.0) for f in folders}
            canary_at = wait_stall(daemon, canary.name, timeout=10.0)
            overflowed = bool(daemon.events("event_queue_overflow"))
        assert queued < BURST_WRITES
        # The point is the overflow path (rescan, watches rebuilt): make sure it ran.
        assert overflowed, "the flood did not overflow the inotify queue"
        for name, when in detected.items():
            assert when - lasts[name] >= HEAL, f"{name} flagged before heal_after"
            assert len(stalls(daemon, name)) == 1
        assert canary_at - last_canary >= HEAL, "canary flagged while writing"
        assert len(stalls(daemon, canary.name)) == 1
        worst = max(detected[n] - lasts[n] - HEAL for n in detected)
        print(f"burst: overflow={overflowed} worst lateness={worst:.3f}s "
              f"canary lateness={canary_at - last_canary - HEAL:.3f}s")


def burst(folders: list[Path], writes: int) -> dict[str, float]:
    """Append `writes` lines round-robin to one devlog per agent through open descriptors:
    a bare write(2) each, faster than a Python reader drains inotify, and never two alike
    in a row (the kernel merges those). Returns each agent's last write time (mtime)."""
    paths = [folder / "devlogs" / "burst.md" for folder in folders]
    fds = [os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) for path in paths]
    try:
        for n in range(writes):
            os.write(fds[n % len(fds)], b"- step\n")
    finally:
        for fd in fds:
            os.close(fd)
    return {path.parent.parent.name: os.stat(path).st_mtime for path in paths}


# -- 6: signals --------------------------------------------------------------------------
class TestSignals:
    @pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
    def test_stops_cleanly_within_two_seconds(self, tmp_path, root, sig):
        """SIGTERM and SIGINT: exit code 0 within 2 s and watch_stopped names the signal."""
        agent(root, "Agent-1")
        with running_daemon(root, tmp_path, stop_signal=None) as daemon:
            sent = time.monotonic()
            code = daemon.stop(sig)
            took = time.monotonic() - sent
        assert code == 0
        assert took < STOP_TIMEOUT
        assert daemon.events("watch_stopped", reason=sig.name)
        assert daemon.raw == [], "\n".join(daemon.raw)
        print(f"{sig.name}: exited in {took:.3f}s")


# -- 7: the whole ladder, untouched by healer's own writes -------------------------------
class TestOwnWrites:
    def test_the_ladder_runs_on_schedule_and_only_the_agent_ends_it(self, tmp_path, root):
        """heal 0.6 / recover 1.5: attempts at 0.6, 1.2, 1.8, recovery at 1.5, escalation
        at 2.4 s after the last write, no agent_recovered from healer's own writes; one
        write by the agent then closes the incident and removes the marker."""
        args = watch_args(HEAL, 1.5, TICK)
        with running_daemon(root, tmp_path, args) as daemon:
            folder = agent(root, "Agent-1")
            last = write_once(folder)
            escalated = at(daemon.wait_event("agent_escalated", 5.0, agent="Agent-1"))
            heals = daemon.events("heal_action", agent="Agent-1")
            assert [(h["attempt"], h["action"], h["ok"]) for h in heals] == [
                (1, "force_update", True), (2, "clear_stuck_tasks", True),
                (3, "reset_status", True),
            ]
            # Each attempt waits heal_after from the one before (SPEC §3), so lateness is
            # bounded per step; from the last write each step is at least k * heal_after.
            chain = [last, *(at(h) for h in heals), escalated]
            for k in range(1, len(chain)):
                assert chain[k] - last >= k * HEAL, f"step {k} early: {chain[k] - last:.3f}s"
                gap = chain[k] - chain[k - 1]
                assert gap <= HEAL + ALLOWANCE, f"step {k} late: {gap:.3f}s after step {k - 1}"
            recovery = daemon.wait_event("stall_detected", 1.0, agent="Agent-1",
                                         pipeline="recovery")
            assert_on_time("recovery", at(recovery), last, 1.5)
            marker = folder / ESCALATION_MARKER
            assert marker.read_text().startswith("Agent-1 requires manual intervention.")
            assert daemon.events("agent_recovered") == []
            # The agent comes back: one write of its own.
            tmp = folder / "status.json.agent"
            tmp.write_text('{"agent_id": "Agent-1", "status": "back"}')
            os.rename(tmp, folder / "status.json")
            woke = time.time()
            recovered = daemon.wait_event("agent_recovered", 2.0, agent="Agent-1")
            assert at(recovered) - woke <= 0.3
            assert poll_until(lambda: not marker.exists(), 1.0), "marker left behind"
        assert len(stalls(daemon, "Agent-1")) == 1


    def test_rescue_messages_are_not_activity_even_when_any_mail_counts(self, tmp_path, root):
        """With `healer.activity.inbox: any` new mail is the agent's activity, but the rescue
        messages healer drops (created by link(), not renamed) are recognised by the
        self-write ledger: the ladder runs to escalation with no agent_recovered."""
        args = watch_args(HEAL, 1.5, TICK)
        config = "healer:\n  activity: {inbox: any}\n"
        with running_daemon(root, tmp_path, args, config_text=config) as daemon:
            folder = agent(root, "Agent-1")
            write_once(folder)
            daemon.wait_event("agent_escalated", 5.0, agent="Agent-1")
            assert list((folder / "inbox").glob("HEALER_RESCUE_*.md"))
            assert daemon.events("agent_recovered") == []
            # Mail from someone else still counts in this mode.
            (folder / "inbox" / "C2A_NEW.md").write_text("# hello\n")
            daemon.wait_event("agent_recovered", 2.0, agent="Agent-1")


# -- 8: systemd ----------------------------------------------------------------------------
SO_TIMESTAMPNS = 35  # <asm-generic/socket.h>; the socket module does not export it


def arrival(ancillary: list[tuple[int, int, bytes]]) -> float:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            sec, nsec = struct.unpack("qq", data[:16])
            return sec + nsec / 1e9
    raise AssertionError("datagram without a kernel timestamp")


class TestSystemd:
    def test_ready_watchdog_pings_and_stopping_reach_the_notify_socket(self, tmp_path, root):
        """READY=1 after start, WATCHDOG=1 about every WATCHDOG_USEC/2, STOPPING=1 on
        SIGTERM, in that order."""
        agent(root, "Agent-1")
        path = tmp_path / "notify.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(path))
        sock.settimeout(0.2)
        # The kernel stamps each datagram on arrival, so the gaps measure the daemon, not
        # how promptly this thread was scheduled.
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        got: list[tuple[float, str]] = []
        done = threading.Event()

        def listen() -> None:
            while not done.is_set():
                try:
                    data, ancillary, _flags, _addr = sock.recvmsg(4096, 64)
                except TimeoutError:
                    continue
                got.append((arrival(ancillary), data.decode()))

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        env = {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"}
        try:
            with running_daemon(root, tmp_path, env=env) as daemon:
                assert poll_until(lambda: sum(m == "WATCHDOG=1" for _, m in got) >= 6, 3.0)
                stop_from = len(got)
            assert poll_until(lambda: any(m == "STOPPING=1" for _, m in got), 1.0)
        finally:
            done.set()
            listener.join(2)
            sock.close()
        messages = [m for _, m in got]
        assert messages.index("READY=1") < messages.index("WATCHDOG=1")
        assert "STOPPING=1" in messages[stop_from:]
        pings = [t for t, m in got[:stop_from] if m == "WATCHDOG=1"]
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert max(gaps) < 0.4, f"a gap reached the watchdog timeout: {gaps}"
        assert min(gaps) >= 0.19, f"pinging faster than WATCHDOG_USEC/2: {gaps}"
        assert sum(gaps) / len(gaps) <= 0.3, f"pinging at the timeout, not half of it: {gaps}"
        print("watchdog ping gaps (s):", [round(g, 3) for g in gaps])
        assert daemon.events("watch_stopped", reason="SIGTERM")


# -- 9: SIGHUP -----------------------------------------------------------------------------
def thresholds(heal: float, recover: float = 5.0) -> str:
    return (
        "overnight:\n"
        f"  self_healing:\n    stall_threshold: {heal}\n"
        f"  monitoring:\n    stall_timeout: {recover}\n"
        f"healer:\n  tick: {TICK}\n"
    )


class TestReload:
    def test_sighup_applies_the_files_new_threshold_and_keeps_open_incidents(
        self, tmp_path, root
    ):
        """Thresholds from the file only; after SIGHUP the next stall uses the new
        threshold, and an incident open before the reload carries on (attempt 2 follows)."""
        config = tmp_path / "orchestration.yml"
        config.write_text(thresholds(HEAL))
        with running_daemon(root, tmp_path, watch_args(None, None, None),
                            config=config) as daemon:
            started = daemon.events("watch_started")[0]
            assert (started["heal_after"], started["tick"]) == (HEAL, TICK)
            first = agent(root, "Agent-1")
            last = write_once(first)
            assert_on_time("before reload", wait_stall(daemon, first.name), last)
            config.write_text(thresholds(1.0))
            daemon.send(signal.SIGHUP)
            reloaded = daemon.wait_event("config_reloaded", 2.0)
            assert reloaded["heal_after"] == 1.0
            second = agent(root, "Agent-2")
            last = write_once(second)
            assert_on_time("after reload", wait_stall(daemon, second.name), last, 1.0)
            heals = daemon.events("heal_action", agent=first.name)
            assert [h["attempt"] for h in heals][:2] == [1, 2]
        assert len(stalls(daemon, first.name)) == 1
        assert daemon.events("config_reload_failed") == []


# -- 10: dry run ---------------------------------------------------------------------------
class TestDryRun:
    def test_dry_run_detects_and_logs_but_writes_nothing(self, tmp_path, root):
        """--dry-run: stall_detected and heal_action are logged, yet status.json keeps its
        bytes, no inbox file or marker appears and no history database is created."""
        args = watch_args(HEAL, 1.2, TICK, "--dry-run")
        with running_daemon(root, tmp_path, args) as daemon:
            folder = agent(root, "Agent-1")
            last = write_once(folder)
            before = (folder / "status.json").read_bytes()
            assert_on_time("dry run", wait_stall(daemon, folder.name), last)
            daemon.wait_event("heal_action", 2.0, agent="Agent-1", attempt=3)
            daemon.wait_event("stall_detected", 2.0, agent="Agent-1", pipeline="recovery")
            daemon.wait_event("agent_escalated", 2.0, agent="Agent-1")
        assert daemon.events("watch_started")[0]["dry_run"] is True
        assert (folder / "status.json").read_bytes() == before
        assert sorted(p.name for p in folder.iterdir()) == ["devlogs", "inbox", "status.json"]
        assert list((folder / "inbox").iterdir()) == []
        assert not (root / ".healer").exists()
        assert not list(tmp_path.rglob("healer.db*"))


def test_the_helper_fails_when_an_awaited_line_never_comes(tmp_path, root):
    """wait_for gives up at its deadline with the log's tail, so a test cannot hang."""
    with running_daemon(root, tmp_path) as daemon:
        began = time.monotonic()
        with pytest.raises(AssertionError, match="agent_added"):
            daemon.wait_event("agent_added", 0.3)
        assert time.monotonic() - began < 1.0

