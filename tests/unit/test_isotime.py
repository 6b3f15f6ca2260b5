"""The one ISO 8601 formatter: UTC with a `Z`, at the precision asked for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from healer.core.isotime import iso


class TestIso:
    def test_formats_epoch_seconds_as_utc_with_a_z(self) -> None:
        """Moved from test_stats: the `stats` timestamps, to the millisecond."""
        assert iso(1_700_000_000.25, "milliseconds") == "2023-11-14T22:13:20.250Z"

    def test_auto_keeps_the_fraction_a_value_has(self) -> None:
        """Without a timespec a whole second has no fraction and a fraction is kept whole."""
        assert iso(1_700_000_000.0) == "2023-11-14T22:13:20Z"
        assert iso(1_700_000_000.5) == "2023-11-14T22:13:20.500000Z"

    def test_datetimes_are_converted_and_naive_ones_are_utc(self) -> None:
        """An aware datetime is shown in UTC; a naive one is taken as UTC already."""
        plus_two = datetime(2025, 1, 1, 14, 0, 0, tzinfo=timezone(timedelta(hours=2)))
        assert iso(plus_two, "seconds") == "2025-01-01T12:00:00Z"
        assert iso(datetime(2025, 1, 1, 12, 0, 0, 999), "seconds") == "2025-01-01T12:00:00Z"
        assert iso(datetime(2025, 1, 1, tzinfo=UTC)) == "2025-01-01T00:00:00Z"
