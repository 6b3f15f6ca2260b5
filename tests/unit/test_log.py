"""Logging: one line per event, JSON lines stay pure JSON."""

from __future__ import annotations

import io
import json
import logging

import structlog

from healer.log import configure_logging


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
