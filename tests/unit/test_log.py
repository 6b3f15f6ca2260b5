"""Logging: one line per event, JSON lines stay pure JSON."""

from __future__ import annotations

import io
import json
import logging
import threading
from datetime import UTC, datetime

import pytest
import structlog

from healer import log as healer_log
from healer.log import (
    BATCH_BYTES,
    BackgroundLines,
    configure_logging,
    stamp_utc,
    stop_background,
)


class TestStamp:
    """healer's own stamper writes what structlog's TimeStamper(fmt="iso", utc=True) would."""

    @pytest.mark.parametrize("ns", [
        1_764_656_299_435_077_123,  # a fraction
        1_764_656_300_000_000_000,  # a whole second: no fraction, as isoformat()
        1_764_656_300_000_001_000,  # a microsecond past it
        1_764_656_359_999_999_999,  # the last microsecond of a minute
        951_782_400_123_456_000,  # 2000-02-29
    ])
    def test_it_matches_isoformat_in_utc(self, ns: int, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(healer_log.time, "time_ns", lambda: ns)
        second, micros = divmod(ns // 1000, 1_000_000)
        expected = datetime.fromtimestamp(second, tz=UTC).replace(
            microsecond=micros).isoformat().replace("+00:00", "Z")
        assert stamp_utc(None, "info", {})["timestamp"] == expected

    def test_the_second_moves_on(self, monkeypatch: pytest.MonkeyPatch) -> None:
        now = [1_764_656_299_999_999_000]
        monkeypatch.setattr(healer_log.time, "time_ns", lambda: now[0])
        first = stamp_utc(None, "info", {})["timestamp"]
        now[0] += 2_000
        second = stamp_utc(None, "info", {})["timestamp"]
        assert first.startswith("2025-12-02T06:18:19.") and second.startswith(
            "2025-12-02T06:18:20.")


class TestConfigureLogging:
    def test_json_lines_carry_event_timestamp_and_level(self) -> None:
        buf = io.StringIO()
        configure_logging("json", "info", buf)
        structlog.get_logger().warning("stall_detected", agent="Agent-1", silent_for=1.5)
        (line,) = buf.getvalue().splitlines()
        data = json.loads(line)
        assert data["event"] == "stall_detected" and data["level"] == "warning"
        assert data["timestamp"].endswith("Z") and data["agent"] == "Agent-1"

    def test_library_logs_and_warnings_stay_json(self) -> None:
        buf = io.StringIO()
        configure_logging("json", "info", buf)
        logging.getLogger("watchdog.observers.inotify_c").warning("Inotify queue overflowed")
        # pytest records warnings itself, so the warnings path is fed as captureWarnings does.
        logging.getLogger("py.warnings").warning("x.py:1: RuntimeWarning: odd")
        lines = [json.loads(line) for line in buf.getvalue().splitlines()]
        assert [line["event"] for line in lines] == ["library_log", "python_warning"]
        assert lines[0]["message"] == "Inotify queue overflowed"
        assert lines[0]["logger"] == "watchdog.observers.inotify_c"

    def test_the_level_filter_drops_lower_levels(self) -> None:
        buf = io.StringIO()
        configure_logging("json", "warning", buf)
        structlog.get_logger().info("heal_action")
        assert buf.getvalue() == ""

    def test_reconfiguring_does_not_duplicate_library_lines(self) -> None:
        buf = io.StringIO()
        configure_logging("json", "info", io.StringIO())
        configure_logging("json", "info", buf)
        logging.getLogger("somelib").warning("once")
        assert len(buf.getvalue().splitlines()) == 1

    def test_each_line_is_one_write(self) -> None:
        """A line and its newline leave in one write, so two processes sharing a terminal
        never splice their lines together."""

        class Recorder(io.StringIO):
            def __init__(self) -> None:
                super().__init__()
                self.writes: list[str] = []

            def write(self, text: str) -> int:
                self.writes.append(text)
                return super().write(text)

        stream = Recorder()
        configure_logging("json", "info", stream)
        structlog.get_logger().info("heal_action", agent="Agent-1")
        configure_logging("console", "info", stream)
        structlog.get_logger().info("heal_action", agent="Agent-1")
        assert len(stream.writes) == 2 and all(w.endswith("\n") for w in stream.writes)


class _Gate(io.StringIO):
    """A stream whose writes wait until it is opened: a log reader that has stalled."""

    def __init__(self, fail: BaseException | None = None) -> None:
        super().__init__()
        self.open = threading.Event()
        self.writes: list[str] = []
        self.fail = fail

    def write(self, text: str) -> int:
        self.open.wait(10)
        if self.fail is not None:
            raise self.fail
        self.writes.append(text)
        return super().write(text)


class TestBackgroundLines:
    def teardown_method(self) -> None:
        configure_logging("json", "info", io.StringIO())  # back to a plain stream

    def test_logging_does_not_wait_for_a_stalled_reader(self) -> None:
        """issue #16: the loop logs a line per stalled agent; a reader that is not reading
        must not hold it. Every line arrives, in order, once the reader reads again."""
        gate = _Gate()
        configure_logging("json", "info", gate, background=True)
        log = structlog.get_logger()
        for n in range(2_000):
            log.warning("stall_detected", agent=f"Agent-{n}")
        assert gate.getvalue() == ""  # not one line could be written, yet nothing waited
        gate.open.set()
        stop_background()
        agents = [json.loads(line)["agent"] for line in gate.getvalue().splitlines()]
        assert agents == [f"Agent-{n}" for n in range(2_000)]
        assert all(len(w) <= BATCH_BYTES + 400 and w.endswith("\n") for w in gate.writes)
        assert len(gate.writes) < 2_000  # batched

    def test_a_full_queue_waits_rather_than_drops(self) -> None:
        gate = _Gate()
        lines = BackgroundLines(gate, max_lines=5)
        done = threading.Event()

        def writer() -> None:
            for n in range(20):
                lines.write(f"{n}\n")
            done.set()

        thread = threading.Thread(target=writer)
        thread.start()
        assert not done.wait(0.2)  # five queued (one taken), the writer waits
        gate.open.set()
        assert done.wait(5)
        thread.join()
        lines.close()
        assert gate.getvalue() == "".join(f"{n}\n" for n in range(20))

    def test_a_reader_gone_costs_the_log_not_the_caller(self) -> None:
        gate = _Gate(fail=BrokenPipeError(32, "Broken pipe"))
        gate.open.set()
        lines = BackgroundLines(gate)
        lines.write("lost\n")
        lines.close()
        lines.write("after close\n")  # written at once, and the error swallowed too
