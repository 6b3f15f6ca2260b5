"""Signals for a loop that sleeps on a `threading.Event`, without a lock in the handler.

A Python signal handler runs in the main thread between two bytecodes, and that can be
inside `Event.wait` or `Event.clear` while the main thread holds the event's lock. A
handler that then calls `event.set()` waits for a lock its own thread holds: the process
hangs and a SIGTERM never stops it. So the handlers installed here do nothing; the
interpreter's C-level handler writes each signal's number to a pipe
(`signal.set_wakeup_fd`), and a small thread reads the pipe and runs the callbacks, where
taking a lock is safe.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Mapping
from types import FrameType

__all__ = ["SignalRelay"]


def _ignore(_signum: int, _frame: FrameType | None) -> None:
    """Installed so the signal is caught (its default would end the process) and its
    number reaches the wakeup pipe; the relay thread does the work."""


class SignalRelay:
    """Runs `callbacks[signum]()` on a thread of its own for each signal caught."""

    def __init__(self, callbacks: Mapping[int, Callable[[int], None]]) -> None:
        self._callbacks = dict(callbacks)
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)  # the C handler must never block on a full pipe
        self._previous: dict[int, object] = {}
        self._previous_fd = -1
        self._thread = threading.Thread(target=self._relay, name="healer-signals", daemon=True)

    def install(self) -> None:
        """Main thread only (as for any signal handler)."""
        self._thread.start()
        self._previous_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        for signum in self._callbacks:
            self._previous[signum] = signal.signal(signum, _ignore)

    def close(self) -> None:
        """Puts the previous handlers back and ends the thread."""
        if self._previous:
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)  # type: ignore[arg-type]
            signal.set_wakeup_fd(self._previous_fd)
            self._previous.clear()
        try:
            os.close(self._write)  # the reader sees end of file and returns
        except OSError:
            return  # closed already
        if self._thread.is_alive():
            self._thread.join(1.0)
        os.close(self._read)

    def _relay(self) -> None:
        while True:
            try:
                data = os.read(self._read, 64)
            except OSError:
                return
            if not data:
                return
            for signum in data:
                callback = self._callbacks.get(signum)
                if callback is not None:
                    callback(signum)
