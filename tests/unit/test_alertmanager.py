"""The Alertmanager book: which alerts a transition opens, replaces and ends, and what each
post carries. Pure: every time is passed in, so the tables below are the whole story."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from healer.adapters.alertmanager import DEFAULT_TTL, AlertBook, Origin, api_url
from healer.adapters.delivery import Alert
from healer.config import load_config
from healer.core.isotime import iso
from healer.core.model import Transition
from healer.errors import ConfigError

T0 = 1_700_000_000.0
ORIGIN = Origin(host="agents-1", swarm="dreamos", workspaces=Path("/srv/ws"))


def book(ttl: float = DEFAULT_TTL) -> AlertBook:
    return AlertBook(ORIGIN, ttl)


def alert(transition: str, at: float, agent: str = "Agent-1", **details: Any) -> Alert:
    return Alert(agent, Transition(transition), at, details)


def posts(b: AlertBook, now: float) -> dict[str, dict[str, Any]]:
    """The owed posts by alertname (one agent per test unless said otherwise)."""
    payloads, _news = b.take(now)
    return {p["labels"]["alertname"]: p for p in payloads}


class TestOpening:
    def test_stalled_opens_an_agent_stalled_warning_with_the_spec_labels(self):
        """AgentStalled carries alertname, agent, host, swarm and severity, ends a TTL on."""
        b = book()
        assert b.apply(alert("stalled", T0, silent_for=300.0, pipeline="recovery"))
        [(name, post)] = posts(b, T0).items()
        assert name == "AgentStalled"
        assert post["labels"] == {"alertname": "AgentStalled", "agent": "Agent-1",
                                  "host": "agents-1", "swarm": "dreamos", "severity": "warning"}
        assert post["startsAt"] == iso(T0)
        assert post["endsAt"] == iso(T0 + DEFAULT_TTL)

    def test_annotations_are_for_a_human(self):
        """summary, silent_for (live), agent_dir, and the details as text."""
        b = book()
        b.apply(alert("stalled", T0, silent_for=302.0, pipeline="recovery"))
        b.take(T0)
        [post] = b.current(T0 + 60)
        notes = post["annotations"]
        assert notes["silent_for"] == "6m 2s"  # 302 s at the stall, 60 s later
        assert notes["agent_dir"] == "/srv/ws/Agent-1"
        assert notes["pipeline"] == "recovery"
        assert notes["summary"] == (
            "Agent-1 on agents-1 has been silent for 6m 2s; healing has not brought it back")

    @pytest.mark.parametrize(("transition", "alertname", "severity"), [
        ("stalled", "AgentStalled", "warning"),
        ("waiting", "AgentWaiting", "warning"),
        ("escalated", "AgentEscalated", "critical"),
        ("flapping", "AgentFlapping", "critical"),
    ])
    def test_each_agent_alert_has_its_name_and_severity(self, transition, alertname, severity):
        b = book()
        b.apply(alert(transition, T0))
        [post] = posts(b, T0).values()
        assert (post["labels"]["alertname"], post["labels"]["severity"]) == (alertname, severity)

    def test_a_swarm_outage_has_no_agent_label(self):
        """SwarmOutage is the swarm's alert: the inhibition matches it on swarm and host."""
        b = book()
        b.apply(alert("swarm_outage", T0, agent="", agents=12, fraction=0.6))
        [post] = posts(b, T0).values()
        assert post["labels"] == {"alertname": "SwarmOutage", "host": "agents-1",
                                  "swarm": "dreamos", "severity": "critical"}
        assert post["annotations"]["summary"] == (
            "12 agents of swarm dreamos on agents-1 are stalled at once")
        assert "agent_dir" not in post["annotations"]

    def test_an_empty_swarm_name_is_left_out_not_sent_empty(self):
        b = AlertBook(Origin("h", "", None))
        b.apply(alert("stalled", T0))
        [post] = posts(b, T0).values()
        assert "swarm" not in post["labels"]
        assert "agent_dir" not in post["annotations"]

    def test_long_details_are_cut(self):
        b = book()
        b.apply(alert("waiting", T0, message="x" * 5000))
        [post] = posts(b, T0).values()
        assert len(post["annotations"]["message"]) == 1000


class TestOneAlertPerIncident:
    def test_escalation_replaces_the_stalled_alert(self):
        """AgentStalled is sent ended (endsAt = the escalation) as AgentEscalated begins."""
        b = book()
        b.apply(alert("stalled", T0, silent_for=300.0))
        b.take(T0)
        b.apply(alert("escalated", T0 + 180, attempts=3,
                      actions=["force_update", "clear_stuck_tasks", "reset_status"]))
        sent = posts(b, T0 + 180)
        assert set(sent) == {"AgentStalled", "AgentEscalated"}
        assert sent["AgentStalled"]["endsAt"] == iso(T0 + 180)
        assert sent["AgentStalled"]["startsAt"] == iso(T0)
        escalated = sent["AgentEscalated"]
        assert escalated["startsAt"] == iso(T0 + 180)
        assert escalated["endsAt"] == iso(T0 + 180 + DEFAULT_TTL)
        notes = escalated["annotations"]
        assert notes["attempts"] == "3"
        assert notes["tried"] == "force_update, clear_stuck_tasks, reset_status"
        assert notes["silent_for"] == "8m 0s"  # the silence carried over from the stall
        assert [a.alertname for a in b.open.values()] == ["AgentEscalated"]

    def test_a_stalled_alert_after_the_escalation_does_not_downgrade_it(self):
        """The standard recovery runs at recover_after even after an escalation."""
        b = book()
        b.apply(alert("escalated", T0, attempts=2))
        b.take(T0)
        b.apply(alert("stalled", T0 + 30, silent_for=400.0))
        sent = posts(b, T0 + 30)
        assert set(sent) == {"AgentEscalated"}
        assert sent["AgentEscalated"]["startsAt"] == iso(T0)
        assert sent["AgentEscalated"]["annotations"]["silent_for"] == "6m 40s"
        assert sent["AgentEscalated"]["annotations"]["attempts"] == "2"

    @pytest.mark.parametrize("ending", ["recovered", "resolved"])
    def test_the_incident_ends_with_ends_at_now(self, ending):
        b = book()
        b.apply(alert("stalled", T0))
        b.take(T0)
        assert b.apply(alert(ending, T0 + 42))
        [post] = posts(b, T0 + 42).values()
        assert post["labels"]["alertname"] == "AgentStalled"
        assert post["endsAt"] == iso(T0 + 42)
        assert b.open == {}
        assert b.current(T0 + 50) == []

    def test_an_end_without_an_open_alert_owes_nothing(self):
        """A recovery humans never heard of, or a second end, posts nothing."""
        b = book()
        assert not b.apply(alert("recovered", T0))
        assert b.owed() == 0
        b.apply(alert("stalled", T0))
        b.apply(alert("recovered", T0 + 1))
        b.take(T0 + 1)
        assert not b.apply(alert("resolved", T0 + 2))

    @pytest.mark.parametrize(("opens", "ends", "alertname"), [
        ("waiting", "waiting_over", "AgentWaiting"),
        ("flapping", "flapping_over", "AgentFlapping"),
        ("swarm_outage", "swarm_recovered", "SwarmOutage"),
    ])
    def test_each_kind_ends_only_its_own_alert(self, opens, ends, alertname):
        """An agent may be in an incident and flapping at once: two alerts, ended apart."""
        b = book()
        b.apply(alert("stalled", T0))
        b.apply(alert(opens, T0))
        b.take(T0)
        b.apply(alert(ends, T0 + 5))
        sent = posts(b, T0 + 5)
        assert set(sent) == {alertname}
        assert sent[alertname]["endsAt"] == iso(T0 + 5)
        assert [a.alertname for a in b.open.values()] == ["AgentStalled"]

    def test_agents_are_kept_apart(self):
        b = book()
        b.apply(alert("stalled", T0, agent="Agent-1"))
        b.apply(alert("stalled", T0, agent="Agent-2"))
        b.apply(alert("recovered", T0 + 1, agent="Agent-1"))
        payloads, news = b.take(T0 + 1)
        by_agent = {p["labels"]["agent"]: p["endsAt"] for p in payloads}
        assert by_agent == {"Agent-1": iso(T0 + 1), "Agent-2": iso(T0 + 1 + DEFAULT_TTL)}
        assert news == [("Agent-1", Transition.STALLED), ("Agent-2", Transition.STALLED),
                        ("Agent-1", Transition.RECOVERED)]

    def test_unposted_changes_coalesce_to_the_latest(self):
        """Stalled and recovered before the worker posted: one post, the alert ended."""
        b = book()
        b.apply(alert("stalled", T0))
        b.apply(alert("recovered", T0 + 1))
        payloads, news = b.take(T0 + 2)
        assert [p["endsAt"] for p in payloads] == [iso(T0 + 1)]
        assert len(news) == 2

    def test_re_sends_keep_start_and_move_the_end(self):
        """current() is what the worker re-sends every TTL/3: same startsAt, a later endsAt."""
        b = book(ttl=90)
        b.apply(alert("stalled", T0))
        b.take(T0)
        [later] = b.current(T0 + 30)
        assert (later["startsAt"], later["endsAt"]) == (iso(T0), iso(T0 + 120))


class TestConfig:
    def test_alertmanager_url_takes_one_url_or_a_list(self, tmp_path):
        path = tmp_path / "c.yml"
        path.write_text("healer:\n  alerts:\n    alertmanager_url: http://am:9093\n")
        assert load_config(path, env={}).alerts.alertmanager_url == ("http://am:9093",)
        path.write_text("healer:\n  alerts:\n    alertmanager_url:\n"
                        "      - http://am-1:9093\n      - https://am-2:9093/prefix\n")
        assert load_config(path, env={}).alerts.alertmanager_url == (
            "http://am-1:9093", "https://am-2:9093/prefix")

    @pytest.mark.parametrize(("value", "message"), [
        ("ftp://am", r"healer\.alerts\.alertmanager_url: expected an http"),
        ("[]", r"healer\.alerts\.alertmanager_url: expected a URL or a list"),
        ("[http://a:1, 7]", r"healer\.alerts\.alertmanager_url\[1\]: expected a non-empty"),
        ("[http://a:1, http://a:1]", r"listed twice"),
    ])
    def test_a_bad_value_is_one_line_naming_the_key(self, tmp_path, value, message):
        path = tmp_path / "c.yml"
        path.write_text(f"healer:\n  alerts:\n    alertmanager_url: {value}\n")
        with pytest.raises(ConfigError, match=message):
            load_config(path, env={})

    @pytest.mark.parametrize(("url", "endpoint"), [
        ("http://am:9093", "http://am:9093/api/v2/alerts"),
        ("http://am:9093/", "http://am:9093/api/v2/alerts"),
        ("http://am/alertmanager", "http://am/alertmanager/api/v2/alerts"),
        ("http://am:9093/api/v2/alerts", "http://am:9093/api/v2/alerts"),
    ])
    def test_the_endpoint_is_found_from_the_base_url(self, url, endpoint):
        assert api_url(url) == endpoint
