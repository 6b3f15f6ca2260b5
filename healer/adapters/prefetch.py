"""Start-up on a cold cache: read the workspace's folders and inodes from a few threads, so
the disk serves several reads at once while the watch walk and the scan go one by one."""

from __future__ import annotations

import os
import threading
import time

__all__ = ["Prefetch"]

THREADS = 8
# A folder read from the cache takes tens of microseconds; from the disk, milliseconds.
# The first few agent folders are timed, alone, before any thread starts: on a warm cache
# the threads would only contend with the walk for the interpreter.
PROBE = 4
WARM_FOLDER = 0.0002


class Prefetch:
    """Walks the agent folders under `root` (names split between threads), listing each
    folder and stat'ing what it holds; no result is kept, only the kernel's caches fill."""

    def __init__(self, root: str, names: list[str], threads: int = THREADS) -> None:
        self._root = root
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(names[k::threads],), daemon=True,
                             name=f"healer-prefetch-{k}")
            for k in range(min(threads, len(names)))
        ]

    def start(self) -> Prefetch:
        for thread in self._threads:
            thread.start()
        return self

    @staticmethod
    def cold(root: str, names: list[str]) -> bool:
        """Whether reading the first PROBE agent folders went to the disk."""
        probe = Prefetch(root, [], 0)
        started = time.monotonic()
        folders = sum(probe._walk(os.path.join(root, name)) for name in names[:PROBE])
        return time.monotonic() - started > max(1, folders) * WARM_FOLDER

    def stop(self) -> None:
        self._stop.set()

    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def _run(self, names: list[str]) -> None:
        for name in names:
            if self._stop.is_set():
                return
            self._walk(os.path.join(self._root, name))

    def _walk(self, top: str) -> int:
        folders = 0
        stack = [top]
        while stack and not self._stop.is_set():
            path = stack.pop()
            try:
                with os.scandir(path) as entries:
                    for entry in entries:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        else:
                            entry.stat(follow_symlinks=False)
            except OSError:
                continue
            folders += 1
        return folders
