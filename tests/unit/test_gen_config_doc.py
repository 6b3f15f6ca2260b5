"""README's configuration reference is generated from healer.config and must match it."""

from __future__ import annotations

import importlib
import sys
from dataclasses import fields
from pathlib import Path
from types import ModuleType

from healer.config import ENV_VARS, AlertsConfig, Config, FlapConfig, SwarmConfig

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"


def _load() -> ModuleType:
    scripts = str(REPO / "scripts")
    if scripts not in sys.path:
        sys.path.insert(0, scripts)
    return importlib.import_module("gen_config_doc")


gen = _load()


class TestConfigReference:
    def test_readme_section_equals_the_generated_text(self) -> None:
        """Edit healer/config.py, then run scripts/gen_config_doc.py --write README.md."""
        section = gen.readme_section(README.read_text(encoding="utf-8"))
        assert section, "README.md has no generated configuration reference"
        assert section == gen.generate()

    def test_every_setting_env_var_and_seed_key_is_listed(self) -> None:
        """Each Config field (sections expanded), every env var and seed key appears."""
        text = gen.generate()
        sections = {"alerts": AlertsConfig, "swarm": SwarmConfig, "flap": FlapConfig}
        names = [f.name for f in fields(Config)
                 if f.name not in (*sections, "agents", "commands")]
        names += [f"{name}.{f.name}" for name, cls in sections.items() for f in fields(cls)]
        names += ["agents.heal_after", "agents.recover_after", "commands.run",
                  "commands.timeout"]
        for name in names:
            assert f"| `{name}` |" in text, name
        for var in [*ENV_VARS, "HEALER_CONFIG", "HEALER_DISCORD_WEBHOOK"]:
            assert f"`{var}`" in text, var
        for key in gen.SEED_KEYS:
            assert f"`{key}`" in text, key

    def test_seed_keys_are_mapped_by_loading_them(self) -> None:
        """The seed's stall_threshold drives heal_after; its switches drive the ladder."""
        assert gen._probe("overnight.self_healing.stall_threshold") == {"heal_after"}
        assert gen._probe("overnight.monitoring.stall_timeout") == {"recover_after"}
        assert gen._probe("overnight.self_healing.auto_reset") == {"ladder"}

    def test_defaults_are_the_dataclass_defaults(self) -> None:
        """The default column comes from the dataclass, in the units an operator writes."""
        row = next(line for line in gen.generate().splitlines()
                   if line.startswith("| `heal_after` |"))
        assert f"`{Config().heal_after:g}s`" in row
        retention = next(line for line in gen.generate().splitlines()
                         if line.startswith("| `retention` |"))
        assert "`30d`" in retention
        window = next(line for line in gen.generate().splitlines()
                      if line.startswith("| `flap.window` |"))
        assert "`1h`" in window and "`healer.flap.window`" in window

    def test_check_reports_a_stale_readme(self, tmp_path: Path) -> None:
        """--check exits 1 on a README whose section differs, 0 after --write."""
        stale = tmp_path / "README.md"
        stale.write_text(f"# x\n\n{gen.BEGIN}\nold\n{gen.END}\n\nafter\n", encoding="utf-8")
        assert gen.main(["--check", str(stale)]) == 1
        assert gen.main(["--write", str(stale)]) == 0
        assert gen.main(["--check", str(stale)]) == 0
        assert stale.read_text(encoding="utf-8").endswith("\n\nafter\n")
