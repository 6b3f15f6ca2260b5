"""Reads and discards what a finished command's background children still write to its
output pipe, so that a full pipe or a SIGPIPE never stops them while healer runs."""

from __future__ import annotations

import contextlib
import os
import selectors
import threading

__all__ = ["PipeDrainer"]


class PipeDrainer:
    """One thread, started on first use, that owns adopted read ends until their EOF."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._adopted: list[int] = []  # handed over, not yet registered by the thread
        self._open: set[int] = set()
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = -1, -1
        self._closed = False

    def adopt(self, fd: int) -> None:
        """Take ownership of `fd`, a non-blocking read end; it is closed at its EOF."""
        with self._lock:
            if self._closed:
                os.close(fd)
                return
            if self._thread is None:
                self._wake_r, self._wake_w = os.pipe()
                os.set_blocking(self._wake_r, False)
                self._thread = threading.Thread(
                    target=self._loop, name="healer-command-drainer", daemon=True
                )
                self._thread.start()
            self._adopted.append(fd)
            self._open.add(fd)
        os.write(self._wake_w, b"+")

    def holding(self) -> int:
        """How many pipes are still held open by children the commands left running."""
        with self._lock:
            return len(self._open)

    def close(self) -> None:
        """Stop reading; the children still holding a pipe get EPIPE at their next write."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        if thread is None:
            return
        os.write(self._wake_w, b"x")
        thread.join(5.0)
        with self._lock:
            for fd in self._open:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._open.clear()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _loop(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._wake_r, selectors.EVENT_READ)
            while True:
                for key, _events in selector.select():
                    if key.fd == self._wake_r:
                        with contextlib.suppress(BlockingIOError):
                            os.read(self._wake_r, 4096)
                        with self._lock:
                            if self._closed:
                                return
                            adopted, self._adopted = self._adopted, []
                        for fd in adopted:
                            selector.register(fd, selectors.EVENT_READ)
                    elif not self._discard(key.fd):
                        selector.unregister(key.fd)
                        with self._lock:
                            self._open.discard(key.fd)
                        os.close(key.fd)

    @staticmethod
    def _discard(fd: int) -> bool:
        """Read what is there; False at EOF."""
        try:
            return bool(os.read(fd, 65536))
        except BlockingIOError:
            return True
        except OSError:
            return False
