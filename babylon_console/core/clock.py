"""Time as the rest of the core sees it: naive UTC datetimes, like the game's timestamp(3) columns.

Readiness and the engine take a `Clock` rather than calling `datetime.now`, so the simulator's
accelerated clock (demo, tests) and the wall clock share one code path.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time as a naive UTC datetime."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC).replace(tzinfo=None)


def to_naive_utc(value: datetime) -> datetime:
    """Aware datetimes are converted to UTC; naive ones are taken to be UTC already."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value
