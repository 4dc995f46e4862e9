"""The segment rule language (docs/segments.md): what is rejected and where, what matches, explain, and
event history read from buckets."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from audience.contacts.models import Contact
from audience.errors import ValidationError
from audience.segments.history import (
    ALL,
    ANY,
    Bucket,
    BucketHistory,
    Event,
    aggregate,
    bucket_keys,
    canonical_props,
)
from audience.segments.rules import (
    PREDEFINED,
    RuleSet,
    Subject,
    compile_rules,
    event_ranges,
    explain,
    load_rules,
    parse_rules,
    validate_timezone,
)

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # T = U = 2026-11-23 in UTC
FIELDS = {"plan": "string", "age": "number", "vip": "boolean", "renewal": "date", "last_seen": "datetime"}


def tree_of(*rules: dict[str, Any], match: str = "all") -> dict[str, Any]:
    return {"match": match, "rules": list(rules)}


def problems(tree: Any, fields: dict[str, str] | None = None) -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as raised:
        parse_rules(tree, FIELDS if fields is None else fields)
    return raised.value.fields


def fields_named(tree: Any) -> list[str]:
    return [problem["field"] for problem in problems(tree)]


def contact(**values: Any) -> Contact:
    return Contact(id="ct_1", org_id="org_1", **values)


def matches(
    clause: dict[str, Any],
    who: Contact | None = None,
    *,
    events: Iterable[Event] = (),
    now: datetime = NOW,
    timezone: str = "UTC",
) -> bool:
    rules = parse_rules(tree_of(clause), FIELDS)
    subject = Subject(who or contact(), BucketHistory(aggregate(events)))
    return compile_rules(rules, now=now, timezone=timezone)(subject)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# -- validation ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tree", "field", "message"),
    [
        ([], "rules", "must be a group"),
        ({"attribute": "email", "operator": "is_empty"}, "rules", "must be a group"),
        ({"match": "some", "rules": [{"attribute": "email", "operator": "is_empty"}]}, "rules.match", "'all' or 'any'"),
        ({"match": "all", "rules": []}, "rules.rules", "1 to 25 rules"),
        (tree_of({"attribute": "email", "operator": "is_empty", "extra": 1}), "rules.rules[0].extra", "not a key"),
        (tree_of({"something": 1}), "rules.rules[0]", "must be a group"),
        (tree_of({"attribute": "birthday", "operator": "is_empty"}), "rules.rules[0].attribute", "is not an attribute"),
        (
            tree_of({"attribute": "custom_fields.tier", "operator": "is_empty"}),
            "rules.rules[0].attribute",
            "custom field 'tier' is not declared in this org (declared: age, last_seen, plan, renewal, vip)",
        ),
        (
            tree_of({"attribute": "email", "operator": "like", "value": "a"}),
            "rules.rules[0].operator",
            "not an operator",
        ),
        (
            tree_of({"attribute": "custom_fields.age", "operator": "starts_with", "value": "1"}),
            "rules.rules[0].operator",
            "operator 'starts_with' does not apply to number attribute 'custom_fields.age'; use one of: is, is_not, "
            "is_empty, is_not_empty, less_than, less_or_equal, greater_or_equal, greater_than, in_list",
        ),
        (tree_of({"attribute": "tags", "operator": "starts_with", "value": "v"}), "rules.rules[0].operator", "list"),
        (
            tree_of({"attribute": "custom_fields.vip", "operator": "in_list", "value": [True]}),
            "rules.rules[0].operator",
            "",
        ),
        (tree_of({"attribute": "created", "operator": "contains", "value": "2026"}), "rules.rules[0].operator", ""),
        (tree_of({"attribute": "email", "operator": "is"}), "rules.rules[0].value", "needs a value"),
        (tree_of({"attribute": "email", "operator": "is_empty", "value": "x"}), "rules.rules[0].value", "no value"),
        (tree_of({"attribute": "email", "operator": "is", "value": ""}), "rules.rules[0].value", "is_empty"),
        (tree_of({"attribute": "email", "operator": "is", "value": 5}), "rules.rules[0].value", "text"),
        (tree_of({"attribute": "custom_fields.age", "operator": "is", "value": "5"}), "rules.rules[0].value", "number"),
        (
            tree_of({"attribute": "custom_fields.age", "operator": "is", "value": True}),
            "rules.rules[0].value",
            "number",
        ),
        (
            tree_of({"attribute": "custom_fields.vip", "operator": "is", "value": 1}),
            "rules.rules[0].value",
            "true or false",
        ),
        (tree_of({"attribute": "email", "operator": "in_list", "value": []}), "rules.rules[0].value", "1 to 100"),
        (
            tree_of({"attribute": "email", "operator": "in_list", "value": ["a"] * 101}),
            "rules.rules[0].value",
            "1 to 100",
        ),
        (tree_of({"attribute": "email", "operator": "in_list", "value": ["a", 2]}), "rules.rules[0].value[1]", "text"),
        (
            tree_of({"attribute": "created", "operator": "before", "value": "2026-02-30"}),
            "rules.rules[0].value",
            "date",
        ),
        (tree_of({"attribute": "created", "operator": "is", "value": "20261123"}), "rules.rules[0].value", "date"),
        (
            tree_of({"attribute": "created", "operator": "less_than", "value": "2026-11-23T10:00:00"}),
            "rules.rules[0].value",
            "time zone",
        ),
        (
            tree_of({"attribute": "custom_fields.renewal", "operator": "less_than", "value": "2026-11-23T10:00:00Z"}),
            "rules.rules[0].value",
            "takes a date",
        ),
        (
            tree_of({"attribute": "created", "operator": "was", "value": 3}),
            "rules.rules[0].unit",
            "days, weeks, months",
        ),
        (
            tree_of({"attribute": "created", "operator": "was", "value": 3, "unit": "years"}),
            "rules.rules[0].unit",
            "days, weeks, months",
        ),
        (
            tree_of({"attribute": "created", "operator": "was", "value": -1, "unit": "days"}),
            "rules.rules[0].value",
            "0 to 100000",
        ),
        (
            tree_of({"attribute": "created", "operator": "was", "value": 1.5, "unit": "days"}),
            "rules.rules[0].value",
            "whole number",
        ),
        (
            tree_of({"attribute": "email", "operator": "is_empty", "unit": "days"}),
            "rules.rules[0].unit",
            "applies only",
        ),
        (tree_of({"event": "buy now", "occurs": "equals", "count": 1}), "rules.rules[0].event", "event name"),
        (tree_of({"event": "buy", "occurs": "at_least", "count": 1}), "rules.rules[0].occurs", "more_or_equal"),
        (tree_of({"event": "buy", "occurs": "equals", "count": 100_001}), "rules.rules[0].count", "0 to 100000"),
        (tree_of({"event": "buy", "occurs": "equals", "count": True}), "rules.rules[0].count", "whole number"),
        (
            tree_of({"event": "buy", "occurs": "equals", "count": 1, "window": {"type": "lately"}}),
            "rules.rules[0].window.type",
            "within_last",
        ),
        (
            tree_of({"event": "buy", "occurs": "equals", "count": 1, "window": {"type": "within_last", "value": 7}}),
            "rules.rules[0].window.unit",
            "days",
        ),
        (
            tree_of({"event": "buy", "occurs": "equals", "count": 1, "window": {"type": "any_time", "value": 7}}),
            "rules.rules[0].window.value",
            "not a key",
        ),
        (
            tree_of(
                {
                    "event": "buy",
                    "occurs": "equals",
                    "count": 1,
                    "window": {"type": "between_last", "from": 10, "to": 3, "unit": "days"},
                }
            ),
            "rules.rules[0].window.from",
            "must not be after 'to'",
        ),
        (
            tree_of(
                {
                    "event": "buy",
                    "occurs": "equals",
                    "count": 1,
                    "window": {"type": "between_dates", "from": "2026-11-23", "to": "2026-11-01"},
                }
            ),
            "rules.rules[0].window.from",
            "must not be after 'to'",
        ),
        (
            tree_of({"event": "buy", "occurs": "equals", "count": 1, "window": {"type": "after", "date": "soon"}}),
            "rules.rules[0].window.date",
            "date",
        ),
        (
            tree_of(
                {
                    "event": "*",
                    "occurs": "equals",
                    "count": 1,
                    "where": [{"property": "amount", "operator": "is_not_empty"}],
                }
            ),
            "rules.rules[0].where",
            "cannot be used with event '*'",
        ),
        (
            tree_of(
                {
                    "event": "buy",
                    "occurs": "equals",
                    "count": 1,
                    "where": [{"property": "amount", "operator": "is_not_empty"}] * 6,
                }
            ),
            "rules.rules[0].where",
            "at most 5",
        ),
        (
            tree_of(
                {
                    "event": "buy",
                    "occurs": "equals",
                    "count": 1,
                    "where": [{"property": "paid", "operator": "contains", "value": True}],
                }
            ),
            "rules.rules[0].where[0].operator",
            "does not apply to a boolean value",
        ),
        (
            tree_of(
                {
                    "event": "buy",
                    "occurs": "equals",
                    "count": 1,
                    "where": [{"property": "amount", "operator": "in_list", "value": [1, "2"]}],
                }
            ),
            "rules.rules[0].where[0].value[1]",
            "finite number",
        ),
        (
            tree_of(
                {"event": "buy", "occurs": "equals", "count": 1, "where": [{"property": "a b", "operator": "is_empty"}]}
            ),
            "rules.rules[0].where[0].property",
            "property name",
        ),
    ],
)
def test_each_problem_names_its_path(tree: Any, field: str, message: str) -> None:
    found = problems(tree)

    assert field in [problem["field"] for problem in found], found
    assert message in next(problem["message"] for problem in found if problem["field"] == field)


def test_every_problem_is_reported_at_once_with_the_offending_value() -> None:
    tree = tree_of(
        {"attribute": "email", "operator": "is"},
        {"match": "any", "rules": [{"attribute": "custom_fields.age", "operator": "contains", "value": "x"}]},
        {"event": "buy", "occurs": "sometimes", "count": 1},
    )

    found = problems(tree)

    assert found == [
        {"field": "rules.rules[0].value", "value": None, "message": "'is' needs a value"},
        {
            "field": "rules.rules[1].rules[0].operator",
            "value": "contains",
            "message": "operator 'contains' does not apply to number attribute 'custom_fields.age'; use one of: is, "
            "is_not, is_empty, is_not_empty, less_than, less_or_equal, greater_or_equal, greater_than, in_list",
        },
        {
            "field": "rules.rules[2].occurs",
            "value": "sometimes",
            "message": "must be one of: equals, less_than, less_or_equal, more_or_equal, more_than",
        },
    ]


def test_the_path_prefix_is_the_callers() -> None:
    with pytest.raises(ValidationError) as raised:
        parse_rules(tree_of({"attribute": "email", "operator": "is"}), {}, path="segments[2].rules")

    assert raised.value.fields[0]["field"] == "segments[2].rules.rules[0].value"
    assert raised.value.message.startswith("invalid rules: segments[2].rules.rules[0].value:")


def nested(depth: int) -> dict[str, Any]:
    """A tree whose groups nest `depth` levels deep."""
    node: dict[str, Any] = {"attribute": "email", "operator": "is_empty"}
    for _ in range(depth):
        node = tree_of(node)
    return node


def test_groups_nest_four_levels_deep_and_no_deeper() -> None:
    parse_rules(nested(4), {})

    assert problems(nested(5)) == [
        {
            "field": "rules.rules[0].rules[0].rules[0].rules[0]",
            "value": None,
            "message": "groups nest at most 4 levels deep",
        }
    ]


def test_a_group_holds_at_most_25_rules() -> None:
    clause = {"attribute": "email", "operator": "is_empty"}
    parse_rules(tree_of(*[clause] * 25), {})

    assert fields_named(tree_of(tree_of(*[clause] * 13), tree_of(*[clause] * 26))) == ["rules.rules[1].rules", "rules"]


def test_a_tree_holds_at_most_25_attribute_and_5_event_clauses() -> None:
    attribute = {"attribute": "email", "operator": "is_empty"}
    event = {"event": "buy", "occurs": "more_than", "count": 0}
    full = parse_rules(tree_of(tree_of(*[attribute] * 20), tree_of(*[attribute] * 5, *[event] * 5)), {})
    assert (full.attribute_clauses, full.event_clauses) == (25, 5)

    too_many = tree_of(tree_of(*[attribute] * 20), tree_of(*[attribute] * 6, *[event] * 6))

    assert problems(too_many) == [
        {
            "field": "rules",
            "value": "26 attribute clauses, 6 event clauses",
            "message": "a rule tree holds at most 25 attribute clauses and 5 event clauses; this one holds 26 and 6",
        }
    ]


def test_the_normalised_tree_is_complete_json_and_carries_custom_field_types() -> None:
    rules = parse_rules(
        tree_of(
            {"attribute": "custom_fields.plan", "operator": "is", "value": "Gold"},
            {"attribute": "tags", "operator": "contains", "value": "vip"},
            {"event": "buy", "occurs": "more_than", "count": 0},
        ),
        FIELDS,
    )

    assert rules.tree == tree_of(
        {"attribute": "custom_fields.plan", "operator": "is", "value": "Gold", "type": "string"},
        {"attribute": "tags", "operator": "contains", "value": "vip"},
        {"event": "buy", "occurs": "more_than", "count": 0, "window": {"type": "any_time"}, "where": []},
    )
    assert json.loads(json.dumps(rules.tree)) == rules.tree
    assert rules.event_names == frozenset({"buy"})


def test_a_stored_tree_loads_without_the_field_definitions_and_reads_the_same() -> None:
    saved = parse_rules(tree_of({"attribute": "custom_fields.age", "operator": "greater_than", "value": 30}), FIELDS)

    loaded = load_rules(saved.tree)  # the field may since have been deleted or retyped

    assert loaded == saved
    assert parse_rules(saved.tree, FIELDS) == saved  # a client may send back what it read
    with pytest.raises(ValidationError) as raised:
        load_rules(tree_of({"attribute": "custom_fields.age", "operator": "greater_than", "value": 30}))
    assert raised.value.fields[0]["field"] == "rules.rules[0].type"


@pytest.mark.parametrize(
    ("clause", "relative"),
    [
        ({"attribute": "created", "operator": "was_within", "value": 30, "unit": "days"}, True),
        ({"attribute": "created", "operator": "after", "value": "2026-01-01"}, False),
        ({"attribute": "created", "operator": "greater_than", "value": "2026-01-01"}, False),
        (
            {
                "event": "buy",
                "occurs": "equals",
                "count": 0,
                "window": {"type": "within_last", "value": 1, "unit": "days"},
            },
            True,
        ),
        ({"event": "buy", "occurs": "equals", "count": 0, "window": {"type": "after", "date": "2026-01-01"}}, False),
        ({"event": "buy", "occurs": "equals", "count": 0}, False),
    ],
)
def test_rules_that_depend_on_today_say_so(clause: dict[str, Any], relative: bool) -> None:
    assert parse_rules(tree_of(clause), FIELDS).relative is relative


def test_the_predefined_segments_are_valid_and_complementary() -> None:
    active, inactive = (parse_rules(PREDEFINED[name], {}) for name in ("active", "inactive"))
    recent = [Event("message.inbound", NOW - timedelta(days=30), {})]
    old = [Event("purchase", NOW - timedelta(days=31), {})]

    for events, is_active in ((recent, True), (old, False), ([], False)):
        subject = Subject(contact(), BucketHistory(aggregate(events)))
        assert compile_rules(active, now=NOW)(subject) is is_active
        assert compile_rules(inactive, now=NOW)(subject) is not is_active


@pytest.mark.parametrize("name", ["UTC", "Asia/Jakarta", "America/St_Johns", "Etc/GMT+5"])
def test_iana_time_zones_are_accepted(name: str) -> None:
    assert validate_timezone(name) == name


@pytest.mark.parametrize("name", ["", "Mars/Olympus", "../etc/passwd", "/etc/localtime", "localtime", 7, None])
def test_other_time_zones_are_rejected(name: Any) -> None:
    with pytest.raises(ValidationError) as raised:
        validate_timezone(name, "segment.timezone")

    assert raised.value.fields[0]["field"] == "segment.timezone"


def test_compiling_needs_an_aware_moment_and_a_known_zone() -> None:
    rules = parse_rules(PREDEFINED["active"], {})

    with pytest.raises(ValueError, match="aware"):
        compile_rules(rules, now=datetime(2026, 11, 23, 10, 0))
    with pytest.raises(ValidationError):
        compile_rules(rules, now=NOW, timezone="Mars/Olympus")


# -- attributes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("clause", "who", "expected"),
    [
        ({"attribute": "email", "operator": "is", "value": "ANA@example.com"}, contact(email="ana@example.com"), True),
        ({"attribute": "last_name", "operator": "is", "value": "STRASSE"}, contact(last_name="Straße"), True),
        ({"attribute": "email", "operator": "is_not", "value": "ana@example.com"}, contact(email="bo@x.io"), True),
        ({"attribute": "email", "operator": "starts_with", "value": "ANA@"}, contact(email="ana@example.com"), True),
        ({"attribute": "email", "operator": "ends_with", "value": ".COM"}, contact(email="ana@example.com"), True),
        ({"attribute": "email", "operator": "contains", "value": "Example"}, contact(email="ana@example.com"), True),
        (
            {"attribute": "email", "operator": "not_contains", "value": "example"},
            contact(email="ana@example.com"),
            False,
        ),
        ({"attribute": "country", "operator": "in_list", "value": ["us", "id"]}, contact(country="ID"), True),
        ({"attribute": "country", "operator": "in_list", "value": ["us", "sg"]}, contact(country="ID"), False),
        ({"attribute": "status", "operator": "is", "value": "subscribed"}, contact(), True),
        # The display name: the full name, else first and last joined.
        (
            {"attribute": "name", "operator": "is", "value": "ana lima"},
            contact(first_name="Ana", last_name="Lima"),
            True,
        ),
        ({"attribute": "name", "operator": "is", "value": "Ana"}, contact(first_name="Ana", full_name="Dr Ana"), False),
        # Empty: missing, null or "" (or of the wrong type): only is_empty, is_not and not_contains hold.
        ({"attribute": "email", "operator": "is_empty"}, contact(email=""), True),
        ({"attribute": "email", "operator": "is_not_empty"}, contact(email=""), False),
        ({"attribute": "email", "operator": "is_not", "value": "a@b.c"}, contact(), True),
        ({"attribute": "email", "operator": "not_contains", "value": "a"}, contact(), True),
        ({"attribute": "email", "operator": "starts_with", "value": "a"}, contact(), False),
        ({"attribute": "email", "operator": "in_list", "value": ["a"]}, contact(), False),
        ({"attribute": "custom_fields.plan", "operator": "is_empty"}, contact(custom_fields={"plan": 7}), True),
        (
            {"attribute": "custom_fields.plan", "operator": "is_not", "value": "7"},
            contact(custom_fields={"plan": 7}),
            True,
        ),
    ],
)
def test_string_attributes(clause: dict[str, Any], who: Contact, expected: bool) -> None:
    assert matches(clause, who) is expected


@pytest.mark.parametrize(
    ("clause", "who", "expected"),
    [
        ({"attribute": "tags", "operator": "contains", "value": "VIP"}, contact(tags=["vip", "new"]), True),
        ({"attribute": "tags", "operator": "is", "value": "vip"}, contact(tags=["VIP"]), True),
        # On a list, contains means "has the element", not a substring of one.
        ({"attribute": "tags", "operator": "contains", "value": "vi"}, contact(tags=["vip"]), False),
        ({"attribute": "tags", "operator": "not_contains", "value": "vip"}, contact(tags=["new"]), True),
        ({"attribute": "tags", "operator": "is_not", "value": "vip"}, contact(tags=["vip"]), False),
        ({"attribute": "tags", "operator": "in_list", "value": ["gold", "NEW"]}, contact(tags=["vip", "new"]), True),
        ({"attribute": "tags", "operator": "in_list", "value": ["gold"]}, contact(tags=["vip", "new"]), False),
        ({"attribute": "tags", "operator": "is_empty"}, contact(tags=[]), True),
        ({"attribute": "tags", "operator": "not_contains", "value": "vip"}, contact(tags=[]), True),
        (
            {"attribute": "channels", "operator": "contains", "value": "WhatsApp"},
            contact(channels=[{"channel": "whatsapp", "user_id": "1"}, {"channel": "whatsapp", "user_id": "2"}]),
            True,
        ),
        ({"attribute": "channels", "operator": "is_not_empty"}, contact(), False),
    ],
)
def test_list_attributes(clause: dict[str, Any], who: Contact, expected: bool) -> None:
    assert matches(clause, who) is expected


@pytest.mark.parametrize(
    ("operator", "value", "stored", "expected"),
    [
        ("is", 30, 30.0, True),
        ("is_not", 30, 31, True),
        ("less_than", 30, 29.5, True),
        ("less_than", 30, 30, False),
        ("less_or_equal", 30, 30, True),
        ("greater_or_equal", 30, 30, True),
        ("greater_than", 30, 30, False),
        ("greater_than", -1.5, 0, True),
        ("in_list", [1, 2.5], 2.5, True),
        ("in_list", [1, 2.5], 3, False),
        # A boolean is not a number, and neither is text holding one: both count as empty.
        ("is", 1, True, False),
        ("is_not", 1, True, True),
        ("greater_than", 0, "5", False),
        ("is_empty", None, "5", True),
        ("is_not_empty", None, 0, True),
    ],
)
def test_number_attributes(operator: str, value: Any, stored: Any, expected: bool) -> None:
    clause = {"attribute": "custom_fields.age", "operator": operator}
    if value is not None:
        clause["value"] = value

    assert matches(clause, contact(custom_fields={"age": stored})) is expected


@pytest.mark.parametrize(
    ("operator", "value", "stored", "expected"),
    [
        ("is", True, True, True),
        ("is", False, True, False),
        ("is", False, False, True),
        ("is_not", True, False, True),
        ("is_not", True, None, True),
        ("is", True, 1, False),  # 1 is not true: it is a value of the wrong type
        ("is_empty", None, "true", True),
        ("is_not_empty", None, False, True),
    ],
)
def test_boolean_attributes(operator: str, value: Any, stored: Any, expected: bool) -> None:
    clause = {"attribute": "custom_fields.vip", "operator": operator}
    if value is not None:
        clause["value"] = value
    custom_fields = {} if stored is None else {"vip": stored}

    assert matches(clause, contact(custom_fields=custom_fields)) is expected


# T = 2026-11-23 for all of these.
@pytest.mark.parametrize(
    ("operator", "value", "unit", "stored", "expected"),
    [
        ("was", 3, "days", "2026-11-20", True),
        ("was", 3, "days", "2026-11-21", False),
        ("was", 2, "weeks", "2026-11-09", True),
        ("was_within", 3, "days", "2026-11-20", True),
        ("was_within", 3, "days", "2026-11-19", False),
        ("was_within", 3, "days", "2026-11-24", False),
        ("was_more_than", 3, "days", "2026-11-19", True),
        ("was_more_than", 3, "days", "2026-11-20", False),
        ("will_be_in", 1, "months", "2026-12-23", True),
        ("will_be_within", 7, "days", "2026-11-23", True),
        ("will_be_within", 7, "days", "2026-11-30", True),
        ("will_be_within", 7, "days", "2026-12-01", False),
        ("will_be_more_than", 7, "days", "2026-12-01", True),
        ("will_be_more_than", 7, "days", "2026-11-30", False),
        ("was", 0, "days", "2026-11-23", True),
        # Amounts beyond the calendar: nothing is that long ago, everything is within it.
        ("was_more_than", 100_000, "months", "0001-01-01", False),
        ("was_within", 100_000, "months", "0001-01-01", True),
        ("will_be_in", 100_000, "months", "9999-12-31", False),
    ],
)
def test_relative_dates(operator: str, value: int, unit: str, stored: str, expected: bool) -> None:
    clause = {"attribute": "custom_fields.renewal", "operator": operator, "value": value, "unit": unit}

    assert matches(clause, contact(custom_fields={"renewal": stored})) is expected


@pytest.mark.parametrize(
    ("today", "operator", "amount", "stored"),
    [
        ("2026-03-31", "was", 1, "2026-02-28"),  # months keep the day, clamped to the month's last day
        ("2028-03-31", "was", 1, "2028-02-29"),
        ("2026-01-31", "will_be_in", 1, "2026-02-28"),
        ("2026-01-31", "will_be_in", 13, "2027-02-28"),
        ("2026-05-31", "was", 3, "2026-02-28"),
        ("2026-12-31", "will_be_in", 2, "2027-02-28"),
        ("2026-03-15", "was", 15, "2024-12-15"),
    ],
)
def test_months_are_calendar_months(today: str, operator: str, amount: int, stored: str) -> None:
    now = datetime.fromisoformat(f"{today}T12:00:00+00:00")
    clause = {"attribute": "custom_fields.renewal", "operator": operator, "value": amount, "unit": "months"}
    day_before = (date.fromisoformat(stored) - timedelta(days=1)).isoformat()

    assert matches(clause, contact(custom_fields={"renewal": stored}), now=now) is True
    assert matches(clause, contact(custom_fields={"renewal": day_before}), now=now) is False


@pytest.mark.parametrize(
    ("operator", "value", "expected"),
    [
        ("is", "2026-11-20", True),
        ("is_not", "2026-11-20", False),
        ("before", "2026-11-20", False),
        ("until", "2026-11-20", True),
        ("since", "2026-11-20", True),
        ("after", "2026-11-20", False),
        ("after", "2026-11-19", True),
        ("less_than", "2026-11-21", True),
        ("less_or_equal", "2026-11-20", True),
        ("greater_or_equal", "2026-11-21", False),
        ("greater_than", "2026-11-19", True),
    ],
)
def test_fixed_dates(operator: str, value: str, expected: bool) -> None:
    clause = {"attribute": "custom_fields.renewal", "operator": operator, "value": value}

    assert matches(clause, contact(custom_fields={"renewal": "2026-11-20"})) is expected


@pytest.mark.parametrize("stored", [None, "", "2026-02-30", "20261120", "2026-11-20T10:00:00Z", 20261120, True])
def test_a_date_that_is_not_a_date_is_empty(stored: Any) -> None:
    who = contact(custom_fields={"renewal": stored})

    assert matches({"attribute": "custom_fields.renewal", "operator": "is_empty"}, who) is True
    assert matches({"attribute": "custom_fields.renewal", "operator": "is_not", "value": "2026-11-20"}, who) is True
    assert matches({"attribute": "custom_fields.renewal", "operator": "before", "value": "2030-01-01"}, who) is False


def test_a_date_time_is_read_as_its_date_in_the_segments_zone() -> None:
    who = contact(created_at="2026-11-23T23:30:00.000Z")
    is_24th = {"attribute": "created", "operator": "is", "value": "2026-11-24"}

    assert matches(is_24th, who, timezone="Asia/Jakarta") is True  # 06:30 on the 24th in Jakarta
    assert matches(is_24th, who, timezone="UTC") is False
    assert matches(is_24th, contact(created_at="2026-11-24T06:30:00+07:00"), timezone="Asia/Jakarta") is True


def test_today_is_todays_date_in_the_segments_zone() -> None:
    now = at("2026-11-23T18:00:00+00:00")  # already the 24th in Jakarta, still the 23rd in Pago Pago
    created_today = {"attribute": "created", "operator": "was", "value": 0, "unit": "days"}

    assert matches(created_today, contact(created_at="2026-11-23T17:30:00.000Z"), now=now, timezone="Asia/Jakarta")
    assert not matches(created_today, contact(created_at="2026-11-23T16:30:00.000Z"), now=now, timezone="Asia/Jakarta")
    assert matches(created_today, contact(created_at="2026-11-23T16:30:00.000Z"), now=now, timezone="UTC")
    assert matches(created_today, contact(created_at="2026-11-24T10:30:00.000Z"), now=now, timezone="Pacific/Pago_Pago")


@pytest.mark.parametrize(
    ("operator", "value", "timezone", "expected"),
    [
        # Against a date-time: instants. 2026-11-23T23:30Z is 2026-11-24T06:30 in Jakarta.
        ("less_than", "2026-11-24T06:00:00+07:00", "Asia/Jakarta", False),
        ("greater_than", "2026-11-24T06:00:00+07:00", "UTC", True),
        ("less_or_equal", "2026-11-23T23:30:00Z", "UTC", True),
        ("less_than", "2026-11-23T23:30:00Z", "UTC", False),
        # Against a date: the date part in the segment's zone.
        ("less_than", "2026-11-24", "UTC", True),
        ("less_than", "2026-11-24", "Asia/Jakarta", False),
        ("greater_or_equal", "2026-11-24", "Asia/Jakarta", True),
    ],
)
def test_comparing_date_times(operator: str, value: str, timezone: str, expected: bool) -> None:
    who = contact(custom_fields={"last_seen": "2026-11-23T23:30:00.000Z"})
    clause = {"attribute": "custom_fields.last_seen", "operator": operator, "value": value}

    assert matches(clause, who, timezone=timezone) is expected


@pytest.mark.parametrize("stored", ["", "2026-11-23T10:00:00", "2026-11-23", "yesterday", 1700000000])
def test_a_date_time_without_a_zone_or_of_another_type_is_empty(stored: Any) -> None:
    who = contact(custom_fields={"last_seen": stored}, created_at=stored if isinstance(stored, str) else "")

    assert matches({"attribute": "custom_fields.last_seen", "operator": "is_empty"}, who)
    assert matches({"attribute": "created", "operator": "is_empty"}, who)
    assert not matches({"attribute": "created", "operator": "since", "value": "2000-01-01"}, who)


# -- events ---------------------------------------------------------------------------------------------

# U = 2026-11-23. Days counted by UTC date, whatever zone the event was stamped in.
EVENTS = [
    Event("purchase", at("2026-11-23T01:00:00+02:00"), {"amount": 150, "plan": "Gold", "paid": True}),  # 22nd UTC
    Event("purchase", at("2026-11-16T00:00:00+00:00"), {"amount": 80, "plan": "silver", "paid": False}),
    Event("purchase", at("2026-11-15T23:59:59+00:00"), {"amount": 300, "paid": True}),
    Event("purchase", at("2026-10-01T12:00:00+00:00"), {"amount": "n/a"}),
    Event("login", at("2026-11-24T01:00:00+00:00"), {}),  # a day ahead: the API allows it
]


@pytest.mark.parametrize(
    ("window", "count"),
    [
        (None, 4),
        ({"type": "any_time"}, 4),
        ({"type": "within_last", "value": 7, "unit": "days"}, 2),  # D >= 2026-11-16
        ({"type": "within_last", "value": 1, "unit": "weeks"}, 2),
        ({"type": "within_last", "value": 0, "unit": "days"}, 0),
        ({"type": "before_last", "value": 7, "unit": "days"}, 2),  # D < 2026-11-16
        ({"type": "between_last", "from": 1, "to": 7, "unit": "days"}, 2),
        ({"type": "between_last", "from": 2, "to": 7, "unit": "days"}, 1),
        ({"type": "within_last", "value": 2, "unit": "months"}, 4),
        ({"type": "after", "date": "2026-11-15"}, 2),
        ({"type": "before", "date": "2026-11-16"}, 2),
        ({"type": "between_dates", "from": "2026-11-15", "to": "2026-11-16"}, 2),
        ({"type": "before_last", "value": 100_000, "unit": "months"}, 0),
        ({"type": "within_last", "value": 100_000, "unit": "months"}, 4),
    ],
)
def test_event_windows_count_whole_utc_days(window: dict[str, Any] | None, count: int) -> None:
    clause: dict[str, Any] = {"event": "purchase", "occurs": "equals", "count": count}
    if window is not None:
        clause["window"] = window

    assert matches(clause, events=EVENTS)
    assert not matches({**clause, "count": count + 1}, events=EVENTS)


@pytest.mark.parametrize(
    ("where", "count"),
    [
        ([{"property": "plan", "operator": "is", "value": "GOLD"}], 1),
        ([{"property": "plan", "operator": "is_not", "value": "gold"}], 3),  # missing counts as not gold
        ([{"property": "amount", "operator": "greater_than", "value": 100}], 2),
        ([{"property": "amount", "operator": "is_not", "value": 80}], 3),  # "n/a" is not a number: empty
        ([{"property": "amount", "operator": "in_list", "value": [80, 300]}], 2),
        ([{"property": "paid", "operator": "is", "value": True}], 2),
        ([{"property": "paid", "operator": "is_not", "value": True}], 2),
        ([{"property": "plan", "operator": "is_empty"}], 2),
        ([{"property": "amount", "operator": "is_not_empty"}], 4),
        ([{"property": "plan", "operator": "starts_with", "value": "S"}], 1),
        (
            [
                {"property": "amount", "operator": "greater_than", "value": 100},
                {"property": "paid", "operator": "is", "value": True},
            ],
            2,
        ),
        (
            [
                {"property": "amount", "operator": "greater_than", "value": 100},
                {"property": "plan", "operator": "is_empty"},
            ],
            1,
        ),
        ([], 4),
    ],
)
def test_property_conditions(where: list[dict[str, Any]], count: int) -> None:
    clause = {"event": "purchase", "occurs": "equals", "count": count, "where": where}

    assert matches(clause, events=EVENTS)


@pytest.mark.parametrize(
    ("occurs", "count", "expected"),
    [
        ("equals", 5, True),
        ("less_than", 5, False),
        ("less_or_equal", 5, True),
        ("more_or_equal", 6, False),
        ("more_than", 4, True),
    ],
)
def test_any_event_and_occurs(occurs: str, count: int, expected: bool) -> None:
    assert matches({"event": "*", "occurs": occurs, "count": count}, events=EVENTS) is expected


def test_an_event_never_recorded_counts_zero() -> None:
    assert matches({"event": "refund", "occurs": "equals", "count": 0}, events=EVENTS)
    assert matches({"event": "refund", "occurs": "less_than", "count": 1})


# -- explain ------------------------------------------------------------------------------------------


def test_explain_shows_each_clause_with_the_contacts_value_or_count() -> None:
    rules = parse_rules(
        tree_of(
            {"attribute": "tags", "operator": "contains", "value": "vip"},
            tree_of(
                {"attribute": "custom_fields.plan", "operator": "in_list", "value": ["gold", "silver"]},
                {"attribute": "created", "operator": "was_within", "value": 30, "unit": "days"},
                match="any",
            ),
            {
                "event": "purchase",
                "occurs": "more_than",
                "count": 2,
                "window": {"type": "within_last", "value": 7, "unit": "days"},
                "where": [{"property": "amount", "operator": "greater_than", "value": 100}],
            },
        ),
        FIELDS,
    )
    who = contact(tags=["VIP"], custom_fields={"plan": "bronze"}, created_at="2026-11-01T00:00:00.000Z")

    explained = explain(rules, Subject(who, BucketHistory(aggregate(EVENTS))), now=NOW, timezone="UTC")

    assert explained == {
        "match": "all",
        "matched": False,
        "rules": [
            {"attribute": "tags", "operator": "contains", "value": "vip", "matched": True, "actual": ["VIP"]},
            {
                "match": "any",
                "matched": True,
                "rules": [
                    {
                        "attribute": "custom_fields.plan",
                        "operator": "in_list",
                        "value": ["gold", "silver"],
                        "type": "string",
                        "matched": False,
                        "actual": "bronze",
                    },
                    {
                        "attribute": "created",
                        "operator": "was_within",
                        "value": 30,
                        "unit": "days",
                        "matched": True,
                        "actual": "2026-11-01T00:00:00.000Z",
                    },
                ],
            },
            {
                "event": "purchase",
                "occurs": "more_than",
                "count": 2,
                "window": {"type": "within_last", "value": 7, "unit": "days"},
                "where": [{"property": "amount", "operator": "greater_than", "value": 100}],
                "matched": False,
                "actual_count": 1,
                "resolved_window": {"first": date(2026, 11, 16), "last": None},
            },
        ],
    }


# -- event history -------------------------------------------------------------------------------------


def test_events_are_bucketed_by_utc_day_and_for_all_time() -> None:
    event = Event("purchase", at("2026-11-23T23:30:00-05:00"), {"plan": "gold", "amount": 5})

    assert bucket_keys(event) == [("purchase", ALL), ("purchase", "2026-11-24"), (ANY, ALL), (ANY, "2026-11-24")]
    assert canonical_props({"plan": "gold", "amount": 5}) == canonical_props({"amount": 5, "plan": "gold"})
    assert aggregate([event, event]) == {
        "purchase": {
            ALL: Bucket(2, {'{"amount":5,"plan":"gold"}': 2}),
            "2026-11-24": Bucket(2, {'{"amount":5,"plan":"gold"}': 2}),
        },
        ANY: {ALL: Bucket(2), "2026-11-24": Bucket(2)},  # "*" counts events only
    }


WINDOWS = [
    {"type": "any_time"},
    {"type": "within_last", "value": 7, "unit": "days"},
    {"type": "before_last", "value": 7, "unit": "days"},
    {"type": "between_last", "from": 2, "to": 40, "unit": "days"},
    {"type": "after", "date": "2026-11-15"},
    {"type": "before", "date": "2026-11-20"},
    {"type": "between_dates", "from": "2026-09-01", "to": "2026-11-16"},
]


def loaded_as_asked(rules: RuleSet, full: dict[str, dict[str, Bucket]]) -> dict[str, dict[str, Bucket]]:
    """The buckets a loader reads: ALL, plus the days event_ranges asks for, of each name the rules use."""
    loaded = {}
    for name, (first, last) in event_ranges(rules, now=NOW).items():
        wanted = (first.isoformat(), last.isoformat()) if first and last else None
        loaded[name] = {
            key: bucket
            for key, bucket in full.get(name, {}).items()
            if key == ALL or (wanted is not None and wanted[0] <= key <= wanted[1])
        }
    return loaded


@pytest.mark.parametrize("window", WINDOWS)
def test_all_time_plus_the_days_event_ranges_asks_for_counts_like_the_full_history(window: dict[str, Any]) -> None:
    paid = [{"property": "paid", "operator": "is", "value": True}]
    rules = parse_rules(
        tree_of(
            {"event": "purchase", "occurs": "equals", "count": 0, "window": window},
            {"event": "purchase", "occurs": "equals", "count": 0, "window": window, "where": paid},
            {"event": "*", "occurs": "equals", "count": 0, "window": window},
        ),
        {},
    )
    full = aggregate(EVENTS)

    explained = explain(rules, Subject(contact(), BucketHistory(loaded_as_asked(rules, full))), now=NOW)

    assert explained == explain(rules, Subject(contact(), BucketHistory(full)), now=NOW)


def test_event_ranges_asks_only_for_the_days_the_windows_need() -> None:
    def ranges(*windows: dict[str, Any]) -> tuple[date | None, date | None]:
        clauses = [{"event": "buy", "occurs": "equals", "count": 0, "window": w} for w in windows]
        return event_ranges(parse_rules(tree_of(*clauses), {}), now=NOW)["buy"]

    tomorrow = date(2026, 11, 24)
    assert ranges({"type": "any_time"}) == (None, None)
    assert ranges({"type": "within_last", "value": 7, "unit": "days"}) == (date(2026, 11, 16), tomorrow)
    # Before the last 7 days: ALL minus the days from 2026-11-16 on.
    assert ranges({"type": "before_last", "value": 7, "unit": "days"}) == (date(2026, 11, 16), tomorrow)
    assert ranges({"type": "between_dates", "from": "2026-10-01", "to": "2026-10-31"}) == (
        date(2026, 10, 1),
        date(2026, 10, 31),
    )
    assert ranges({"type": "after", "date": "2026-11-24"}) == (None, None)  # no event can be that late
    assert ranges({"type": "before", "date": "2026-12-01"}) == (None, None)  # ALL is exactly that
    assert ranges({"type": "within_last", "value": 3, "unit": "days"}, {"type": "before", "date": "2026-11-01"}) == (
        date(2026, 11, 1),
        tomorrow,
    )


def test_a_history_without_the_name_counts_zero() -> None:
    history = BucketHistory({})

    assert history.count("purchase", None, None, None) == 0
    assert history.count("purchase", date(2026, 1, 1), None, lambda properties: True) == 0


def test_property_sets_are_parsed_once_per_history() -> None:
    history = BucketHistory(aggregate(EVENTS))
    seen: list[dict[str, Any]] = []

    def where(properties: dict[str, Any]) -> bool:
        seen.append(properties)
        return True

    history.count("purchase", None, None, where)
    history.count("purchase", date(2026, 11, 1), None, where)

    first_pass = {id(p) for p in seen[:4]}
    assert {id(p) for p in seen[4:]} <= first_pass
