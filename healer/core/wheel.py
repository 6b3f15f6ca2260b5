"""A hashed timer wheel: O(1) to arm, O(slot) per tick, cancelled or moved timers are
dropped lazily when their slot comes round."""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["TimerWheel"]

K = TypeVar("K", bound=Hashable)


class TimerWheel(Generic[K]):
    """One timer per key. `advance(now)` returns the keys whose deadline is <= now.

    A deadline fires on the first advance() at or after it, so a caller that advances on
    every tick boundary sees each timer within one tick of its exact deadline.
    """

    def __init__(self, tick: float, start: float, slots: int = 1024) -> None:
        if tick <= 0 or slots < 1:
            raise ValueError("tick must be positive and slots at least 1")
        self._tick = tick
        self._slots: list[list[tuple[K, float]]] = [[] for _ in range(slots)]
        self._deadline: dict[K, float] = {}
        # Every slot of a tick number below this has been fully processed.
        self._cursor = self._tick_of(start)

    @property
    def tick(self) -> float:
        return self._tick

    def _tick_of(self, when: float) -> int:
        return math.floor(when / self._tick)

    def schedule(self, key: K, deadline: float) -> None:
        """Arm (or re-arm) the timer of `key`; an earlier timer of the key is superseded."""
        self._deadline[key] = deadline
        # A deadline already behind the cursor goes in the current slot so it fires next.
        n = max(self._tick_of(deadline), self._cursor)
        self._slots[n % len(self._slots)].append((key, deadline))

    def cancel(self, key: K) -> None:
        self._deadline.pop(key, None)

    def deadline(self, key: K) -> float | None:
        return self._deadline.get(key)

    def __len__(self) -> int:
        return len(self._deadline)

    def advance(self, now: float) -> list[K]:
        """Fire every timer due at `now`, in deadline order."""
        now_tick = self._tick_of(now)
        if now_tick < self._cursor:
            return []  # the clock stepped back: nothing new can be due
        fired: list[tuple[float, K]] = []
        count = min(now_tick - self._cursor + 1, len(self._slots))
        for n in range(now_tick - count + 1, now_tick + 1):
            self._fire_slot(n % len(self._slots), now, fired)
        # The current tick's slot is looked at again next time: its later timers are not due.
        self._cursor = now_tick
        fired.sort(key=lambda item: item[0])
        return [key for _, key in fired]

    def upcoming(self, after: float, until: float) -> list[K]:
        """The keys whose deadline lies in (after, until], without firing them."""
        out: list[K] = []
        first = max(self._tick_of(after), self._cursor)
        last = min(self._tick_of(until), first + len(self._slots) - 1)
        for n in range(first, last + 1):
            for key, deadline in self._slots[n % len(self._slots)]:
                if after < deadline <= until and self._deadline.get(key) == deadline:
                    out.append(key)
        return out

    def soonest(self, now: float) -> float | None:
        """The earliest live deadline in the slot of `now`'s tick, before its end (None:
        none): a caller advancing only on tick boundaries would fire it up to a tick late."""
        n = self._tick_of(now)
        end = (n + 1) * self._tick
        best: float | None = None
        for key, deadline in self._slots[n % len(self._slots)]:
            if deadline < end and (best is None or deadline < best) and (
                    self._deadline.get(key) == deadline):
                best = deadline
        return best

    def _fire_slot(self, index: int, now: float, fired: list[tuple[float, K]]) -> None:
        slot = self._slots[index]
        if not slot:
            return
        keep: list[tuple[K, float]] = []
        for key, deadline in slot:
            current = self._deadline.get(key)
            if current != deadline:
                continue  # cancelled or re-armed elsewhere: a stale entry
            if deadline <= now:
                del self._deadline[key]
                fired.append((deadline, key))
            else:
                keep.append((key, deadline))
        self._slots[index] = keep
