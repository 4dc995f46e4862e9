"""Quiet hours arithmetic: when a window opens and closes in a recipient's zone, and which zone a phone
number tells."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from audience.broadcasts.quiet import closes_at, parse_quiet_hours, zone_of_phone
from audience.errors import ValidationError

NIGHT = parse_quiet_hours({"start": "21:00", "end": "08:00", "timezone": "Europe/Berlin"})


def test_a_window_across_midnight_opens_at_its_end_in_the_recipients_zone() -> None:
    assert NIGHT is not None
    late = datetime(2026, 11, 24, 22, 30, tzinfo=UTC)  # 23:30 in Berlin: quiet until 08:00 the next day
    assert NIGHT.opens_at(late, None) == datetime(2026, 11, 25, 7, 0, tzinfo=UTC)
    early = datetime(2026, 11, 24, 5, 0, tzinfo=UTC)  # 06:00 in Berlin: quiet until 08:00 the same day
    assert NIGHT.opens_at(early, None) == datetime(2026, 11, 24, 7, 0, tzinfo=UTC)
    assert NIGHT.opens_at(datetime(2026, 11, 24, 12, 0, tzinfo=UTC), None) is None
    # The same moment in Los Angeles (04:00): quiet until 08:00 there.
    assert NIGHT.opens_at(datetime(2026, 11, 24, 12, 0, tzinfo=UTC), "America/Los_Angeles") == datetime(
        2026, 11, 24, 16, 0, tzinfo=UTC
    )


def test_quiet_hours_close_at_the_next_start_in_the_zone() -> None:
    assert NIGHT is not None
    assert closes_at(NIGHT, datetime(2026, 11, 24, 12, 0, tzinfo=UTC), None) == datetime(
        2026, 11, 24, 20, 0, tzinfo=UTC
    )
    # Daylight saving time: 21:00 in Berlin is 19:00 UTC in July.
    assert closes_at(NIGHT, datetime(2026, 7, 1, 12, 0, tzinfo=UTC), None) == datetime(2026, 7, 1, 19, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("phone", "zone"),
    [
        ("+14155550100", "America/Los_Angeles"),  # one zone for the area code
        ("+6281234567890", "Asia/Jakarta"),
        ("+4915112345678", "Europe/Berlin"),
        ("+447911123456", "Europe/Guernsey"),  # several names of one zone: one of them
        ("+79161234567", None),  # a Russian mobile range spans eleven zones: the broadcast's zone decides
        ("+61412345678", None),  # so does an Australian mobile
        (None, None),
        ("not a number", None),
    ],
)
def test_the_zone_a_phone_tells(phone: str | None, zone: str | None) -> None:
    assert zone_of_phone(phone) == zone


def test_bad_windows_name_the_field() -> None:
    with pytest.raises(ValidationError, match=r"quiet_hours\.start"):
        parse_quiet_hours({"start": "9", "end": "08:00"})
    with pytest.raises(ValidationError, match=r"quiet_hours\.timezone"):
        parse_quiet_hours({"start": "21:00", "end": "08:00", "timezone": "Etc/Unknown"})
