"""sd_notify spoken by hand: READY, WATCHDOG, STOPPING, RELOADING and STATUS datagrams.

Without `$NOTIFY_SOCKET` (not run by systemd) every call is a no-op.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Mapping

import structlog

__all__ = ["Notifier"]

log = structlog.get_logger()


class Notifier:
    """Sends sd_notify messages to the service manager; never raises on a send error."""

    def __init__(
        self,
        address: str | None,
        *,
        watchdog_usec: str | None = None,
        watchdog_pid: str | None = None,
        pid: int | None = None,
    ) -> None:
        self._address = _parse_address(address)
        self._watchdog_usec = watchdog_usec
        self._watchdog_pid = watchdog_pid
        self._pid = os.getpid() if pid is None else pid
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._failing = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """Read `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` as systemd sets them."""
        env = os.environ if environ is None else environ
        return cls(
            env.get("NOTIFY_SOCKET"),
            watchdog_usec=env.get("WATCHDOG_USEC"),
            watchdog_pid=env.get("WATCHDOG_PID"),
        )

    @property
    def enabled(self) -> bool:
        """True when a service manager is listening."""
        return self._address is not None

    def ready(self) -> bool:
        """Start-up (or a reload) is complete."""
        return self.notify("READY=1")

    def ping(self) -> bool:
        """Watchdog keep-alive; send it from the main loop so a hung loop stops the pings."""
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        """Shutdown has begun."""
        return self.notify("STOPPING=1")

    def reloading(self) -> bool:
        """A reload has begun; call ready() when it is done.

        systemd >= 253 wants MONOTONIC_USEC beside RELOADING=1 to match the message to the
        reload request; older versions ignore it.
        """
        usec = time.monotonic_ns() // 1000
        return self.notify(f"RELOADING=1\nMONOTONIC_USEC={usec}")

    def status(self, text: str) -> bool:
        """A one-line status shown by `systemctl status`."""
        return self.notify("STATUS=" + " ".join(text.split()))

    def watchdog_interval(self) -> float | None:
        """The watchdog timeout in seconds, or None when no watchdog is armed for this process.

        Ping at half of it, as sd_watchdog_enabled(3) advises.
        """
        if not self.enabled or not self._watchdog_usec:
            return None
        try:
            usec = int(self._watchdog_usec)
        except ValueError:
            return None
        if usec <= 0:
            return None
        if self._watchdog_pid:
            # The variables may be inherited from a parent the watchdog was meant for.
            try:
                if int(self._watchdog_pid) != self._pid:
                    return None
            except ValueError:
                return None
        return usec / 1_000_000

    def notify(self, message: str) -> bool:
        """Send one raw notification; False when disabled or the send failed."""
        if self._address is None:
            return False
        with self._lock:
            try:
                if self._sock is None:
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                    sock.setblocking(False)
                    self._sock = sock
                self._sock.sendto(message.encode(), self._address)
            except OSError as exc:
                # Log once per run of failures: a watchdog ping every few seconds would
                # otherwise flood the log while the manager is away.
                if not self._failing:
                    log.warning("sd_notify_failed", error=f"{type(exc).__name__}: {exc}")
                self._failing = True
                return False
            self._failing = False
            return True

    def close(self) -> None:
        """Release the socket; later calls reopen it."""
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def _parse_address(raw: str | None) -> str | None:
    if not raw:
        return None
    if raw.startswith("@"):
        # Linux abstract namespace: a leading NUL byte instead of the "@".
        return "\0" + raw[1:]
    if raw.startswith("/"):
        return raw
    # e.g. "vsock:..." (systemd >= 254 in VMs) is not a Unix socket; stay quiet rather than fail.
    log.warning("sd_notify_unsupported_socket", address=raw)
    return None
