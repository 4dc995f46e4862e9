"""Segment freshness: time from a contact update to its dynamic segment membership change (local stack).

The whole application runs on the local stack with its background pollers (what `make dev` runs): the
update goes through the API, the contacts table stream reaches SegmentFunction, which writes the
membership. Each sample flips a contact in or out of a dynamic segment and waits for the membership
item to appear or disappear. The API request's own latency is measured in the same run as the yardstick.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "layers" / "audience") not in sys.path:
    sys.path.insert(0, str(ROOT / "layers" / "audience"))  # the layer, as Lambda puts it on the path
RESULTS = ROOT / "benchmarks" / "results"
GOAL_P95_SECONDS = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--samples", type=int, default=40, help="updates measured (default 40)")
    parser.add_argument("--contacts", type=int, default=200, help="contacts in the org (default 200)")
    parser.add_argument("--interval", type=float, default=0.2, help="poller interval in seconds (default 0.2)")
    parser.add_argument("--output", type=Path, default=RESULTS / "segment_latency.json")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(samples: int, contacts: int, interval: float) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from audience import admin, container
    from devstack.testing import local_stack

    with local_stack(str(ROOT / "template.yaml"), parameters={"Stage": "bench"}) as stack:
        container.reset()
        created = admin.create_org("Bench", default_country="ID")
        client = TestClient(stack.http_app, headers={"Authorization": f"Bearer {created['api_key']}"})
        ids = []
        for start in range(0, contacts, 500):
            batch = [{"email": f"c{i}@bench.io"} for i in range(start, min(contacts, start + 500))]
            results = client.post("/orgs/c/contacts/bulk", json={"contacts": batch}).json()["results"]
            ids.extend(r["contact_id"] for r in results)
        rules = {"match": "all", "rules": [{"attribute": "tags", "operator": "contains", "value": "vip"}]}
        segment = client.post("/orgs/c/segments", json={"name": "VIP", "type": "dynamic", "rules": rules}).json()
        stack.drain(timeout=600)
        table = stack.client("dynamodb")
        table_name = stack.resources["ContactsTable"]
        org_id = created["org_id"]

        def member(contact_id: str) -> bool:
            key = {"pk": {"S": f"O#{org_id}#C#{contact_id}"}, "sk": {"S": f"M#{segment['id']}"}}
            return "Item" in table.get_item(TableName=table_name, Key=key, ConsistentRead=True)

        stack.start(interval=interval)
        latencies: list[float] = []
        requests: list[float] = []
        try:
            for n in range(samples):
                contact_id = ids[n % len(ids)]
                wanted = not member(contact_id)
                began = time.perf_counter()
                response = client.patch(f"/orgs/c/contacts/{contact_id}", json={"tags": ["vip"] if wanted else []})
                requests.append(time.perf_counter() - began)
                assert response.status_code == 200, response.text
                while member(contact_id) != wanted:
                    if time.perf_counter() - began > 60:
                        raise RuntimeError(f"membership of {contact_id} did not change within 60 s")
                    time.sleep(0.01)
                latencies.append(time.perf_counter() - began)
        finally:
            stack.stop()
        container.reset()
    return {
        "samples": samples,
        "contacts": contacts,
        "poll_interval_s": interval,
        "membership_p50_s": statistics.median(latencies),
        "membership_p95_s": _percentile(latencies, 0.95),
        "membership_max_s": max(latencies),
        "api_update_p50_s": statistics.median(requests),
        "ratio_p50_to_api_update": statistics.median(latencies) / statistics.median(requests),
    }


def run(args: argparse.Namespace) -> bool:
    result = measure(args.samples, args.contacts, args.interval)
    met = result["membership_p95_s"] < GOAL_P95_SECONDS
    print("| figure | value |\n|---|---|")
    for name, value in result.items():
        print(f"| {name} | {value:.3f} |" if isinstance(value, float) else f"| {name} | {value} |")
    print(f"\ngoal: p95 < {GOAL_P95_SECONDS} s: {'met' if met else 'MISSED'}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"goal_p95_s": GOAL_P95_SECONDS, "met": met, **result}, indent=2) + "\n")
    return met
