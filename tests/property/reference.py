"""A reference evaluator for segment rules, written from docs/segments.md alone, to check the engine against.

It is meant to be read, not to be fast: it walks the tree as given (defaults included), reads every value
afresh, parses date-times with datetime.fromisoformat, converts them with zoneinfo, does the calendar
arithmetic itself and counts events one by one from the raw list. It shares no code with
audience.segments.rules.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from audience.contacts.models import Contact
from audience.segments.history import Event

BUILT_IN_TYPES = {
    "name": "string",
    "first_name": "string",
    "last_name": "string",
    "email": "string",
    "phone": "string",
    "country": "string",
    "status": "string",
    "channels": "list",
    "tags": "list",
    "created": "datetime",
    "updated": "datetime",
}

# Operators that hold for an empty value (missing, null, "", [] or a value of the wrong type).
TRUE_WHEN_EMPTY = ("is_empty", "is_not", "not_contains")


class Empty:
    """The value of an attribute that is missing, null, "", [] or of the wrong type."""


EMPTY = Empty()


def evaluate(
    tree: Mapping[str, Any],
    custom_fields: Mapping[str, str],
    contact: Contact,
    events: list[Event],
    *,
    now: datetime,
    timezone: str,
) -> bool:
    """Whether the contact with these events matches the (valid) rule tree at `now`."""
    context = Context(custom_fields, contact, events, now, ZoneInfo(timezone))
    return context.rule(tree)


class Context:
    """One contact with its events at one moment in one zone; `rule` evaluates any node of a tree."""

    def __init__(
        self, custom_fields: Mapping[str, str], contact: Contact, events: list[Event], now: datetime, zone: ZoneInfo
    ) -> None:
        self.custom_fields = custom_fields
        self.contact = contact
        self.events = events
        self.zone = zone
        self.today = now.astimezone(zone).date()  # T
        self.utc_today = now.astimezone(UTC).date()  # U

    def rule(self, node: Mapping[str, Any]) -> bool:
        if "rules" in node:
            results = [self.rule(child) for child in node["rules"]]
            return all(results) if node["match"] == "all" else any(results)
        if "attribute" in node:
            return self.attribute_clause(node)
        return self.event_clause(node)

    # -- attributes ---------------------------------------------------------------------------------

    def attribute_clause(self, clause: Mapping[str, Any]) -> bool:
        attribute = clause["attribute"]
        if attribute in BUILT_IN_TYPES:
            type_ = BUILT_IN_TYPES[attribute]
        else:
            type_ = self.custom_fields[attribute.removeprefix("custom_fields.")]
        raw = self.raw_value(attribute)
        operator = clause["operator"]
        if type_ == "datetime":
            value = self.as_datetime(raw)
        else:
            value = {
                "string": as_string,
                "list": as_list,
                "number": as_number,
                "boolean": as_boolean,
                "date": as_date,
            }[type_](raw)
        if value is EMPTY:
            return operator in TRUE_WHEN_EMPTY
        if operator == "is_empty":
            return False
        if operator == "is_not_empty":
            return True
        target = clause.get("value")
        if type_ == "string":
            return string_matches(value, operator, target)
        if type_ == "list":
            return list_matches(value, operator, target)
        if type_ == "number":
            return number_matches(value, operator, target)
        if type_ == "boolean":
            return value == target if operator == "is" else value != target
        if type_ == "date":
            return self.date_matches(value, None, operator, target, clause.get("unit"))
        instant, day = value
        return self.date_matches(day, instant, operator, target, clause.get("unit"))

    def raw_value(self, attribute: str) -> Any:
        contact = self.contact
        if attribute == "name":
            return contact.display_name()
        if attribute == "channels":
            return [entry["channel"] for entry in contact.channels]
        if attribute == "created":
            return contact.created_at
        if attribute == "updated":
            return contact.updated_at
        if attribute.startswith("custom_fields."):
            return contact.custom_fields.get(attribute.removeprefix("custom_fields."))
        return getattr(contact, attribute)

    def as_datetime(self, raw: Any) -> tuple[datetime, date] | Empty:
        """The instant and its date in the segment's zone."""
        if not isinstance(raw, str):
            return EMPTY
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            return EMPTY
        if moment.tzinfo is None:
            return EMPTY
        try:
            return moment.astimezone(UTC), moment.astimezone(self.zone).date()
        except OverflowError:
            return EMPTY

    def date_matches(self, day: date, instant: datetime | None, operator: str, target: Any, unit: Any) -> bool:
        today = self.today
        if operator in ("less_than", "less_or_equal", "greater_or_equal", "greater_than"):
            if instant is not None and not is_plain_date(target):
                # A date-time value: compare instants.
                left, right = instant, datetime.fromisoformat(target)
            else:
                left, right = day, date.fromisoformat(target)
            return {
                "less_than": left < right,
                "less_or_equal": left <= right,
                "greater_or_equal": left >= right,
                "greater_than": left > right,
            }[operator]
        if operator == "is":
            return day == date.fromisoformat(target)
        if operator == "is_not":
            return day != date.fromisoformat(target)
        if operator == "before":
            return day < date.fromisoformat(target)
        if operator == "until":
            return day <= date.fromisoformat(target)
        if operator == "since":
            return day >= date.fromisoformat(target)
        if operator == "after":
            return day > date.fromisoformat(target)
        if operator == "was":
            return day == add(today, -target, unit)
        if operator == "was_within":
            return add(today, -target, unit) <= day <= today
        if operator == "was_more_than":
            return day < add(today, -target, unit)
        if operator == "will_be_in":
            return day == add(today, target, unit)
        if operator == "will_be_within":
            return today <= day <= add(today, target, unit)
        if operator == "will_be_more_than":
            return day > add(today, target, unit)
        raise AssertionError(f"no date operator {operator}")

    # -- events -------------------------------------------------------------------------------------

    def event_clause(self, clause: Mapping[str, Any]) -> bool:
        count = self.count(clause)
        wanted = clause["count"]
        return {
            "equals": count == wanted,
            "less_than": count < wanted,
            "less_or_equal": count <= wanted,
            "more_or_equal": count >= wanted,
            "more_than": count > wanted,
        }[clause["occurs"]]

    def count(self, clause: Mapping[str, Any]) -> int:
        """The contact's events the clause counts: of its name, in its window, satisfying its conditions."""
        window = clause.get("window") or {"type": "any_time"}
        conditions = clause.get("where") or []
        count = 0
        for event in self.events:
            if clause["event"] != "*" and event.name != clause["event"]:
                continue
            if not self.in_window(event.at.astimezone(UTC).date(), window):
                continue
            if all(property_matches(event.properties, condition) for condition in conditions):
                count += 1
        return count

    def in_window(self, day: date, window: Mapping[str, Any]) -> bool:
        today = self.utc_today
        kind = window["type"]
        if kind == "any_time":
            return True
        if kind == "within_last":
            return day >= add(today, -window["value"], window["unit"])
        if kind == "before_last":
            return day < add(today, -window["value"], window["unit"])
        if kind == "between_last":
            return add(today, -window["to"], window["unit"]) <= day <= add(today, -window["from"], window["unit"])
        if kind == "after":
            return day > date.fromisoformat(window["date"])
        if kind == "before":
            return day < date.fromisoformat(window["date"])
        if kind == "between_dates":
            return date.fromisoformat(window["from"]) <= day <= date.fromisoformat(window["to"])
        raise AssertionError(f"no window {kind}")


def property_matches(properties: Mapping[str, Any], condition: Mapping[str, Any]) -> bool:
    name, operator = condition["property"], condition["operator"]
    has_it = name in properties and properties[name] is not None
    if operator == "is_empty":
        return not has_it
    if operator == "is_not_empty":
        return has_it
    target = condition["value"]
    sample = target[0] if operator == "in_list" else target
    raw = properties.get(name)
    if isinstance(sample, bool):
        value = as_boolean(raw)
    elif isinstance(sample, int | float):
        value = as_number(raw)
    else:
        value = as_string(raw)
    if value is EMPTY:
        return operator in TRUE_WHEN_EMPTY
    if isinstance(sample, bool):
        return value == target if operator == "is" else value != target
    if isinstance(sample, int | float):
        return number_matches(value, operator, target)
    return string_matches(value, operator, target)


# -- typed values ------------------------------------------------------------------------------------


def as_string(raw: Any) -> str | Empty:
    return raw if isinstance(raw, str) and raw != "" else EMPTY


def as_list(raw: Any) -> list[str] | Empty:
    if not isinstance(raw, list):
        return EMPTY
    elements = [item for item in raw if isinstance(item, str) and item != ""]
    return elements if elements else EMPTY


def as_number(raw: Any) -> int | float | Empty:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return EMPTY
    return raw


def as_boolean(raw: Any) -> bool | Empty:
    return raw if isinstance(raw, bool) else EMPTY


def as_date(raw: Any) -> date | Empty:
    if not is_plain_date(raw):
        return EMPTY
    try:
        return date.fromisoformat(raw)
    except ValueError:
        return EMPTY


def is_plain_date(raw: Any) -> bool:
    return isinstance(raw, str) and re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", raw) is not None


def string_matches(value: str, operator: str, target: Any) -> bool:
    text = value.casefold()
    if operator == "in_list":
        return text in [item.casefold() for item in target]
    wanted = target.casefold()
    return {
        "is": text == wanted,
        "is_not": text != wanted,
        "starts_with": text.startswith(wanted),
        "ends_with": text.endswith(wanted),
        "contains": wanted in text,
        "not_contains": wanted not in text,
    }[operator]


def list_matches(elements: list[str], operator: str, target: Any) -> bool:
    folded = [element.casefold() for element in elements]
    if operator == "in_list":
        return any(item.casefold() in folded for item in target)
    has_it = target.casefold() in folded
    return has_it if operator in ("is", "contains") else not has_it


def number_matches(value: float, operator: str, target: Any) -> bool:
    if operator == "in_list":
        return any(value == item for item in target)
    return {
        "is": value == target,
        "is_not": value != target,
        "less_than": value < target,
        "less_or_equal": value <= target,
        "greater_or_equal": value >= target,
        "greater_than": value > target,
    }[operator]


def add(day: date, amount: int, unit: str) -> date:
    """Calendar arithmetic: days, weeks, or months keeping the day of the month (clamped to the month's end)."""
    if unit == "days":
        return day + timedelta(days=amount)
    if unit == "weeks":
        return day + timedelta(days=7 * amount)
    month_index = day.month - 1 + amount
    year = day.year + month_index // 12
    month = month_index % 12 + 1
    last_day = calendar.monthrange(year, month)[1]
    return date(year, month, min(day.day, last_day))
