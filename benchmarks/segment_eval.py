"""Segment rule evaluation: CPU time to evaluate one contact with a compiled rule tree, against the reference.

The stream consumer evaluates every dynamic segment of an org (up to 100) each time a contact or its
events change, and the daily refresh evaluates every contact against the segments that depend on today,
so the cost of one evaluation multiplies by segments and contacts. Two realistic trees at the limits are
measured: 25 attribute clauses (every type, nested groups, relative dates, custom fields, in_list), and
20 attribute clauses with 5 event clauses (windows and property conditions) over a contact with 300 events
read from buckets the way the loader reads them (all-time counts plus the days `event_ranges` asks for).

Each figure is CPU time (time.process_time_ns) over a loop of evaluations, divided by their number: the
median of several rounds after a discarded warm-up round. The reference evaluator of the property tests
(tests/property/reference.py: no compilation, parses every value on every call, counts events from the raw
list) is timed the same way in the same run; the ratio between the two carries over between machines
where microseconds do not. Compile time is the time to compile a parsed tree for one moment
(`compile_rules`), which the consumer pays once per batch and segment.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LAYER_DIR = ROOT / "layers" / "audience"
RESULTS_DIR = ROOT / "benchmarks" / "results"
GOAL_US = 50.0  # per evaluation, for either tree

NOW = datetime(2026, 11, 23, 10, 30, tzinfo=UTC)
TIMEZONE = "Asia/Jakarta"
CUSTOM_FIELDS = {
    "plan": "string",
    "company": "string",
    "lifetime_value": "number",
    "orders": "number",
    "newsletter": "boolean",
    "vip": "boolean",
    "birthday": "date",
    "renewal": "date",
    "last_login": "datetime",
    "trial_ends": "datetime",
}


def attribute_clauses() -> list[dict[str, Any]]:
    """20 attribute clauses of every type; the contact below matches every one of them."""
    return [
        {"attribute": "status", "operator": "is", "value": "subscribed"},
        {"attribute": "email", "operator": "ends_with", "value": "@example.com"},
        {"attribute": "country", "operator": "in_list", "value": ["ID", "MY", "SG", "TH", "PH", "VN"]},
        {"attribute": "tags", "operator": "contains", "value": "VIP"},
        {"attribute": "tags", "operator": "not_contains", "value": "churned"},
        {"attribute": "channels", "operator": "in_list", "value": ["whatsapp", "telegram"]},
        {"attribute": "created", "operator": "was_more_than", "value": 30, "unit": "days"},
        {"attribute": "updated", "operator": "was_within", "value": 7, "unit": "days"},
        {"attribute": "custom_fields.plan", "operator": "in_list", "value": ["gold", "platinum", "silver"]},
        {"attribute": "custom_fields.lifetime_value", "operator": "greater_or_equal", "value": 500},
        {"attribute": "custom_fields.newsletter", "operator": "is", "value": True},
        {"attribute": "phone", "operator": "starts_with", "value": "+62"},
        {
            "match": "any",
            "rules": [
                {"attribute": "custom_fields.birthday", "operator": "will_be_within", "value": 1, "unit": "weeks"},
                {"attribute": "custom_fields.renewal", "operator": "will_be_in", "value": 1, "unit": "months"},
                {"attribute": "custom_fields.trial_ends", "operator": "after", "value": "2026-11-01"},
            ],
        },
        {
            "match": "any",
            "rules": [
                {"attribute": "custom_fields.vip", "operator": "is", "value": False},
                {"attribute": "custom_fields.company", "operator": "contains", "value": "ACME"},
                {
                    "match": "all",
                    "rules": [
                        {"attribute": "custom_fields.orders", "operator": "greater_than", "value": 3},
                        {"attribute": "custom_fields.last_login", "operator": "since", "value": "2026-11-01"},
                    ],
                },
            ],
        },
    ]


def attribute_tree() -> dict[str, Any]:
    """25 attribute clauses, the most a tree may hold."""
    extra = [
        {"attribute": "name", "operator": "is_not_empty"},
        {"attribute": "first_name", "operator": "is_not", "value": "test"},
        {"attribute": "last_name", "operator": "not_contains", "value": "bot"},
        {"attribute": "custom_fields.last_login", "operator": "greater_than", "value": "2026-11-20T00:00:00+07:00"},
        {"attribute": "custom_fields.birthday", "operator": "is_not_empty"},
    ]
    return {"match": "all", "rules": [*attribute_clauses(), *extra]}


def event_tree() -> dict[str, Any]:
    """20 attribute clauses and 5 event clauses, the most a tree may hold."""
    events = [
        {
            "event": "purchase",
            "occurs": "more_or_equal",
            "count": 2,
            "window": {"type": "within_last", "value": 30, "unit": "days"},
            "where": [{"property": "amount", "operator": "greater_than", "value": 100}],
        },
        {
            "event": "*",
            "occurs": "more_or_equal",
            "count": 1,
            "window": {"type": "within_last", "value": 7, "unit": "days"},
        },
        {
            "event": "login",
            "occurs": "more_than",
            "count": 5,
            "window": {"type": "before_last", "value": 7, "unit": "days"},
        },
        {
            "event": "refund",
            "occurs": "equals",
            "count": 0,
            "window": {"type": "between_last", "from": 0, "to": 90, "unit": "days"},
        },
        {
            "event": "page_view",
            "occurs": "more_than",
            "count": 10,
            "where": [{"property": "path", "operator": "starts_with", "value": "/pricing"}],
        },
    ]
    return {"match": "all", "rules": [*attribute_clauses(), *events]}


def contact() -> Any:
    from audience.contacts.models import Contact

    return Contact(
        id="ct_01JD7Z8K2M3N4P5Q6R7S8T9V0W",
        org_id="org_01JD7Z8K2M3N4P5Q6R7S8T9V0X",
        first_name="Siti",
        last_name="Rahayu",
        email="siti.rahayu@example.com",
        phone="+6281234567890",
        country="ID",
        channels=[
            {"channel": "whatsapp", "user_id": "6281234567890"},
            {"channel": "instagram", "user_id": "17841400000000000"},
            {"channel": "email", "user_id": "siti.rahayu@example.com"},
        ],
        custom_fields={
            "plan": "Gold",
            "company": "PT Sinar Jaya",
            "lifetime_value": 1250.5,
            "orders": 7,
            "newsletter": True,
            "vip": True,
            "birthday": "1990-11-27",
            "renewal": "2027-01-15",
            "last_login": "2026-11-22T08:15:00.000Z",
            "trial_ends": "2026-11-30T00:00:00.000Z",
        },
        tags=["vip", "newsletter", "jakarta", "repeat-buyer", "app-user", "promo-nov", "ramadan-2026", "b2c"],
        created_at="2025-03-14T02:11:45.120Z",
        updated_at="2026-11-21T09:00:00.000Z",
    )


def events() -> list[Any]:
    """300 events over the last 120 days: purchases, logins, page views, one a day or so of each."""
    from audience.segments.history import Event

    found = []
    for i in range(300):
        at = NOW - timedelta(hours=i * 9 + 1)
        if i % 3 == 0:
            found.append(Event("purchase", at, {"amount": 40 + (i * 37) % 300, "currency": "IDR"}))
        elif i % 3 == 1:
            found.append(Event("login", at, {"channel": "app"}))
        else:
            found.append(Event("page_view", at, {"path": ("/pricing", "/home", "/blog/launch")[(i // 3) % 3]}))
    return found


# -- measuring --------------------------------------------------------------------------------------


def cpu_us_per_call(function: Callable[[], Any], iterations: int, rounds: int) -> list[float]:
    """CPU microseconds per call, one figure per round, after a discarded warm-up round."""
    samples = []
    for round_ in range(rounds + 1):
        started = time.process_time_ns()
        for _ in range(iterations):
            function()
        elapsed = time.process_time_ns() - started
        if round_:
            samples.append(elapsed / iterations / 1000)
    return samples


def measure(name: str, tree: dict[str, Any], with_events: bool, args: argparse.Namespace) -> dict[str, Any]:
    from audience.segments.history import ALL, BucketHistory, aggregate
    from audience.segments.rules import Subject, compile_rules, event_ranges, parse_rules
    from tests.property import reference

    rules = parse_rules(tree, CUSTOM_FIELDS)
    who = contact()
    raw_events = events() if with_events else []
    buckets = aggregate(raw_events)
    # What the loader reads: all-time counts, plus the day buckets event_ranges asks for.
    loaded = {}
    for event_name, (first, last) in event_ranges(rules, now=NOW).items():
        days = (first.isoformat(), last.isoformat()) if first and last else None
        loaded[event_name] = {
            key: bucket
            for key, bucket in buckets.get(event_name, {}).items()
            if key == ALL or (days is not None and days[0] <= key <= days[1])
        }
    subject = Subject(who, BucketHistory(loaded))
    predicate = compile_rules(rules, now=NOW, timezone=TIMEZONE)
    expected = reference.evaluate(tree, CUSTOM_FIELDS, who, raw_events, now=NOW, timezone=TIMEZONE)
    if predicate(subject) is not expected or not expected:
        raise RuntimeError(f"{name}: the contact should match, and engine and reference should agree")

    # A contact's history is read once and evaluated against every segment of its org: the property sets of
    # its events are parsed by the first segment that needs them. `engine` is the cost of each segment after
    # that; `fresh` includes reading the history, as a contact evaluated against one segment only pays.
    engine = cpu_us_per_call(lambda: predicate(subject), args.iterations, args.rounds)
    fresh = cpu_us_per_call(
        lambda: predicate(Subject(who, BucketHistory(loaded))), max(1, args.iterations // 4), args.rounds
    )
    baseline = cpu_us_per_call(
        lambda: reference.evaluate(tree, CUSTOM_FIELDS, who, raw_events, now=NOW, timezone=TIMEZONE),
        max(1, args.iterations // 20),
        args.rounds,
    )
    compile_us = cpu_us_per_call(
        lambda: compile_rules(rules, now=NOW, timezone=TIMEZONE), max(1, args.iterations // 10), args.rounds
    )
    median = statistics.median(engine)
    return {
        "tree": name,
        "attribute_clauses": rules.attribute_clauses,
        "event_clauses": rules.event_clauses,
        "events": len(raw_events),
        "engine_us": round(median, 2),
        "engine_min_us": round(min(engine), 2),
        "engine_max_us": round(max(engine), 2),
        "fresh_history_us": round(statistics.median(fresh), 1),
        "reference_us": round(statistics.median(baseline), 1),
        "speedup": round(statistics.median(baseline) / median, 1),
        "compile_us": round(statistics.median(compile_us), 1),
        "goal_us": GOAL_US,
        "result": "PASS" if median <= GOAL_US else "OVER",
        "engine_samples_us": [round(us, 3) for us in engine],
    }


# -- the benchmark ----------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=9, help="measured rounds (one warm-up round is added)")
    parser.add_argument("--iterations", type=int, default=20_000, help="evaluations per round (reference: 1/20)")
    parser.add_argument("--output", type=Path, help="JSON results (default: benchmarks/results/segment_eval.json)")


def run(args: argparse.Namespace) -> bool:
    for path in (str(LAYER_DIR), str(ROOT)):
        if path not in sys.path:
            sys.path.insert(0, path)
    rows = [
        measure("25 attribute clauses", attribute_tree(), False, args),
        measure("20 attribute + 5 event clauses", event_tree(), True, args),
    ]

    print(
        "| Tree | Engine µs/eval (median) | Min-max µs | With a fresh history µs | Reference µs/eval "
        "| Engine speed-up | Compile µs | Goal | Result |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for row in rows:
        print(
            f"| {row['tree']} | {row['engine_us']:.1f} | {row['engine_min_us']:.1f}-{row['engine_max_us']:.1f} "
            f"| {row['fresh_history_us']:.1f} | {row['reference_us']:.0f} | {row['speedup']:.0f}x "
            f"| {row['compile_us']:.0f} | ≤ {row['goal_us']:.0f} µs | {row['result']} |"
        )

    output = args.output or RESULTS_DIR / "segment_eval.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        json.dumps(
            {
                "benchmark": "segment_eval",
                "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "rounds": args.rounds,
                "iterations": args.iterations,
                "timezone": TIMEZONE,
                "python": platform.python_version(),
                "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
                "results": rows,
            },
            indent=2,
            ensure_ascii=False,
        )
        + "\n"
    )
    print(f"\nresults: {output.relative_to(ROOT) if output.is_relative_to(ROOT) else output}")
    return all(row["result"] == "PASS" for row in rows)
