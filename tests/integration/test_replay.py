"""A few seconds of the real activity trace, replayed against the real daemon: every silence
longer than heal_after is caught once and on time, and nothing shorter is flagged."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

import bench_runs  # noqa: E402 (the scripts folder is put on the path first)

DAY = 86400.0


class TestTraceReplay:
    @pytest.mark.timeout(60)
    def test_a_week_of_the_trace_is_scored_perfectly(self, tmp_path: Path) -> None:
        """Eight days from day 130 (128 events, 8 agents) in 6 s wall, heal_after 0.75 s wall
        (one trace day): precision and recall are both 1.0, each detection within 0.7 s (the
        slack is for a loaded two-core machine; healer's usual lag is under 0.1 s)."""
        result = bench_runs.replay_trace(6.0, heal_after=0.75, tick=0.05, start=130 * DAY,
                                         length=8 * DAY, tolerance=0.7, workdir=tmp_path)
        assert result["events"] == 128
        assert result["expected"] >= 5, result  # the window really holds silences to find
        assert result["precision"] == 1.0, result
        assert result["recall"] == 1.0, result
        assert 0 <= result["lag_max"] <= 700, result
