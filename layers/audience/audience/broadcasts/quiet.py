"""Quiet hours of a marketing broadcast: no message is sent to a recipient while it is night (or whatever
the window says) where the recipient lives. The recipient's time zone comes from its phone number (the
zone of the number's country and area, as libphonenumber's geodata gives it); a contact without a
phone, or whose number's zone is unknown or ambiguous, uses the broadcast's `timezone`.

A recipient inside its quiet hours is held: its batch is sent again to SendQueue with a delay (at most
SQS's 15 minutes at a time) until the window opens, then sent as any other; the batch is tallied once,
when every recipient in it has an outcome.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as number_zones

from audience.errors import ValidationError

_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
UNKNOWN_ZONE = "Etc/Unknown"


@dataclass(frozen=True, slots=True)
class QuietHours:
    start: time  # no sends from here...
    end: time  # ...until here (the next day when it is earlier than start)
    timezone: str  # for recipients whose zone the phone does not tell

    def as_dict(self) -> dict[str, str]:
        return {"start": self.start.strftime("%H:%M"), "end": self.end.strftime("%H:%M"), "timezone": self.timezone}

    def opens_at(self, now: datetime, zone: str | None) -> datetime | None:
        """When the window opens for a recipient in `zone` (UTC), if it is quiet there at `now`; else None."""
        tz = ZoneInfo(zone or self.timezone)
        local = now.astimezone(tz)
        moment = local.time().replace(tzinfo=None)
        if self.start < self.end:
            quiet = self.start <= moment < self.end
            opening_day: date = local.date()
        else:
            quiet = moment >= self.start or moment < self.end
            opening_day = local.date() if moment < self.end else local.date() + timedelta(days=1)
        if not quiet:
            return None
        opening = datetime.combine(opening_day, self.end, tzinfo=tz)
        # A window that opens inside a daylight-saving gap opens when the gap ends.
        return max(opening.astimezone(UTC), now.astimezone(UTC) + timedelta(seconds=1))


def closes_at(quiet: QuietHours, now: datetime, zone: str | None) -> datetime:
    """When quiet hours next begin for a recipient in `zone` (UTC)."""
    tz = ZoneInfo(zone or quiet.timezone)
    local = now.astimezone(tz)
    start = datetime.combine(local.date(), quiet.start, tzinfo=tz)
    if start <= local:
        start = datetime.combine(local.date() + timedelta(days=1), quiet.start, tzinfo=tz)
    return start.astimezone(UTC)


def parse_clock(value: Any, path: str) -> time:
    """A time of day written HH:MM."""
    found = _CLOCK.match(value) if isinstance(value, str) else None
    if found is None:
        raise ValidationError.for_field(path, value, "must be a time of day, HH:MM (00:00 to 23:59)")
    return time(int(found[1]), int(found[2]))


def parse_quiet_hours(data: Any, *, path: str = "quiet_hours") -> QuietHours | None:
    if data is None:
        return None
    if not isinstance(data, dict) or set(data) - {"start", "end", "timezone"}:
        raise ValidationError.for_field(path, None, "must be {start, end, timezone}")
    bounds = [parse_clock(data.get(name), f"{path}.{name}") for name in ("start", "end")]
    if bounds[0] == bounds[1]:
        raise ValidationError.for_field(f"{path}.end", data.get("end"), "must differ from start")
    zone = data.get("timezone", "UTC")
    if not isinstance(zone, str) or not valid_zone(zone):
        raise ValidationError.for_field(f"{path}.timezone", zone, "must be an IANA time zone, like Europe/Berlin")
    return QuietHours(bounds[0], bounds[1], zone)


def valid_zone(zone: str) -> bool:
    if len(zone) > 64 or zone == UNKNOWN_ZONE:
        return False
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


@lru_cache(maxsize=8192)
def zone_of_phone(phone: str | None) -> str | None:
    """The time zone of an E.164 number, when its country and area have exactly one; None otherwise (a
    mobile range spanning a continent, like Russia's or Australia's, tells nothing reliable: the
    broadcast's zone is used)."""
    if not phone:
        return None
    try:
        number = phonenumbers.parse(phone)
    except phonenumbers.NumberParseException:
        return None
    zones = {z for z in number_zones.time_zones_for_number(number) if z != UNKNOWN_ZONE and valid_zone(z)}
    if not zones:
        return None
    if len(zones) == 1:
        return zones.pop()
    # Several names for one offset all year (Europe/London, Europe/Isle_of_Man, ...) are one zone.
    offsets = {_offsets(z) for z in zones}
    return min(zones) if len(offsets) == 1 else None


def _offsets(zone: str) -> tuple[Any, Any]:
    tz = ZoneInfo(zone)
    return (
        datetime(2026, 1, 15, 12, tzinfo=UTC).astimezone(tz).utcoffset(),
        datetime(2026, 7, 15, 12, tzinfo=UTC).astimezone(tz).utcoffset(),
    )
