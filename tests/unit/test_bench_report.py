"""`make bench`'s report: every row of issue #16's target table, measured value beside the 1 s
and 30 s pollers of the same run, and the beat row skipped with a note when its script is
absent."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import bench


def _poller(agents: int, cycle: float) -> dict[str, Any]:
    return {"agents": agents, "cpu_per_cycle": cycle, "wall_per_cycle": cycle,
            **{f"interval_{i}": {"worst_lag_s": i + cycle, "cpu_s_per_hour": cycle * 3600 / i,
                                 "cpu_pct": 100 * cycle / i} for i in (1, 30)}}


def results(**over: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "machine": {"date": "2026-12-01T00:00:00+00:00", "nproc": 2, "cpu": "test", "memory_gb": 1,
                    "kernel": "6", "python": "3.11", "max_user_watches": 1,
                    "max_queued_events": 1},
        "sizes": [1_000, 10_000],
        "footprint": [{"agents": n, "startup_s": 0.5, "rss_mb": 42.0,
                       "idle_cpu_pct_sweep30": 0.08, "idle_cpu_pct_sweep5": 0.2,
                       "cpu_s_per_hour_sweep30": 2.0, "cpu_s_per_hour_sweep5": 3.0}
                      for n in (1_000, 10_000)],
        "poller": [_poller(1_000, 0.03), _poller(10_000, 0.4)],
        "core": {"agents": 10_000, "observe_ns": 160.0, "observe_ns_net_of_loop": 150.0,
                 "handler_ns": 900.0},
        "check": {"agents": 10_000, "wall_s": 0.8, "interpreter_and_import_s": 0.1},
        "event_cost": {"agents": 1_000, "rate": 5_000, "us_per_event": 7.25, "cpu_pct": 7.0},
        "startup": {"agents": 10_000, "cold_cache": True, "cold_s": 2.5, "warm_s": 1.4,
                    "cold_scanned_s": 4.0, "warm_scanned_s": 2.1,
                    "poller_cold_s": 3.1, "poller_warm_s": 0.4},
        "ingestion": {"agents": 1_000, "duration_s": 3.0, "max_zero_loss_rate": 25_000,
                      "latency_1000": {"samples": 10, "p50_ms": 1.0, "p99_ms": 2.0},
                      "steps": []},
        "detection": [{"agents": 10_000, "heal_after": 10.0, "tick": 0.5, "spread_s": 2.0,
                       "detected": 10_000, "undetected": 0, "early": 0, "lag_p50_ms": 300.0,
                       "lag_p99_ms": 650.0, "lag_max_ms": 690.0}],
        "overflow": [],
        "beat": None,
        "replay": {"events": 1, "trace_days": 1, "wall_s": 1.0, "compress": 1,
                   "heal_after_wall": 1.0, "tick": 0.05, "tolerance_wall": 0.5, "expected": 1,
                   "detected": 1, "matched": 1, "missed": 0, "false_positives": 0,
                   "precision": 1.0, "recall": 1.0, "lag_p50": 1.0, "lag_p99": 1.0,
                   "lag_max": 1.0, "writer_late_max_ms": 1.0},
    }
    r.update(over)
    return r


class TestTargets:
    def test_each_row_of_the_issue_is_there_with_its_verdict(self) -> None:
        rows = {row[0].split(",")[0]: row for row in bench.targets(results())}
        assert rows["CPU per ingested event"][2].startswith("7.2")
        assert rows["CPU per ingested event"][5] is True
        assert rows["zero-loss ingestion"][2] == "50,000 events/s"
        assert rows["zero-loss ingestion"][5] is True
        assert rows["detection lag p99"][5] is True
        assert rows["start-up"][2] == "2.50 s cold / 1.40 s warm (all scanned 4.00 / 2.10 s)"
        assert rows["start-up"][5] is False  # warm is over 1 s
        assert rows["RSS / idle CPU"][5] is True
        assert rows["`healer beat` wall time"][2].startswith("skipped")

    def test_the_pollers_of_the_same_run_stand_beside_each_figure(self) -> None:
        rows = bench.targets(results())
        detection = next(r for r in rows if r[0].startswith("detection"))
        assert detection[3] == "up to 1,400 ms" and detection[4] == "up to 30,400 ms"
        cpu = rows[0]
        assert cpu[3] == "3.0 % of a core, any rate"

    @pytest.mark.parametrize(("field", "value"), [("early", 1), ("undetected", 3),
                                                  ("lag_p99_ms", 701.0)])
    def test_one_early_or_missed_stall_or_a_late_p99_fails_the_detection_row(
        self, field: str, value: Any
    ) -> None:
        det = {**results()["detection"][0], field: value}
        rows = bench.targets(results(detection=[det]))
        assert next(r for r in rows if r[0].startswith("detection"))[5] is False

    def test_the_beat_row_reports_the_scripts_figures(self) -> None:
        beat = {"beat": {"median_ms": 90.0, "p95_ms": 110.0},
                "beat --hook claude-code": {"median_ms": 95.0, "p95_ms": 120.0},
                "target_ms": 150.0}
        row = bench.targets(results(beat=beat))[-1]
        assert "90.0 / 110.0 ms" in row[2] and row[5] is True

    def test_the_report_renders_every_row(self) -> None:
        text = bench.render(results())
        for row in bench.targets(results()):
            assert f"| {row[0]} | {row[1]} | {row[2]} |" in text
