"""structlog configured once: console lines for people, one JSON object per line for machines."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

__all__ = ["ConsoleLine", "configure_logging", "get_logger"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def configure_logging(
    fmt: str = "console", level: str = "info", stream: TextIO | None = None
) -> None:
    """Every line carries `event`, `timestamp` (ISO 8601 UTC) and `level` (SPEC §8)."""
    stream = stream if stream is not None else sys.stderr
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    else:
        renderer = ConsoleLine(colors=stream.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        # One write() per line (PrintLogger writes the newline separately): lines from
        # several processes sharing a terminal or a log file never run into each other.
        logger_factory=structlog.WriteLoggerFactory(stream),
        cache_logger_on_first_use=False,
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
                structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
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
