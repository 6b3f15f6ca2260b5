"""structlog configured once: console lines for people, one JSON object per line for machines."""

from __future__ import annotations

import atexit
import json
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TextIO

import structlog

__all__ = [
    "BackgroundLines", "ConsoleLine", "configure_logging", "get_logger", "stamp_utc",
    "stop_background",
]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


# What a queue of lines waiting for a slow reader may hold before logging waits for it:
# a mass stall of 10,000 agents logs a few lines each.
QUEUED_LINES = 50_000
# Lines are written in batches of about this many bytes: one write() of a batch is still
# atomic on a pipe (PIPE_BUF), so lines of processes sharing it never run into each other.
BATCH_BYTES = 4096
GATHER = 0.02  # how long a batch of lines gathers before the thread writes it
_background: BackgroundLines | None = None


class BackgroundLines:
    """A text stream whose write() only queues; a thread writes the lines to `stream`.

    `healer watch` logs a line for each stalled agent, and a line to a pipe or a socket
    waits for whoever reads it (journald, a terminal, a test): 10,000 agents stalling at
    once must not wait for the log's reader before each one is reported (issue #16). The
    timestamp is taken when the line is logged, not when it is written. A reader gone for
    good (EPIPE) costs the log, never the daemon. close() (at exit, too) writes what is
    queued first.

    The thread is woken once per batch, not per line, and then lets a batch gather for
    GATHER seconds: woken for every line, it took the interpreter from the loop thousands
    of times a second and made the loop slower than writing the lines itself."""

    def __init__(self, stream: TextIO, max_lines: int = QUEUED_LINES) -> None:
        self.stream = stream
        self._lines: deque[str] = deque()  # append and popleft are atomic: no lock
        self._max = max_lines
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="healer-log", daemon=True)
        self._thread.start()

    def write(self, text: str) -> int:
        if self._closed:
            self._write(text)
            return len(text)
        while len(self._lines) >= self._max and self._thread.is_alive():
            self._wake.set()
            time.sleep(GATHER)  # a reader this far behind: wait for it, lose nothing
        self._lines.append(text)
        if not self._wake.is_set():
            self._wake.set()
        return len(text)

    def flush(self) -> None:
        """Lines are flushed as the thread writes them."""

    def isatty(self) -> bool:
        return self.stream.isatty()

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (up to `timeout`), then write in the caller's thread."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait()
            if not self._closed:
                time.sleep(GATHER)
            self._wake.clear()
            self._drain()
        self._drain()

    def _drain(self) -> None:
        lines = self._lines
        while lines:
            batch: list[str] = []
            size = 0
            while lines and size < BATCH_BYTES:
                line = lines.popleft()
                batch.append(line)
                size += len(line)
            self._write("".join(batch))

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass  # the reader is gone (EPIPE) or the stream closed: nothing to do


class _OneEncoder:
    """json.dumps as JSONRenderer calls it (with `default`) builds a JSONEncoder per line;
    this builds one, with the renderer's arguments, and encodes every line with it."""

    def __init__(self) -> None:
        self._encode: Callable[[Any], str] | None = None

    def __call__(self, obj: Any, **kw: Any) -> str:
        encode = self._encode
        if encode is None:
            encode = self._encode = json.JSONEncoder(**kw).encode
        return encode(obj)


# (second, its text): made once a second, not once a line; one tuple, so a thread that
# reads it while another replaces it sees one second's pair, never a mix.
_second: tuple[int, str] = (-1, "")


def stamp_utc(_logger: Any, _name: str, event_dict: Any) -> Any:
    """`timestamp`: now, ISO 8601 UTC, as structlog's TimeStamper(fmt="iso", utc=True) writes
    it (`2026-12-02T06:18:19.435077Z`; no fraction on the second itself). Its datetime and
    isoformat per line were a tenth of each stalled agent's cost in a mass stall."""
    global _second
    second, micros = divmod(time.time_ns() // 1000, 1_000_000)
    cached = _second
    if cached[0] != second:
        cached = _second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    event_dict["timestamp"] = f"{cached[1]}.{micros:06d}Z" if micros else f"{cached[1]}Z"
    return event_dict


def stop_background() -> None:
    """Write out and stop the background writer, if there is one."""
    global _background
    if _background is not None:
        _background.close()
        _background = None


def configure_logging(
    fmt: str = "console", level: str = "info", stream: TextIO | None = None,
    *, background: bool = False,
) -> None:
    """Every line carries `event`, `timestamp` (ISO 8601 UTC) and `level` (SPEC §8).
    `background`: lines are written by a thread of their own (BackgroundLines), for a
    daemon whose loop must not wait for the log's reader."""
    stop_background()
    stream = stream if stream is not None else sys.stderr
    if background:
        global _background
        _background = BackgroundLines(stream)
        atexit.unregister(stop_background)
        atexit.register(stop_background)
        stream = _background  # type: ignore[assignment]
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(serializer=_OneEncoder(), sort_keys=False)
    else:
        renderer = ConsoleLine(colors=stream.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            stamp_utc,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        # One write() per line (PrintLogger writes the newline separately): lines from
        # several processes sharing a terminal or a log file never run into each other.
        logger_factory=structlog.WriteLoggerFactory(stream),
        # The daemon configures logging once: each module's logger is bound on first use,
        # not again for every line (a tenth of a stalled agent's cost at 10,000 agents).
        # Commands that tests drive in-process keep rebinding, so capture_logs sees them.
        cache_logger_on_first_use=background,
    )
    # Libraries that log through the standard library (watchdog warns of inotify queue
    # overflows that way) and Python's warnings go through the same renderer, so a JSON
    # log stays one JSON object per line.
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                stamp_utc,
                structlog.processors.format_exc_info,
                _foreign_event,
            ],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_healer", False):
            root.removeHandler(old)
    handler._healer = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.captureWarnings(True)


# Console lines stay within 80 columns: these fields are in every JSON line, but on the
# console they repeat what the operator already knows (the thresholds, the alert target)
# or are too long to read at a glance.
_CONSOLE_QUIET = frozenset({"threshold", "details", "target", "path"})
_CONSOLE_QUIET_IF_FALSE = frozenset({"polling", "dry_run"})
_LEVEL_TAGS = {"debug": "DBG", "info": "INF", "warning": "WRN", "error": "ERR",
               "critical": "CRT"}
_LEVEL_COLORS = {"debug": "2", "info": "32", "warning": "33", "error": "1;31",
                 "critical": "1;31"}
_MAX_PATH = 34
_WIDTH = 80


class ConsoleLine:
    """Renders `HH:MM:SS LVL event agent key=value ...` (UTC) with the SPEC §8 names."""

    def __init__(self, colors: bool = False) -> None:
        self.colors = colors

    def _paint(self, text: str, code: str | None) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.colors and code else text

    def __call__(self, _logger: Any, _name: str, event_dict: Any) -> str:
        fields = dict(event_dict)
        stamp = str(fields.pop("timestamp", ""))[11:19]
        level = str(fields.pop("level", "info"))
        event = str(fields.pop("event", ""))
        agent = fields.pop("agent", None)
        exception = fields.pop("exception", None)
        color = _LEVEL_COLORS.get(level)
        tag = self._paint(_LEVEL_TAGS.get(level, level[:3].upper()), color)
        texts = [] if agent is None else [f"{agent!s:<8}"]
        for key, value in fields.items():
            if key in _CONSOLE_QUIET or (key in _CONSOLE_QUIET_IF_FALSE and value is False):
                continue
            texts.append(f"{key}={_short(value)}")
        line = f"{stamp} {tag} " + self._paint(
            f"{event:<15}" if texts else event, color if level != "info" else None)
        width = len(stamp) + 5 + max(15, len(event))
        indent = len(stamp) + 5 + 16
        for text in texts:
            if width + 1 + len(text) > _WIDTH and width > indent:
                # Wrap at a field boundary, under the fields, rather than at column 80.
                line += "\n" + " " * (indent - 1)
                width = indent - 1
            painted = self._paint(text, "31") if text == "ok=False" else text
            line += " " + painted
            width += 1 + len(text)
        return f"{line}\n{exception}" if exception else line


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    text = value if isinstance(value, str) else repr(value)
    if text.startswith("/") and " " not in text and len(text) > _MAX_PATH:
        return "…" + text[-(_MAX_PATH - 1):]
    return text


def _foreign_event(_logger: Any, _name: str, event_dict: Any) -> Any:
    """A library's free-text message becomes a field; the event name stays snake_case."""
    event_dict["message"] = str(event_dict.pop("event", "")).strip()
    event_dict["event"] = "python_warning" if event_dict.get("logger") == "py.warnings" else (
        "library_log"
    )
    return event_dict


def get_logger(**context: Any) -> Any:
    return structlog.get_logger(**context)
