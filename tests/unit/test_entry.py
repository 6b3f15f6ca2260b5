"""The `healer` executable's dispatch: which command lines take beat's fast path."""

from __future__ import annotations

from pathlib import Path

import pytest

from healer import cli, entry
from healer.entry import hook_mode, split_beat_command


class TestSplit:
    @pytest.mark.parametrize(
        ("args", "expected"),
        [
            (["beat"], (None, None, [])),
            (["beat", "Agent-1", "--hook", "claude-code"],
             (None, None, ["Agent-1", "--hook", "claude-code"])),
            (["--workspaces", "/ws", "beat", "Agent-1"], (None, Path("/ws"), ["Agent-1"])),
            (["--workspaces=/ws", "--config", "/c.yml", "beat"],
             (Path("/c.yml"), Path("/ws"), [])),
            (["--log-format", "json", "--log-level=debug", "beat", "--help"],
             (None, None, ["--help"])),
            (["--workspaces", "/a", "--workspaces", "/b", "beat"], (None, Path("/b"), [])),
            # What follows `beat` is beat's own, even a group option's name.
            (["beat", "--workspaces", "/x"], (None, None, ["--workspaces", "/x"])),
        ],
    )
    def test_beat_command_lines(self, args: list[str],
                                expected: tuple[Path | None, Path | None, list[str]]) -> None:
        assert split_beat_command(args) == expected

    @pytest.mark.parametrize(
        "args",
        [[], ["watch"], ["status", "beat"], ["--workspaces"], ["--workspaces", "beat"],
         ["--help", "beat"], ["--version"], ["--unknown", "beat"], ["-h"], ["hooks", "beat"]],
    )
    def test_everything_else_goes_to_click(self, args: list[str]) -> None:
        assert split_beat_command(args) is None


class TestHookMode:
    @pytest.mark.parametrize(
        ("args", "hook"),
        [(["--hook", "claude-code"], True), (["--hook=codex"], True), (["--hook"], True),
         (["Agent-1"], False), (["--hooks"], False), (["--state", "done"], False)],
    )
    def test_decided_from_the_words_alone(self, args: list[str], hook: bool) -> None:
        assert hook_mode(args) is hook


class TestExitCodes:
    def test_the_same_codes_as_the_rest_of_the_command_line(self) -> None:
        assert (entry.EXIT_OK, entry.EXIT_USAGE) == (cli.EXIT_OK, cli.EXIT_USAGE)
