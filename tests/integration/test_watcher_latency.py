"""A rename must not hold up the events behind it (watchdog's move pairing)."""

from __future__ import annotations

import threading
import time

from watchdog.observers.inotify_c import InotifyConstants, InotifyEvent
from watchdog.observers.inotify_move_event_grouper import (
    InotifyMoveEventGrouper,
    PathedInotifyEvent,
)

import healer.adapters.watcher as watcher_module


def _event(mask: int, cookie: int, name: bytes) -> PathedInotifyEvent:
    return PathedInotifyEvent(InotifyEvent(1, mask, cookie, name), b"/ws/Agent-1/" + name)


class TestMovePairing:
    def test_healer_sets_a_short_pairing_delay(self) -> None:
        assert InotifyMoveEventGrouper.delay == watcher_module.MOVE_PAIRING_DELAY <= 0.1

    def test_an_event_behind_a_rename_waits_at_most_the_pairing_delay(self) -> None:
        """The reader takes the IN_MOVED_FROM before its IN_MOVED_TO is queued and sleeps the
        whole pairing delay; the write queued behind the rename waits that long, so the delay
        bounds how late any agent's activity can be. With watchdog's default (0.5 s) this
        measures about half a second."""
        grouper = InotifyMoveEventGrouper()
        got: list[tuple[float, object]] = []

        def read() -> None:
            for _ in range(2):
                got.append((time.monotonic(), grouper.read_event()))

        reader = threading.Thread(target=read)
        grouper.put_event(_event(InotifyConstants.IN_MOVED_FROM, 7, b"inbox/msg.md"))
        reader.start()
        time.sleep(0.01)  # the reader already holds the move and sleeps on it
        grouper.put_event(_event(InotifyConstants.IN_MOVED_TO, 7, b"inbox/processed/msg.md"))
        queued = time.monotonic()
        grouper.put_event(_event(InotifyConstants.IN_MODIFY, 0, b"status.json"))
        reader.join(5)
        grouper.close()
        assert len(got) == 2
        handed_over, last = got[-1]
        assert isinstance(last, PathedInotifyEvent) and last.path.endswith(b"status.json")
        assert handed_over - queued < 0.2
