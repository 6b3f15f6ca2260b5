"""Run a real Alertmanager on 127.0.0.1 for integration tests: random free ports, no
cluster, a temporary storage path. Skips (with the reason) only where it is not installed."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "ALERTMANAGER",
    "AMTOOL",
    "MINIMAL_CONFIG",
    "AlertmanagerProcess",
    "requires_alertmanager",
    "running_alertmanager",
]

# Debian's package names the binary prometheus-alertmanager; upstream's is alertmanager.
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
AMTOOL = shutil.which("amtool")
requires_alertmanager = pytest.mark.skipif(
    ALERTMANAGER is None,
    reason="Alertmanager is not installed (Debian: apt-get install prometheus-alertmanager)",
)
# A receiver without integrations: the tests read the API, nothing is ever notified.
MINIMAL_CONFIG = "route:\n  receiver: nobody\nreceivers:\n  - name: nobody\n"
START_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AlertmanagerProcess:
    def __init__(self, proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.proc = proc
        self.url = url
        self.log = log

    def alerts(self, **filters: str) -> list[dict[str, Any]]:
        """GET /api/v2/alerts (by default: active, silenced and inhibited alike)."""
        query = urllib.parse.urlencode(filters)
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts?{query}", timeout=5) as reply:
            alerts: list[dict[str, Any]] = json.load(reply)
        return alerts

    def named(self, alertname: str) -> list[dict[str, Any]]:
        return [a for a in self.alerts() if a["labels"].get("alertname") == alertname]

    def wait_for(self, check: Any, timeout: float = 10.0, what: str = "") -> Any:
        """Poll the API until `check(alerts)` is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            alerts = self.alerts()
            value = check(alerts)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"Alertmanager never showed {what or check!r}: {alerts}")
            time.sleep(0.05)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


@contextmanager
def running_alertmanager(tmp_path: Path, config_text: str = MINIMAL_CONFIG,
                         ) -> Iterator[AlertmanagerProcess]:
    assert ALERTMANAGER is not None
    folder = tmp_path / "alertmanager"
    folder.mkdir(exist_ok=True)
    config = folder / "alertmanager.yml"
    config.write_text(config_text)
    log = folder / "alertmanager.log"
    url = ""
    for _attempt in range(3):  # a free port can be taken between the probe and the bind
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [ALERTMANAGER, f"--config.file={config}", f"--storage.path={folder / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
                 "--log.level=warn"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while proc.poll() is None and not _ready(url) and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is None and _ready(url):
            break
        proc.kill()
        proc.wait(5)
    else:
        raise AssertionError(f"Alertmanager did not start:\n{log.read_text()[-2000:]}")
    try:
        yield AlertmanagerProcess(proc, url, log)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
