"""The seed's `overnight.*` keys in orchestration.yml that healer honours (SPEC §6)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from healer.config_values import boolean, duration, mapping, positive_int

__all__ = ["DISABLED_ACTIONS", "seed_values"]

# The key under which seed_values returns the built-in rungs its switches turn off.
DISABLED_ACTIONS = "_disabled_actions"


def seed_values(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The seed's `overnight.*` keys that healer honours, by Config field."""
    out: dict[str, Any] = {}
    overnight = mapping(doc.get("overnight"), "overnight")
    healing = mapping(overnight.get("self_healing"), "overnight.self_healing")
    monitoring = mapping(overnight.get("monitoring"), "overnight.monitoring")
    recovery = mapping(overnight.get("recovery"), "overnight.recovery")
    p = "overnight.self_healing."
    if "enabled" in healing:
        out["healing_enabled"] = boolean(healing["enabled"], p + "enabled")
    if "check_interval" in healing:
        out["check_interval"] = duration(healing["check_interval"], p + "check_interval")
    if "stall_threshold" in healing:
        out["heal_after"] = duration(healing["stall_threshold"], p + "stall_threshold")
    if "max_attempts" in healing:
        out["max_attempts"] = positive_int(healing["max_attempts"], p + "max_attempts")
    switches = {
        "force_update": "force_update",
        "clear_stuck_tasks": "clear_stuck_tasks",
        "auto_reset": "reset_status",
    }
    disabled = {
        action for key, action in switches.items() if key in healing
        and not boolean(healing[key], p + key)
    }
    if disabled:
        out[DISABLED_ACTIONS] = disabled
    m = "overnight.monitoring."
    if "check_interval" in monitoring:
        out["monitor_interval"] = duration(monitoring["check_interval"], m + "check_interval")
    if "stall_timeout" in monitoring:
        out["recover_after"] = duration(monitoring["stall_timeout"], m + "stall_timeout")
    r = "overnight.recovery."
    if "auto_recovery" in recovery:
        out["auto_recovery"] = boolean(recovery["auto_recovery"], r + "auto_recovery")
    if "agent_rescue" in recovery:
        out["agent_rescue"] = boolean(recovery["agent_rescue"], r + "agent_rescue")
    return out
