"""The one ISO 8601 formatter: epoch seconds as UTC with a `Z`, the form healer writes
everywhere (files, logs, JSON, alerts)."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["iso"]


def iso(when: float | datetime, timespec: str = "auto") -> str:
    """`when` (epoch seconds, or a datetime; naive means UTC) as `YYYY-MM-DDTHH:MM:SS[.f]Z`.

    `timespec` is datetime.isoformat's: "auto" keeps what the value has, "seconds" and
    "milliseconds" cut it to that precision."""
    moment = datetime.fromtimestamp(when, UTC) if isinstance(when, int | float) else when
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")
