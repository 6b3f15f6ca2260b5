"""A new agent's clock starts when its folder appears (SPEC §1), end to end: a folder moved
or `cp -a`'d into the watched root with day-old files is not flagged before heal_after
from its appearance, and its silence is counted from there. The folder holds only mail
(an agent between sessions), so no event of its arrival counts as activity: only the
rule keeps it from being a day silent."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.daemon import running_daemon, watch_args

pytestmark = pytest.mark.integration

HEAL, TICK = 1.0, 0.05
DAY = 86_400.0


def day_old(folder: Path) -> None:
    """Every file and folder of the tree a day old, as an archive or a backup keeps them."""
    stamp = time.time() - DAY
    for path in sorted(folder.rglob("*"), reverse=True):
        os.utime(path, (stamp, stamp))
    os.utime(folder, (stamp, stamp))


def move_in(staged: Path, root: Path) -> None:
    os.rename(staged, root / staged.name)


def copy_in(staged: Path, root: Path) -> None:
    subprocess.run(["cp", "-a", str(staged), str(root / staged.name)], check=True)


@pytest.mark.parametrize("bring", [move_in, copy_in], ids=["mv", "cp -a"])
def test_a_folder_brought_in_with_day_old_files_gets_its_heal_after(
    tmp_path: Path, bring: Callable[[Path, Path], None]
) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    staged = tmp_path / "staging" / "Agent-7"
    (staged / "inbox" / "processed").mkdir(parents=True)
    (staged / "inbox" / "processed" / "done.md").write_text("# an old message\n")
    (staged / "inbox" / "new.md").write_text("# a message not read yet\n")
    day_old(staged)
    with running_daemon(root, tmp_path, watch_args(HEAL, 30, TICK)) as daemon:
        bring(staged, root)
        appeared = time.monotonic()
        daemon.wait_event("agent_added", timeout=5, agent="Agent-7")
        stall = daemon.wait_event("stall_detected", timeout=HEAL + 5, agent="Agent-7")
        flagged = time.monotonic()
    assert flagged - appeared >= HEAL - TICK
    assert stall["silent_for"] == pytest.approx(HEAL, abs=0.5)
