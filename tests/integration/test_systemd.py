"""systemd integration: sd_notify datagrams on real sockets, the shipped unit, the installer."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from healer.adapters.systemd import Notifier

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "deploy" / "healer.service"
INSTALLER = REPO / "scripts" / "install-service.sh"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed")


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.settimeout(2.0)
    try:
        yield sock, path
    finally:
        sock.close()


def receive(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


class TestNotifier:
    def test_ready_ping_and_stopping_arrive_as_datagrams(self, listener):
        """Each call sends one sd_notify datagram to $NOTIFY_SOCKET."""
        sock, path = listener
        notifier = Notifier.from_env({"NOTIFY_SOCKET": path})
        assert notifier.enabled
        assert notifier.ready() and notifier.ping() and notifier.stopping()
        assert [receive(sock) for _ in range(3)] == ["READY=1", "WATCHDOG=1", "STOPPING=1"]
        notifier.close()

    def test_reloading_carries_monotonic_usec_and_status_is_one_line(self, listener):
        """RELOADING=1 comes with MONOTONIC_USEC (systemd >= 253); STATUS loses newlines."""
        sock, path = listener
        notifier = Notifier(path)
        before = time.monotonic_ns() // 1000
        notifier.reloading()
        notifier.status("watching 8 agents\n2 stalled")
        reload_lines = receive(sock).split("\n")
        assert reload_lines[0] == "RELOADING=1"
        key, _, value = reload_lines[1].partition("=")
        assert key == "MONOTONIC_USEC" and int(value) >= before
        assert receive(sock) == "STATUS=watching 8 agents 2 stalled"

    @pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract sockets are Linux")
    def test_an_abstract_namespace_socket_works(self):
        """A NOTIFY_SOCKET starting with '@' names a socket in the abstract namespace."""
        name = f"healer-test-{uuid.uuid4().hex}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind("\0" + name)
        sock.settimeout(2.0)
        try:
            assert Notifier.from_env({"NOTIFY_SOCKET": "@" + name}).ready()
            assert receive(sock) == "READY=1"
        finally:
            sock.close()

    def test_without_notify_socket_every_call_is_a_no_op(self):
        """Not run by systemd: disabled, nothing sent, no watchdog."""
        notifier = Notifier.from_env({"WATCHDOG_USEC": "30000000"})
        assert not notifier.enabled
        assert not notifier.ready() and not notifier.ping() and not notifier.stopping()
        assert notifier.watchdog_interval() is None

    def test_a_send_error_is_logged_once_and_never_raised(self, tmp_path):
        """A vanished socket makes calls return False, with one warning per run of failures."""
        notifier = Notifier(str(tmp_path / "gone.sock"))
        with structlog.testing.capture_logs() as logs:
            results = [notifier.ping() for _ in range(5)]
        assert results == [False] * 5
        assert [entry["event"] for entry in logs] == ["sd_notify_failed"]
        assert logs[0]["log_level"] == "warning"

    @pytest.mark.parametrize(
        ("env", "expected"),
        [
            ({"WATCHDOG_USEC": "30000000"}, 30.0),
            ({"WATCHDOG_USEC": "1500000", "WATCHDOG_PID": str(os.getpid())}, 1.5),
            ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
            ({"WATCHDOG_USEC": "0"}, None),
            ({"WATCHDOG_USEC": "soon"}, None),
            ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "x"}, None),
            ({}, None),
        ],
    )
    def test_watchdog_interval_comes_from_watchdog_usec_for_this_pid(self, tmp_path, env, expected):
        """The interval is WATCHDOG_USEC in seconds, only when meant for this process."""
        notifier = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "n.sock"), **env})
        assert notifier.watchdog_interval() == expected


def unit_with_existing_binary(tmp_path: Path) -> Path:
    # verify checks that ExecStart's binary exists; /usr/local/bin/healer is where an install
    # puts it, so point the copy at this checkout's installed entry point instead. Only that
    # path changes; every other line is verified as shipped.
    healer_bin = Path(sys.executable).parent / "healer"
    if not healer_bin.exists():
        pytest.skip("the healer entry point is not installed in this environment")
    text = UNIT.read_text()
    assert "ExecStart=/usr/local/bin/healer " in text
    copy = tmp_path / "healer.service"
    copy.write_text(text.replace("ExecStart=/usr/local/bin/healer ", f"ExecStart={healer_bin} "))
    return copy


class TestUnitFile:
    @needs_analyze
    def test_systemd_analyze_verify_passes_without_warnings(self, tmp_path):
        """verify exits 0 and prints nothing (it exits 0 even on ignored bad lines)."""
        unit = unit_with_existing_binary(tmp_path)
        result = subprocess.run([ANALYZE, "verify", "--man=no", str(unit)],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        assert (result.stdout + result.stderr).strip() == ""

    @needs_analyze
    def test_security_exposure_is_at_most_two(self, tmp_path):
        """The sandbox keeps systemd-analyze's overall exposure level at or below 2.0."""
        result = subprocess.run(
            [ANALYZE, "security", "--offline=true", "--no-pager", str(UNIT)],
            capture_output=True, text=True, timeout=30,
        )
        output = result.stdout + result.stderr
        match = re.search(r"Overall exposure level for healer\.service: (\d+(?:\.\d+)?)", output)
        assert match, output
        assert float(match.group(1)) <= 2.0, output

    def test_unit_has_the_contract_settings(self):
        """SPEC §10: Type=notify, a watchdog, restart on failure, the core sandbox."""
        lines = set(UNIT.read_text().splitlines())
        for setting in ("Type=notify", "NotifyAccess=main", "WatchdogSec=30",
                        "Restart=on-failure", "NoNewPrivileges=yes", "ProtectSystem=strict",
                        "ReadWritePaths=/srv/agent_workspaces",
                        "ExecReload=/bin/kill -HUP $MAINPID"):
            assert setting in lines, setting


class TestInstallScript:
    def run(self, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DESTDIR": str(tmp_path / "root")}
        return subprocess.run(["bash", str(INSTALLER), *args], capture_output=True, text=True,
                              env=env, timeout=30)

    def test_dry_run_prints_the_steps_and_touches_nothing(self, tmp_path):
        """--dry-run names the unit's destination and creates no file."""
        result = self.run(tmp_path, "--dry-run")
        assert result.returncode == 0, result.stderr
        assert f"{tmp_path}/root/etc/systemd/system/healer.service" in result.stdout
        assert "would" in result.stdout
        assert not (tmp_path / "root").exists()

    def test_staged_install_writes_files_and_is_idempotent(self, tmp_path):
        """Under DESTDIR the unit, config and env file land in the tree; a rerun changes nothing."""
        config = tmp_path / "seed.yml"
        config.write_text("overnight:\n  self_healing:\n    stall_threshold: 120\n")
        env = {**os.environ, "DESTDIR": str(tmp_path / "root"), "HEALER_CONFIG_SRC": str(config)}
        first = subprocess.run(["bash", str(INSTALLER)], capture_output=True, text=True,
                               env=env, timeout=30)
        assert first.returncode == 0, first.stderr
        root = tmp_path / "root"
        assert (root / "etc/systemd/system/healer.service").read_text() == UNIT.read_text()
        assert (root / "etc/healer/orchestration.yml").read_text() == config.read_text()
        env_file = root / "etc/default/healer"
        assert env_file.stat().st_mode & 0o777 == 0o600
        env_file.write_text("HEALER_DISCORD_WEBHOOK=kept\n")

        second = subprocess.run(["bash", str(INSTALLER)], capture_output=True, text=True,
                                env=env, timeout=30)
        assert second.returncode == 0, second.stderr
        assert "up to date" in second.stdout
        assert "+ install" not in second.stdout
        assert env_file.read_text() == "HEALER_DISCORD_WEBHOOK=kept\n"

    def test_an_unknown_option_is_a_usage_error(self, tmp_path):
        """Anything but --dry-run/--help exits 2 before doing anything."""
        result = self.run(tmp_path, "--force")
        assert result.returncode == 2
        assert not (tmp_path / "root").exists()
