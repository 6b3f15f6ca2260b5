"""Property tests of the config loader: any YAML document gives a valid Config or a one-line
ConfigError naming the key path (exit 2 from the CLI), never another exception."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from healer.cli import EXIT_USAGE, main
from healer.config import Config, load_config
from healer.errors import ConfigError

HEALER_KEYS = [
    "workspaces", "agent_pattern", "tick", "ladder", "max_busy_lease", "max_status_bytes",
    "state_dir", "retention", "poll", "dry_run", "metrics_addr", "log_format", "log_level",
    "activity", "alerts", "agents", "commands", "commands_parallel", "on",
    "waiting_alert_after", "swarm", "flap",
]
SEED_SECTIONS = {
    "self_healing": ["enabled", "check_interval", "stall_threshold", "max_attempts",
                     "auto_reset", "force_update", "clear_stuck_tasks"],
    "monitoring": ["check_interval", "stall_timeout"],
    "recovery": ["auto_recovery", "agent_rescue"],
}
SUB_KEYS = ["inbox", "webhook_url", "timeout", "max_tries", "backoff", "heal_after",
            "recover_after", "Agent-1", "run", "nudge", "stalled", "escalated", "name",
            "outage_fraction", "min_agents", "incidents", "window"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.integers(min_value=10**300, max_value=10**320),  # past a float's range
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["90s", "5m", "1.5h", "0", "-1", "0.001", "1e400", "²", "١٢", "consume",
                     "json", "debug", "force_update", "127.0.0.1:9464", "http://x", "yes",
                     "Agent-*", "a\nb", "9" * 80, "{agent}", "{nope}", "a{b", "nudge",
                     "on", "off"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(SUB_KEYS), st.text(max_size=6)), inner,
                        max_size=4),
    ),
    max_leaves=12,
)
keys: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(HEALER_KEYS), st.text(max_size=8), st.integers(-3, 3), st.none()
)
healer_sections = st.one_of(values, st.dictionaries(keys, values, max_size=6))
seed_sections = st.fixed_dictionaries(
    {},
    optional={
        name: st.one_of(values, st.dictionaries(st.sampled_from(names) | keys, values,
                                                max_size=5))
        for name, names in SEED_SECTIONS.items()
    },
)
documents = st.one_of(
    values,
    st.fixed_dictionaries(
        {}, optional={"healer": healer_sections, "overnight": seed_sections | values,
                      "swarm": values},
    ),
)


@pytest.fixture(scope="module")
def config_file() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder) / "orchestration.yml"


def load_text(path: Path, text: str | bytes) -> Config:
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    return load_config(path, env={})


def assert_names_a_key(message: str, path: Path) -> None:
    assert "\n" not in message and "\r" not in message, message
    where = message.split(": ", 1)[0]
    assert where in ("healer", "overnight") or where.startswith(
        ("healer.", "overnight.", str(path))
    ), message


def assert_valid(config: Config) -> None:
    durations = (config.heal_after, config.recover_after, config.tick, config.check_interval,
                 config.max_busy_lease, config.retention, config.alerts.timeout)
    assert all(math.isfinite(d) and d > 0 for d in durations)
    assert config.tick <= min(config.heal_after, config.recover_after)
    assert config.max_attempts >= 1 and config.max_status_bytes >= 1
    assert config.inbox_mode in ("consume", "any", "none")
    assert config.commands_parallel >= 1 and config.waiting_alert_after > 0
    assert 0 < config.swarm.outage_fraction <= 1 and config.swarm.name
    assert config.flap.incidents >= 2 and config.flap.window > 0
    for name, spec in config.commands.items():
        assert spec.name == name and spec.run and all(isinstance(a, str) for a in spec.run)
    rungs = {"force_update", "clear_stuck_tasks", "reset_status", *config.commands}
    assert set(config.ladder) <= rungs
    assert all(set(names) <= set(config.commands) for names in config.on.values())


class TestAnyDocument:
    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(doc=documents)
    @example(doc={"healer": {"tick": 10**400}})
    @example(doc={"healer": {"max_status_bytes": "²"}})
    @example(doc={"healer": {"a\nb": 1}})
    @example(doc={"healer": {"agents": {"x\ny": {"foo": 1}}}})
    @example(doc={"overnight": {"self_healing": {"stall_threshold": -(10**400)}}})
    @example(doc={"healer": {"metrics_addr": "h:" + "9" * 5000}})
    @example(doc={"healer": {"commands": {"nudge": {"run": ["tmux", "{agent}"]}},
                             "ladder": ["nudge"], "on": {"stalled": ["nudge"]}}})
    @example(doc={"healer": {"commands": {"a\nb": {"run": ["x"]}}}})
    @example(doc={"healer": {"commands": {"nudge": {"run": ["x", "{a\nb}"]}}}})
    @example(doc={"healer": {"on": {"a\nb": []}}})
    def test_is_a_config_or_one_line_error_naming_the_key(
        self, config_file: Path, doc: object
    ) -> None:
        """Nested random keys and values under healer: and overnight: load or fail cleanly."""
        text = yaml.safe_dump(doc, allow_unicode=True)
        try:
            config = load_text(config_file, text)
        except ConfigError as exc:
            assert_names_a_key(str(exc), config_file)
        else:
            assert_valid(config)

    @settings(max_examples=100, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(text=st.text(max_size=80) | st.binary(max_size=40))
    @example(text="[" * 5000)
    @example(text="healer: {tick: 1" + "0" * 5000 + "}")
    @example(text=b"healer: \xff\n")
    @example(text="healer: {tick: !!python/object/apply:os.system [x]}")
    def test_any_text_is_a_config_or_one_line_error(
        self, config_file: Path, text: str | bytes
    ) -> None:
        """Text that is not even YAML (or is YAML abuse) fails with one line naming the file."""
        try:
            config = load_text(config_file, text)
        except ConfigError as exc:
            assert_names_a_key(str(exc), config_file)
        else:
            assert_valid(config)


class TestCliExit:
    @pytest.mark.parametrize("text", [
        "healer: {tick: 1" + "0" * 400 + "}",
        "healer: {tick: 1" + "0" * 5000 + "}",
        "[" * 5000,
        'healer: {"bad\\nkey": 1}',
        "healer: {max_status_bytes: '²'}",
    ])
    def test_bad_config_exits_2_with_one_line(
        self, tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The CLI turns every bad document into exit 2 and one stderr line, no traceback."""
        path = tmp_path / "c.yml"
        path.write_text(text)
        (tmp_path / "ws").mkdir()
        with pytest.raises(SystemExit) as exit_info:
            main(["--config", str(path), "--workspaces", str(tmp_path / "ws"), "check"])
        err = capsys.readouterr().err
        assert exit_info.value.code == EXIT_USAGE, err
        assert err.startswith("healer: ") and err.count("\n") == 1, err
        assert "Traceback" not in err
