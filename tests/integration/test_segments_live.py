"""End to end on the local stack: API (through the Lambda handler) → contacts stream → SegmentFunction,
and the segment jobs state machine (build, daily refresh) → SegmentJobsFunction."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from audience import admin, clock


@pytest.fixture
def gateway(stack: Any) -> TestClient:
    created = admin.create_org("Acme", default_country="ID")
    return TestClient(stack.http_app, headers={"Authorization": f"Bearer {created['api_key']}"})


def _member_ids(client: TestClient, segment_id: str) -> set[str]:
    page = client.get(f"/orgs/c/segments/{segment_id}/contacts", params={"take": 100}).json()
    return {c["id"] for c in page["items"]}


def test_update_changes_membership_with_pollers_running(stack: Any, gateway: TestClient) -> None:
    rules = {"match": "any", "rules": [{"attribute": "email", "operator": "ends_with", "value": "@vip.io"}]}
    segment = gateway.post("/orgs/c/segments", json={"name": "VIP mail", "type": "dynamic", "rules": rules}).json()
    contact = gateway.post("/orgs/c/contacts", json={"email": "a@plain.io"}).json()
    stack.drain()
    assert _member_ids(gateway, segment["id"]) == set()

    stack.start(interval=0.05)
    try:
        gateway.patch(f"/orgs/c/contacts/{contact['id']}", json={"email": "a@VIP.io"})
        deadline = time.monotonic() + 10
        while contact["id"] not in _member_ids(gateway, segment["id"]) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stack.stop()
    assert _member_ids(gateway, segment["id"]) == {contact["id"]}


def test_daily_refresh_applies_rules_that_depend_on_today(
    stack: Any, gateway: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert gateway.post("/orgs/c/contacts/fields", json={"name": "renewal", "type": "date"}).status_code == 201
    today = clock.now().date()
    soon = gateway.post(
        "/orgs/c/contacts", json={"email": "soon@x.io", "custom_fields": {"renewal": str(today + timedelta(days=10))}}
    ).json()
    later = gateway.post(
        "/orgs/c/contacts", json={"email": "later@x.io", "custom_fields": {"renewal": str(today + timedelta(days=40))}}
    ).json()
    rules = {
        "match": "all",
        "rules": [{"attribute": "custom_fields.renewal", "operator": "will_be_within", "value": 7, "unit": "days"}],
    }
    segment = gateway.post("/orgs/c/segments", json={"name": "Renewing", "type": "dynamic", "rules": rules}).json()
    stack.drain()
    assert _member_ids(gateway, segment["id"]) == set()

    # Five days later nothing about the contacts changed, but "within 7 days" now holds for one of them.
    moment = datetime.combine(today + timedelta(days=5), datetime.min.time(), UTC) + timedelta(hours=1)
    monkeypatch.setattr(clock, "now", lambda: moment)
    sfn = stack.client("stepfunctions")
    execution = sfn.start_execution(
        stateMachineArn=stack.resources["SegmentJobsStateMachine"],
        input=json.dumps({"job": {"kind": "refresh", "parts": 4}}),
    )
    stack.drain(timeout=60)
    assert sfn.describe_execution(executionArn=execution["executionArn"])["status"] == "SUCCEEDED"
    assert _member_ids(gateway, segment["id"]) == {soon["id"]}
    assert later["id"] not in _member_ids(gateway, segment["id"])
    assert gateway.get(f"/orgs/c/segments/{segment['id']}").json()["contact_count"] == 1
    assert isinstance(today, date)


def test_stale_decisions_write_nothing(stack: Any, gateway: TestClient) -> None:
    """A membership decided on an old contact version, event sequence or segment version is refused."""
    from audience import container
    from audience.segments.models import MembershipChange
    from audience.segments.repository import STALE_CONTACT, STALE_SEGMENT, UNCHANGED, WRITTEN, Guard

    org_id = gateway.get("/orgs/c").json()["id"]
    rules = {"match": "all", "rules": [{"attribute": "tags", "operator": "contains", "value": "x"}]}
    segment = gateway.post("/orgs/c/segments", json={"name": "X", "type": "dynamic", "rules": rules}).json()
    contact = gateway.post("/orgs/c/contacts", json={"email": "s@x.io"}).json()
    stack.drain()
    repo = container.segment_service()._segments
    current = repo.get_segment(org_id, segment["id"])
    change = MembershipChange(segment["id"], contact["id"], contact["created_at"], True)

    assert repo.write_membership(org_id, change, Guard(contact_version=99, events_seen=0, segment_version=1)) == (
        STALE_CONTACT
    )
    assert repo.write_membership(org_id, change, Guard(contact_version=1, events_seen=3, segment_version=1)) == (
        STALE_CONTACT
    )
    assert repo.write_membership(
        org_id, change, Guard(contact_version=1, events_seen=0, segment_version=current.version + 1)
    ) == (STALE_SEGMENT)
    assert _member_ids(gateway, segment["id"]) == set()
    fresh = Guard(contact_version=1, events_seen=0, segment_version=current.version)
    assert repo.write_membership(org_id, change, fresh) == WRITTEN
    assert repo.write_membership(org_id, change, fresh) == UNCHANGED
    assert gateway.get(f"/orgs/c/segments/{segment['id']}").json()["contact_count"] == 1
