"""Configuration: the seed's orchestration.yml plus healer's own keys, parsed once into
frozen dataclasses. Precedence: CLI flags > environment > file > built-in defaults.
Past 300 lines: the dataclasses double as the configuration reference, one field each."""

from __future__ import annotations

import fnmatch
import functools
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from healer.config_commands import check_on, check_rungs, parse_commands, parse_on
from healer.config_seed import DISABLED_ACTIONS, seed_values
from healer.config_values import (
    at_least,
    boolean,
    choice,
    duration,
    fraction,
    host_port,
    mapping,
    one_line,
    parse_addr,
    parse_duration,
    part,
    path,
    positive_int,
    string_list,
    text,
    url,
    urls,
)
from healer.core.commands import CommandSpec
from healer.core.model import HEAL_ACTIONS, InboxMode
from healer.errors import ConfigError

__all__ = [
    "ENV_VARS",
    "AgentOverride",
    "AlertsConfig",
    "CommandSpec",
    "Config",
    "FlapConfig",
    "SwarmConfig",
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
class SwarmConfig:
    """The swarm judged as a whole (SPEC §14). An empty name is resolved at load to the
    workspace root's folder name."""

    name: str = ""
    outage_fraction: float = 0.5
    min_agents: int = 3


@dataclass(frozen=True, slots=True)
class FlapConfig:
    """An agent with `incidents` incidents within `window` seconds is flapping (SPEC §14)."""

    incidents: int = 3
    window: float = 3600.0


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
    commands: Mapping[str, CommandSpec] = field(default_factory=dict)
    commands_parallel: int = 4
    on: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    waiting_alert_after: float = 300.0
    swarm: SwarmConfig = field(default_factory=SwarmConfig)
    flap: FlapConfig = field(default_factory=FlapConfig)
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


def _ladder(value: object, key: str) -> tuple[str, ...]:
    # Which names are rungs is only known once `healer.commands` is read: see check_rungs.
    return string_list(value, key, "action name")


# healer's own keys: name -> (parser, Config field or dotted sub-field).
_HEALER_KEYS: dict[str, tuple[Callable[[object, str], Any], str]] = {
    "workspaces": (path, "workspaces"),
    "agent_pattern": (text, "agent_pattern"),
    "tick": (duration, "tick"),
    "ladder": (_ladder, "ladder"),
    "max_busy_lease": (duration, "max_busy_lease"),
    "max_status_bytes": (positive_int, "max_status_bytes"),
    "state_dir": (path, "state_dir"),
    "retention": (duration, "retention"),
    "commands_parallel": (positive_int, "commands_parallel"),
    "waiting_alert_after": (duration, "waiting_alert_after"),
    "poll": (boolean, "poll"),
    "dry_run": (boolean, "dry_run"),
    "metrics_addr": (host_port, "metrics_addr"),
    "log_format": (choice(LOG_FORMATS), "log_format"),
    "log_level": (choice(LOG_LEVELS), "log_level"),
}
_ALERT_KEYS: dict[str, Callable[[object, str], Any]] = {
    "webhook_url": url,
    "alertmanager_url": urls,
    "timeout": duration,
    "max_tries": positive_int,
    "backoff": duration,
}
_SWARM_KEYS: dict[str, Callable[[object, str], Any]] = {
    "name": text,
    "outage_fraction": fraction,
    "min_agents": positive_int,
}
_FLAP_KEYS: dict[str, Callable[[object, str], Any]] = {
    "incidents": at_least(2),
    "window": duration,
}
# Sub-sections parsed key by key into a dataclass: section -> (Config field, class, keys).
_SECTIONS: dict[str, tuple[str, type[Any], dict[str, Callable[[object, str], Any]]]] = {
    "alerts": ("alerts", AlertsConfig, _ALERT_KEYS),
    "swarm": ("swarm", SwarmConfig, _SWARM_KEYS),
    "flap": ("flap", FlapConfig, _FLAP_KEYS),
}
_FIELD_PARSERS: dict[str, Callable[[object, str], Any]] = {
    "heal_after": duration,
    "recover_after": duration,
    "alerts.webhook_url": url,
    **{spec[1]: spec[0] for spec in _HEALER_KEYS.values()},
}


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@functools.cache
def _loader() -> Any:
    """The YAML loader, made at the first config file read, not at import: `healer beat`,
    run by a hook at every tool call, mostly has no file to read, and importing yaml was
    a fifth of its time. libyaml's parser where PyYAML was built with it (the same
    SafeLoader constructors and resolvers, in Python), else the pure-Python one.

    Only true/false are booleans (as YAML 1.2 has it): YAML 1.1 also reads on/off/yes/no
    so, which would turn SPEC §13's `on:` key into True."""
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader: Any = type("_Loader", (base,), {})
    loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    loader.add_implicit_resolver(
        "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
        list("tTfF"),
    )
    return loader


def _read_yaml(file: Path) -> Mapping[str, Any]:
    try:
        content = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{file}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read config file: {exc}") from None
    loader = _loader()
    import yaml  # imported by _loader() already: a dictionary lookup

    try:
        document = yaml.load(content, Loader=loader)  # a SafeLoader: no python/ tags
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{file}: invalid YAML{where}: {one_line(str(exc.problem))}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: invalid YAML: {one_line(str(exc))}") from None
    except RecursionError:
        raise ConfigError(f"{file}: invalid YAML: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer past Python's 4300-digit conversion limit
        raise ConfigError(f"{file}: invalid YAML: {one_line(str(exc))}") from None
    return mapping(document, f"{file}: top level")


def _healer_values(doc: Mapping[str, Any]) -> dict[str, Any]:
    section = mapping(doc.get("healer"), "healer")
    out: dict[str, Any] = {}
    for key, value in section.items():
        where = f"healer.{part(key)}"
        if key in _HEALER_KEYS:
            parse, target = _HEALER_KEYS[key]
            out[target] = parse(value, where)
        elif key in _SECTIONS:
            target, cls, keys = _SECTIONS[key]
            out[target] = cls(**_subkeys(mapping(value, where), where, keys))
        elif key == "activity":
            activity = _subkeys(mapping(value, where), where, {"inbox": choice(INBOX_MODES)})
            if "inbox" in activity:
                out["inbox_mode"] = InboxMode(activity["inbox"])
        elif key == "agents":
            out["agents"] = _overrides(mapping(value, where), where)
        elif key == "commands":
            out["commands"] = parse_commands(value, where)
        elif key == "on":
            out["on"] = parse_on(value, where)
        else:
            raise ConfigError(f"{where}: unknown key")
    # Rungs and `on:` lists name commands, which may come later in the file.
    commands = out.get("commands", {})
    if "ladder" in out:
        check_rungs(out["ladder"], commands, "healer.ladder")
    if "on" in out:
        check_on(out["on"], commands, "healer.on")
    return out


def _subkeys(
    section: Mapping[str, Any], where: str, keys: Mapping[str, Callable[[object, str], Any]]
) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    for sub, value in section.items():
        if sub not in keys:
            raise ConfigError(f"{where}.{part(sub)}: unknown key (known: {', '.join(keys)})")
        parsed[sub] = keys[sub](value, f"{where}.{sub}")
    return parsed


def _overrides(section: Mapping[str, Any], where: str) -> dict[str, AgentOverride]:
    keys = {"heal_after": duration, "recover_after": duration}
    return {
        str(name): AgentOverride(**_subkeys(mapping(body, f"{where}.{part(name)}"),
                                            f"{where}.{part(name)}", keys))
        for name, body in section.items()
    }


def _set(values: dict[str, Any], target: str, value: Any) -> None:
    if target.startswith("alerts."):
        alerts = values.get("alerts", AlertsConfig())
        values["alerts"] = replace(alerts, **{target.split(".", 1)[1]: value})
    else:
        values[target] = value


def _root_name(root: Path) -> str:
    """The swarm's default name: the root's folder name (`/srv/ws/.` is `ws`)."""
    return Path(os.path.abspath(root)).name or "root"


def load_config(
    file: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    cli: Mapping[str, Any] | None = None,
) -> Config:
    """Build the Config. `cli` maps Config field names to already-typed flag values."""
    env = os.environ if env is None else env
    if file is None and env.get("HEALER_CONFIG"):
        file = Path(env["HEALER_CONFIG"])
    if file is None and DEFAULT_CONFIG_PATH.is_file():
        file = DEFAULT_CONFIG_PATH
    values: dict[str, Any] = {}
    if file is not None:
        doc = _read_yaml(file)
        values.update(seed_values(doc))
        values.update(_healer_values(doc))
        values["source"] = file
    disabled = values.pop(DISABLED_ACTIONS, set())
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
    if not config.swarm.name:
        config = replace(config, swarm=replace(config.swarm, name=_root_name(config.workspaces)))
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
