"""healer.signals with real signals sent to this process."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator

import pytest

from healer.signals import SignalRelay


@pytest.fixture
def relayed() -> Iterator[tuple[threading.Event, list[int]]]:
    wake = threading.Event()
    seen: list[int] = []

    def on_signal(signum: int) -> None:
        seen.append(signum)
        wake.set()

    relay = SignalRelay({signal.SIGUSR1: on_signal, signal.SIGUSR2: on_signal})
    relay.install()
    try:
        yield wake, seen
    finally:
        relay.close()


class TestSignalRelay:
    def test_each_signal_runs_its_callback_on_another_thread(
        self, relayed: tuple[threading.Event, list[int]]
    ) -> None:
        wake, seen = relayed
        os.kill(os.getpid(), signal.SIGUSR2)
        assert wake.wait(2.0)
        assert seen == [signal.SIGUSR2]

    def test_a_signal_while_the_main_thread_holds_the_events_lock_does_not_hang(
        self, relayed: tuple[threading.Event, list[int]]
    ) -> None:
        """The hang this module exists for: the signal lands while the main thread is
        inside Event.clear/wait (it holds the event's lock). A handler that set the event
        itself would wait forever for that lock; the relay's thread waits a moment."""
        wake, seen = relayed
        with wake._cond:  # what Event.clear and Event.wait hold
            os.kill(os.getpid(), signal.SIGUSR1)
            for _ in range(1000):  # bytecodes, so the Python-level handler runs here
                pass
        assert wake.wait(2.0)
        assert seen == [signal.SIGUSR1]

    def test_close_puts_the_previous_handlers_back(self) -> None:
        before = signal.getsignal(signal.SIGUSR1)
        relay = SignalRelay({signal.SIGUSR1: lambda _s: None})
        relay.install()
        assert signal.getsignal(signal.SIGUSR1) is not before
        relay.close()
        assert signal.getsignal(signal.SIGUSR1) is before
        relay.close()  # twice is harmless
