"""Alert delivery against a real HTTP server on 127.0.0.1: payloads, retries, secrecy, shutdown,
one worker per target, and the Alertmanager target's posts and re-sends."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import structlog

from healer.adapters.alerts import Alerter
from healer.testing import FakeClock

SECRET = "s3cr3t-T0KEN-abc123"
FAST = {"timeout": 0.2, "max_tries": 3, "backoff": 0.01}


class Hook:
    """A scripted webhook: each POST takes the next action (status, headers) or "hang"."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.arrived: list[tuple[str, float]] = []  # (path, time.monotonic())
        self.script: list[Any] = []
        self.hang_paths: set[str] = set()  # every POST to these hangs
        self.release = threading.Event()
        self._lock = threading.Lock()

    def take(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> Any:
        with self._lock:
            self.requests.append((path, json.loads(body)))
            self.headers.append(headers or {})
            self.arrived.append((path, time.monotonic()))
            if path in self.hang_paths:
                return "hang"
            return self.script.pop(0) if self.script else (200, {})

    def bodies(self, path: str) -> list[Any]:
        with self._lock:
            return [body for p, body in self.requests if p == path]


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        hook: Hook = self.server.hook  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        action = hook.take(self.path, body, dict(self.headers.items()))
        if action == "hang":
            hook.release.wait(5.0)
            return
        status, headers = action
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[tuple[Hook, str]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.hook = Hook()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield server.hook, base  # type: ignore[attr-defined]
    finally:
        server.hook.release.set()  # type: ignore[attr-defined]
        server.shutdown()
        server.server_close()


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with structlog.testing.capture_logs() as captured:
        yield captured


def wait_for(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.005)


def sent_events(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == "alert_sent"]


class TestAlerter:
    def test_webhook_receives_agent_transition_timestamp_and_details(self, hook, logs):
        """The generic webhook gets one JSON object with the four contract fields."""
        server, base = hook
        alerter = Alerter(None, f"{base}/hook", clock=FakeClock(1_700_000_000.0), **FAST)
        alerter.send("Agent-3", "stalled", {"silent_for": 130.5, "pipeline": "healing"})
        wait_for(lambda: len(sent_events(logs)) == 1)
        alerter.close()
        assert server.requests == [("/hook", {
            "agent": "Agent-3",
            "transition": "stalled",
            "timestamp": "2023-11-14T22:13:20Z",
            "details": {"silent_for": 130.5, "pipeline": "healing"},
        })]
        [event] = sent_events(logs)
        assert event["ok"] is True and event["tries"] == 1 and event["target"] == "webhook"
        assert (alerter.sent, alerter.failed, alerter.dropped) == (1, 0, 0)

    def test_discord_url_comes_from_env_and_gets_one_readable_line(self, hook, logs):
        """from_env reads HEALER_DISCORD_WEBHOOK; Discord gets one line that pings no one."""
        server, base = hook
        alerter = Alerter.from_env(
            f"{base}/generic", environ={"HEALER_DISCORD_WEBHOOK": f"{base}/discord"}, **FAST)
        assert alerter.targets == ("discord", "webhook")
        alerter.send("Agent-7", "escalated", {"attempts": 3, "note": "line one\nline two"})
        wait_for(lambda: len(sent_events(logs)) == 2)
        alerter.close()
        by_path = dict(server.requests)
        assert set(by_path["/discord"]) == {"content", "allowed_mentions"}
        assert by_path["/discord"]["allowed_mentions"] == {"parse": []}
        content = by_path["/discord"]["content"]
        assert "Agent-7" in content and "escalated" in content and "attempts=3" in content
        assert "\n" not in content
        assert by_path["/generic"]["transition"] == "escalated"
        assert sorted(e["target"] for e in sent_events(logs)) == ["discord", "webhook"]

    def test_without_urls_alerts_go_to_the_log_only(self, logs):
        """No URL configured: alert_sent is logged with target=log and ok=true."""
        alerter = Alerter.from_env(None, environ={}, **FAST)
        assert alerter.targets == ()
        alerter.send("Agent-1", "recovered", {"silent_for": 5})
        wait_for(lambda: len(sent_events(logs)) == 1)
        alerter.close()
        [event] = sent_events(logs)
        assert (event["target"], event["ok"], event["agent"]) == ("log", True, "Agent-1")
        assert event["log_level"] == "info"

    def test_a_500_then_200_is_retried_and_ends_ok_after_two_tries(self, hook, logs):
        """A server error is retried; the second try succeeds."""
        server, base = hook
        server.script = [(500, {}), (200, {})]
        alerter = Alerter(None, f"{base}/hook", **FAST)
        alerter.send("Agent-2", "stalled", {})
        wait_for(lambda: len(sent_events(logs)) == 1)
        alerter.close()
        [event] = sent_events(logs)
        assert (event["ok"], event["tries"]) == (True, 2)
        assert len(server.requests) == 2

    def test_a_429_honours_retry_after_within_the_cap(self, hook, logs):
        """Retry-After of 100 s is cut to the cap, so the retry comes quickly and succeeds."""
        server, base = hook
        server.script = [(429, {"Retry-After": "100"}), (204, {})]
        alerter = Alerter(None, f"{base}/hook", max_retry_after=0.05, **FAST)
        started = time.monotonic()
        alerter.send("Agent-2", "stalled", {})
        wait_for(lambda: len(sent_events(logs)) == 1)
        assert time.monotonic() - started < 2.0
        alerter.close()
        [event] = sent_events(logs)
        assert (event["ok"], event["tries"]) == (True, 2)

    def test_a_404_is_final_and_not_retried(self, hook, logs):
        """A client error other than 429 will not get better, so it is tried once."""
        server, base = hook
        server.script = [(404, {}), (200, {})]
        alerter = Alerter(None, f"{base}/hook", **FAST)
        alerter.send("Agent-4", "stalled", {})
        wait_for(lambda: len(sent_events(logs)) == 1)
        alerter.close()
        [event] = sent_events(logs)
        assert (event["ok"], event["tries"], event["status"]) == (False, 1, 404)
        assert event["log_level"] == "warning"
        assert len(server.requests) == 1
        assert (alerter.sent, alerter.failed) == (0, 1)

    def test_a_hanging_server_fails_after_max_tries_and_send_never_blocks(self, hook, logs):
        """Each try times out; send() itself returns at once."""
        server, base = hook
        server.script = ["hang", "hang", "hang"]
        alerter = Alerter(None, f"{base}/hook", **FAST)
        started = time.perf_counter()
        alerter.send("Agent-5", "stalled", {})
        assert time.perf_counter() - started < 0.05
        wait_for(lambda: len(sent_events(logs)) == 1, timeout=5.0)
        alerter.close()
        [event] = sent_events(logs)
        assert (event["ok"], event["tries"]) == (False, 3)
        assert "Timeout" in event["error"] or "timed out" in event["error"]
        assert len(server.requests) == 3

    def test_a_full_queue_drops_the_oldest_alert(self, hook, logs):
        """With the worker stuck, the queue keeps the newest alerts and counts the loss."""
        server, base = hook
        server.script = ["hang"]
        alerter = Alerter(None, f"{base}/hook", timeout=2.0, max_tries=1, backoff=0.01,
                          queue_size=2)
        alerter.send("Agent-1", "stalled", {})
        wait_for(lambda: len(server.requests) == 1)
        for agent in ("Agent-2", "Agent-3", "Agent-4"):
            alerter.send(agent, "stalled", {})
        dropped = [e for e in logs if e["event"] == "alert_dropped"]
        assert [e["agent"] for e in dropped] == ["Agent-2"]
        assert alerter.dropped == 1
        server.release.set()
        wait_for(lambda: len(sent_events(logs)) == 3)
        alerter.close()
        assert [path_body[1]["agent"] for path_body in server.requests] == [
            "Agent-1", "Agent-3", "Agent-4"]

    def test_urls_never_appear_in_logs(self, hook, logs):
        """The token in the URL path is scrubbed from every log line, success or failure."""
        server, base = hook
        server.script = [(200, {}), (500, {}), (500, {}), (500, {}), (404, {})]
        discord = f"{base}/api/webhooks/1/{SECRET}"
        refused = f"http://127.0.0.1:9/{SECRET}/x"  # port 9 (discard) refuses on loopback
        alerter = Alerter(discord, refused, **FAST)
        for transition in ("stalled", "escalated", "recovered"):
            alerter.send("Agent-6", transition, {"n": 1})
        wait_for(lambda: len(sent_events(logs)) == 6, timeout=5.0)
        alerter.close()
        assert {e["ok"] for e in sent_events(logs)} == {True, False}
        rendered = repr(logs)
        assert SECRET not in rendered and base not in rendered

    def test_an_error_message_quoting_the_url_is_scrubbed(self, logs):
        """http.client quotes a malformed URL in its error; the log shows it redacted."""
        alerter = Alerter(None, f"http://127.0.0.1:9/{SECRET} x", **FAST)
        alerter.send("Agent-6", "stalled", {})
        wait_for(lambda: len(sent_events(logs)) == 1)
        alerter.close()
        [event] = sent_events(logs)
        assert (event["ok"], event["tries"]) == (False, 1)
        assert "<redacted>" in event["error"]
        assert SECRET not in repr(logs)

    def test_close_returns_within_its_timeout_against_a_hanging_server(self, hook, logs):
        """close() stops backoff waits and abandons queued alerts once its time is up."""
        server, base = hook
        server.script = ["hang"] * 20
        alerter = Alerter(None, f"{base}/hook", timeout=1.0, max_tries=3, backoff=0.5)
        for n in range(4):
            alerter.send(f"Agent-{n}", "stalled", {})
        wait_for(lambda: len(server.requests) == 1)
        started = time.monotonic()
        alerter.close(timeout=0.3)
        assert time.monotonic() - started < 0.5
        [abandoned] = [e for e in logs if e["event"] == "alerts_abandoned"]
        assert abandoned["dropped"] == 4
        assert alerter.dropped == 4

    def test_close_drains_the_queue_when_there_is_time(self, hook, logs):
        """Alerts queued before close() are delivered, not thrown away."""
        server, base = hook
        alerter = Alerter(None, f"{base}/hook", **FAST)
        for n in range(5):
            alerter.send(f"Agent-{n}", "recovered", {})
        alerter.close(timeout=2.0)
        assert len(server.requests) == 5
        assert alerter.sent == 5 and alerter.dropped == 0
        alerter.send("Agent-9", "stalled", {})
        assert alerter.dropped == 1

    def test_an_unknown_transition_is_rejected_without_raising(self, logs):
        """Only the transitions of healer.adapters.delivery.Transition are alerts."""
        alerter = Alerter(None, None, **FAST)
        alerter.send("Agent-1", "exploded", {})
        alerter.close()
        assert [e["event"] for e in logs] == ["alert_rejected"]


class TestTargetsApart:
    def test_a_hanging_target_does_not_delay_a_healthy_one(self, hook, logs):
        """Discord hangs for its whole timeout on every try; the webhook's alert arrives at
        once, not after Discord's retries."""
        server, base = hook
        server.hang_paths = {"/discord"}
        alerter = Alerter(f"{base}/discord", f"{base}/hook", timeout=2.0, max_tries=3,
                          backoff=0.01)
        started = time.monotonic()
        alerter.send("Agent-1", "stalled", {})
        alerter.send("Agent-2", "stalled", {})
        wait_for(lambda: len(server.bodies("/hook")) == 2)
        arrived = [t for path, t in server.arrived if path == "/hook"]
        assert max(arrived) - started < 1.0  # one Discord try alone takes 2 s
        assert [b["agent"] for b in server.bodies("/hook")] == ["Agent-1", "Agent-2"]
        # Discord's worker may reach the server a moment after the webhook's alerts landed;
        # then it hangs there, in its first try, for the whole of its 2 s timeout.
        wait_for(lambda: len(server.bodies("/discord")) == 1)
        assert len(server.bodies("/discord")) == 1
        # A delivery is logged after its response is read: wait for the second line too.
        wait_for(lambda: len([e for e in sent_events(logs) if e["target"] == "webhook"]) == 2)
        ok = [e for e in sent_events(logs) if e["target"] == "webhook"]
        assert [e["ok"] for e in ok] == [True, True]
        alerter.close(timeout=0.2)
        assert alerter.dropped == 2  # Discord's two, abandoned at close
        assert [e["targets"] for e in logs if e["event"] == "alerts_abandoned"] == [["discord"]]

    def test_discord_never_pings_whatever_the_folder_is_called(self, hook, logs):
        """`Agent-@everyone` reaches Discord as text with allowed_mentions parse []."""
        server, base = hook
        alerter = Alerter(f"{base}/discord", None, **FAST)
        alerter.send("Agent-@everyone", "escalated", {"note": "<@&123> @here"})
        wait_for(lambda: len(sent_events(logs)) == 1)
        alerter.close()
        [body] = server.bodies("/discord")
        assert body["allowed_mentions"] == {"parse": []}
        assert "Agent-@everyone" in body["content"]

    def test_chat_and_webhook_hear_only_the_human_transitions(self, hook, logs):
        """waiting_over, flapping_over and resolved end Alertmanager alerts; no message."""
        server, base = hook
        alerter = Alerter(None, f"{base}/hook", **FAST)
        for transition in ("waiting", "waiting_over", "flapping", "flapping_over", "resolved",
                           "swarm_outage", "swarm_recovered"):
            alerter.send("Agent-1", transition, {})
        alerter.close()
        assert [b["transition"] for b in server.bodies("/hook")] == [
            "waiting", "flapping", "swarm_outage", "swarm_recovered"]


AM_PATH = "/api/v2/alerts"


def am_posts(server: Hook) -> list[dict[str, Any]]:
    """Every alert posted to the Alertmanager endpoint, in order."""
    return [alert for body in server.bodies(AM_PATH) for alert in body]


class TestAlertmanagerTarget:
    def test_a_stall_is_posted_as_one_alertmanager_alert(self, hook, logs):
        server, base = hook
        alerter = Alerter(alertmanager_urls=[base], host="agents-1", swarm="ws",
                          workspaces=Path("/srv/ws"), **FAST)
        assert alerter.targets == ("alertmanager",)
        alerter.send("Agent-3", "stalled", {"silent_for": 300.0, "pipeline": "recovery"})
        wait_for(lambda: len(sent_events(logs)) == 1)
        alerter.close()
        [posted] = am_posts(server)
        assert posted["labels"] == {"alertname": "AgentStalled", "agent": "Agent-3",
                                    "host": "agents-1", "swarm": "ws", "severity": "warning"}
        assert posted["annotations"]["agent_dir"] == "/srv/ws/Agent-3"
        [event] = sent_events(logs)
        assert (event["target"], event["transition"], event["ok"]) == (
            "alertmanager", "stalled", True)
        assert server.headers[0]["Content-Type"] == "application/json"

    def test_the_open_alert_is_re_sent_before_it_would_end(self, hook, logs):
        """With a TTL of 0.6 s the worker re-sends every 0.2 s, each time a later endsAt."""
        server, base = hook
        alerter = Alerter(alertmanager_urls=[base], alertmanager_ttl=0.6, **FAST)
        alerter.send("Agent-1", "stalled", {})
        wait_for(lambda: len(am_posts(server)) >= 4)
        alerter.send("Agent-1", "recovered", {})
        wait_for(lambda: len(sent_events(logs)) == 2)
        alerter.close()
        posted = am_posts(server)
        ends = [a["endsAt"] for a in posted]
        assert ends[:4] == sorted(ends[:4]) and len(set(ends[:4])) == 4
        assert {a["startsAt"] for a in posted} == {posted[0]["startsAt"]}
        assert [e["transition"] for e in sent_events(logs)] == ["stalled", "recovered"]
        refreshed = [e for e in logs if e["event"] == "alerts_refreshed"]
        assert len(refreshed) >= 3 and all(e["ok"] for e in refreshed)
        count = len(posted)
        time.sleep(0.5)  # an ended incident is re-sent no more
        assert len(am_posts(server)) == count

    def test_credentials_in_the_url_become_a_basic_header_and_stay_secret(self, hook, logs):
        server, base = hook
        url = base.replace("http://", f"http://healer:{SECRET}@")
        alerter = Alerter(alertmanager_urls=[url], **FAST)
        alerter.send("Agent-1", "escalated", {"attempts": 3})
        wait_for(lambda: len(sent_events(logs)) == 1)
        alerter.close()
        assert server.headers[0]["Authorization"].startswith("Basic ")
        assert [p for p, _ in server.requests] == [AM_PATH]
        assert SECRET not in repr(logs)

    def test_one_dead_member_of_a_pair_does_not_delay_the_other(self, hook, logs):
        """An HA pair: each URL has its own worker; the refused one fails alone."""
        server, base = hook
        alerter = Alerter(alertmanager_urls=["http://127.0.0.1:9", base], **FAST)
        assert alerter.targets == ("alertmanager-1", "alertmanager-2")
        alerter.send("Agent-1", "stalled", {})
        wait_for(lambda: len(sent_events(logs)) == 2, timeout=5.0)
        alerter.close()
        outcome = {e["target"]: e["ok"] for e in sent_events(logs)}
        assert outcome == {"alertmanager-1": False, "alertmanager-2": True}
        assert [a["labels"]["agent"] for a in am_posts(server)] == ["Agent-1"]
        assert (alerter.sent, alerter.failed) == (1, 1)

    def test_restore_re_opens_without_telling_the_chat(self, hook, logs):
        """A restarted healer re-opens a carried incident's alert in Alertmanager only."""
        server, base = hook
        alerter = Alerter(None, f"{base}/hook", alertmanager_urls=[base], **FAST)
        alerter.restore("Agent-2", "escalated", {"attempts": 3})
        wait_for(lambda: len(sent_events(logs)) == 1)
        alerter.close()
        assert server.bodies("/hook") == []
        [posted] = am_posts(server)
        assert posted["labels"]["alertname"] == "AgentEscalated"
