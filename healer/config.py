"""Configuration: the seed's orchestration.yml plus healer's own keys, parsed once into
frozen dataclasses. Precedence: CLI flags > environment > file > built-in defaults."""

from __future__ import annotations

import fnmatch
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from healer.core.model import HEAL_ACTIONS
from healer.errors import ConfigError

__all__ = [
    "ENV_VARS",
    "AgentOverride",
    "AlertsConfig",
    "Config",
    "load_config",
    "parse_duration",
    "require_tick_fits",
]

DEFAULT_CONFIG_PATH = Path("config/orchestration.yml")
INBOX_MODES = ("consume", "any", "none")
LOG_FORMATS = ("console", "json")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


@dataclass(frozen=True, slots=True)
class AgentOverride:
    """Per-agent thresholds (`healer.agents.<name>`); None means the global value."""

    heal_after: float | None = None
    recover_after: float | None = None


@dataclass(frozen=True, slots=True)
class AlertsConfig:
    """Where alerts go. The Discord URL is only ever read from the environment."""

    webhook_url: str | None = None
    alertmanager_url: tuple[str, ...] = ()
    timeout: float = 5.0
    max_tries: int = 3
    backoff: float = 1.0


@dataclass(frozen=True, slots=True)
class Config:
    """Everything healer needs, validated. Field docs double as the configuration reference."""

    workspaces: Path = Path("agent_workspaces")
    agent_pattern: str = "Agent-*"
    heal_after: float = 120.0
    recover_after: float = 300.0
    tick: float = 1.0
    check_interval: float = 30.0
    monitor_interval: float = 60.0
    healing_enabled: bool = True
    max_attempts: int = 3
    ladder: tuple[str, ...] = HEAL_ACTIONS
    auto_recovery: bool = True
    agent_rescue: bool = True
    inbox_mode: str = "consume"
    max_busy_lease: float = 1800.0
    max_status_bytes: int = 1 << 20
    state_dir: Path | None = None
    retention: float = 30 * 86400.0
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    agents: Mapping[str, AgentOverride] = field(default_factory=dict)
    poll: bool = False
    dry_run: bool = False
    metrics_addr: str | None = None
    log_format: str = "console"
    log_level: str = "info"
    source: Path | None = None

    @property
    def state_path(self) -> Path:
        """Folder of the durable history; defaults to `<workspaces>/.healer`."""
        return self.state_dir if self.state_dir is not None else self.workspaces / ".healer"

    def heal_after_for(self, agent: str) -> float:
        override = self.agents.get(agent)
        if override is not None and override.heal_after is not None:
            return override.heal_after
        return self.heal_after

    def recover_after_for(self, agent: str) -> float:
        override = self.agents.get(agent)
        if override is not None and override.recover_after is not None:
            return override.recover_after
        return self.recover_after

    def is_agent_name(self, name: str) -> bool:
        # A folder name that is not UTF-8 cannot be stored, logged or addressed in a message.
        return fnmatch.fnmatchcase(name, self.agent_pattern) and _is_utf8(name)


# Environment variables and the Config field each one sets.
ENV_VARS: Mapping[str, str] = {
    "HEALER_WORKSPACES": "workspaces",
    "HEALER_HEAL_AFTER": "heal_after",
    "HEALER_RECOVER_AFTER": "recover_after",
    "HEALER_TICK": "tick",
    "HEALER_STATE_DIR": "state_dir",
    "HEALER_METRICS_ADDR": "metrics_addr",
    "HEALER_LOG_FORMAT": "log_format",
    "HEALER_LOG_LEVEL": "log_level",
    "HEALER_WEBHOOK_URL": "alerts.webhook_url",
}


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


def _bool(value: object, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.lower() in ("true", "yes", "1")
    raise ConfigError(f"{key}: expected true or false, got {value!r}")


def _positive_int(value: object, key: str) -> int:
    # isdecimal, not isdigit: int() refuses "²"; and int() refuses past 4300 digits.
    if isinstance(value, str) and value.strip().isdecimal() and len(value) < 64:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}: expected a whole number of 1 or more, got {value!r}")
    return value


def _choice(options: tuple[str, ...]) -> Callable[[object, str], str]:
    def parse(value: object, key: str) -> str:
        if not isinstance(value, str) or value.lower() not in options:
            raise ConfigError(f"{key}: expected one of {', '.join(options)}, got {value!r}")
        return value.lower()

    return parse


def _text(value: object, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}: expected a non-empty string, got {value!r}")
    return value


def _path(value: object, key: str) -> Path:
    if isinstance(value, Path):
        return value
    return Path(_text(value, key)).expanduser()


def _host_port(value: object, key: str) -> str:
    text = _text(value, key)
    _host, sep, port = text.rpartition(":")
    if not sep or not port.isdecimal() or len(port) > 5 or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{key}: expected HOST:PORT (e.g. 127.0.0.1:9464), got {value!r}")
    return text


def _url(value: object, key: str) -> str:
    text = _text(value, key)
    if not text.startswith(("http://", "https://")):
        # The URL may hold a secret token, so the message never repeats it.
        raise ConfigError(f"{key}: expected an http:// or https:// URL")
    return text


def _urls(value: object, key: str) -> tuple[str, ...]:
    """One URL, or a list of them (an Alertmanager HA pair gets every alert on each)."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ConfigError(f"{key}: expected a URL or a list of URLs, got an empty list")
    urls = tuple(_url(item, f"{key}[{n}]" if isinstance(value, list) else key)
                 for n, item in enumerate(items))
    if len(set(urls)) != len(urls):
        raise ConfigError(f"{key}: the same URL is listed twice")
    return urls


def _ladder(value: object, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{key}: expected a list of action names, got {value!r}")
    for name in value:
        if name not in HEAL_ACTIONS:
            raise ConfigError(f"{key}: unknown action {name!r} (known: {', '.join(HEAL_ACTIONS)})")
    return tuple(value)


def _duration(value: object, key: str) -> float:
    return parse_duration(value, key)


# healer's own keys: name -> (parser, Config field or dotted sub-field).
_HEALER_KEYS: dict[str, tuple[Callable[[object, str], Any], str]] = {
    "workspaces": (_path, "workspaces"),
    "agent_pattern": (_text, "agent_pattern"),
    "tick": (_duration, "tick"),
    "ladder": (_ladder, "ladder"),
    "max_busy_lease": (_duration, "max_busy_lease"),
    "max_status_bytes": (_positive_int, "max_status_bytes"),
    "state_dir": (_path, "state_dir"),
    "retention": (_duration, "retention"),
    "poll": (_bool, "poll"),
    "dry_run": (_bool, "dry_run"),
    "metrics_addr": (_host_port, "metrics_addr"),
    "log_format": (_choice(LOG_FORMATS), "log_format"),
    "log_level": (_choice(LOG_LEVELS), "log_level"),
}
_ALERT_KEYS: dict[str, Callable[[object, str], Any]] = {
    "webhook_url": _url,
    "alertmanager_url": _urls,
    "timeout": _duration,
    "max_tries": _positive_int,
    "backoff": _duration,
}
_FIELD_PARSERS: dict[str, Callable[[object, str], Any]] = {
    "heal_after": _duration,
    "recover_after": _duration,
    "alerts.webhook_url": _url,
    **{spec[1]: spec[0] for spec in _HEALER_KEYS.values()},
}


def _part(key: object) -> str:
    """A key as one segment of a key path: quoted when it could break the one-line message."""
    if isinstance(key, str) and key.isprintable() and key.strip() == key and key:
        return key
    return repr(key)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _mapping(value: object, key: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
    return value


def _read_yaml(path: Path) -> Mapping[str, Any]:
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
        raise ConfigError(f"{path}: invalid YAML{where}: {_one_line(str(exc.problem))}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {_one_line(str(exc))}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid YAML: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer past Python's 4300-digit conversion limit
        raise ConfigError(f"{path}: invalid YAML: {_one_line(str(exc))}") from None
    return _mapping(document, f"{path}: top level")


def _seed_values(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The seed's `overnight.*` keys that healer honours, by Config field."""
    out: dict[str, Any] = {}
    overnight = _mapping(doc.get("overnight"), "overnight")
    healing = _mapping(overnight.get("self_healing"), "overnight.self_healing")
    monitoring = _mapping(overnight.get("monitoring"), "overnight.monitoring")
    recovery = _mapping(overnight.get("recovery"), "overnight.recovery")
    p = "overnight.self_healing."
    if "enabled" in healing:
        out["healing_enabled"] = _bool(healing["enabled"], p + "enabled")
    if "check_interval" in healing:
        out["check_interval"] = _duration(healing["check_interval"], p + "check_interval")
    if "stall_threshold" in healing:
        out["heal_after"] = _duration(healing["stall_threshold"], p + "stall_threshold")
    if "max_attempts" in healing:
        out["max_attempts"] = _positive_int(healing["max_attempts"], p + "max_attempts")
    switches = {
        "force_update": "force_update",
        "clear_stuck_tasks": "clear_stuck_tasks",
        "auto_reset": "reset_status",
    }
    disabled = {
        action for key, action in switches.items() if key in healing
        and not _bool(healing[key], p + key)
    }
    if disabled:
        out["_disabled_actions"] = disabled
    m = "overnight.monitoring."
    if "check_interval" in monitoring:
        out["monitor_interval"] = _duration(monitoring["check_interval"], m + "check_interval")
    if "stall_timeout" in monitoring:
        out["recover_after"] = _duration(monitoring["stall_timeout"], m + "stall_timeout")
    r = "overnight.recovery."
    if "auto_recovery" in recovery:
        out["auto_recovery"] = _bool(recovery["auto_recovery"], r + "auto_recovery")
    if "agent_rescue" in recovery:
        out["agent_rescue"] = _bool(recovery["agent_rescue"], r + "agent_rescue")
    return out


def _healer_values(doc: Mapping[str, Any]) -> dict[str, Any]:
    section = _mapping(doc.get("healer"), "healer")
    out: dict[str, Any] = {}
    for key, value in section.items():
        path = f"healer.{_part(key)}"
        if key in _HEALER_KEYS:
            parse, target = _HEALER_KEYS[key]
            out[target] = parse(value, path)
        elif key == "activity":
            activity = _mapping(value, path)
            for sub, sub_value in activity.items():
                if sub != "inbox":
                    raise ConfigError(f"{path}.{_part(sub)}: unknown key")
                out["inbox_mode"] = _choice(INBOX_MODES)(sub_value, f"{path}.inbox")
        elif key == "alerts":
            alerts = _mapping(value, path)
            parsed: dict[str, Any] = {}
            for sub, sub_value in alerts.items():
                if sub not in _ALERT_KEYS:
                    raise ConfigError(f"{path}.{_part(sub)}: unknown key")
                parsed[sub] = _ALERT_KEYS[sub](sub_value, f"{path}.{sub}")
            out["alerts"] = AlertsConfig(**parsed)
        elif key == "agents":
            out["agents"] = _overrides(_mapping(value, path), path)
        else:
            raise ConfigError(f"{path}: unknown key")
    return out


def _overrides(section: Mapping[str, Any], path: str) -> dict[str, AgentOverride]:
    result: dict[str, AgentOverride] = {}
    for name, body in section.items():
        where = f"{path}.{_part(name)}"
        values = _mapping(body, where)
        parsed: dict[str, float] = {}
        for key, value in values.items():
            if key not in ("heal_after", "recover_after"):
                raise ConfigError(
                    f"{where}.{_part(key)}: unknown key (known: heal_after, recover_after)"
                )
            parsed[key] = _duration(value, f"{where}.{key}")
        result[str(name)] = AgentOverride(**parsed)
    return result


def _set(values: dict[str, Any], target: str, value: Any) -> None:
    if target.startswith("alerts."):
        alerts = values.get("alerts", AlertsConfig())
        values["alerts"] = replace(alerts, **{target.split(".", 1)[1]: value})
    else:
        values[target] = value


def load_config(
    path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    cli: Mapping[str, Any] | None = None,
) -> Config:
    """Build the Config. `cli` maps Config field names to already-typed flag values."""
    env = os.environ if env is None else env
    if path is None and env.get("HEALER_CONFIG"):
        path = Path(env["HEALER_CONFIG"])
    if path is None and DEFAULT_CONFIG_PATH.is_file():
        path = DEFAULT_CONFIG_PATH
    values: dict[str, Any] = {}
    if path is not None:
        doc = _read_yaml(path)
        values.update(_seed_values(doc))
        values.update(_healer_values(doc))
        values["source"] = path
    disabled = values.pop("_disabled_actions", set())
    for var, target in ENV_VARS.items():
        if var in env and env[var] != "":
            _set(values, target, _FIELD_PARSERS[target](env[var], var))
    for target, value in (cli or {}).items():
        if value is not None:
            parser = _FIELD_PARSERS.get(target)
            flag = f"--{target.replace('_', '-')}"
            _set(values, target, parser(value, flag) if parser else value)
    known = {f.name for f in fields(Config)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    config = Config(**values)
    if disabled:
        config = replace(config, ladder=tuple(a for a in config.ladder if a not in disabled))
    return config


def require_tick_fits(config: Config) -> Config:
    """What only `watch` needs: a tick no longer than the shortest threshold, or detection
    could not land within one tick. `check` has no tick and is not refused over it."""
    if config.tick > min(config.heal_after, config.recover_after):
        raise ConfigError(
            f"healer.tick: {config.tick:g}s is longer than the shortest threshold "
            f"({min(config.heal_after, config.recover_after):g}s); detection could not "
            "land within one tick"
        )
    return config
