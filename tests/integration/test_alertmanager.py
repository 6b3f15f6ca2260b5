"""healer against a real Alertmanager on 127.0.0.1: the §15 labels, one alert per incident,
re-sends that keep it open, a dead healer's alerts ending alone, the example config's
inhibition, an operator's silence, and the real `healer watch` daemon end to end."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from healer.adapters.alerts import Alerter
from tests.conftest import make_agent
from tests.integration.alertmanager import (
    AMTOOL,
    AlertmanagerProcess,
    requires_alertmanager,
    running_alertmanager,
)
from tests.integration.daemon import running_daemon, watch_args

pytestmark = requires_alertmanager

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
FAST = {"timeout": 2.0, "max_tries": 3, "backoff": 0.05}


def names(alerts: list[dict[str, Any]], state: str = "active") -> set[tuple[str, str]]:
    """(alertname, agent) of the alerts in `state`."""
    return {(a["labels"]["alertname"], a["labels"].get("agent", "")) for a in alerts
            if a["status"]["state"] == state}


def example_without_receivers() -> str:
    """The shipped example, its receivers' integrations removed: nothing leaves this host."""
    config = yaml.safe_load(EXAMPLE.read_text())
    config["receivers"] = [{"name": r["name"]} for r in config["receivers"]]
    return yaml.safe_dump(config)


class TestAgainstAlertmanager:
    def test_an_incident_is_one_alert_whose_name_follows_it(self, tmp_path: Path) -> None:
        """Stalled shows as AgentStalled with the §15 labels; the escalation replaces it with
        AgentEscalated (the old one ended); the recovery ends that too."""
        with running_alertmanager(tmp_path) as am:
            alerter = Alerter(alertmanager_urls=[am.url], host="agents-1", swarm="ws",
                              workspaces=tmp_path / "ws", **FAST)
            try:
                alerter.send("Agent-1", "stalled", {"silent_for": 300.0})
                [stalled] = am.wait_for(lambda al: [a for a in al if a["status"]["state"]
                                                    == "active"], what="the stalled alert")
                assert stalled["labels"] == {
                    "alertname": "AgentStalled", "agent": "Agent-1", "host": "agents-1",
                    "swarm": "ws", "severity": "warning"}
                notes = stalled["annotations"]
                assert notes["agent_dir"] == str(tmp_path / "ws" / "Agent-1")
                assert notes["silent_for"].startswith("5m")
                assert "Agent-1" in notes["summary"]
                alerter.send("Agent-1", "escalated", {"attempts": 3, "actions": ["force_update"]})
                am.wait_for(lambda al: names(al) == {("AgentEscalated", "Agent-1")},
                            what="AgentEscalated alone")
                [escalated] = am.named("AgentEscalated")
                assert escalated["labels"]["severity"] == "critical"
                assert escalated["annotations"]["tried"] == "force_update"
                alerter.send("Agent-1", "recovered", {})
                am.wait_for(lambda al: not names(al), what="no active alert")
            finally:
                alerter.close()

    def test_re_sends_keep_the_alert_open_and_a_dead_healer_lets_it_end(
        self, tmp_path: Path
    ) -> None:
        """With a 1.5 s TTL the alert outlives several TTLs while healer runs; once healer
        stops re-sending, Alertmanager ends it by itself within a TTL."""
        with running_alertmanager(tmp_path) as am:
            alerter = Alerter(alertmanager_urls=[am.url], alertmanager_ttl=1.5, **FAST)
            alerter.send("Agent-7", "stalled", {})
            am.wait_for(lambda al: names(al), what="the alert")
            alive_until = time.monotonic() + 4.0  # more than two TTLs
            while time.monotonic() < alive_until:
                assert names(am.alerts()) == {("AgentStalled", "Agent-7")}
                time.sleep(0.1)
            alerter.close()  # the healer is gone: no more re-sends, no endsAt=now either
            stopped = time.monotonic()
            am.wait_for(lambda al: not names(al), timeout=5.0, what="the alert ended")
            assert time.monotonic() - stopped < 1.5 + 1.0

    def test_a_swarm_outage_mutes_its_agents_with_the_example_config(
        self, tmp_path: Path
    ) -> None:
        """deploy/alertmanager/alertmanager.yml: SwarmOutage inhibits the same swarm and
        host's agent alerts, and only those."""
        with running_alertmanager(tmp_path, example_without_receivers()) as am:
            here = Alerter(alertmanager_urls=[am.url], host="agents-1", swarm="ws", **FAST)
            other = Alerter(alertmanager_urls=[am.url], host="agents-2", swarm="ws", **FAST)
            try:
                here.send("", "swarm_outage", {"agents": 5, "fraction": 0.8})
                here.send("Agent-1", "stalled", {})
                other.send("Agent-9", "stalled", {})
                am.wait_for(lambda al: names(al, "suppressed") == {("AgentStalled", "Agent-1")},
                            what="Agent-1 inhibited")
                # The other host's worker posts on its own thread: wait for it, not a race.
                alerts = am.wait_for(
                    lambda al: al if ("AgentStalled", "Agent-9") in names(al) else None,
                    what="the other host's alert")
                assert names(alerts) == {("SwarmOutage", ""), ("AgentStalled", "Agent-9")}
                [muted] = [a for a in alerts if a["labels"].get("agent") == "Agent-1"]
                assert muted["status"]["inhibitedBy"]
                here.send("", "swarm_recovered", {})
                am.wait_for(lambda al: names(al) == {("AgentStalled", "Agent-1"),
                                                     ("AgentStalled", "Agent-9")},
                            what="the outage over, Agent-1 heard again")
            finally:
                here.close()
                other.close()

    def test_an_amtool_silence_is_the_operators_i_know(self, tmp_path: Path) -> None:
        """The README's command silences one agent of one swarm; the others stay active."""
        if AMTOOL is None:
            raise AssertionError("amtool ships with prometheus-alertmanager; it is missing")
        with running_alertmanager(tmp_path) as am:
            alerter = Alerter(alertmanager_urls=[am.url], host="agents-1", swarm="ws", **FAST)
            try:
                alerter.send("Agent-1", "escalated", {"attempts": 3})
                alerter.send("Agent-2", "escalated", {"attempts": 3})
                am.wait_for(lambda al: len(names(al)) == 2, what="two alerts")
                done = subprocess.run(
                    [AMTOOL, f"--alertmanager.url={am.url}", "silence", "add",
                     "agent=Agent-1", "swarm=ws", "--duration=2h",
                     "--comment=I know: restarting its session", "--author=operator"],
                    capture_output=True, text=True, timeout=30, check=False,
                )
                assert done.returncode == 0, done.stderr
                am.wait_for(lambda al: names(al, "suppressed") == {("AgentEscalated", "Agent-1")},
                            what="Agent-1 silenced")
                assert names(am.alerts()) == {("AgentEscalated", "Agent-2")}
            finally:
                alerter.close()


def _alertmanager_config(am: AlertmanagerProcess) -> str:
    return f"healer:\n  swarm: {{name: fleet-a}}\n  alerts:\n    alertmanager_url: {am.url}\n"


class TestDaemonAgainstAlertmanager:
    def test_the_stalled_agents_alert_comes_and_goes_with_the_incident(
        self, tmp_path: Path
    ) -> None:
        """The real `healer watch`: at recover_after the silent agent's AgentStalled is in
        GET /api/v2/alerts with the §15 labels (`swarm` from healer.swarm.name); its next
        write ends it."""
        root = tmp_path / "ws"
        make_agent(root, "Agent-1")
        make_agent(root, "Agent-2")
        with running_alertmanager(tmp_path) as am:
            args = watch_args(30, 1.0, 0.05)
            with running_daemon(root, tmp_path, args, config_text=_alertmanager_config(am)) as d:
                keep_alive = root / "Agent-2" / "devlogs" / "work.md"
                deadline = time.monotonic() + 15
                stalled: list[dict[str, Any]] = []
                while not stalled and time.monotonic() < deadline:
                    keep_alive.write_text(f"{time.time()}\n")  # Agent-2 keeps working
                    stalled = [a for a in am.named("AgentStalled")
                               if a["status"]["state"] == "active"]
                    time.sleep(0.1)
                assert stalled, f"no AgentStalled in Alertmanager\n{d.tail()}"
                [alert] = stalled
                assert alert["labels"] == {
                    "alertname": "AgentStalled", "agent": "Agent-1",
                    "host": socket.gethostname(), "swarm": "fleet-a", "severity": "warning"}
                assert alert["annotations"]["agent_dir"] == os.path.abspath(root / "Agent-1")
                d.wait_event("alert_sent", agent="Agent-1", transition="stalled", ok=True,
                             target="alertmanager")
                (root / "Agent-1" / "devlogs" / "back.md").write_text("back\n")
                d.wait_event("agent_recovered", timeout=10, agent="Agent-1")
                am.wait_for(lambda al: not names(al), what="the alert ended")
                d.wait_event("alert_sent", agent="Agent-1", transition="recovered", ok=True,
                             target="alertmanager")
