"""The config of operator commands: `healer.commands`, command rungs, `healer.on`."""

from __future__ import annotations

from pathlib import Path

import pytest

from healer.config import CommandSpec, Config, load_config
from healer.errors import ConfigError

README = Path(__file__).resolve().parents[2] / "README.md"

TMUX = """
healer:
  commands:
    nudge:   {run: ["tmux", "send-keys", "-t", "{agent}", "continue", "Enter"], timeout: 10s}
    restart: {run: ["systemctl", "--user", "restart", "agent@{agent}.service"], timeout: 60s}
    notify_me: {run: ["notify-send", "{agent} is {transition} after {silent_for}s"]}
  ladder: [force_update, nudge, clear_stuck_tasks, restart, reset_status]
  on:
    stalled:   [notify_me]
    escalated: [notify_me, restart]
    recovered: []
    waiting:
"""


def load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "orchestration.yml"
    path.write_text(text)
    return load_config(path, env={})


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    message = str(info.value)
    assert "\n" not in message, message
    return message


class TestCommands:
    def test_the_specs_example_loads(self, tmp_path: Path) -> None:
        """SPEC §13's example: commands, a mixed ladder, and `on:` lists."""
        config = load(tmp_path, TMUX)
        assert config.commands["nudge"] == CommandSpec(
            "nudge", ("tmux", "send-keys", "-t", "{agent}", "continue", "Enter"), 10.0
        )
        assert config.commands["restart"].timeout == 60.0
        assert config.commands["notify_me"].timeout == 30.0  # the default
        assert config.ladder == (
            "force_update", "nudge", "clear_stuck_tasks", "restart", "reset_status"
        )
        assert config.on == {"stalled": ("notify_me",), "escalated": ("notify_me", "restart"),
                              "recovered": (), "waiting": ()}

    def test_order_in_the_file_does_not_matter(self, tmp_path: Path) -> None:
        """A ladder and an `on:` list may come before the commands they name."""
        text = ("healer:\n  ladder: [nudge]\n  on: {stalled: [nudge]}\n"
                "  commands: {nudge: {run: [true]}}\n")
        with pytest.raises(ConfigError, match=r"healer\.commands\.nudge\.run\[0\]"):
            load(tmp_path, text)  # `true` unquoted is a YAML boolean, not a program name
        config = load(tmp_path, text.replace("[true]", "['true']"))
        assert config.ladder == ("nudge",) and config.on == {"stalled": ("nudge",)}

    def test_the_seeds_switches_drop_built_ins_and_keep_commands(self, tmp_path: Path) -> None:
        text = ("overnight:\n  self_healing: {force_update: false, auto_reset: false}\n"
                "healer:\n  commands: {nudge: {run: [tmux]}}\n"
                "  ladder: [force_update, nudge, reset_status, clear_stuck_tasks]\n")
        assert load(tmp_path, text).ladder == ("nudge", "clear_stuck_tasks")

    def test_literal_braces_are_doubled(self, tmp_path: Path) -> None:
        text = "healer:\n  commands: {post: {run: [curl, '-d', '{{\"agent\": \"{agent}\"}}']}}\n"
        config = load(tmp_path, text)
        assert config.commands["post"].run[2] == '{{"agent": "{agent}"}}'

    @pytest.mark.parametrize(("body", "key", "words"), [
        ("{timeout: 5}", "healer.commands.nudge.run", "missing"),
        ("{run: 'tmux send-keys -t x Enter'}", "healer.commands.nudge.run", "never a shell"),
        ("{run: 7}", "healer.commands.nudge.run", "list"),
        ("{run: []}", "healer.commands.nudge.run", "program"),
        ("{run: [tmux, 3]}", "healer.commands.nudge.run[1]", "string"),
        ("{run: [tmux, [a]]}", "healer.commands.nudge.run[1]", "string"),
        ("{run: [tmux, null]}", "healer.commands.nudge.run[1]", "string"),
        ("{run: ['', x]}", "healer.commands.nudge.run[0]", "program"),
        ("{run: [tmux, '{agnet}']}", "healer.commands.nudge.run[1]", "unknown placeholder"),
        ("{run: [tmux, '{agent.__class__}']}", "healer.commands.nudge.run[1]",
         "unknown placeholder"),
        ("{run: [tmux, '{0}']}", "healer.commands.nudge.run[1]", "unknown placeholder"),
        ("{run: [tmux, '{}']}", "healer.commands.nudge.run[1]", "unknown placeholder"),
        ("{run: [tmux, 'a{b']}", "healer.commands.nudge.run[1]", "{{"),
        ("{run: [tmux, 'a}b']}", "healer.commands.nudge.run[1]", "}}"),
        ("{run: [tmux, \"a\\0b\"]}", "healer.commands.nudge.run[1]", "NUL"),
        ("{run: [tmux], timeout: -1}", "healer.commands.nudge.timeout", "positive"),
        ("{run: [tmux], timeout: soon}", "healer.commands.nudge.timeout", "duration"),
        ("{run: [tmux], shell: true}", "healer.commands.nudge.shell", "unknown key"),
        ("[tmux, send-keys]", "healer.commands.nudge", "mapping"),
    ])
    def test_a_bad_command_names_its_key(
        self, tmp_path: Path, body: str, key: str, words: str
    ) -> None:
        message = error(tmp_path, f"healer:\n  commands:\n    nudge: {body}\n")
        assert message.startswith(key + ": ") and words in message, message

    @pytest.mark.parametrize("name", [
        "force_update", "clear_stuck_tasks", "reset_status", "rescue_message",
        "reassign_tasks", "alert",
    ])
    def test_a_command_must_not_shadow_a_built_in(self, tmp_path: Path, name: str) -> None:
        message = error(tmp_path, f"healer:\n  commands:\n    {name}: {{run: [x]}}\n")
        assert message.startswith(f"healer.commands.{name}: shadows the built-in"), message

    @pytest.mark.parametrize("name", ["'has space'", "'a;b'", "'-x'", "7", "''", "'é'"])
    def test_a_command_name_is_plain(self, tmp_path: Path, name: str) -> None:
        message = error(tmp_path, f"healer:\n  commands:\n    {name}: {{run: [x]}}\n")
        assert message.startswith("healer.commands."), message
        assert "command name" in message

    def test_commands_must_be_a_mapping(self, tmp_path: Path) -> None:
        assert error(tmp_path, "healer:\n  commands: [nudge]\n").startswith("healer.commands: ")


class TestRungs:
    def test_an_unknown_rung_is_named_by_its_index(self, tmp_path: Path) -> None:
        text = ("healer:\n  commands: {nudge: {run: [tmux]}}\n"
                "  ladder: [force_update, nudge, reboot]\n")
        message = error(tmp_path, text)
        assert message.startswith("healer.ladder[2]: unknown rung 'reboot'"), message
        assert "nudge" in message and "force_update" in message

    def test_a_recovery_action_is_not_a_rung(self, tmp_path: Path) -> None:
        assert error(tmp_path, "healer:\n  ladder: [alert]\n").startswith("healer.ladder[0]: ")

    @pytest.mark.parametrize(("ladder", "key"), [
        ("force_update", "healer.ladder"), ("{a: 1}", "healer.ladder"),
        ("[force_update, 3]", "healer.ladder[1]"), ("[null]", "healer.ladder[0]"),
    ])
    def test_a_ladder_that_is_not_a_list_of_names(
        self, tmp_path: Path, ladder: str, key: str
    ) -> None:
        assert error(tmp_path, f"healer:\n  ladder: {ladder}\n").startswith(key + ": ")


class TestOn:
    def test_an_unknown_transition_names_its_key(self, tmp_path: Path) -> None:
        text = "healer:\n  commands: {page: {run: [pager]}}\n  on: {exploded: [page]}\n"
        message = error(tmp_path, text)
        assert message.startswith("healer.on.exploded: unknown transition"), message
        assert "swarm_recovered" in message

    def test_an_unknown_command_is_named_by_its_index(self, tmp_path: Path) -> None:
        text = ("healer:\n  commands: {page: {run: [pager]}}\n"
                "  on: {escalated: [page, page_oncall]}\n")
        message = error(tmp_path, text)
        assert message.startswith("healer.on.escalated[1]: unknown command 'page_oncall'")

    def test_a_built_in_is_not_an_on_command(self, tmp_path: Path) -> None:
        message = error(tmp_path, "healer:\n  on: {stalled: [force_update]}\n")
        assert message.startswith("healer.on.stalled[0]: unknown command"), message

    @pytest.mark.parametrize(("on", "key"), [
        ("[page]", "healer.on"), ("{stalled: page}", "healer.on.stalled"),
        ("{stalled: [7]}", "healer.on.stalled[0]"),
    ])
    def test_shapes(self, tmp_path: Path, on: str, key: str) -> None:
        text = f"healer:\n  commands: {{page: {{run: [pager]}}}}\n  on: {on}\n"
        assert error(tmp_path, text).startswith(key + ": ")

    def test_every_settled_transition_is_accepted(self, tmp_path: Path) -> None:
        names = ["stalled", "escalated", "recovered", "waiting", "flapping", "swarm_outage",
                 "swarm_recovered"]
        text = "healer:\n  commands: {page: {run: [pager]}}\n  on:\n" + "".join(
            f"    {n}: [page]\n" for n in names)
        assert set(load(tmp_path, text).on) == set(names)



class TestReadmeExamples:
    """The README's example configs are real: each one loads, and its error line is healer's."""

    SECTION = README.read_text(encoding="utf-8").split(
        "## Healing the agent's process: named commands", 1)[1].split("\n## ", 1)[0]

    def blocks(self) -> list[str]:
        found, current = [], []
        for line in [*self.SECTION.splitlines(), "end"]:
            if line.startswith("    ") or (current and not line.strip()):
                current.append(line[4:])
                continue
            if current and current[0].startswith(("healer:", "overnight:")):
                found.append("\n".join(current) + "\n")
            current = []
        return found

    def test_every_example_loads(self, tmp_path: Path) -> None:
        blocks = self.blocks()
        assert len(blocks) == 3
        tmux, systemd, seed = (load(tmp_path, block) for block in blocks)
        assert tmux.ladder == ("nudge", "nudge", "restart")
        assert tmux.commands["restart"].run[-2:] == ("claude", "--continue")
        assert systemd.commands["restart"].run == (
            "systemctl", "--user", "restart", "agent@{agent}.service")
        assert seed.ladder == ("force_update", "clear_stuck_tasks", "reset_status")
        assert seed.commands == {}

    def test_the_error_line_is_the_one_healer_prints(self, tmp_path: Path) -> None:
        text = ("healer:\n  commands: {nudge: {run: [tmux]}, restart: {run: [tmux]}}\n"
                "  ladder: [force_update, nudge, reboot]\n")
        assert f"`healer: {error(tmp_path, text)}`" in " ".join(self.SECTION.split())
