"""Time, in one place so that code never calls the clock at import time and tests can read it."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    """The current UTC time."""
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a Z, which sorts lexicographically by time.

    The year is always four digits (strftime's %Y is not, before 1000), and a moment that falls outside
    years 1-9999 once in UTC raises OverflowError.
    """
    utc = moment.astimezone(UTC)
    return f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc:%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def now_iso() -> str:
    """The current UTC time as `iso` formats it."""
    return iso(now())


def parse_zoned(value: str, field: str = "at") -> datetime:
    """An ISO 8601 time given with a zone (`Z` or `+hh:mm`) in a request; a ValidationError naming `field`
    otherwise."""
    from audience.errors import ValidationError

    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError.for_field(
            field, value, "must be an ISO 8601 time with a zone, like 2026-12-01T09:00:00Z"
        ) from None
    if moment.tzinfo is None:
        raise ValidationError.for_field(field, value, "must carry a time zone (Z or +hh:mm)")
    return moment
