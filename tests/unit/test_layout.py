"""The package's shape: modules stay small, and a long one says why (STYLE)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "healer"
MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("module", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
class TestModuleSize:
    def test_no_module_is_past_four_hundred_lines(self, module: Path) -> None:
        assert len(module.read_text().splitlines()) <= 400

    def test_a_module_past_three_hundred_lines_says_why(self, module: Path) -> None:
        text = module.read_text()
        if len(text.splitlines()) <= 310:
            return
        doc = ast.get_docstring(ast.parse(text)) or ""
        assert "300 lines" in doc, "say in the module docstring why it is this long"
