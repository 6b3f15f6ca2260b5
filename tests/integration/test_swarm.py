"""The real `healer watch` judging the swarm: most agents falling silent at once is one outage
alert on a real webhook (127.0.0.1), no task is reassigned, and their return ends it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_agent
from tests.integration.daemon import poll_until, running_daemon, watch_args

pytestmark = pytest.mark.integration


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.received.append(json.loads(body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:  # keep the test output clean
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", server.received  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


class TestSwarmOutage:
    def test_four_of_six_silent_is_one_alert_and_no_reassignment(
        self, tmp_path: Path, webhook: tuple[str, list[dict[str, Any]]]
    ) -> None:
        url, received = webhook
        root = tmp_path / "ws"
        agents = [f"Agent-{k}" for k in range(1, 7)]
        for agent in agents:
            make_agent(root, agent)
        # 0.6: the outage starts with the fourth silent agent, whichever tick it falls in.
        config = (f"healer:\n  alerts:\n    webhook_url: {url}\n    backoff: 0.05\n"
                  "  swarm:\n    outage_fraction: 0.6\n")
        silent, working = agents[:4], agents[4:]
        stop = threading.Event()

        def work() -> None:
            # From before the daemon starts: a start slower than heal_after must not find
            # the working agents silent too (all six were, on a loaded machine).
            while True:
                for agent in working:
                    (root / agent / "devlogs" / "work.md").write_text(f"{time.time()}\n")
                if stop.wait(0.1):
                    return

        writer = threading.Thread(target=work, daemon=True)
        writer.start()
        try:
            with running_daemon(root, tmp_path, watch_args(0.6, 1.5, 0.05),
                                config_text=config) as d:
                assert poll_until(lambda: d.events("swarm_outage"), 15), d.tail()
                (outage,) = d.events("swarm_outage")
                assert outage["agents"] == 4
                assert outage["fraction"] == pytest.approx(0.667, abs=1e-3)
                # Past recover_after: every silent agent's recovery ran, its tasks stayed put.
                assert poll_until(lambda: len([
                    e for e in d.events("recovery_action", action="reassign_tasks")
                    if e.get("skipped") == "swarm_outage"]) == 4, 15), d.tail()
                for agent in silent:
                    (root / agent / "devlogs" / "back.md").write_text("back\n")
                assert poll_until(lambda: d.events("swarm_recovered"), 15), d.tail()
                assert poll_until(lambda: len(received) >= 2, 5), received
        finally:
            stop.set()
            writer.join()
        inboxes = [p.name for a in working for p in (root / a / "inbox").iterdir()]
        assert not [n for n in inboxes if "REASSIGN" in n]
        assert [(m["agent"], m["transition"]) for m in received] == [
            ("", "swarm_outage"), ("", "swarm_recovered")]
        assert received[1]["details"]["folded"]["stalled"] == 4
        assert len(d.events("stall_detected", pipeline="healing")) == 4
