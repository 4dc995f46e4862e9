"""The segment rule language of docs/segments.md: validation, compilation to a predicate, explanation.

A rule tree is validated once (`parse_rules` for input, `load_rules` for a stored tree) and compiled once
per moment (`compile_rules`) into nested closures with every bound, folded string and set precomputed, so
that evaluating a contact does no parsing of the rules. The stream consumer evaluates every segment of
an org on each contact change, so this module imports only the standard library and the domain model.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import partial
from operator import attrgetter
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from audience.contacts import quality
from audience.contacts.models import CHANNELS, Contact
from audience.errors import ValidationError, displayable

MAX_ATTRIBUTE_CLAUSES = 25
MAX_EVENT_CLAUSES = 5
MAX_DEPTH = 4
MAX_GROUP_RULES = 25
MAX_LIST_VALUES = 100
MAX_WHERE = 5
MAX_COUNT = 100_000
# Relative amounts (`was 30 days`, `within_last 2 weeks`) are capped like counts; larger ones would
# only reach outside the calendar, which the engine handles but nobody means.
MAX_AMOUNT = 100_000
MAX_TEXT = 2048  # as a custom string field

STRING, LIST, NUMBER, BOOLEAN, DATE, DATETIME = "string", "list", "number", "boolean", "date", "datetime"
FIELD_TYPES = (STRING, NUMBER, BOOLEAN, DATE, DATETIME)
CUSTOM_PREFIX = "custom_fields."

ATTRIBUTES: dict[str, str] = {
    "name": STRING,
    "first_name": STRING,
    "last_name": STRING,
    "email": STRING,
    "phone": STRING,
    "country": STRING,
    "status": STRING,
    "channels": LIST,
    "tags": LIST,
    "created": DATETIME,
    "updated": DATETIME,
    # Contact quality (audience.contacts.quality, docs/contact-quality.md).
    "validation_score": NUMBER,
    "system_tags": LIST,
    "phone_type": STRING,
    **{f"reachability.{channel}": NUMBER for channel in CHANNELS},
    # Engagement: counts in the last 30 or 90 days (relative to today, so refreshed daily) and in all.
    **{f"{name}_{days}d": NUMBER for name in quality.WINDOWED for days in quality.WINDOWS},
    "broadcasts_received": NUMBER,
    "last_engaged": DATETIME,
}
# Attributes that reachability and engagement facts change (segments/stream.py skips evaluating a fact-only
# change of a contact for an org none of whose segments read one).
QUALITY_ATTRIBUTES = frozenset(
    name for name in ATTRIBUTES if name.startswith(("reachability.", "messages_", "broadcasts_"))
) | {"system_tags", "last_engaged"}
# Attributes whose value depends on today: a rule naming one is relative.
_WINDOWED = {f"{name}_{days}d": (quality.WINDOWED[name], days) for name in quality.WINDOWED for days in quality.WINDOWS}

_EQUALITY = ("is", "is_not")
_PRESENCE = ("is_empty", "is_not_empty")
_ORDER = ("less_than", "less_or_equal", "greater_or_equal", "greater_than")
_TEXT = ("starts_with", "ends_with", "contains", "not_contains")
_RELATIVE = ("will_be_in", "will_be_within", "will_be_more_than", "was", "was_within", "was_more_than")
_FIXED = ("before", "until", "since", "after")
_DATED = _EQUALITY + _PRESENCE + _ORDER + _RELATIVE + _FIXED
OPERATORS: dict[str, tuple[str, ...]] = {
    STRING: (*_EQUALITY, *_PRESENCE, *_TEXT, "in_list"),
    LIST: (*_EQUALITY, *_PRESENCE, "contains", "not_contains", "in_list"),
    NUMBER: (*_EQUALITY, *_PRESENCE, *_ORDER, "in_list"),
    BOOLEAN: (*_EQUALITY, *_PRESENCE),
    DATE: _DATED,
    DATETIME: _DATED,
}
_ALL_OPERATORS = tuple(dict.fromkeys(op for ops in OPERATORS.values() for op in ops))
# Operators that are true on an empty value (docs: "is_empty, is_not and not_contains are true").
_NEGATIVE = frozenset({"is_empty", "is_not", "not_contains"})

UNITS = ("days", "weeks", "months")
OCCURS: dict[str, Callable[[int, int], bool]] = {
    "equals": operator.eq,
    "less_than": operator.lt,
    "less_or_equal": operator.le,
    "more_or_equal": operator.ge,
    "more_than": operator.gt,
}
WINDOWS = ("any_time", "within_last", "before_last", "between_last", "after", "before", "between_dates")
_RELATIVE_WINDOWS = frozenset({"within_last", "before_last", "between_last"})
ANY_EVENT = "*"

_EVENT_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_PROPERTY_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # as events.py accepts them
_DATE_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_DATETIME_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}T.+", re.ASCII | re.DOTALL)
_ZONE_NAME = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*")

PREDEFINED: dict[str, dict[str, Any]] = {
    "active": {
        "match": "all",
        "rules": [
            {
                "event": "*",
                "occurs": "more_or_equal",
                "count": 1,
                "window": {"type": "within_last", "value": 30, "unit": "days"},
            }
        ],
    },
    "inactive": {
        "match": "all",
        "rules": [
            {
                "event": "*",
                "occurs": "equals",
                "count": 0,
                "window": {"type": "within_last", "value": 30, "unit": "days"},
            }
        ],
    },
}


class EventHistory(Protocol):
    """A contact's events as rules read them (see segments/history.py)."""

    def count(
        self,
        name: str,
        first: date | None,
        last: date | None,
        where: Callable[[Mapping[str, Any]], bool] | None,
    ) -> int:
        """Events named `name` (or any, for `*`) whose UTC day D is within first <= D <= last (None:
        unbounded) and whose properties satisfy `where` (None: all)."""
        ...


@dataclass(frozen=True, slots=True)
class Subject:
    """What a rule tree is evaluated against: the contact and its event history."""

    contact: Contact
    events: EventHistory


@dataclass(frozen=True, slots=True)
class RuleSet:
    """A validated rule tree. `tree` is normalised and JSON-serialisable: it is what a segment stores,
    and custom-field clauses carry the field's type so that it can be evaluated without the org's field
    definitions (which may change after the segment was saved)."""

    tree: dict[str, Any]
    attribute_clauses: int
    event_clauses: int
    event_names: frozenset[str]
    relative: bool  # depends on today: a daily refresh must re-evaluate it


Predicate = Callable[[Subject], bool]
Window = tuple[date | None, date | None]


# -- validation -----------------------------------------------------------------------------------


def parse_rules(tree: Any, custom_fields: Mapping[str, str], *, path: str = "rules") -> RuleSet:
    """Validate a rule tree from a client against the org's custom fields (name -> type) and normalise it.

    Raises ValidationError listing every problem with its dotted path (`rules.rules[1].operator`).
    """
    return _Parser(custom_fields).rule_set(tree, path)


def load_rules(tree: Mapping[str, Any]) -> RuleSet:
    """A rule set from a stored normalised tree: custom-field types come from the tree itself."""
    return _Parser(None).rule_set(tree, "rules")


def validate_timezone(name: Any, field: str = "timezone") -> str:
    """`name` if it is an IANA time zone name this runtime knows, else ValidationError."""
    if isinstance(name, str) and len(name) <= 64 and _ZONE_NAME.fullmatch(name) and name != "localtime":
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
        else:
            return name
    raise ValidationError.for_field(field, name, "must be an IANA time zone name, for example UTC or Asia/Jakarta")


def _one_of(options: tuple[str, ...]) -> str:
    return ", ".join(options)


class _Parser:
    """Walks a tree once, collecting every problem (rather than stopping at the first) and the counts."""

    def __init__(self, custom_fields: Mapping[str, str] | None) -> None:
        self._fields = custom_fields  # None: a stored tree, whose clauses carry their type
        self._problems: list[dict[str, Any]] = []
        self._attribute_clauses = 0
        self._event_clauses = 0
        self._event_names: set[str] = set()
        self._relative = False

    def rule_set(self, tree: Any, path: str) -> RuleSet:
        normalised = self._group(tree, path, 1)
        if self._attribute_clauses > MAX_ATTRIBUTE_CLAUSES or self._event_clauses > MAX_EVENT_CLAUSES:
            self._problem(
                path,
                f"{self._attribute_clauses} attribute clauses, {self._event_clauses} event clauses",
                f"a rule tree holds at most {MAX_ATTRIBUTE_CLAUSES} attribute clauses and {MAX_EVENT_CLAUSES} "
                f"event clauses; this one holds {self._attribute_clauses} and {self._event_clauses}",
            )
        if self._problems:
            first = self._problems[0]
            more = f" (and {len(self._problems) - 1} more problems)" if len(self._problems) > 1 else ""
            raise ValidationError(f"invalid rules: {first['field']}: {first['message']}{more}", self._problems)
        assert normalised is not None  # every path that returns None records a problem
        return RuleSet(
            tree=normalised,
            attribute_clauses=self._attribute_clauses,
            event_clauses=self._event_clauses,
            event_names=frozenset(self._event_names),
            relative=self._relative,
        )

    def _problem(self, path: str, value: Any, message: str) -> None:
        self._problems.append({"field": path, "value": displayable(value), "message": message})

    def _unknown_keys(self, node: Mapping[str, Any], allowed: tuple[str, ...], path: str, what: str) -> None:
        for key in node:
            if key not in allowed:
                self._problem(f"{path}.{key}", node[key], f"is not a key of {what} (keys: {_one_of(allowed)})")

    # -- groups ---------------------------------------------------------------------------------------

    def _group(self, node: Any, path: str, depth: int) -> dict[str, Any] | None:
        if not isinstance(node, Mapping) or "attribute" in node or "event" in node:
            self._problem(path, node, 'must be a group: {"match": "all" | "any", "rules": [...]}')
            return None
        self._unknown_keys(node, ("match", "rules"), path, "a group")
        match = node.get("match")
        if match not in ("all", "any"):
            self._problem(f"{path}.match", match, "must be 'all' or 'any'")
        rules = node.get("rules")
        if not isinstance(rules, list) or not rules:
            self._problem(f"{path}.rules", rules, f"must be a list of 1 to {MAX_GROUP_RULES} rules")
            return None
        if len(rules) > MAX_GROUP_RULES:
            self._problem(
                f"{path}.rules", f"{len(rules)} rules", f"a group holds at most {MAX_GROUP_RULES} rules; nest groups"
            )
        children = [self._rule(child, f"{path}.rules[{i}]", depth) for i, child in enumerate(rules)]
        return {"match": match, "rules": children}

    def _rule(self, node: Any, path: str, depth: int) -> dict[str, Any] | None:
        if isinstance(node, Mapping):
            if "attribute" in node:
                return self._attribute(node, path)
            if "event" in node:
                return self._event(node, path)
            if "match" in node or "rules" in node:
                if depth >= MAX_DEPTH:
                    # Not descended into: a tree nested without limit must not exhaust the stack.
                    self._problem(path, None, f"groups nest at most {MAX_DEPTH} levels deep")
                    return None
                return self._group(node, path, depth + 1)
        self._problem(
            path,
            node,
            "must be a group {match, rules}, an attribute clause {attribute, operator, value} "
            "or an event clause {event, occurs, count}",
        )
        return None

    # -- attribute clauses --------------------------------------------------------------------------

    def _attribute(self, node: Mapping[str, Any], path: str) -> dict[str, Any] | None:
        self._attribute_clauses += 1
        attribute = node["attribute"]
        type_ = self._attribute_type(node, path)
        custom = type_ is not None and attribute not in ATTRIBUTES
        allowed = (
            ("attribute", "operator", "value", "unit", "type") if custom else ("attribute", "operator", "value", "unit")
        )
        self._unknown_keys(node, allowed, path, "an attribute clause")
        op = node.get("operator")
        if not isinstance(op, str) or op not in _ALL_OPERATORS:
            options = OPERATORS[type_] if type_ else _ALL_OPERATORS
            self._problem(f"{path}.operator", op, f"is not an operator; use one of: {_one_of(options)}")
            return None
        if type_ is None:
            return None
        if op not in OPERATORS[type_]:
            self._problem(
                f"{path}.operator",
                op,
                f"operator '{op}' does not apply to {type_} attribute '{attribute}'; "
                f"use one of: {_one_of(OPERATORS[type_])}",
            )
            return None
        clause: dict[str, Any] = {"attribute": attribute, "operator": op}
        value = self._operand(type_, op, node, path, f"{type_} attribute '{attribute}'")
        if value is not _NO_VALUE:
            clause["value"] = value
        if attribute in _WINDOWED:
            self._relative = True
        if op in _RELATIVE:
            self._relative = True
            clause["unit"] = self._unit(node.get("unit"), f"{path}.unit")
        elif "unit" in node:
            self._problem(f"{path}.unit", node["unit"], f"applies only to the operators {_one_of(_RELATIVE)}")
        if custom:
            clause["type"] = type_
        return clause

    def _attribute_type(self, node: Mapping[str, Any], path: str) -> str | None:
        attribute = node["attribute"]
        if not isinstance(attribute, str):
            self._problem(f"{path}.attribute", attribute, "must be an attribute name")
            return None
        if attribute in ATTRIBUTES:
            return ATTRIBUTES[attribute]
        if not attribute.startswith(CUSTOM_PREFIX):
            self._problem(
                f"{path}.attribute",
                attribute,
                f"is not an attribute; use one of: {_one_of(tuple(ATTRIBUTES))}, or custom_fields.<name>",
            )
            return None
        name = attribute[len(CUSTOM_PREFIX) :]
        if self._fields is None:
            type_ = node.get("type")
            if type_ not in FIELD_TYPES:
                self._problem(f"{path}.type", type_, f"must be the custom field's type: {_one_of(FIELD_TYPES)}")
                return None
            return type_
        type_ = self._fields.get(name)
        if type_ not in FIELD_TYPES:
            declared = ", ".join(sorted(self._fields)) or "none"
            self._problem(
                f"{path}.attribute",
                attribute,
                f"custom field '{name}' is not declared in this org (declared: {declared})",
            )
            return None
        return type_

    def _operand(self, type_: str, op: str, node: Mapping[str, Any], path: str, subject: str) -> Any:
        """The clause's value, checked for its type and operator; _NO_VALUE for is_empty/is_not_empty."""
        path = f"{path}.value"
        value = node.get("value")
        if op in _PRESENCE:
            if value is not None:
                self._problem(path, value, f"'{op}' takes no value")
            return _NO_VALUE
        if "value" not in node:
            self._problem(path, None, f"'{op}' needs a value")
            return None
        if op == "in_list":
            if not isinstance(value, list) or not 1 <= len(value) <= MAX_LIST_VALUES:
                self._problem(path, value, f"'in_list' takes a list of 1 to {MAX_LIST_VALUES} values")
                return None
            element = NUMBER if type_ == NUMBER else STRING
            for i, item in enumerate(value):
                self._scalar(element, item, f"{path}[{i}]", subject)
            return value
        if op in _RELATIVE:
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_AMOUNT:
                self._problem(path, value, f"'{op}' takes a whole number from 0 to {MAX_AMOUNT}, with a unit")
            return value
        if type_ in (DATE, DATETIME):
            if op in _ORDER and type_ == DATETIME and isinstance(value, str) and _DATETIME_SHAPE.fullmatch(value):
                if _instant(value) is None:
                    self._problem(path, value, "must be a date-time with a time zone (Z or an offset), years 1 to 9999")
                return value
            if _day(value) is None:
                hint = " or a date-time with a time zone" if op in _ORDER and type_ == DATETIME else ""
                self._problem(path, value, f"'{op}' on {subject} takes a date like 2026-11-23{hint}")
            return value
        self._scalar(LIST if type_ == LIST else type_, value, path, subject)
        return value

    def _scalar(self, type_: str, value: Any, path: str, subject: str) -> None:
        if type_ in (STRING, LIST):
            if not isinstance(value, str) or not 1 <= len(value) <= MAX_TEXT:
                self._problem(
                    path,
                    value,
                    f"{subject} compares with text of 1 to {MAX_TEXT} characters "
                    "(use is_empty / is_not_empty to test for no value)",
                )
        elif type_ == NUMBER:
            if isinstance(value, bool) or not isinstance(value, int | float) or not _finite(value):
                self._problem(path, value, f"{subject} compares with a finite number")
        elif not isinstance(value, bool):
            self._problem(path, value, f"{subject} compares with true or false")

    def _unit(self, unit: Any, path: str) -> Any:
        if unit not in UNITS:
            self._problem(path, unit, f"must be one of: {_one_of(UNITS)}")
        return unit

    # -- event clauses ------------------------------------------------------------------------------

    def _event(self, node: Mapping[str, Any], path: str) -> dict[str, Any] | None:
        self._event_clauses += 1
        self._unknown_keys(node, ("event", "occurs", "count", "window", "where"), path, "an event clause")
        name = node["event"]
        if not isinstance(name, str) or not (name == ANY_EVENT or _EVENT_NAME.fullmatch(name)):
            self._problem(f"{path}.event", name, "must be an event name (1 to 64 of A-Z a-z 0-9 _ . : -) or '*'")
        else:
            self._event_names.add(name)
        occurs = node.get("occurs")
        if not isinstance(occurs, str) or occurs not in OCCURS:
            self._problem(f"{path}.occurs", occurs, f"must be one of: {_one_of(tuple(OCCURS))}")
        count = node.get("count")
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_COUNT:
            self._problem(f"{path}.count", count, f"must be a whole number from 0 to {MAX_COUNT}")
        window = self._window(node.get("window"), f"{path}.window")
        where = node.get("where")
        conditions: list[dict[str, Any]] = []
        if where is not None:
            if not isinstance(where, list) or len(where) > MAX_WHERE:
                self._problem(f"{path}.where", where, f"must be a list of at most {MAX_WHERE} property conditions")
            elif where and name == ANY_EVENT:
                self._problem(f"{path}.where", None, "property conditions cannot be used with event '*'")
            else:
                conditions = [self._condition(c, f"{path}.where[{i}]") for i, c in enumerate(where)]
        return {"event": name, "occurs": occurs, "count": count, "window": window, "where": conditions}

    def _window(self, window: Any, path: str) -> dict[str, Any]:
        if window is None:
            return {"type": "any_time"}
        if not isinstance(window, Mapping) or window.get("type") not in WINDOWS:
            found = window.get("type") if isinstance(window, Mapping) else window
            self._problem(f"{path}.type", found, f"must be one of: {_one_of(WINDOWS)}")
            return {"type": "any_time"}
        kind = window["type"]
        if kind in _RELATIVE_WINDOWS:
            self._relative = True
        keys = {
            "any_time": (),
            "within_last": ("value", "unit"),
            "before_last": ("value", "unit"),
            "between_last": ("from", "to", "unit"),
            "after": ("date",),
            "before": ("date",),
            "between_dates": ("from", "to"),
        }[kind]
        self._unknown_keys(window, ("type", *keys), path, f"a window of type '{kind}'")
        result: dict[str, Any] = {"type": kind}
        for key in keys:
            value = window.get(key)
            if key == "unit":
                value = self._unit(value, f"{path}.unit")
            elif kind in ("after", "before", "between_dates"):
                if _day(value) is None:
                    self._problem(f"{path}.{key}", value, "must be a date like 2026-11-23")
            elif isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_AMOUNT:
                self._problem(f"{path}.{key}", value, f"must be a whole number from 0 to {MAX_AMOUNT}")
            result[key] = value
        if kind in ("between_last", "between_dates") and _ordered(result["from"], result["to"]) is False:
            self._problem(f"{path}.from", result["from"], f"must not be after 'to' ({result['to']})")
        return result

    def _condition(self, node: Any, path: str) -> dict[str, Any]:
        if not isinstance(node, Mapping):
            self._problem(path, node, "must be a property condition {property, operator, value}")
            return {}
        self._unknown_keys(node, ("property", "operator", "value"), path, "a property condition")
        name = node.get("property")
        if not isinstance(name, str) or not _PROPERTY_NAME.fullmatch(name):
            self._problem(f"{path}.property", name, "must be a property name (1 to 64 of A-Z a-z 0-9 _ . -)")
        op = node.get("operator")
        value = node.get("value")
        condition: dict[str, Any] = {"property": name, "operator": op}
        if op in _PRESENCE:
            if value is not None:
                self._problem(f"{path}.value", value, f"'{op}' takes no value")
            return condition
        type_ = _property_type(value[0] if op == "in_list" and isinstance(value, list) and value else value)
        if type_ is None and op == "in_list":
            type_ = STRING  # so that the value is reported as not being a list of values
        options = OPERATORS[type_] if type_ else tuple(dict.fromkeys(OPERATORS[STRING] + OPERATORS[NUMBER]))
        if not isinstance(op, str) or op not in _ALL_OPERATORS:
            self._problem(f"{path}.operator", op, f"is not an operator; use one of: {_one_of(options)}")
        elif op not in options:
            typed = f"a {type_} value" if type_ else "this value"
            self._problem(f"{path}.operator", op, f"does not apply to {typed}; use one of: {_one_of(options)}")
        elif type_ is None:
            self._problem(f"{path}.value", value, f"'{op}' takes a string, a number or true/false")
        else:
            condition["value"] = self._operand(type_, op, node, path, f"property '{name}'")
        return condition


_NO_VALUE: Any = object()


def _property_type(value: Any) -> str | None:
    """A property condition's type is the type of its value."""
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, int | float):
        return NUMBER
    if isinstance(value, str):
        return STRING
    return None


def _finite(value: int | float) -> bool:
    return isinstance(value, int) or math.isfinite(value)


def _ordered(low: Any, high: Any) -> bool | None:
    """Whether low <= high, for two valid amounts or two valid dates; None when either is invalid."""
    if isinstance(low, int) and isinstance(high, int) and not isinstance(low, bool) and not isinstance(high, bool):
        return low <= high
    first, last = _day(low), _day(high)
    return None if first is None or last is None else first <= last


# -- values -----------------------------------------------------------------------------------------


def _day(value: Any) -> date | None:
    """A `YYYY-MM-DD` date, or None for anything else (fromisoformat alone would take 20261123)."""
    if isinstance(value, str) and len(value) == 10 and _DATE_SHAPE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None


def _instant(value: Any) -> datetime | None:
    """An ISO 8601 date-time with a zone, in UTC; None for anything else, naive date-times included, and for
    moments that fall outside years 1-9999 in UTC."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
        return None if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _shift(day: date, amount: int, unit: str) -> date | None:
    """`day ± amount unit` as calendar arithmetic (months keep the day, clamped to the month's last day);
    None outside years 1-9999."""
    try:
        if unit == "days":
            return day + timedelta(days=amount)
        if unit == "weeks":
            return day + timedelta(weeks=amount)
    except OverflowError:
        return None
    year, month = divmod(day.year * 12 + day.month - 1 + amount, 12)
    if not 1 <= year <= 9999:
        return None
    return date(year, month + 1, min(day.day, _days_in_month(year, month + 1)))


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _next(day: date | None) -> date | None:
    return None if day is None or day == date.max else day + timedelta(days=1)


def _previous(day: date | None) -> date | None:
    return None if day is None or day == date.min else day - timedelta(days=1)


# -- compilation --------------------------------------------------------------------------------------

# A compiled rule: (contact, events, memo) -> bool. `memo` lives for one evaluation and holds conversions
# (folded tag sets, zoned dates) that several clauses on the same attribute share.
_Check = Callable[[Contact, EventHistory, dict[str, Any]], bool]
_Condition = Callable[[Mapping[str, Any]], bool]

# An inclusive date range a value must fall in, or None when no date can (a bound beyond the calendar).
_Range = tuple[date, date] | None
_EMPTY_WINDOW: Window = (date.max, date.min)  # no day is in it
_NO_MOMENT: tuple[None, None] = (None, None)
_UNREAD: Any = object()  # not in the memo yet (None is a remembered empty value)


def _channel_names(contact: Contact) -> list[Any]:
    return list(dict.fromkeys(ch.get("channel") for ch in contact.channels if isinstance(ch, Mapping)))


_BUILT_IN_VALUES: dict[str, Callable[[Contact], Any]] = {
    "name": Contact.display_name,
    "first_name": attrgetter("first_name"),
    "last_name": attrgetter("last_name"),
    "email": attrgetter("email"),
    "phone": attrgetter("phone"),
    "country": attrgetter("country"),
    "status": attrgetter("status"),
    "channels": _channel_names,
    "tags": attrgetter("tags"),
    "created": attrgetter("created_at"),
    "updated": attrgetter("updated_at"),
    "validation_score": quality.validation_score,
    "system_tags": quality.system_tags,
    "phone_type": attrgetter("phone_type"),
    **{f"reachability.{channel}": partial(quality.reachability_on, channel=channel) for channel in CHANNELS},
    "broadcasts_received": quality.broadcasts_received,
    "last_engaged": quality.last_engaged,
}


def _value_of(attribute: str) -> Callable[[Contact], Any]:
    """How to read an attribute's raw value from a contact."""
    built_in = _BUILT_IN_VALUES.get(attribute)
    if built_in is not None:
        return built_in
    name = attribute[len(CUSTOM_PREFIX) :]

    def custom_field(contact: Contact) -> Any:
        return contact.custom_fields.get(name)

    return custom_field


def _folded(values: Any) -> frozenset[str]:
    """A list attribute as the set of its non-empty text elements, case folded; empty for anything else."""
    if not isinstance(values, list):
        return frozenset()
    return frozenset(v.casefold() for v in values if isinstance(v, str) and v)


_NUMBER_TYPES = (int, float)  # a tuple: `int | float` would build a union object on every call


def _is_number(value: Any) -> bool:
    return isinstance(value, _NUMBER_TYPES) and not isinstance(value, bool)


class _Compiler:
    """Turns a normalised tree into closures for one moment: `today` in the segment's zone and `utc_today`
    are fixed here, so every relative bound is a constant by the time a contact is evaluated."""

    def __init__(self, now: datetime, timezone: str) -> None:
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("now must be an aware datetime")
        self.zone = UTC if timezone == "UTC" else ZoneInfo(validate_timezone(timezone))
        self.today = now.astimezone(self.zone).date()
        self.utc_today = now.astimezone(UTC).date()

    # -- groups -------------------------------------------------------------------------------------

    def node(self, node: Mapping[str, Any]) -> _Check:
        if "rules" in node:
            return self.group(node)
        if "attribute" in node:
            return self.attribute(node)
        return self.event(node)

    def group(self, node: Mapping[str, Any]) -> _Check:
        # Attribute clauses first: they only read the contact, while an event clause reads buckets. The
        # order of an AND or an OR does not change its result.
        children = sorted(node["rules"], key=_reads_events)
        checks = tuple(self.node(child) for child in children)
        if len(checks) == 1:
            return checks[0]
        # Plain loops rather than all()/any() over a generator: building the generator costs more than
        # most clauses do.
        if node["match"] == "all":

            def all_of(contact: Contact, events: EventHistory, memo: dict[str, Any]) -> bool:
                for check in checks:  # noqa: SIM110
                    if not check(contact, events, memo):
                        return False
                return True

            return all_of

        def any_of(contact: Contact, events: EventHistory, memo: dict[str, Any]) -> bool:
            for check in checks:  # noqa: SIM110
                if check(contact, events, memo):
                    return True
            return False

        return any_of

    # -- attribute clauses --------------------------------------------------------------------------

    def attribute(self, node: Mapping[str, Any]) -> _Check:
        attribute = node["attribute"]
        type_ = ATTRIBUTES.get(attribute) or node["type"]
        compile_type = {
            STRING: self._string,
            LIST: self._list,
            NUMBER: self._number,
            BOOLEAN: self._boolean,
            DATE: self._date,
            DATETIME: self._datetime,
        }[type_]
        return compile_type(node, self.value_of(attribute), f"{type_}:{attribute}")

    def value_of(self, attribute: str) -> Callable[[Contact], Any]:
        """How to read an attribute's value from a contact at this moment (windowed counts end today)."""
        if attribute in _WINDOWED:
            index, days = _WINDOWED[attribute]
            return partial(quality.count_in_window, index=index, today=self.utc_today, days=days)
        return _value_of(attribute)

    @staticmethod
    def _string(node: Mapping[str, Any], value_of: Callable[[Contact], Any], _key: str) -> _Check:
        op, target = node["operator"], node.get("value")
        if op in _PRESENCE:
            present = op == "is_not_empty"

            def presence(contact: Contact, events: EventHistory, memo: dict[str, Any]) -> bool:
                value = value_of(contact)
                return (isinstance(value, str) and value != "") is present

            return presence
        if op == "in_list":
            folded_targets = frozenset(t.casefold() for t in target)

            def in_list(contact: Contact, events: EventHistory, memo: dict[str, Any]) -> bool:
                value = value_of(contact)
                return isinstance(value, str) and value.casefold() in folded_targets

            return in_list
        folded = target.casefold()
        test: Callable[[str], bool] = {
            "is": folded.__eq__,
            "is_not": folded.__eq__,
            "starts_with": lambda text: text.startswith(folded),
            "ends_with": lambda text: text.endswith(folded),
            "contains": lambda text: folded in text,
            "not_contains": lambda text: folded in text,
        }[op]
        if op in _NEGATIVE:

            def negated(contact: Contact, events: EventHistory, memo: dict[str, Any]) -> bool:
                value = value_of(contact)
                return not (isinstance(value, str) and test(value.casefold()))

            return negated

        def positive(contact: Contact, events: EventHistory, memo: dict[str, Any]) -> bool:
            value = value_of(contact)
            return isinstance(value, str) and test(value.casefold())

        return positive

    @staticmethod
    def _list(node: Mapping[str, Any], value_of: Callable[[Contact], Any], key: str) -> _Check:
        op, target = node["operator"], node.get("value")

        def elements(contact: Contact, memo: dict[str, Any]) -> frozenset[str]:
            found = memo.get(key)
            if found is None:
                found = memo[key] = _folded(value_of(contact))
            return found

        if op in _PRESENCE:
            present = op == "is_not_empty"
            return lambda contact, events, memo: bool(elements(contact, memo)) is present
        if op == "in_list":
            targets = frozenset(t.casefold() for t in target)
            return lambda contact, events, memo: not targets.isdisjoint(elements(contact, memo))
        # is / contains: has the element; is_not / not_contains: has not (true on an empty list too).
        folded = target.casefold()
        if op in _NEGATIVE:
            return lambda contact, events, memo: folded not in elements(contact, memo)
        return lambda contact, events, memo: folded in elements(contact, memo)

    @staticmethod
    def _number(node: Mapping[str, Any], value_of: Callable[[Contact], Any], _key: str) -> _Check:
        op, target = node["operator"], node.get("value")
        if op in _PRESENCE:
            present = op == "is_not_empty"
            return lambda contact, events, memo: _is_number(value_of(contact)) is present
        if op == "in_list":
            targets = frozenset(target)

            def in_list(contact: Contact, events: EventHistory, memo: dict[str, Any]) -> bool:
                value = value_of(contact)
                return _is_number(value) and value in targets

            return in_list
        if op == "is_not":

            def is_not(contact: Contact, events: EventHistory, memo: dict[str, Any]) -> bool:
                value = value_of(contact)
                return not (_is_number(value) and value == target)

            return is_not
        compare = _COMPARE[op]

        def compared(contact: Contact, events: EventHistory, memo: dict[str, Any]) -> bool:
            value = value_of(contact)
            return _is_number(value) and compare(value, target)

        return compared

    @staticmethod
    def _boolean(node: Mapping[str, Any], value_of: Callable[[Contact], Any], _key: str) -> _Check:
        op, target = node["operator"], node.get("value")
        if op in _PRESENCE:
            present = op == "is_not_empty"
            return lambda contact, events, memo: isinstance(value_of(contact), bool) is present
        if op == "is":
            return lambda contact, events, memo: value_of(contact) is target
        return lambda contact, events, memo: value_of(contact) is not target

    def _date(self, node: Mapping[str, Any], value_of: Callable[[Contact], Any], key: str) -> _Check:
        def day_of(contact: Contact, memo: dict[str, Any]) -> date | None:
            day = memo.get(key, _UNREAD)
            if day is _UNREAD:
                day = memo[key] = _day(value_of(contact))
            return day

        return self._dated(node, day_of)

    def _datetime(self, node: Mapping[str, Any], value_of: Callable[[Contact], Any], key: str) -> _Check:
        zone = self.zone

        def moment_of(contact: Contact, memo: dict[str, Any]) -> tuple[datetime, date] | tuple[None, None]:
            """The instant (UTC) and its date in the segment's zone, converted once per evaluation."""
            found = memo.get(key)
            if found is None:
                instant = _instant(value_of(contact))
                if instant is None:
                    found = _NO_MOMENT
                else:
                    try:
                        found = (instant, instant.date() if zone is UTC else instant.astimezone(zone).date())
                    except OverflowError:  # its date in the zone is outside the calendar
                        found = _NO_MOMENT
                memo[key] = found
            return found

        op, target = node["operator"], node.get("value")
        if op in _ORDER and _day(target) is None:
            # Against a date-time: compare instants.
            bound = _instant(target)
            compare = _COMPARE[op]

            def instant_compared(contact: Contact, events: EventHistory, memo: dict[str, Any]) -> bool:
                instant = moment_of(contact, memo)[0]
                return instant is not None and compare(instant, bound)

            return instant_compared
        return self._dated(node, lambda contact, memo: moment_of(contact, memo)[1])

    def _dated(self, node: Mapping[str, Any], day_of: Callable[[Contact, dict[str, Any]], date | None]) -> _Check:
        """A clause on a date (or a date-time's date in the zone): every operator is a date range."""
        op = node["operator"]
        if op in _PRESENCE:
            present = op == "is_not_empty"
            return lambda contact, events, memo: (day_of(contact, memo) is not None) is present
        found = self.date_range(op, node.get("value"), node.get("unit"))
        if found is None:  # a bound beyond the calendar: no date is in range
            return lambda contact, events, memo: False
        low, high = found
        if op == "is_not":

            def outside(contact: Contact, events: EventHistory, memo: dict[str, Any]) -> bool:
                day = day_of(contact, memo)
                return day is None or not low <= day <= high

            return outside

        def inside(contact: Contact, events: EventHistory, memo: dict[str, Any]) -> bool:
            day = day_of(contact, memo)
            return day is not None and low <= day <= high

        return inside

    def date_range(self, op: str, value: Any, unit: Any) -> _Range:
        """The inclusive range of dates A for which the operator holds (is_not: the range of `is`)."""
        if op in _RELATIVE:
            today = self.today
            if op.startswith("was"):
                edge = _shift(today, -value, unit)
                low, high = {
                    "was": (edge, edge),
                    "was_within": (edge or date.min, today),
                    "was_more_than": (date.min, _previous(edge)),
                }[op]
            else:
                edge = _shift(today, value, unit)
                low, high = {
                    "will_be_in": (edge, edge),
                    "will_be_within": (today, edge or date.max),
                    "will_be_more_than": (_next(edge), date.max),
                }[op]
        else:
            day = _day(value)
            assert day is not None  # validated
            low, high = {
                "is": (day, day),
                "is_not": (day, day),
                "less_than": (date.min, _previous(day)),
                "before": (date.min, _previous(day)),
                "less_or_equal": (date.min, day),
                "until": (date.min, day),
                "greater_or_equal": (day, date.max),
                "since": (day, date.max),
                "greater_than": (_next(day), date.max),
                "after": (_next(day), date.max),
            }[op]
        return None if low is None or high is None else (low, high)

    # -- event clauses ------------------------------------------------------------------------------

    def event(self, node: Mapping[str, Any]) -> _Check:
        name, (first, last), where = node["event"], self.window(node["window"]), self.where(node["where"])
        compare, count = OCCURS[node["occurs"]], node["count"]

        def occurs(contact: Contact, events: EventHistory, memo: dict[str, Any]) -> bool:
            return compare(events.count(name, first, last, where), count)

        return occurs

    def window(self, window: Mapping[str, Any]) -> Window:
        """The window as the inclusive range of UTC days it counts (None: unbounded)."""
        return _resolve_window(window, self.utc_today)

    @staticmethod
    def where(conditions: list[Mapping[str, Any]]) -> _Condition | None:
        if not conditions:
            return None
        checks = tuple(_property_condition(c) for c in conditions)
        if len(checks) == 1:
            return checks[0]

        def all_conditions(properties: Mapping[str, Any]) -> bool:
            for check in checks:  # noqa: SIM110
                if not check(properties):
                    return False
            return True

        return all_conditions


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "is": operator.eq,
    "less_than": operator.lt,
    "less_or_equal": operator.le,
    "greater_or_equal": operator.ge,
    "greater_than": operator.gt,
}


def _reads_events(node: Mapping[str, Any]) -> bool:
    if "event" in node:
        return True
    return "rules" in node and any(_reads_events(child) for child in node["rules"])


def _property_condition(node: Mapping[str, Any]) -> _Condition:
    """A property condition: the attribute operators of its value's type, on one event property.
    is_empty / is_not_empty test whether the event has the property."""
    name, op, target = node["property"], node["operator"], node.get("value")
    if op in _PRESENCE:
        present = op == "is_not_empty"
        return lambda properties: (properties.get(name) is not None) is present
    type_ = _property_type(target[0] if op == "in_list" else target)
    if type_ == BOOLEAN:
        if op == "is":
            return lambda properties: properties.get(name) is target
        return lambda properties: properties.get(name) is not target
    if type_ == NUMBER:
        if op == "in_list":
            targets = frozenset(target)
            return lambda properties: _is_number(v := properties.get(name)) and v in targets
        if op == "is_not":
            return lambda properties: not (_is_number(v := properties.get(name)) and v == target)
        compare = _COMPARE[op]
        return lambda properties: _is_number(v := properties.get(name)) and compare(v, target)
    if op == "in_list":
        folded_targets = frozenset(t.casefold() for t in target)
        return lambda properties: isinstance(v := properties.get(name), str) and v.casefold() in folded_targets
    folded = target.casefold()
    test: Callable[[str], bool] = {
        "is": folded.__eq__,
        "is_not": folded.__eq__,
        "starts_with": lambda text: text.startswith(folded),
        "ends_with": lambda text: text.endswith(folded),
        "contains": lambda text: folded in text,
        "not_contains": lambda text: folded in text,
    }[op]
    if op in _NEGATIVE:
        return lambda properties: not (isinstance(v := properties.get(name), str) and test(v.casefold()))
    return lambda properties: isinstance(v := properties.get(name), str) and test(v.casefold())


def _resolve_window(window: Mapping[str, Any], utc_today: date) -> Window:
    """An event window as the inclusive range (first, last) of UTC days it counts, None for unbounded;
    first > last when no day is in it (a bound beyond the calendar)."""
    kind = window["type"]
    if kind == "any_time":
        return (None, None)
    if kind == "within_last":  # D >= U - n
        return (_shift(utc_today, -window["value"], window["unit"]), None)
    if kind == "before_last":  # D < U - n
        last = _previous(_shift(utc_today, -window["value"], window["unit"]))
        return _EMPTY_WINDOW if last is None else (None, last)
    if kind == "between_last":  # U - y <= D <= U - x
        last = _shift(utc_today, -window["from"], window["unit"])
        if last is None:
            return _EMPTY_WINDOW
        return (_shift(utc_today, -window["to"], window["unit"]), last)
    if kind == "after":  # D > d
        first = _next(_day(window["date"]))
        return _EMPTY_WINDOW if first is None else (first, None)
    if kind == "before":  # D < d
        last = _previous(_day(window["date"]))
        return _EMPTY_WINDOW if last is None else (None, last)
    return (_day(window["from"]), _day(window["to"]))  # between_dates


def compile_rules(rules: RuleSet, *, now: datetime, timezone: str = "UTC") -> Predicate:
    """A predicate for the rules as of `now` (aware): "today" is now's date in `timezone` for attribute
    dates and now's UTC date for event windows. Compile once per batch, evaluate per contact."""
    root = _Compiler(now, timezone).node(rules.tree)

    def predicate(subject: Subject) -> bool:
        return root(subject.contact, subject.events, {})

    return predicate


def attribute_names(tree: Mapping[str, Any]) -> set[str]:
    """The attributes a rule tree's clauses read."""
    if "rules" in tree:
        return set().union(*(attribute_names(child) for child in tree["rules"])) if tree["rules"] else set()
    return {tree["attribute"]} if "attribute" in tree else set()


def explain(rules: RuleSet, subject: Subject, *, now: datetime, timezone: str = "UTC") -> dict[str, Any]:
    """The tree with `matched` on every group and clause, the contact's value (`actual`) on attribute
    clauses, and on event clauses the count (`actual_count`) in the resolved window (`resolved_window`,
    first/last UTC days, None for unbounded). Every clause is evaluated, not only those deciding the result."""
    compiler = _Compiler(now, timezone)
    contact, events = subject.contact, subject.events
    memo: dict[str, Any] = {}

    def walk(node: Mapping[str, Any]) -> dict[str, Any]:
        if "rules" in node:
            children = [walk(child) for child in node["rules"]]
            results = [child["matched"] for child in children]
            matched = all(results) if node["match"] == "all" else any(results)
            return {**node, "rules": children, "matched": matched}
        if "attribute" in node:
            actual = compiler.value_of(node["attribute"])(contact)
            return {
                **node,
                "matched": compiler.attribute(node)(contact, events, memo),
                "actual": list(actual) if isinstance(actual, list) else actual,
            }
        first, last = compiler.window(node["window"])
        count = events.count(node["event"], first, last, compiler.where(node["where"]))
        return {
            **node,
            "matched": OCCURS[node["occurs"]](count, node["count"]),
            "actual_count": count,
            "resolved_window": {"first": first, "last": last},
        }

    return walk(rules.tree)


def event_ranges(rules: RuleSet, *, now: datetime) -> dict[str, Window]:
    """Per event name of the rules, the UTC days whose buckets a loader must read besides `ALL` so that
    BucketHistory answers every clause exactly; (None, None) when `ALL` alone is enough.

    A window bounded below needs its own days. One unbounded below is counted as ALL minus the days after
    its end, which are the days from the end on to tomorrow (the API accepts events at most one day ahead).
    """
    utc_today = now.astimezone(UTC).date()
    horizon = _next(utc_today) or date.max
    ranges: dict[str, Window] = dict.fromkeys(rules.event_names, (None, None))
    for clause in _event_clauses(rules.tree):
        first, last = _resolve_window(clause["window"], utc_today)
        if first is None:
            if last is None or last >= horizon:
                continue
            start, end = last + timedelta(days=1), horizon
        else:
            start, end = first, horizon if last is None else min(last, horizon)
            if start > end:
                continue
        current_start, current_end = ranges[clause["event"]]
        if current_start is None or current_end is None:
            ranges[clause["event"]] = (start, end)
        else:
            ranges[clause["event"]] = (min(current_start, start), max(current_end, end))
    return ranges


def _event_clauses(node: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    if "rules" in node:
        for child in node["rules"]:
            yield from _event_clauses(child)
    elif "event" in node:
        yield node
