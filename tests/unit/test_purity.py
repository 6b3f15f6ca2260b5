"""The core stays pure: no I/O, clock or framework imports (STYLE: pure core, I/O at the edges)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "healer" / "core"
FORBIDDEN = {"os", "time", "watchdog", "click", "yaml", "sqlite3", "socket", "subprocess",
             "threading", "pathlib", "shutil", "urllib", "io"}
CLOCK_READS = ("datetime.now", "utcnow", "date.today", ".now()")


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


class TestCorePurity:
    @pytest.mark.parametrize("module", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
    def test_core_modules_import_nothing_that_touches_the_world(self, module: Path) -> None:
        assert imported_roots(module) & FORBIDDEN == set()

    @pytest.mark.parametrize("module", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
    def test_core_modules_never_read_the_clock(self, module: Path) -> None:
        # datetime is allowed for formatting and parsing; reading "now" is the caller's job.
        text = module.read_text()
        assert [r for r in CLOCK_READS if r in text] == []

    def test_the_check_sees_the_core_modules(self) -> None:
        names = {p.name for p in CORE.glob("*.py")}
        assert {"activity.py", "wheel.py", "classify.py", "policy.py", "monitor.py"} <= names
