"""Segment refresh cost: DynamoDB read units of a full refresh as a ratio to the contacts table's size.

The daily refresh re-evaluates every contact against its org's dynamic segments in one pass over the
table (a parallel scan whose pages hold each contact's partition: the contact, its event counts, events
and memberships). This benchmark fills the local stack with N contacts (tags, custom fields, events,
activity, memberships), runs every part of a refresh job, and counts the read units of every read the
refresh makes (DynamoDB's rules: 4 KB units per page or item, half a unit when eventually consistent),
next to the read units of one eventually consistent scan of the whole table, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "layers" / "audience") not in sys.path:
    sys.path.insert(0, str(ROOT / "layers" / "audience"))  # the layer, as Lambda puts it on the path
RESULTS = ROOT / "benchmarks" / "results"
GOAL_RATIO = 1.1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--contacts", type=int, default=3000, help="contacts in the table (default 3000)")
    parser.add_argument("--parts", type=int, default=4, help="parallel scan segments (default 4)")
    parser.add_argument("--output", type=Path, default=RESULTS / "segment_refresh.json")


def item_size(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB bills it: attribute names plus values (strings in UTF-8, numbers about
    one byte per two digits plus one, 3 bytes of overhead per map or list plus 1 per element)."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value_size(value: dict[str, Any]) -> int:
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        digits = len(inner.lstrip("-").replace(".", "").lstrip("0")) or 1
        return math.ceil(digits / 2) + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + _value_size(v) + 1 for k, v in inner.items())
    if kind == "L":
        return 3 + sum(_value_size(v) + 1 for v in inner)
    if kind == "SS":
        return sum(len(s.encode()) for s in inner)
    raise ValueError(f"unsized DynamoDB type {kind}")


def _units(size: int, consistent: bool) -> float:
    return max(1, math.ceil(size / 4096)) * (1.0 if consistent else 0.5)


class ReadMeter:
    """Counts read units of every DynamoDB read through a botocore client's event hooks."""

    def __init__(self) -> None:
        self.units = 0.0
        self.calls = 0

    def __call__(self, http_response: Any, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        operation = model.name
        request = getattr(self, "_request", {})
        consistent = bool(request.get("ConsistentRead"))
        if operation in ("Scan", "Query"):
            self.calls += 1
            self.units += _units(sum(item_size(i) for i in parsed.get("Items", [])), consistent)
        elif operation == "GetItem":
            self.calls += 1
            self.units += _units(item_size(parsed["Item"]) if "Item" in parsed else 0, consistent)
        elif operation == "BatchGetItem":
            self.calls += 1
            for table_items in parsed.get("Responses", {}).values():
                self.units += sum(_units(item_size(i), True) for i in table_items)

    def before(self, params: dict[str, Any], **_: Any) -> None:
        self._request = params


def fill(client: Any, contacts: int) -> None:
    """Contacts with tags and custom fields, events for a third of them, a dynamic segment on each."""
    created = [
        r["contact_id"]
        for start in range(0, contacts, 500)
        for r in client.post(
            "/orgs/c/contacts/bulk",
            json={
                "contacts": [
                    {
                        "email": f"c{i}@bench.io",
                        "phone": f"+6281{i:09d}",
                        "full_name": f"Contact Number {i}",
                        "tags": ["vip"] if i % 3 == 0 else ["lead", "newsletter"],
                        "custom_fields": {"plan": ["gold", "silver", "free"][i % 3], "score": i % 100},
                    }
                    for i in range(start, min(contacts, start + 500))
                ]
            },
        ).json()["results"]
    ]
    events = [
        {"contact_id": cid, "name": "purchase", "properties": {"amount": n * 10}, "id": f"e-{cid}-{n}"}
        for cid in created[::3]
        for n in range(3)
    ]
    for start in range(0, len(events), 100):
        client.post("/orgs/c/events", json={"events": events[start : start + 100]})
    recent = {"attribute": "created", "operator": "was_within", "value": 7, "unit": "days"}
    buyers = {
        "event": "purchase",
        "occurs": "more_or_equal",
        "count": 2,
        "window": {"type": "within_last", "value": 30, "unit": "days"},
    }
    for name, clause in (
        ("VIP", {"attribute": "tags", "operator": "contains", "value": "vip"}),
        ("Recent", recent),
        ("Buyers", buyers),
    ):
        rules = {"match": "all", "rules": [clause]}
        client.post("/orgs/c/segments", json={"name": name, "type": "dynamic", "rules": rules})


def measure(contacts: int, parts: int) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from audience import admin, aws, container
    from devstack.testing import local_stack

    with local_stack(str(ROOT / "template.yaml"), parameters={"Stage": "bench"}) as stack:
        container.reset()
        created = admin.create_org("Bench", default_country="ID")
        client = TestClient(stack.http_app, headers={"Authorization": f"Bearer {created['api_key']}"})
        client.post("/orgs/c/contacts/fields", json={"name": "plan", "type": "string"})
        client.post("/orgs/c/contacts/fields", json={"name": "score", "type": "number"})
        fill(client, contacts)
        stack.drain(timeout=1800)

        table_name = stack.resources["ContactsTable"]
        baseline = ReadMeter()
        scanner = stack.client("dynamodb")
        scanner.meta.events.register("before-parameter-build.dynamodb.*", baseline.before)
        scanner.meta.events.register("after-call.dynamodb.*", baseline)
        kwargs: dict[str, Any] = {"TableName": table_name}
        items = 0
        table_bytes = 0
        while True:
            page = scanner.scan(**kwargs)
            items += len(page["Items"])
            table_bytes += sum(item_size(i) for i in page["Items"])
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

        meter = ReadMeter()
        refresh_client = aws.client("dynamodb")
        refresh_client.meta.events.register("before-parameter-build.dynamodb.*", meter.before)
        refresh_client.meta.events.register("after-call.dynamodb.*", meter)
        runner = container.job_runner()
        job = {"kind": "refresh", "parts": parts}
        began = time.perf_counter()
        tally = {"evaluated": 0, "added": 0, "removed": 0}
        for part in range(parts):
            cursor = None
            while True:
                result = runner.run(job, part, cursor, budget=600)
                for key in tally:
                    tally[key] += result["tally"][key]
                cursor = result["cursor"]
                if result["done"]:
                    break
        elapsed = time.perf_counter() - began
        refresh_client.meta.events.unregister("after-call.dynamodb.*", meter)
        container.reset()
    table_units = table_bytes / 4096 * 0.5
    return {
        "contacts": contacts,
        "table_items": items,
        "table_bytes": table_bytes,
        "table_read_units_one_scan": round(table_units, 1),
        "one_scan_measured_units": baseline.units,
        "refresh_read_units": meter.units,
        "refresh_read_calls": meter.calls,
        "ratio_refresh_to_table": round(meter.units / table_units, 3),
        "ratio_refresh_to_one_scan": round(meter.units / baseline.units, 3),
        "contacts_evaluated": tally["evaluated"],
        "memberships_changed": tally["added"] + tally["removed"],
        "refresh_seconds_local": round(elapsed, 2),
    }


def run(args: argparse.Namespace) -> bool:
    result = measure(args.contacts, args.parts)
    met = result["ratio_refresh_to_table"] <= GOAL_RATIO
    print("| figure | value |\n|---|---|")
    for name, value in result.items():
        print(f"| {name} | {value} |")
    print(f"\ngoal: read units ≤ {GOAL_RATIO}x the table: {'met' if met else 'MISSED'}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"goal_ratio": GOAL_RATIO, "met": met, **result}, indent=2) + "\n")
    return met
