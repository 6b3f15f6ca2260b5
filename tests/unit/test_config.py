"""Config loading, precedence and the one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from healer.config import (
    Config,
    FlapConfig,
    SwarmConfig,
    load_config,
    parse_duration,
    require_tick_fits,
)
from healer.errors import ConfigError
from tests.conftest import FIXTURES


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "orchestration.yml"
    path.write_text(text)
    return path


class TestLoadConfig:
    def test_the_seeds_file_loads_with_its_thresholds(self) -> None:
        config = load_config(FIXTURES / "config" / "orchestration.yml", env={})
        assert (config.heal_after, config.recover_after) == (120.0, 300.0)
        assert config.check_interval == 30.0 and config.max_attempts == 3
        assert config.ladder == ("force_update", "clear_stuck_tasks", "reset_status")
        assert config.auto_recovery and config.agent_rescue

    def test_no_file_gives_the_built_in_defaults(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Loading resolves only the swarm's name, to the root's folder name."""
        monkeypatch.chdir(tmp_path)
        assert load_config(None, env={}) == Config(swarm=SwarmConfig(name="agent_workspaces"))

    def test_precedence_is_cli_then_env_then_file(self, tmp_path: Path) -> None:
        path = write(tmp_path, "overnight:\n  self_healing:\n    stall_threshold: 100\n"
                     "  monitoring:\n    stall_timeout: 400\nhealer:\n  tick: 2\n")
        env = {"HEALER_HEAL_AFTER": "90s", "HEALER_TICK": "0.5"}
        config = load_config(path, env=env, cli={"tick": 0.25})
        assert config.heal_after == 90.0  # env over file
        assert config.recover_after == 400.0  # file over default
        assert config.tick == 0.25  # cli over env

    def test_healer_config_env_names_the_file(self, tmp_path: Path) -> None:
        path = write(tmp_path, "healer:\n  agent_pattern: 'Bot-*'\n")
        assert load_config(None, env={"HEALER_CONFIG": str(path)}).agent_pattern == "Bot-*"

    def test_switches_remove_rungs_from_the_ladder(self, tmp_path: Path) -> None:
        path = write(tmp_path, "overnight:\n  self_healing:\n    auto_reset: false\n"
                     "    force_update: false\n")
        assert load_config(path, env={}).ladder == ("clear_stuck_tasks",)

    def test_healers_own_keys_are_parsed(self, tmp_path: Path) -> None:
        path = write(tmp_path, """
healer:
  activity: {inbox: any}
  max_busy_lease: 10m
  state_dir: /tmp/state
  alerts: {webhook_url: "http://127.0.0.1:9/hook", timeout: 2, max_tries: 5}
  agents:
    Agent-7: {heal_after: 1h}
""")
        config = load_config(path, env={})
        assert config.inbox_mode == "any" and config.max_busy_lease == 600.0
        assert config.state_path == Path("/tmp/state")
        assert config.alerts.max_tries == 5
        assert config.heal_after_for("Agent-7") == 3600.0
        assert config.heal_after_for("Agent-1") == 120.0
        assert config.recover_after_for("Agent-7") == 300.0

    def test_state_dir_defaults_under_the_workspace(self) -> None:
        assert Config(workspaces=Path("/w")).state_path == Path("/w/.healer")

    @pytest.mark.parametrize(
        ("text", "names"),
        [
            ("healer:\n  tick: -1\n", "healer.tick"),
            ("healer:\n  tick: 0\n", "healer.tick"),
            ("healer:\n  tick: soon\n", "healer.tick"),
            ("healer:\n  tick: true\n", "healer.tick"),
            ("healer:\n  bogus: 1\n", "healer.bogus"),
            ("healer:\n  activity: {inbox: maybe}\n", "healer.activity.inbox"),
            ("healer:\n  activity: {outbox: any}\n", "healer.activity.outbox"),
            ("healer:\n  alerts: {retries: 3}\n", "healer.alerts.retries"),
            ("healer:\n  alerts: {webhook_url: 'ftp://x'}\n", "healer.alerts.webhook_url"),
            ("healer:\n  agents: {Agent-1: {heal_after: -3}}\n",
             "healer.agents.Agent-1.heal_after"),
            ("healer:\n  agents: {Agent-1: {nap: 3}}\n", "healer.agents.Agent-1.nap"),
            ("healer:\n  ladder: [force_update, reboot]\n", "healer.ladder"),
            ("healer:\n  max_status_bytes: 0\n", "healer.max_status_bytes"),
            ("healer:\n  metrics_addr: localhost\n", "healer.metrics_addr"),
            ("healer: [1, 2]\n", "healer"),
            ("overnight:\n  self_healing:\n    stall_threshold: -5\n",
             "overnight.self_healing.stall_threshold"),
            ("overnight:\n  self_healing:\n    max_attempts: two\n",
             "overnight.self_healing.max_attempts"),
            ("overnight:\n  self_healing:\n    enabled: perhaps\n",
             "overnight.self_healing.enabled"),
            ("overnight:\n  monitoring:\n    stall_timeout: '5 minutes'\n",
             "overnight.monitoring.stall_timeout"),
            ("overnight:\n  recovery: yes\n", "overnight.recovery"),
            ("- just\n- a list\n", "top level"),
        ],
    )
    def test_bad_values_name_the_key(self, tmp_path: Path, text: str, names: str) -> None:
        with pytest.raises(ConfigError) as info:
            load_config(write(tmp_path, text), env={})
        message = str(info.value)
        assert names in message and "\n" not in message

    def test_invalid_yaml_names_the_line(self, tmp_path: Path) -> None:
        path = write(tmp_path, "healer:\n  tick: 1\n  bad: [unclosed\n")
        with pytest.raises(ConfigError, match=r"invalid YAML at line \d+"):
            load_config(path, env={})

    def test_a_missing_file_is_a_config_error(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="not found"):
            load_config(tmp_path / "nope.yml", env={})

    def test_an_unreadable_file_is_a_config_error(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="cannot read"):
            load_config(tmp_path, env={})  # a directory

    def test_bad_env_values_name_the_variable(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="HEALER_RECOVER_AFTER"):
            load_config(None, env={"HEALER_RECOVER_AFTER": "-1"})

    def test_a_webhook_url_is_never_repeated_in_an_error(self, tmp_path: Path) -> None:
        path = write(tmp_path, "healer:\n  alerts: {webhook_url: 'gopher://secret-token'}\n")
        with pytest.raises(ConfigError) as info:
            load_config(path, env={})
        assert "secret-token" not in str(info.value)

    def test_a_tick_longer_than_a_threshold_is_refused_for_watch(self, tmp_path: Path) -> None:
        config = load_config(None, env={}, cli={"heal_after": 0.5, "tick": 1.0})
        with pytest.raises(ConfigError, match=r"healer\.tick"):
            require_tick_fits(config)

    def test_a_tick_longer_than_a_threshold_still_loads_for_check(self, tmp_path: Path) -> None:
        """`check` has no tick: a short threshold with the default tick must not stop it."""
        path = write(tmp_path, "overnight:\n  self_healing: {stall_threshold: 0.05}\n")
        assert load_config(path, env={}).heal_after == 0.05

    def test_on_is_a_key_and_yes_no_on_off_still_switch(self, tmp_path: Path) -> None:
        """YAML 1.1 reads `on:` as True; healer's YAML keeps it a key (SPEC §13's `on:`),
        while on/off/yes/no keep working as switch values."""
        path = write(tmp_path, "overnight:\n  self_healing: {enabled: off, auto_reset: no}\n"
                     "  recovery: {auto_recovery: On}\nhealer:\n  poll: yes\n  on: {}\n")
        config = load_config(path, env={})
        assert not config.healing_enabled and "reset_status" not in config.ladder
        assert config.auto_recovery and config.poll and config.on == {}

    def test_unknown_seed_sections_are_ignored(self, tmp_path: Path) -> None:
        path = write(tmp_path, "orchestration: {x: 1}\novernight:\n  scheduling: {a: b}\n")
        assert load_config(path, env={}).heal_after == 120.0


class TestPartTwoSettings:
    def test_defaults(self, tmp_path: Path) -> None:
        config = load_config(write(tmp_path, ""), env={})
        assert config.commands == {} and config.on == {}
        assert config.commands_parallel == 4 and config.waiting_alert_after == 300.0
        assert config.swarm == SwarmConfig(name="agent_workspaces", outage_fraction=0.5,
                                           min_agents=3)
        assert config.flap == FlapConfig(incidents=3, window=3600.0)

    def test_every_key_is_parsed(self, tmp_path: Path) -> None:
        path = write(tmp_path, """
healer:
  commands_parallel: 2
  waiting_alert_after: 90s
  swarm: {name: fleet-a, outage_fraction: 0.25, min_agents: 5}
  flap: {incidents: 4, window: 30m}
""")
        config = load_config(path, env={})
        assert config.commands_parallel == 2 and config.waiting_alert_after == 90.0
        assert config.swarm == SwarmConfig("fleet-a", 0.25, 5)
        assert config.flap == FlapConfig(4, 1800.0)

    @pytest.mark.parametrize(("root", "name"), [
        ("/srv/agents", "agents"), ("/srv/agents/", "agents"), ("/srv/agents/.", "agents"),
        ("/srv/agents/sub/..", "agents"), ("/", "root"),
    ])
    def test_the_swarm_is_named_after_the_root_folder(self, root: str, name: str) -> None:
        assert load_config(None, env={"HEALER_WORKSPACES": root}).swarm.name == name

    def test_the_swarm_name_follows_the_root_given_on_the_command_line(
        self, tmp_path: Path
    ) -> None:
        """Resolved after precedence: the root that wins names the swarm."""
        path = write(tmp_path, "healer:\n  workspaces: /srv/from-file\n")
        config = load_config(path, env={}, cli={"workspaces": Path("/srv/from-cli")})
        assert config.swarm.name == "from-cli"

    def test_a_relative_root_is_named_from_the_working_folder(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        (tmp_path / "swarm-7").mkdir()
        monkeypatch.chdir(tmp_path / "swarm-7")
        assert load_config(None, env={"HEALER_WORKSPACES": "."}).swarm.name == "swarm-7"

    def test_a_named_swarm_keeps_its_name(self, tmp_path: Path) -> None:
        path = write(tmp_path, "healer:\n  swarm: {name: prod}\n")
        assert load_config(path, env={"HEALER_WORKSPACES": "/srv/x"}).swarm.name == "prod"

    @pytest.mark.parametrize(("text", "names"), [
        ("healer:\n  commands_parallel: 0\n", "healer.commands_parallel"),
        ("healer:\n  commands_parallel: 1.5\n", "healer.commands_parallel"),
        ("healer:\n  waiting_alert_after: -1\n", "healer.waiting_alert_after"),
        ("healer:\n  waiting_alert_after: later\n", "healer.waiting_alert_after"),
        ("healer:\n  swarm: 3\n", "healer.swarm"),
        ("healer:\n  swarm: {name: ''}\n", "healer.swarm.name"),
        ("healer:\n  swarm: {outage_fraction: 0}\n", "healer.swarm.outage_fraction"),
        ("healer:\n  swarm: {outage_fraction: 1.5}\n", "healer.swarm.outage_fraction"),
        ("healer:\n  swarm: {outage_fraction: .nan}\n", "healer.swarm.outage_fraction"),
        ("healer:\n  swarm: {outage_fraction: half}\n", "healer.swarm.outage_fraction"),
        ("healer:\n  swarm: {outage_fraction: true}\n", "healer.swarm.outage_fraction"),
        ("healer:\n  swarm: {min_agents: 0}\n", "healer.swarm.min_agents"),
        ("healer:\n  swarm: {size: 3}\n", "healer.swarm.size"),
        ("healer:\n  flap: {incidents: 1}\n", "healer.flap.incidents"),
        ("healer:\n  flap: {window: 0}\n", "healer.flap.window"),
        ("healer:\n  flap: {period: 1h}\n", "healer.flap.period"),
    ])
    def test_bad_values_name_the_key(self, tmp_path: Path, text: str, names: str) -> None:
        with pytest.raises(ConfigError) as info:
            load_config(write(tmp_path, text), env={})
        message = str(info.value)
        assert message.startswith(names + ": ") and "\n" not in message, message

    def test_a_whole_fraction_is_allowed(self, tmp_path: Path) -> None:
        path = write(tmp_path, "healer:\n  swarm: {outage_fraction: 1}\n")
        assert load_config(path, env={}).swarm.outage_fraction == 1.0


class TestParseDuration:
    @pytest.mark.parametrize(
        ("value", "seconds"),
        [(90, 90.0), (1.5, 1.5), ("90s", 90.0), ("5m", 300.0), ("1h", 3600.0),
         ("0.5", 0.5), ("250ms", 0.25), (" 2m ", 120.0), ("1d", 86400.0)],
    )
    def test_accepted_forms(self, value: object, seconds: float) -> None:
        assert parse_duration(value, "k") == seconds

    @pytest.mark.parametrize("value", [-1, 0, "0s", "-5m", "5 minutes", "", None, [1], float("inf"),
                                       float("nan"), True])
    def test_rejected_forms(self, value: object) -> None:
        with pytest.raises(ConfigError, match=r"^k: "):
            parse_duration(value, "k")
