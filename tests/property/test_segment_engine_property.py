"""The compiled segment engine agrees with the reference evaluator on random contacts, rules and events.

Given random declared custom fields, a contact (with empty, null, wrong-typed and differently cased
values), a valid rule tree using every operator, events around UTC and zone midnights and a moment near a
day or month boundary in one of several time zones (half-hour and ±11..14 hour offsets among them):
compile_rules, explain and the reference evaluator give the same answer, and so do event buckets loaded
only as far as event_ranges asks.

Values that depend on `now` or on the tree are built in plain functions drawing from strategies built once
at module level: composite strategies built anew for every example cost more than the checks themselves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from datetime import timezone as fixed_zone
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audience.contacts.models import Contact
from audience.errors import ValidationError
from audience.segments.history import ALL, BucketHistory, Event, aggregate
from audience.segments.rules import (
    OCCURS,
    OPERATORS,
    RuleSet,
    Subject,
    compile_rules,
    event_ranges,
    explain,
    load_rules,
    parse_rules,
)
from tests.property import reference

# Deterministic for CI: the same examples every run.
SETTINGS = settings(
    max_examples=400,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

ZONES = ["UTC", "Asia/Jakarta", "America/St_Johns", "Pacific/Kiritimati", "Pacific/Pago_Pago", "Europe/London"]
# Days where "today" in a zone differs from UTC's across a month or year end, month ends (for months
# arithmetic, a leap day among them), and Europe/London's DST changes.
BASE_DAYS = [date(2026, 11, 23), date(2026, 1, 31), date(2026, 2, 28), date(2028, 2, 29), date(2026, 3, 31)]
BASE_DAYS += [date(2026, 12, 31), date(2026, 3, 29), date(2026, 10, 25)]
FIELD_NAMES = ["plan", "age", "vip", "birthday", "renewal"]
TYPES = ["string", "number", "boolean", "date", "datetime"]
BUILT_INS = ["name", "first_name", "email", "country", "status", "channels", "tags"] + ["created", "updated"] * 2
TEXTS = ["gold", "Gold", "GOLD member", "silver", "straße", "STRASSE", "ß", "ss", "İstanbul", "i̇stanbul", "ǅ"]
TEXTS += ["vip", "whatsapp", "ana@example.com", "ID", "subscribed"]
NUMBERS = [0, 1, 1.0, -2.5, 3, 100, 100.5, 250]
EVENT_NAMES = ["purchase", "login", "signup"]
PROPERTY_NAMES = ["amount", "plan", "paid"]
CHANNELS = ["whatsapp", "WhatsApp", "sms", "email", "telegram"]
OFFSETS = [fixed_zone(timedelta(minutes=m)) for m in (0, 420, -210, 840, -660, 60, 330)]
RELATIVE = ("was", "was_within", "was_more_than", "will_be_in", "will_be_within", "will_be_more_than")
ORDER = ("less_than", "less_or_equal", "greater_or_equal", "greater_than")
_NO_NOW = datetime(2026, 1, 1, tzinfo=UTC)  # for values that are never dates (property conditions)
# What a custom field may hold besides a value of its type.
JUNK = [None, "", "2026-02-30", "20261123", "2026-11-23T10:00:00", "soon", 7, True, False, [], "1"]

texts = st.sampled_from(TEXTS)
numbers = st.sampled_from(NUMBERS)
booleans = st.booleans()
# Values are mostly drawn from small sets that meet each other, so that the boundaries of comparisons are
# hit: days from now's UTC date on and next to where the amounts below land (a month is 28 to 31 days),
# the amounts themselves, and instants on either side of a midnight in UTC or one of the zones.
AMOUNTS = [0, 1, 2, 7, 30]
near_days = st.sampled_from([-31, -30, -29, -28, -8, -7, -6, -2, -1, 0, 1, 2, 6, 7, 8, 28, 29, 30, 31])
day_offsets = st.one_of(near_days, near_days, near_days, st.integers(-70, 70))
midnights = st.sampled_from([-1, 0, 1, -421, -420, -419, -841, -840, 659, 660, 209, 210, 211])
minute_offsets = st.one_of(
    st.tuples(day_offsets, midnights), st.tuples(day_offsets, midnights), st.integers(-60 * 24 * 70, 60 * 24 * 40)
)
offsets = st.sampled_from(OFFSETS)
styles = st.integers(0, 2)
amounts = st.one_of(st.sampled_from(AMOUNTS), st.sampled_from(AMOUNTS), st.integers(0, 400))
units = st.sampled_from(["days", "weeks", "months"])
small = st.one_of(st.sampled_from(AMOUNTS), st.integers(0, 40))
counts = st.integers(0, 4)
list_sizes = st.integers(1, 4)
group_sizes = st.integers(1, 8)
properties = st.dictionaries(
    st.sampled_from(PROPERTY_NAMES), st.one_of(texts, numbers, booleans, st.none()), max_size=3
)


def pick(draw: st.DrawFn, options: list[Any] | tuple[Any, ...]) -> Any:
    return draw(st.sampled_from(options))


def draw_now(draw: st.DrawFn) -> datetime:
    """A base day at a time from the day before to the day after, often right at a boundary."""
    base = datetime.combine(pick(draw, BASE_DAYS), datetime.min.time(), UTC)
    minutes = pick(draw, [draw(st.integers(-36 * 60, 36 * 60)), -1, 0, 1, 30, 599, 600, 780, 1439])
    return base + timedelta(minutes=minutes, seconds=draw(st.integers(0, 59)))


def draw_instant(draw: st.DrawFn, now: datetime) -> datetime:
    offset = draw(minute_offsets)
    if isinstance(offset, tuple):  # near a midnight: UTC's, or some zone's
        days, minutes = offset
        return datetime.combine(now.date() + timedelta(days=days), datetime.min.time(), UTC) + timedelta(
            minutes=minutes
        )
    return now + timedelta(minutes=offset)


def iso_text(moment: datetime, offset: fixed_zone, style: int) -> str:
    if style == 0 and offset.utcoffset(None) == timedelta(0):
        return f"{moment.astimezone(UTC).isoformat(timespec='milliseconds')[:-6]}Z"  # as clock.iso writes it
    return moment.astimezone(offset).isoformat(timespec=["seconds", "milliseconds", "microseconds"][style])


def draw_datetime_text(draw: st.DrawFn, now: datetime) -> str:
    return iso_text(draw_instant(draw, now), draw(offsets), draw(styles))


def draw_date_text(draw: st.DrawFn, now: datetime) -> str:
    return (now.date() + timedelta(days=draw(day_offsets))).isoformat()


def draw_typed(draw: st.DrawFn, type_: str, now: datetime) -> Any:
    if type_ == "string":
        return draw(texts)
    if type_ == "number":
        return draw(numbers)
    if type_ == "boolean":
        return draw(booleans)
    if type_ == "date":
        return draw_date_text(draw, now)
    return draw_datetime_text(draw, now)


def draw_stored(draw: st.DrawFn, type_: str, now: datetime) -> Any:
    """A custom field value as a contact may hold it: usually of the type, sometimes empty or wrong."""
    kind = draw(st.integers(0, 4))
    if kind == 3:
        return pick(draw, JUNK)
    if kind == 4:
        return draw_typed(draw, pick(draw, TYPES), now)
    return draw_typed(draw, type_, now)


def draw_contact(draw: st.DrawFn, fields: dict[str, str], now: datetime, edges: Edges) -> Contact:
    """A contact whose values are often at or next to the edges the rules draw (see `edges_of`)."""

    def maybe(values: list[Any]) -> Any:
        return pick(draw, [None, "", *values])

    def near_edge(attribute: str, type_: str, otherwise: Any) -> Any:
        found = edges.attributes.get(attribute)
        if not found or draw(st.integers(0, 2)) == 0:
            return otherwise
        return value_at(draw, type_, pick(draw, found), edges.zone)

    custom = {
        name: near_edge(f"custom_fields.{name}", type_, draw_stored(draw, type_, now))
        for name, type_ in fields.items()
        if draw(st.integers(0, 3))
    }
    if draw(booleans):  # left behind by a field since deleted
        custom["orphan"] = draw(texts)
    tags = [pick(draw, [*TEXTS, "vip", "VIP", ""]) for _ in range(draw(st.integers(0, 3)))]
    return Contact(
        id="ct_1",
        org_id="org_1",
        status=pick(draw, ["SUBSCRIBED", "UNSUBSCRIBED", "BLOCKED"]),
        first_name=near_edge("first_name", "string", maybe(TEXTS)),
        last_name=maybe(TEXTS[:4]),
        full_name=near_edge("name", "string", pick(draw, [None, None, "", *TEXTS])),
        email=near_edge("email", "string", maybe(["Ana@Example.com", "ana@example.com", "bo@shop.io"])),
        phone=maybe(["+6281234567890", "+15551234567"]),
        country=near_edge("country", "string", maybe(["ID", "US", "id"])),
        channels=[{"channel": pick(draw, CHANNELS), "user_id": str(i)} for i in range(draw(st.integers(0, 3)))],
        custom_fields=custom,
        tags=[near_edge("tags", "string", tag) for tag in tags],
        created_at=near_edge("created", "datetime", pick(draw, [draw_datetime_text(draw, now), ""])),
        updated_at=near_edge("updated", "datetime", pick(draw, [draw_datetime_text(draw, now), ""])),
    )


# -- edges: where comparisons flip ----------------------------------------------------------------------


@dataclass
class Edges:
    """Values at which the rules' comparisons change their answer, and the days next to them: per
    attribute, ("day", date) (in the segment's zone), ("instant", datetime), or a number or text; per event
    name, UTC days. Random values seldom land exactly on `T - 30 days`; these do."""

    zone: ZoneInfo
    attributes: dict[str, list[tuple[str, Any]]] = field(default_factory=dict)
    event_days: dict[str, list[date]] = field(default_factory=dict)


def around(day: date) -> list[tuple[str, date]]:
    return [("day", day + timedelta(days=d)) for d in (-1, 0, 1)]


def edges_of(tree: dict[str, Any], now: datetime, zone: str) -> Edges:
    context = reference.Context({}, Contact(id="", org_id=""), [], now, ZoneInfo(zone))
    today, utc_today = context.today, context.utc_today
    edges = Edges(ZoneInfo(zone))

    def visit(node: dict[str, Any]) -> None:
        if "rules" in node:
            for child in node["rules"]:
                visit(child)
        elif "attribute" in node:
            found = edges.attributes.setdefault(node["attribute"], [])
            op, value = node["operator"], node.get("value")
            if op in RELATIVE:
                sign = -1 if op.startswith("was") else 1
                found += around(today) + around(reference.add(today, sign * value, node["unit"]))
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str) and reference.is_plain_date(item):
                    found += around(date.fromisoformat(item))
                elif isinstance(item, str) and "T" in item and item[:4].isdigit():
                    found.append(("instant", datetime.fromisoformat(item)))
                elif isinstance(item, bool):
                    found.append(("value", item))
                elif isinstance(item, int | float):
                    found += [("value", item), ("value", item + 1), ("value", item - 0.5), ("value", True)]
                elif isinstance(item, str):
                    found += [("value", item.upper()), ("value", f"{item} x"), ("value", f"x {item}")]
        else:
            days = edges.event_days.setdefault(node["event"], [])
            window = node.get("window") or {"type": "any_time"}
            for key in ("value", "from", "to"):
                if isinstance(window.get(key), int):
                    days += [day for _, day in around(reference.add(utc_today, -window[key], window["unit"]))]
            for key in ("date", "from", "to"):
                if isinstance(window.get(key), str):
                    days += [day for _, day in around(date.fromisoformat(window[key]))]

    visit(tree)
    return edges


def value_at(draw: st.DrawFn, type_: str, edge: tuple[str, Any], zone: ZoneInfo) -> Any:
    """A stored value of the type at an edge: a day becomes the date, or an instant early or late on that
    day in the segment's zone (written in some offset); an instant moves by a millisecond or none."""
    kind, value = edge
    if kind == "value":
        return value
    if kind == "instant":
        moment = value + timedelta(milliseconds=pick(draw, [-1, 0, 0, 1]))
    elif type_ == "date":
        return value.isoformat()
    else:
        local_time = pick(draw, [time(0, 0), time(0, 0, 1), time(12, 0), time(23, 59, 59)])
        moment = datetime.combine(value, local_time, zone)
    return iso_text(moment.astimezone(UTC), draw(offsets), draw(styles))


# -- rule trees --------------------------------------------------------------------------------------


# Values to compare built-in text attributes with, close to what the generated contacts hold.
TEXT_POOLS = {
    "email": ["ana@example.com", "ANA@", "example.COM", "bo@shop.io", "shop"],
    "country": ["id", "US", "i", "d"],
    "status": ["subscribed", "SUBSCRIBED", "unsub", "Blocked", "ED"],
    "channels": CHANNELS,
    "tags": ["vip", "VIP", "gold", "STRASSE", "ß"],
}


def draw_operand(draw: st.DrawFn, type_: str, op: str, now: datetime, attribute: str = "") -> dict[str, Any]:
    """The value (and unit) keys of a clause for this type and operator."""
    if op in ("is_empty", "is_not_empty"):
        return {}
    if op in RELATIVE:
        return {"value": draw(amounts), "unit": draw(units)}

    def single() -> Any:
        if type_ in ("string", "list"):
            return pick(draw, TEXT_POOLS[attribute]) if attribute in TEXT_POOLS and draw(booleans) else draw(texts)
        if type_ == "datetime" and op in ORDER and draw(booleans):
            return draw_datetime_text(draw, now)
        if type_ in ("date", "datetime"):
            return draw_date_text(draw, now)
        return draw_typed(draw, type_, now)

    if op == "in_list":
        return {"value": [single() for _ in range(draw(list_sizes))]}
    return {"value": single()}


def draw_attribute_clause(draw: st.DrawFn, fields: dict[str, str], now: datetime) -> dict[str, Any]:
    attribute = pick(draw, BUILT_INS + [f"custom_fields.{name}" for name in fields] * 3)
    name = attribute.removeprefix("custom_fields.")
    type_ = fields[name] if attribute.startswith("custom_fields.") else reference.BUILT_IN_TYPES[attribute]
    op = pick(draw, OPERATORS[type_])
    return {"attribute": attribute, "operator": op, **draw_operand(draw, type_, op, now, attribute)}


def draw_window(draw: st.DrawFn, now: datetime) -> dict[str, Any] | None:
    kind = pick(draw, [None, "any_time", "within_last", "before_last", "between_last", "after", "before", "between"])
    if kind is None:
        return None
    if kind == "any_time":
        return {"type": kind}
    if kind in ("within_last", "before_last"):
        return {"type": kind, "value": draw(small), "unit": draw(units)}
    if kind == "between_last":
        low, high = sorted([draw(small), draw(small)])
        return {"type": kind, "from": low, "to": high, "unit": draw(units)}
    if kind == "between":
        first, last = sorted([draw_date_text(draw, now), draw_date_text(draw, now)])
        return {"type": "between_dates", "from": first, "to": last}
    return {"type": kind, "date": draw_date_text(draw, now)}


def draw_condition(draw: st.DrawFn) -> dict[str, Any]:
    name, type_ = pick(draw, PROPERTY_NAMES), pick(draw, ["string", "number", "boolean"])
    op = pick(draw, OPERATORS[type_])
    if op in ("is_empty", "is_not_empty"):
        return {"property": name, "operator": op}
    if op == "in_list":
        return {"property": name, "operator": op, "value": [draw_typed(draw, type_, _NO_NOW) for _ in range(3)]}
    return {"property": name, "operator": op, "value": draw_typed(draw, type_, _NO_NOW)}


def draw_event_clause(draw: st.DrawFn, now: datetime) -> dict[str, Any]:
    name = pick(draw, [*EVENT_NAMES, "*"])
    clause: dict[str, Any] = {"event": name, "occurs": pick(draw, list(OCCURS)), "count": draw(counts)}
    window = draw_window(draw, now)
    if window is not None:
        clause["window"] = window
    if name != "*" and draw(booleans):
        clause["where"] = [draw_condition(draw) for _ in range(draw(st.integers(0, 2)))]
    return clause


def draw_group(draw: st.DrawFn, fields: dict[str, str], now: datetime, depth: int = 1) -> dict[str, Any]:
    rules = []
    for _ in range(draw(group_sizes if depth == 1 else list_sizes)):
        kind = draw(st.integers(0, 5))
        if kind <= 2:
            rules.append(draw_attribute_clause(draw, fields, now))
        elif kind <= 4 or depth == 4:
            rules.append(draw_event_clause(draw, now))
        else:
            rules.append(draw_group(draw, fields, now, depth + 1))
    return {"match": pick(draw, ["all", "any"]), "rules": rules}


def clause_counts(node: dict[str, Any]) -> tuple[int, int]:
    if "rules" in node:
        pairs = [clause_counts(child) for child in node["rules"]]
        return sum(a for a, _ in pairs), sum(e for _, e in pairs)
    return (1, 0) if "attribute" in node else (0, 1)


def draw_events(draw: st.DrawFn, now: datetime, edges: Edges) -> list[Event]:
    """Events up to a day ahead of now (as the API allows), each stamped in some offset, many of them on
    the first or last UTC second of a day at or next to a window's edge."""
    found = []
    for _ in range(draw(st.integers(0, 10))):
        name = pick(draw, EVENT_NAMES)
        days = edges.event_days.get(name, []) + edges.event_days.get("*", [])
        if days and draw(booleans):
            moment = datetime.combine(pick(draw, days), pick(draw, [time(0, 0), time(23, 59, 59)]), UTC)
        else:
            moment = draw_instant(draw, now)
        at = min(moment, now + timedelta(days=1))
        found.append(Event(name, at.astimezone(draw(offsets)), draw(properties)))
    return found


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    now = draw_now(draw)
    fields = {name: pick(draw, TYPES) for name in FIELD_NAMES if draw(booleans)}
    tree = draw_group(draw, fields, now)
    while clause_counts(tree)[0] > 25 or clause_counts(tree)[1] > 5:  # beyond the limits (rare): again
        tree = draw_group(draw, fields, now)
    zone = pick(draw, ZONES)
    edges = edges_of(tree, now, zone)
    return {
        "now": now,
        "timezone": zone,
        "fields": fields,
        "tree": tree,
        "contact": draw_contact(draw, fields, now, edges),
        "events": draw_events(draw, now, edges),
    }


# -- properties ----------------------------------------------------------------------------------------


def assert_explained_as_reference(explained: dict[str, Any], node: dict[str, Any], context: reference.Context) -> None:
    """Every group and clause of the explanation (`explained`) matched as the reference says; event
    clauses counted as many events."""
    assert explained["matched"] is context.rule(node), node
    if "rules" in node:
        for explained_child, child in zip(explained["rules"], node["rules"], strict=True):
            assert_explained_as_reference(explained_child, child, context)
    elif "event" in node:
        assert explained["actual_count"] == context.count(node), node


@SETTINGS
@given(cases())
def test_compiled_rules_agree_with_the_reference(case: dict[str, Any]) -> None:
    now, zone, contact, events = case["now"], case["timezone"], case["contact"], case["events"]
    rules = parse_rules(case["tree"], case["fields"])
    subject = Subject(contact, BucketHistory(aggregate(events)))
    expected = reference.evaluate(case["tree"], case["fields"], contact, events, now=now, timezone=zone)

    assert compile_rules(rules, now=now, timezone=zone)(subject) is expected
    context = reference.Context(case["fields"], contact, events, now, ZoneInfo(zone))
    assert_explained_as_reference(explain(rules, subject, now=now, timezone=zone), case["tree"], context)


@SETTINGS
@given(cases())
def test_buckets_loaded_as_event_ranges_asks_give_the_same_answer(case: dict[str, Any]) -> None:
    rules = parse_rules(case["tree"], case["fields"])
    everything = aggregate(case["events"])
    loaded = {}
    for name, (first, last) in event_ranges(rules, now=case["now"]).items():
        buckets = everything.get(name, {})
        loaded[name] = {
            key: bucket
            for key, bucket in buckets.items()
            if key == ALL or (first is not None and last is not None and first.isoformat() <= key <= last.isoformat())
        }
    now, zone = case["now"], case["timezone"]

    # Every clause's count, not only the result, is the same.
    full = explain(rules, Subject(case["contact"], BucketHistory(everything)), now=now, timezone=zone)
    assert explain(rules, Subject(case["contact"], BucketHistory(loaded)), now=now, timezone=zone) == full


DATED_OPERATORS = OPERATORS["date"]


@st.composite
def dated_cases(draw: st.DrawFn) -> dict[str, Any]:
    """One date clause and a contact whose value sits at or next to the clause's edge."""
    now, zone = draw_now(draw), pick(draw, ZONES)
    attribute, type_ = pick(
        draw, [("created", "datetime"), ("custom_fields.d", "date"), ("custom_fields.t", "datetime")]
    )
    op = pick(draw, DATED_OPERATORS)
    clause = {"attribute": attribute, "operator": op, **draw_operand(draw, type_, op, now)}
    tree = {"match": "all", "rules": [clause]}
    edges = edges_of(tree, now, zone).attributes.get(attribute) or [("day", now.date())]
    value = value_at(draw, type_, pick(draw, edges), ZoneInfo(zone))
    contact = Contact(id="ct_1", org_id="org_1", created_at=value, custom_fields={"d": value, "t": value})
    return {"now": now, "timezone": zone, "tree": tree, "contact": contact, "events": []}


@st.composite
def window_cases(draw: st.DrawFn) -> dict[str, Any]:
    """One event clause and events on the first and last second of the days at and next to its window's edges."""
    now = draw_now(draw)
    clause = draw_event_clause(draw, now)
    tree = {"match": "all", "rules": [clause]}
    days = edges_of(tree, now, "UTC").event_days[clause["event"]] or [now.date()]
    events = [
        Event(
            pick(draw, EVENT_NAMES) if clause["event"] == "*" else clause["event"],
            datetime.combine(pick(draw, days), pick(draw, [time(0, 0), time(23, 59, 59)]), UTC).astimezone(
                draw(offsets)
            ),
            draw(properties),
        )
        for _ in range(draw(st.integers(1, 6)))
    ]
    events = [e for e in events if e.at <= now + timedelta(days=1)]
    return {
        "now": now,
        "timezone": "UTC",
        "tree": tree,
        "contact": Contact(id="ct_1", org_id="org_1"),
        "events": events,
    }


@SETTINGS
@given(st.one_of(dated_cases(), window_cases()))
def test_compiled_rules_agree_with_the_reference_at_the_edges(case: dict[str, Any]) -> None:
    fields = {"d": "date", "t": "datetime"}
    now, zone, contact, events = case["now"], case["timezone"], case["contact"], case["events"]
    rules = parse_rules(case["tree"], fields)
    subject = Subject(contact, BucketHistory(aggregate(events)))

    expected = reference.evaluate(case["tree"], fields, contact, events, now=now, timezone=zone)
    assert compile_rules(rules, now=now, timezone=zone)(subject) is expected


# -- any input -------------------------------------------------------------------------------------------

WORDS = ["all", "any", "email", "tags", "created", "custom_fields.plan", "custom_fields.x", "is", "in_list", "was"]
WORDS += ["days", "months", "within_last", "between_last", "after", "2026-11-23", "2026-11-23T10:00:00Z", "purchase"]
WORDS += ["*", "equals", "more_than", "string", "date", "amount", "is_empty", "contains", "greater_than", ""]
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-3, 200_000),
        st.floats(),
        st.sampled_from(WORDS),
        st.text(max_size=4),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.sampled_from(["match", "rules", "attribute", "operator", "value", "unit", "type", "event", "occurs"])
            | st.sampled_from(["count", "window", "where", "property", "date", "from", "to", "x"]),
            children,
            max_size=5,
        ),
    ),
    max_leaves=30,
)


def parsed_or_problems(value: Any, fields: dict[str, str]) -> RuleSet | list[dict[str, Any]]:
    try:
        return parse_rules(value, fields)
    except ValidationError as error:
        return error.fields


@SETTINGS
@given(json_values)
def test_any_json_is_either_valid_rules_or_a_validation_error(value: Any) -> None:
    tree = {"match": "all", "rules": [value]} if isinstance(value, dict) else value

    found = parsed_or_problems(tree, {"plan": "string", "x": "date"})

    if isinstance(found, RuleSet):
        assert load_rules(found.tree) == found
        compile_rules(found, now=_NO_NOW)(Subject(Contact(id="ct_1", org_id="org_1"), BucketHistory({})))
    else:
        assert found
        assert all(set(problem) == {"field", "value", "message"} for problem in found)
        json.dumps(found)  # what the API sends back
