"""Parsers of single config values: each takes the raw value and its key path, and returns
the typed value or raises a one-line ConfigError naming that key."""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from healer.errors import ConfigError

__all__ = [
    "at_least",
    "boolean",
    "choice",
    "duration",
    "fraction",
    "host_port",
    "mapping",
    "one_line",
    "parse_addr",
    "parse_duration",
    "part",
    "path",
    "positive_int",
    "string_list",
    "text",
    "url",
    "urls",
]

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_BOOLEAN_WORDS = {"true": True, "false": False, "yes": True, "no": False, "on": True,
                  "off": False, "1": True, "0": False}


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


def duration(value: object, key: str) -> float:
    return parse_duration(value, key)


def boolean(value: object, key: str) -> bool:
    # on/off/yes/no arrive as strings: the config's YAML reads only true/false as booleans.
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _BOOLEAN_WORDS:
        return _BOOLEAN_WORDS[value.lower()]
    raise ConfigError(f"{key}: expected true or false, got {value!r}")


def at_least(minimum: int) -> Callable[[object, str], int]:
    """A parser of whole numbers no smaller than `minimum`."""

    def parse(value: object, key: str) -> int:
        # isdecimal, not isdigit: int() refuses "²"; and int() refuses past 4300 digits.
        if isinstance(value, str) and value.strip().isdecimal() and len(value) < 64:
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(
                f"{key}: expected a whole number of {minimum} or more, got {value!r}"
            )
        return value

    return parse


positive_int = at_least(1)


def fraction(value: object, key: str) -> float:
    """A number above 0 and at most 1."""
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            number = None
    if number is None or not 0 < number <= 1:  # NaN fails both comparisons
        raise ConfigError(f"{key}: expected a fraction above 0 and at most 1, got {value!r}")
    return number


def choice(options: tuple[str, ...]) -> Callable[[object, str], str]:
    def parse(value: object, key: str) -> str:
        if not isinstance(value, str) or value.lower() not in options:
            raise ConfigError(f"{key}: expected one of {', '.join(options)}, got {value!r}")
        return value.lower()

    return parse


def text(value: object, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}: expected a non-empty string, got {value!r}")
    return value


def path(value: object, key: str) -> Path:
    if isinstance(value, Path):
        return value
    return Path(text(value, key)).expanduser()


def host_port(value: object, key: str) -> str:
    given = text(value, key)
    parse_addr(given, key)
    return given


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


def url(value: object, key: str) -> str:
    given = text(value, key)
    if not given.startswith(("http://", "https://")):
        # The URL may hold a secret token, so the message never repeats it.
        raise ConfigError(f"{key}: expected an http:// or https:// URL")
    return given


def urls(value: object, key: str) -> tuple[str, ...]:
    """One URL, or a list of them (an Alertmanager HA pair gets every alert on each)."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ConfigError(f"{key}: expected a URL or a list of URLs, got an empty list")
    found = tuple(url(item, f"{key}[{n}]" if isinstance(value, list) else key)
                  for n, item in enumerate(items))
    if len(set(found)) != len(found):
        raise ConfigError(f"{key}: the same URL is listed twice")
    return found


def string_list(value: object, key: str, what: str) -> tuple[str, ...]:
    """A list of non-empty strings; a bad element is named by its index (`key[2]`)."""
    if not isinstance(value, list):
        raise ConfigError(f"{key}: expected a list of {what}s, got {type(value).__name__}")
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise ConfigError(f"{key}[{index}]: expected a {what}, got {item!r}")
    return tuple(value)


def part(key: object) -> str:
    """A key as one segment of a key path: quoted when it could break the one-line message."""
    if isinstance(key, str) and key.isprintable() and key.strip() == key and key:
        return key
    return repr(key)


def one_line(message: str) -> str:
    return " ".join(message.split())


def mapping(value: object, key: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
    return value
