"""Time, in one place so that code never calls the clock at import time and tests can read it."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    """The current UTC time."""
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a Z, which sorts lexicographically by time."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def now_iso() -> str:
    """The current UTC time as `iso` formats it."""
    return iso(now())
