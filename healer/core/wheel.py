"""A hashed timer wheel: O(1) to arm, O(slot) per tick, cancelled or moved timers are
dropped lazily when their slot comes round. The current tick's timers are kept in deadline
order (a heap), so advancing within a tick costs only the timers it fires."""

from __future__ import annotations

import heapq
import math
from collections.abc import Hashable
from itertools import count
from typing import Generic, TypeVar

__all__ = ["TimerWheel"]

K = TypeVar("K", bound=Hashable)


class TimerWheel(Generic[K]):
    """One timer per key. `advance(now)` returns the keys whose deadline is <= now.

    A deadline fires on the first advance() at or after it, so a caller that advances on
    every tick boundary sees each timer within one tick of its exact deadline.

    The loop advances far more often than once a tick (at every wake-up, and between the
    agents of a mass stall); rescanning the current slot each time made a slot of 2,500
    stalling agents cost thousands of visits per agent it fired (issue #16). So the slot of
    the cursor's tick lives in `_now` as a heap of (deadline, seq, key), filled once as the
    cursor reaches it; a timer armed within that tick is pushed onto it.
    """

    def __init__(self, tick: float, start: float, slots: int = 1024) -> None:
        if tick <= 0 or slots < 1:
            raise ValueError("tick must be positive and slots at least 1")
        self._tick = tick
        self._slots: list[list[tuple[K, float]]] = [[] for _ in range(slots)]
        self._deadline: dict[K, float] = {}
        self._now: list[tuple[float, int, K]] = []  # the cursor's tick, in deadline order
        self._seq = count()  # orders equal deadlines; keys need not be comparable
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
        n = self._tick_of(deadline)
        if n <= self._cursor:
            # This tick's, or already behind the cursor: it fires at the next advance past it.
            heapq.heappush(self._now, (deadline, next(self._seq), key))
        else:
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
        if now_tick > self._cursor:
            # The ticks passed since: every timer of them is due (a later round's stays).
            first = max(self._cursor + 1, now_tick - len(self._slots) + 1)
            for n in range(first, now_tick):
                self._fire_slot(n % len(self._slots), now, fired)
            self._cursor = now_tick
            self._load(now_tick)
        heap, deadlines = self._now, self._deadline
        while heap and heap[0][0] <= now:
            deadline, _, key = heapq.heappop(heap)
            if deadlines.get(key) == deadline:  # else cancelled or re-armed: stale
                del deadlines[key]
                fired.append((deadline, key))
        fired.sort(key=lambda item: item[0])
        return [key for _, key in fired]

    def _load(self, tick: int) -> None:
        """The cursor reached `tick`: its slot's timers of this round join the heap (which
        holds what is left of earlier ticks, all due now)."""
        index = tick % len(self._slots)
        later: list[tuple[K, float]] = []
        heap = self._now
        for key, deadline in self._slots[index]:
            if self._deadline.get(key) != deadline:
                continue
            if self._tick_of(deadline) > tick:
                later.append((key, deadline))  # a later round of the wheel
            else:
                heap.append((deadline, next(self._seq), key))
        heapq.heapify(heap)
        self._slots[index] = later

    def upcoming(self, after: float, until: float) -> list[K]:
        """The keys whose deadline lies in (after, until], without firing them."""
        out: list[K] = []
        first = max(self._tick_of(after), self._cursor)
        last = min(self._tick_of(until), first + len(self._slots) - 1)
        if first == self._cursor:
            out += [key for deadline, _, key in self._now
                    if after < deadline <= until and self._deadline.get(key) == deadline]
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
        if n == self._cursor:
            heap = self._now
            while heap and self._deadline.get(heap[0][2]) != heap[0][0]:
                heapq.heappop(heap)  # stale: cancelled or re-armed
            return heap[0][0] if heap and heap[0][0] < end else None
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
