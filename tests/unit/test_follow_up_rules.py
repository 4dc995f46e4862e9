"""Follow-up rules: parsing with errors that name the field, the timeline of steps, business hours across
days and zones, execution names, and due times in words."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from audience.errors import ValidationError
from audience.followups.rules import parse_business_hours, parse_rules
from audience.followups.service import execution_name, in_words

BASE = {"enabled": True, "idle_seconds": 3600, "messages": [{"text": "Still there?"}]}


def test_the_timeline_idle_then_intervals_with_the_last_repeating_then_closing() -> None:
    rules = parse_rules({**BASE, "intervals_seconds": [7200, 86400], "max_follow_ups": 4})
    assert [rules.wait_after(n) for n in range(5)] == [3600, 7200, 86400, 86400, 86400]
    closing = parse_rules({**BASE, "max_follow_ups": 2, "closing": {"after_seconds": 60}})
    assert [closing.wait_after(n) for n in range(3)] == [3600, 3600, 60]
    none = parse_rules({**BASE, "max_follow_ups": 0})
    assert none.wait_after(0) == 3600  # straight to closing after the idle time


def test_each_step_takes_its_message_and_the_last_repeats() -> None:
    rules = parse_rules({**BASE, "messages": [{"text": "one"}, {"text": "two"}], "max_follow_ups": 3})
    assert [rules.message(n).text for n in range(3)] == ["one", "two", "two"]


def test_defaults_are_three_follow_ups_and_off() -> None:
    rules = parse_rules({})
    assert (rules.enabled, rules.max_follow_ups, rules.resolve) == (False, 3, True)
    stored = parse_rules({**BASE, "closing": {"message": {"text": "bye"}}}).as_dict()
    again = parse_rules({k: v for k, v in stored.items() if k not in ("connection_id", "updated_at", "business_hours")})
    assert again.as_dict() == stored


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"enabled": "yes"}, "enabled"),
        ({"idle_seconds": 0}, "idle_seconds"),
        ({"idle_seconds": 40 * 86400}, "idle_seconds"),
        ({"intervals_seconds": [60, -1]}, "intervals_seconds[1]"),
        ({"max_follow_ups": 11}, "max_follow_ups"),
        ({"enabled": True, "max_follow_ups": 1}, "messages"),
        ({"messages": [{"text": ""}]}, "messages[0].text"),
        ({"messages": [{"template": {"name": "x", "language": "english please"}}]}, "messages[0].template.language"),
        ({"messages": [{"template": {"name": "x", "body": [""]}}]}, "messages[0].template.body[0]"),
        ({"closing": {"after_seconds": 0}}, "closing.after_seconds"),
        ({"closing": {"resolve": "no"}}, "closing.resolve"),
        ({"closing": {"message": {}}}, "closing.message"),
        ({"business_hours": {"days": ["monday"], "start": "09:00", "end": "17:00"}}, "business_hours.days"),
        ({"business_hours": {"start": "9am", "end": "17:00"}}, "business_hours.start"),
        ({"business_hours": {"start": "17:00", "end": "09:00"}}, "business_hours.end"),
        (
            {"business_hours": {"start": "09:00", "end": "17:00", "timezone": "Europe/Nowhere"}},
            "business_hours.timezone",
        ),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_rules_name_the_field(data: dict, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_rules(data)
    assert caught.value.fields[0]["field"] == field


HOURS = parse_business_hours(
    {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00", "timezone": "Europe/London"}
)


@pytest.mark.parametrize(
    ("moment", "zone", "expected"),
    [
        # Inside the hours: at once.
        (datetime(2026, 11, 24, 10, 0, tzinfo=UTC), None, datetime(2026, 11, 24, 10, 0, tzinfo=UTC)),
        # Before opening: that morning. After closing: the next morning.
        (datetime(2026, 11, 24, 7, 30, tzinfo=UTC), None, datetime(2026, 11, 24, 9, 0, tzinfo=UTC)),
        (datetime(2026, 11, 24, 17, 0, tzinfo=UTC), None, datetime(2026, 11, 25, 9, 0, tzinfo=UTC)),
        # Friday evening: Monday morning.
        (datetime(2026, 11, 27, 18, 0, tzinfo=UTC), None, datetime(2026, 11, 30, 9, 0, tzinfo=UTC)),
        # The contact's own zone: 10:00 UTC is 17:00 in Jakarta, closed; 09:00 WIB is 02:00 UTC.
        (datetime(2026, 11, 24, 10, 0, tzinfo=UTC), "Asia/Jakarta", datetime(2026, 11, 25, 2, 0, tzinfo=UTC)),
        # Summer time in London: 09:00 BST is 08:00 UTC.
        (datetime(2026, 7, 1, 6, 0, tzinfo=UTC), None, datetime(2026, 7, 1, 8, 0, tzinfo=UTC)),
    ],
)
def test_business_hours_next_opening(moment: datetime, zone: str | None, expected: datetime) -> None:
    assert HOURS is not None
    assert HOURS.next_open(moment, zone) == expected


def test_execution_names_are_stable_short_and_distinct() -> None:
    name = execution_name("org_1", "ct_1", "whatsapp", "wamid.HBgM" + "x" * 200)
    assert name == execution_name("org_1", "ct_1", "whatsapp", "wamid.HBgM" + "x" * 200)
    assert len(name) <= 80
    assert name.replace("-", "").isalnum()
    assert name != execution_name("org_1", "ct_1", "whatsapp", "wamid.other")
    assert name != execution_name("org_2", "ct_1", "whatsapp", "wamid.HBgM" + "x" * 200)


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0.2, "now"),
        (1, "in 1 second"),
        (59, "in 59 seconds"),
        (60, "in 1 minute"),
        (82799, "in 22 hours"),
        (86399, "in 23 hours"),
        (86400, "in 1 day"),
        (3 * 86400 + 5, "in 3 days"),
    ],
)
def test_due_times_in_words(seconds: float, words: str) -> None:
    assert in_words(seconds) == words
