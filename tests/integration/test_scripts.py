"""The load and demo generators: the swarm simulator and the trace replayer write real files."""

from __future__ import annotations

import importlib
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _load(name: str) -> ModuleType:
    # The scripts are standalone files that import their helper by its bare name.
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    return importlib.import_module(name)


agentio = _load("_agentio")
sim = _load("simulate_swarm")
replay = _load("replay")

FIELDS = {"agent_id", "agent_name", "status", "current_phase", "last_updated",
          "current_mission", "current_tasks", "completed_tasks"}


def wait_for(condition: Callable[[], bool], timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def all_names(root: Path) -> list[str]:
    return [p.name for p in root.rglob("*")]


class TestSimulatorOnce:
    def test_once_seeds_a_valid_status_for_every_agent(self, tmp_path: Path) -> None:
        """--once writes a parseable status.json with the swarm's fields for each agent."""
        assert sim.main(["--workspaces", str(tmp_path), "--once", "--agents", "4"]) == 0
        assert sorted(p.name for p in tmp_path.iterdir()) == [f"Agent-{n}" for n in (1, 2, 3, 4)]
        for folder in tmp_path.iterdir():
            data = json.loads((folder / "status.json").read_text(encoding="utf-8"))
            assert set(data) >= FIELDS
            assert data["agent_id"] == folder.name
            assert data["status"] == "ACTIVE_AGENT_MODE"
            done = [t for t in data["current_tasks"] if t.startswith("✅ COMPLETED: ")]
            assert done and len(done) < len(data["current_tasks"])
            assert (folder / "inbox" / "processed").is_dir()
            assert list((folder / "devlogs").glob("*.md"))

    def test_once_keeps_what_an_existing_workspace_holds(self, tmp_path: Path) -> None:
        """Re-seeding never wipes an agent's inbox or devlogs, and adds missing agents."""
        old = tmp_path / "Agent-2" / "inbox" / "C2A_OLD.md"
        old.parent.mkdir(parents=True)
        old.write_text("old mail", encoding="utf-8")
        assert sim.main(["--workspaces", str(tmp_path), "--once", "--agents", "3"]) == 0
        assert old.read_text(encoding="utf-8") == "old mail"
        assert (tmp_path / "Agent-3" / "status.json").is_file()

    @pytest.mark.parametrize("argv", [
        [], ["--workspaces", "x", "--agents", "0"], ["--workspaces", "x", "--speed", "-1"],
        ["--workspaces", "x", "--stall-after", "soon"],
    ])
    def test_bad_arguments_exit_with_2(self, argv: list[str], capsys: Any) -> None:
        """Usage errors return exit code 2 with argparse's message."""
        assert sim.main(argv) == 2
        assert "error" in capsys.readouterr().err

    def test_help_names_the_roles(self, capsys: Any) -> None:
        """--help documents which agent plays which role."""
        assert sim.main(["--help"]) == 0
        out = capsys.readouterr().out
        assert "Agent-2 nudge" in out and "Agent-4 dead" in out and "busy_until" in out
        assert "Agent-3 wait" in out and "healer beat --state waiting" in out


def run_swarm(root: Path, timings: Any, seconds: float | None = None
              ) -> tuple[Any, threading.Event, threading.Thread]:
    swarm = sim.Swarm(root, 6, seed=7, timings=timings)
    swarm.seed_state(fresh=False)
    stop = threading.Event()
    thread = threading.Thread(target=swarm.run, args=(stop, seconds), daemon=True)
    thread.start()
    return swarm, stop, thread


FAST = dict(interval=0.1, stall_after=0.4, self_silence=0.4, nudge_delay=0.05, lease=0.5)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path, float]]:
    root = tmp_path_factory.mktemp("swarm")
    started = time.time()
    swarm, stop, thread = run_swarm(root, sim.Timings(**FAST), seconds=1.3)
    thread.join(5)
    assert not thread.is_alive()
    yield swarm, root, started
    stop.set()


class TestSimulatorRun:
    def test_healthy_agents_keep_writing(self, finished_run: tuple[Any, Path, float]) -> None:
        """Healthy agents write status.json throughout the run, past the stall point."""
        swarm, root, _ = finished_run
        for agent in ("Agent-1",):
            writes = swarm.agents[agent].writes
            assert len(writes) >= 5
            assert max(writes) > 1.0
            json.loads((root / agent / "status.json").read_text(encoding="utf-8"))

    def test_dead_agent_never_writes_after_its_stall(
            self, finished_run: tuple[Any, Path, float]) -> None:
        """The never-recovering agent's last write, and its file's mtime, precede the stall."""
        swarm, root, started = finished_run
        writes = swarm.agents["Agent-4"].writes
        assert writes and max(writes) < FAST["stall_after"]
        assert (root / "Agent-4" / "status.json").stat().st_mtime < started + 0.4 + 0.15

    def test_self_recovering_agent_comes_back(
            self, finished_run: tuple[Any, Path, float]) -> None:
        """Agent-5 is silent from the stall point for --self-silence, then writes again."""
        writes = finished_run[0].agents["Agent-5"].writes
        quiet = [w for w in writes if 0.4 <= w < 0.8]
        assert not quiet
        assert any(w >= 0.8 for w in writes)

    def test_busy_agent_declares_a_lease_and_goes_quiet(
            self, finished_run: tuple[Any, Path, float]) -> None:
        """Agent-6 writes busy_until about --lease ahead and writes nothing during the lease."""
        swarm, root, _ = finished_run
        writes = swarm.agents["Agent-6"].writes
        lease_write = min(w for w in writes if w >= 0.4)
        assert not [w for w in writes if lease_write < w < lease_write + 0.5]
        assert any(w >= lease_write + 0.5 for w in writes)
        assert "busy_until" not in json.loads((root / "Agent-6" / "status.json").read_text())

    def test_agents_never_write_healer_names(
            self, finished_run: tuple[Any, Path, float]) -> None:
        """No rescue message or healer temp name comes from the simulated agents."""
        names = all_names(finished_run[1])
        assert not [n for n in names if n.startswith("HEALER_RESCUE_") or ".healer-tmp." in n]
        assert [n for n in names if n.startswith("A2A_")]  # they do mail each other


class TestWaitingAgent:
    def test_it_says_it_waits_with_healer_beat_and_then_that_it_works(
        self, tmp_path: Path
    ) -> None:
        """Agent-3 runs the real `healer beat`: waiting with its question, nothing else
        written for --wait-for, then working and its status again."""
        timings = sim.Timings(**{**FAST, "stall_after": 0.2, "wait_for": 1.0})
        swarm = sim.Swarm(tmp_path, 6, seed=7, timings=timings,
                          healer=[sys.executable, "-m", "healer"])
        swarm.seed_state(fresh=False)
        stop = threading.Event()
        thread = threading.Thread(target=swarm.run, args=(stop, None), daemon=True)
        thread.start()
        beat = tmp_path / "Agent-3" / "heartbeat.json"
        waiter = swarm.agents["Agent-3"]
        try:
            assert wait_for(lambda: beat.exists(), timeout=10)
            said = json.loads(beat.read_text())
            assert said["state"] == "waiting" and "git push --force" in said["message"]
            count = len(waiter.writes)
            assert waiter.phase == "waiting"
            assert wait_for(lambda: json.loads(beat.read_text())["state"] == "working",
                            timeout=10)
            assert wait_for(lambda: len(waiter.writes) > count)
            assert waiter.phase == "active"
        finally:
            stop.set()
            thread.join(5)


class TestNudgedAgent:
    def test_rescue_message_wakes_it_and_is_consumed(self, tmp_path: Path) -> None:
        """Agent-2 stays stalled until a rescue appears, then consumes it and writes,
        keeping the keys healer added to its status.json meanwhile."""
        swarm, stop, thread = run_swarm(tmp_path, sim.Timings(**{**FAST, "stall_after": 0.2}))
        try:
            nudged = swarm.agents["Agent-2"]
            folder = tmp_path / "Agent-2"
            assert wait_for(lambda: nudged.phase == "stalled")
            status = json.loads((folder / "status.json").read_text(encoding="utf-8"))
            status["healing_applied"] = [{"action": "force_update", "attempt": 1}]
            agentio.write_status(folder, status)  # stands in for healer's rewrite
            count = len(nudged.writes)
            time.sleep(0.3)
            assert len(nudged.writes) == count and nudged.phase == "stalled"
            rescue = folder / "inbox" / "HEALER_RESCUE_20250101_000000.md"
            rescue.write_text("# 🚨 INBOX MESSAGE - RESCUE\n", encoding="utf-8")
            processed = folder / "inbox" / "processed" / rescue.name
            assert wait_for(lambda: processed.exists() and len(nudged.writes) > count)
            assert not rescue.exists()
            after = json.loads((folder / "status.json").read_text(encoding="utf-8"))
            assert after["healing_applied"] == status["healing_applied"]
            assert after["cycle_count"] > status["cycle_count"]
        finally:
            stop.set()
            thread.join(2)


def trace_file(tmp_path: Path, rows: list[tuple[float, str, str]]) -> Path:
    path = tmp_path / "trace.jsonl"
    path.write_text("".join(json.dumps({"t": t, "agent": a, "source": s}) + "\n"
                            for t, a, s in rows), encoding="utf-8")
    return path


HAND_TRACE = [
    (1000, "Agent-1", "status"), (1010, "Agent-1", "status"), (1020, "Agent-2", "inbox"),
    (1030, "Agent-1", "inbox"), (1040, "Agent-2", "status"), (1050, "Agent-1", "devlog"),
    (1055, "Agent-2", "devlog"), (1200, "Agent-1", "status"),
]


class TestExpectedStalls:
    def events(self, tmp_path: Path) -> list[Any]:
        return list(replay.load_trace(trace_file(tmp_path, HAND_TRACE)))

    def test_silences_between_and_after_activity(self, tmp_path: Path) -> None:
        """Gaps longer than the threshold, including to the window end, with detect times;
        Agent-2's clock starts at its first event (new mail creates its folder)."""
        window = replay.Window(1000, 1100)
        got = replay.expected_stalls(self.events(tmp_path), 15, window)
        assert [(s.agent, s.start, s.end, s.detect_at) for s in got] == [
            ("Agent-1", 1010, 1050, 1025),
            ("Agent-2", 1020, 1040, 1035),
            ("Agent-1", 1050, 1100, 1065),
            ("Agent-2", 1055, 1100, 1070),
        ]

    def test_inbox_counts_splits_a_silence(self, tmp_path: Path) -> None:
        """With inbox_counts new mail is activity, so Agent-1's 40 s gap becomes two of 20."""
        window = replay.Window(1000, 1100)
        got = replay.expected_stalls(self.events(tmp_path), 15, window, inbox_counts=True)
        agent1 = [(s.start, s.end) for s in got if s.agent == "Agent-1"]
        assert agent1 == [(1010, 1030), (1030, 1050), (1050, 1100)]

    def test_a_gap_equal_to_the_threshold_is_no_stall(self, tmp_path: Path) -> None:
        """A silence of exactly the threshold does not count; the window clips the trace."""
        got = replay.expected_stalls(self.events(tmp_path), 40, replay.Window(1000, 1090))
        assert [(s.agent, s.start) for s in got] == []
        later = replay.expected_stalls(self.events(tmp_path), 40, replay.Window(1000, 1094))
        assert [(s.agent, s.start, s.detect_at) for s in later] == [("Agent-1", 1050, 1090)]


def silence(agent: str, detect_at: float) -> Any:
    return replay.Silence(agent, detect_at - 10, detect_at + 50, detect_at)


class TestScore:
    EXPECTED = (silence("Agent-1", 100), silence("Agent-2", 200))

    def test_perfect_detection(self) -> None:
        """Every stall found in time: precision and recall 1, lags measured."""
        got = replay.score(self.EXPECTED, [("Agent-1", 101), ("Agent-2", 203)], 5)
        assert (got["precision"], got["recall"]) == (1.0, 1.0)
        assert (got["lag_p50"], got["lag_max"]) == (1, 3)

    def test_missed_stall_lowers_recall(self) -> None:
        """A stall nobody reported halves recall and leaves precision alone."""
        got = replay.score(self.EXPECTED, [("Agent-1", 100)], 5)
        assert (got["precision"], got["recall"], got["missed"]) == (1.0, 0.5, 1)

    def test_spurious_detection_lowers_precision(self) -> None:
        """A detection with no stall behind it (or for another agent) is a false positive."""
        detected = [("Agent-1", 100), ("Agent-2", 200), ("Agent-3", 150)]
        got = replay.score(self.EXPECTED, detected, 5)
        assert (got["precision"], got["recall"]) == (pytest.approx(2 / 3), 1.0)

    def test_late_detection_counts_as_both(self) -> None:
        """Outside the tolerance a detection is both a miss and a false positive."""
        got = replay.score(self.EXPECTED, [("Agent-1", 100), ("Agent-2", 206)], 5)
        assert (got["precision"], got["recall"]) == (0.5, 0.5)
        assert got["lag_max"] == 0

    def test_detections_past_the_horizon_are_not_held_against_healer(self) -> None:
        """After the window end every agent is silent, so unmatched late detections are ignored."""
        detected = [("Agent-1", 100), ("Agent-2", 200), ("Agent-1", 400)]
        assert replay.score(self.EXPECTED, detected, 5, horizon=300)["precision"] == 1.0
        assert replay.score(self.EXPECTED, detected, 5)["precision"] == pytest.approx(2 / 3)

    def test_percentiles_use_nearest_rank(self) -> None:
        """p50 and p99 of the lags over 100 matched stalls."""
        expected = [silence("Agent-1", 1000 * i) for i in range(100)]
        detected = [("Agent-1", 1000 * i + i / 100) for i in range(100)]
        got = replay.score(expected, detected, 5)
        lags = (got["lag_p50"], got["lag_p99"], got["lag_max"])
        assert lags == pytest.approx((0.49, 0.98, 0.99))

    def test_log_lines_give_healing_detections_only(self) -> None:
        """Only stall_detected of the healing pipeline is read; other lines are skipped."""
        lines = [
            "not json",
            json.dumps({"event": "stall_detected", "pipeline": "healing", "agent": "Agent-1",
                        "timestamp": "2025-01-01T00:00:10Z", "level": "warning"}),
            json.dumps({"event": "stall_detected", "pipeline": "recovery", "agent": "Agent-1",
                        "timestamp": "2025-01-01T00:00:20Z", "level": "warning"}),
            json.dumps({"event": "heal_action", "agent": "Agent-1",
                        "timestamp": "2025-01-01T00:00:10Z"}),
        ]
        assert replay.detections_from_log(lines) == [("Agent-1", 1735689610.0)]


REPLAY_TRACE = [
    (5000, "Agent-1", "status"), (5000, "Agent-1", "inbox"), (5000, "Agent-1", "status"),
    (5900, "Agent-1", "devlog"), (6000, "Agent-2", "inbox"), (6800, "Agent-1", "status"),
    (7000, "Agent-1", "inbox"), (7000, "Agent-1", "inbox"), (8000, "Agent-2", "status"),
    (8700, "Agent-1", "devlog"), (8700, "Agent-1", "status"), (9000, "Agent-2", "status"),
]


class TestReplayWrite:
    def test_one_second_window_writes_every_event(self, tmp_path: Path) -> None:
        """A 3600 s window at 3600x takes one second and writes each event once, atomically."""
        events = replay.load_trace(trace_file(tmp_path, REPLAY_TRACE))
        window, chosen = replay.select(events, start=0, length=3600)
        assert len(chosen) == 9  # [5000, 8600): the last three lie past the window end
        root = tmp_path / "ws"
        root.mkdir()
        stop, bad, reads = threading.Event(), [], [0]

        def reader() -> None:
            while not stop.is_set():
                for status in root.glob("Agent-*/status.json"):
                    try:
                        json.loads(status.read_text(encoding="utf-8"))
                        reads[0] += 1
                    except FileNotFoundError:
                        pass
                    except ValueError as exc:
                        bad.append(exc)

        polling = threading.Thread(target=reader, daemon=True)
        polling.start()
        began = time.monotonic()
        stats = replay.replay(root, chosen, window, 3600, threading.Event())
        elapsed = time.monotonic() - began
        stop.set()
        polling.join(2)
        assert 0.95 <= elapsed < 2.0 and stats.late_max < 0.3
        assert (stats.events, stats.agents, stats.status, stats.devlog, stats.inbox) == (
            9, 2, 4, 1, 4)
        assert not bad and reads[0] > 0
        one, two = root / "Agent-1", root / "Agent-2"
        assert json.loads((one / "status.json").read_text())["cycle_count"] == 3
        assert json.loads((two / "status.json").read_text())["cycle_count"] == 1
        assert len(list((one / "inbox").glob("*.md"))) == 3
        assert len(list((two / "inbox").glob("*.md"))) == 1
        lines = "".join(p.read_text() for p in (one / "devlogs").glob("*.md")).splitlines()
        assert len(lines) == 1
        assert not [n for n in all_names(root) if n.endswith(".tmp")]

    def test_write_prints_the_time_mapping_and_refuses_a_used_root(
            self, tmp_path: Path, capsys: Any) -> None:
        """`write` prints a start line with wall_start; a root with agents is refused."""
        trace = trace_file(tmp_path, REPLAY_TRACE)
        root, meta = tmp_path / "ws", tmp_path / "meta.json"
        argv = ["write", "--workspaces", str(root), "--trace", str(trace),
                "--compress", "100000", "--meta", str(meta), "--heal-after-wall", "0.5"]
        before = time.time()
        assert replay.main(argv) == 0
        first, last = capsys.readouterr().out.splitlines()
        start = json.loads(first)
        assert before <= start["wall_start"] <= time.time()
        assert (start["trace_start"], start["trace_end"], start["compress"]) == (
            5000, 9001, 100000)
        assert json.loads(meta.read_text()) == start
        assert json.loads(last)["events"] == 12
        assert replay.main(argv) == 2

    def test_score_maps_log_times_back_to_trace_time(self, tmp_path: Path, capsys: Any) -> None:
        """`score` converts healer's wall timestamps with the meta line and prints the result."""
        trace = trace_file(tmp_path, HAND_TRACE)
        meta = tmp_path / "meta.json"
        meta.write_text(json.dumps({
            "trace": str(trace), "trace_start": 1000, "trace_end": 1100, "compress": 10,
            "heal_after_wall": 1.5, "wall_start": 1735689600.0}), encoding="utf-8")

        def line(agent: str, wall: float) -> str:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall))
            return json.dumps({"event": "stall_detected", "pipeline": "healing",
                               "agent": agent, "timestamp": f"{stamp}.{int(wall % 1 * 1e6):06d}Z"})

        wall = 1735689600.0
        log = tmp_path / "healer.jsonl"
        log.write_text("\n".join([line("Agent-1", wall + 2.55), line("Agent-2", wall + 3.5),
                                  line("Agent-1", wall + 6.5)]), encoding="utf-8")
        argv = ["score", "--log", str(log), "--meta", str(meta), "--json",
                "--tolerance-wall", "0.2"]
        assert replay.main(argv) == 0
        got = json.loads(capsys.readouterr().out)
        assert (got["expected"], got["matched"], got["false_positives"]) == (4, 3, 0)
        assert got["recall"] == 0.75 and got["lag_max"] == pytest.approx(0.05)
        assert replay.main([*argv, "--min-recall", "0.9"]) == 1

    def test_analyze_counts_events(self, tmp_path: Path, capsys: Any) -> None:
        """`analyze --json` reports events per agent and per source."""
        trace = trace_file(tmp_path, HAND_TRACE)
        assert replay.main(["analyze", "--trace", str(trace), "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["per_agent"] == {"Agent-1": 5, "Agent-2": 3}
        assert report["per_source"] == {"status": 4, "inbox": 2, "devlog": 2}
