"""Parsers of single config values: each takes the raw value (YAML, env or flag) and its
key path, and returns the typed value or raises ConfigError naming the key in one line."""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from healer.errors import ConfigError

__all__ = [
    "as_bool",
    "as_choice",
    "as_host_port",
    "as_mapping",
    "as_path",
    "as_positive_int",
    "as_text",
    "as_url",
    "key_part",
    "one_line",
    "parse_addr",
    "parse_duration",
    "read_yaml",
]

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: object, key: str, *, allow_zero: bool = False) -> float:
    """Seconds from a number or a string like `90s`, `5m`, `1.5h`; positive and finite."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a duration (seconds or e.g. '90s', '5m'), got {value}")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # YAML integers have no bound
            raise ConfigError(f"{key}: must be a positive duration, got one too large") from None
    elif isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match is None:
            raise ConfigError(
                f"{key}: expected a duration (seconds or e.g. '90s', '5m'), got {value!r}"
            )
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ConfigError(
            f"{key}: expected a duration (seconds or e.g. '90s', '5m'), got {type(value).__name__}"
        )
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise ConfigError(f"{key}: must be a positive duration, got {value!r}")
    return seconds


def as_bool(value: object, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.lower() in ("true", "yes", "1")
    raise ConfigError(f"{key}: expected true or false, got {value!r}")


def as_positive_int(value: object, key: str) -> int:
    # isdecimal, not isdigit: int() refuses "²"; and int() refuses past 4300 digits.
    if isinstance(value, str) and value.strip().isdecimal() and len(value) < 64:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}: expected a whole number of 1 or more, got {value!r}")
    return value


def as_choice(options: tuple[str, ...]) -> Callable[[object, str], str]:
    def parse(value: object, key: str) -> str:
        if not isinstance(value, str) or value.lower() not in options:
            raise ConfigError(f"{key}: expected one of {', '.join(options)}, got {value!r}")
        return value.lower()

    return parse


def as_text(value: object, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}: expected a non-empty string, got {value!r}")
    return value


def as_path(value: object, key: str) -> Path:
    if isinstance(value, Path):
        return value
    return Path(as_text(value, key)).expanduser()


def parse_addr(addr: str, key: str = "healer.metrics_addr") -> tuple[str, int]:
    """HOST:PORT to (host, port), the one check of a listening address. No host means
    loopback: exposing the swarm's agent names on every interface must be asked for
    (`0.0.0.0:9464`), never a default."""
    host, sep, port = addr.rpartition(":")
    # isdecimal and a length bound, not isdigit: int() refuses "²" and 5,000 digits.
    if not sep or not port.isdecimal() or len(port) > 5 or int(port) > 65535:
        raise ConfigError(f"{key}: expected HOST:PORT (e.g. 127.0.0.1:9464), got {addr!r}")
    host = host.strip("[]") or "127.0.0.1"
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(f"{key}: {host!r} is not an IP address") from None
    return host, int(port)


def as_host_port(value: object, key: str) -> str:
    text = as_text(value, key)
    parse_addr(text, key)
    return text


def as_url(value: object, key: str) -> str:
    text = as_text(value, key)
    if not text.startswith(("http://", "https://")):
        # The URL may hold a secret token, so the message never repeats it.
        raise ConfigError(f"{key}: expected an http:// or https:// URL")
    return text


def key_part(key: object) -> str:
    """A key as one segment of a key path: quoted when it could break the one-line message."""
    if isinstance(key, str) and key.isprintable() and key.strip() == key and key:
        return key
    return repr(key)


def one_line(text: str) -> str:
    return " ".join(text.split())


def as_mapping(value: object, key: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
    return value


def read_yaml(path: Path) -> Mapping[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: invalid YAML{where}: {one_line(str(exc.problem))}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {one_line(str(exc))}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid YAML: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer past Python's 4300-digit conversion limit
        raise ConfigError(f"{path}: invalid YAML: {one_line(str(exc))}") from None
    return as_mapping(document, f"{path}: top level")
