"""Configuration: the seed's orchestration.yml plus healer's own keys, parsed once into
frozen dataclasses. Precedence: CLI flags > environment > file > built-in defaults.
Past 300 lines: the dataclasses are the reference the README is generated from."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

# Short private names for the value parsers: the key tables below read as a grammar.
from healer.config_values import as_bool as _bool
from healer.config_values import as_choice as _choice
from healer.config_values import as_host_port as _host_port
from healer.config_values import as_mapping as _mapping
from healer.config_values import as_path as _path
from healer.config_values import as_positive_int as _positive_int
from healer.config_values import as_text as _text
from healer.config_values import as_url as _url
from healer.config_values import key_part as _part
from healer.config_values import parse_addr, parse_duration, read_yaml
from healer.core.model import HEAL_ACTIONS, InboxMode
from healer.errors import ConfigError

__all__ = [
    "ENV_VARS",
    "AgentOverride",
    "AlertsConfig",
    "Config",
    "load_config",
    "parse_addr",
    "parse_duration",
    "require_tick_fits",
]

DEFAULT_CONFIG_PATH = Path("config/orchestration.yml")
INBOX_MODES: tuple[str, ...] = tuple(InboxMode)
LOG_FORMATS = ("console", "json")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")



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
    inbox_mode: InboxMode = InboxMode.CONSUME
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


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _duration(value: object, key: str) -> float:
    return parse_duration(value, key)


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
                out["inbox_mode"] = InboxMode(_choice(INBOX_MODES)(sub_value, f"{path}.inbox"))
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
        doc = read_yaml(path)
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
