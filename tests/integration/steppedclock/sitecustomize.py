"""Put on PYTHONPATH of a daemon under test: its wall clock (time.time) reads the host's
plus the offset the test writes to $STEPPED_CLOCK_FILE, followed every 20 ms, as if the
host's clock had stepped; the monotonic clock is left alone. Stepping the real host clock
would need root and disturb the whole machine: this is the one boundary faked."""

from __future__ import annotations

import os
import threading
import time

__all__: list[str] = []

_PATH = os.environ.get("STEPPED_CLOCK_FILE")

if _PATH:
    _real = time.time
    _offset = [0.0]

    def _read() -> None:
        try:
            with open(_PATH) as f:  # type: ignore[arg-type]  # narrowed by the if above
                _offset[0] = float(f.read().strip() or 0.0)
        except (OSError, ValueError):
            pass  # a test rewriting the file: keep the last offset

    def _follow() -> None:
        while True:
            _read()
            time.sleep(0.02)

    def _stepped() -> float:
        return _real() + _offset[0]

    _read()
    time.time = _stepped
    threading.Thread(target=_follow, name="stepped-clock", daemon=True).start()
