"""Domain events end to end on the local stack: what the API and the pipelines do reaches the bus once per
fact, in the envelope of docs/events.md, valid under the committed schemas, with ids that survive replays."""

from __future__ import annotations

import json
from typing import Any

import boto3

from audience.contacts import quality
from audience.contacts.repository import ContactsRepository
from tests.bus import tap, validate


def _published(watch: Any, org_id: str) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for event in watch.received(org_id):
        detail = event["detail"]
        assert event["detail-type"] == detail["type"]
        assert event["source"] == f"audience.{'contacts' if detail['type'].startswith('contact.') else 'segments'}"
        validate(detail)
        found.append((detail["type"], detail))
    return found


def test_contact_lifecycle_events_reach_the_bus_once_each(stack: Any, org: Any) -> None:
    with tap(stack, ("audience.contacts",)) as watch:
        # Given a contact created, edited, measured (metrics only), unsubscribed, merged with another, deleted
        ayu = org.client.post("/orgs/c/contacts", json={"first_name": "Ayu", "email": "ayu@example.com"}).json()
        dup = org.client.post("/orgs/c/contacts", json={"phone": "+6281234500001"}).json()
        stack.drain()
        assert org.client.patch(f"/orgs/c/contacts/{ayu['id']}", json={"last_name": "Sari"}).status_code == 200
        stack.drain()
        repo = ContactsRepository(stack.resources["ContactsTable"])
        signal = quality.Signal(quality.INBOUND, "whatsapp", "2026-11-20T10:00:00.000Z")
        assert repo.record_signal(org.org_id, ayu["id"], signal)
        stack.drain()
        patched = org.client.patch(f"/orgs/c/contacts/{ayu['id']}", json={"status": "UNSUBSCRIBED"})
        assert patched.status_code == 200, patched.text
        stack.drain()
        merged = org.client.post(f"/orgs/c/contacts/{ayu['id']}/merge", json={"source_contact_ids": [dup["id"]]})
        assert merged.status_code == 200, merged.text
        stack.drain()
        assert org.client.delete(f"/orgs/c/contacts/{ayu['id']}").status_code == 204
        stack.drain()

        # Then each fact is one event
        events = _published(watch, org.org_id)
    kinds = sorted(t for t, _ in events)
    assert kinds == sorted(
        [
            "contact.created",  # ayu
            "contact.created",  # dup
            "contact.updated",  # last_name
            "contact.updated",  # status
            "contact.subscription_changed",
            "contact.updated",  # the merge gave ayu the phone
            "contact.merged",
            "contact.deleted",  # dup, merged away
            "contact.deleted",  # ayu
        ]
    )
    changed = [d["data"]["changed"] for t, d in events if t == "contact.updated"]
    assert ["last_name"] in changed
    assert ["status"] in changed
    by_merge = next(c for c in changed if c not in (["last_name"], ["status"]))
    assert "phone" in by_merge  # what the merged contact brought
    assert not {"reach", "engagement", "version", "updated_at"} & {name for c in changed for name in c}
    merge = next(d for t, d in events if t == "contact.merged")["data"]
    assert merge == {"contact_id": ayu["id"], "merged_contact_id": dup["id"]}
    change = next(d for t, d in events if t == "contact.subscription_changed")["data"]
    assert (change["previous_status"], change["status"]) == ("SUBSCRIBED", "UNSUBSCRIBED")
    assert len({d["id"] for _, d in events}) == len(events)
    assert "ayu@example.com" not in json.dumps([d for _, d in events])


def test_a_redelivered_stream_record_publishes_the_same_id(stack: Any, org: Any) -> None:
    contact = org.client.post("/orgs/c/contacts", json={"email": "re@example.com"}).json()
    stack.drain()
    item = (
        boto3.resource("dynamodb")
        .Table(stack.resources["ContactsTable"])
        .get_item(Key={"pk": f"O#{org.org_id}#C#{contact['id']}", "sk": "#CONTACT"})["Item"]
    )
    from boto3.dynamodb.types import TypeSerializer

    image = {k: TypeSerializer().serialize(v) for k, v in item.items()}
    record = {
        "eventID": "1",
        "eventName": "INSERT",
        "eventSource": "aws:dynamodb",
        "dynamodb": {
            "Keys": {"pk": image["pk"], "sk": image["sk"]},
            "NewImage": image,
            "SequenceNumber": "100",
            "ApproximateCreationDateTime": 1795000000,
        },
    }
    with tap(stack, ("audience.contacts",)) as watch:
        for _ in range(2):  # Lambda delivering the same record again (a retried batch)
            assert stack.invoke("ContactStreamFunction", {"Records": [record]}) == {"batchItemFailures": []}
        created = watch.details(org.org_id, "contact.created")
    assert len(created) == 2
    assert created[0] == created[1]  # same id, same envelope: receivers keep one


def test_segment_membership_events(stack: Any, org: Any) -> None:
    a = org.client.post("/orgs/c/contacts", json={"email": "a@example.com"}).json()
    b = org.client.post("/orgs/c/contacts", json={"email": "b@example.com"}).json()
    segment = org.client.post("/orgs/c/segments", json={"name": "VIP", "type": "static"}).json()
    stack.drain()
    with tap(stack, ("audience.segments",)) as watch:
        added = org.client.post(f"/orgs/c/segments/{segment['id']}/contacts", json={"contact_ids": [a["id"], b["id"]]})
        assert added.status_code == 200, added.text
        stack.drain()
        again = org.client.post(f"/orgs/c/segments/{segment['id']}/contacts", json={"contact_ids": [a["id"]]})
        assert again.status_code == 200  # already a member: no new fact
        removed = org.client.post(f"/orgs/c/segments/{segment['id']}/contacts/remove", json={"contact_ids": [a["id"]]})
        assert removed.status_code == 200, removed.text
        stack.drain()
        assert org.client.delete(f"/orgs/c/contacts/{b['id']}").status_code == 204  # leaves its segments too
        stack.drain()
        # (predefined dynamic segments have their own members: only this segment's are looked at)
        events = [(t, d) for t, d in _published(watch, org.org_id) if d["data"]["segment_id"] == segment["id"]]
    seen = sorted((t, d["data"]["contact_id"]) for t, d in events)
    assert seen == sorted(
        [
            ("segment.member_added", a["id"]),
            ("segment.member_added", b["id"]),
            ("segment.member_removed", a["id"]),
            ("segment.member_removed", b["id"]),
        ]
    )
    assert len({d["id"] for _, d in events}) == 4


def test_an_import_run_finishing_is_one_import_finished(stack: Any, org: Any) -> None:
    from tests.integration.test_imports_api import _csv, _import

    rows = [["name", "email"]] + [[f"Person {i}", f"p{i}@example.com"] for i in range(3)] + [["Nobody", "not-mail"]]
    with tap(stack, ("audience.imports",)) as watch:
        imp = _import(stack, org, _csv(rows), "people.csv", import_tag=False)
        events = watch.received(org.org_id)
    assert [e["detail-type"] for e in events] == ["import.finished"]  # analysis and dry runs are not imports
    detail = events[0]["detail"]
    validate(detail)
    assert events[0]["source"] == "audience.imports"
    data = detail["data"]
    assert (data["import_id"], data["kind"], data["status"], data["run_id"]) == (
        imp["id"],
        "contacts",
        "completed",
        imp["progress"]["run_id"],
    )
    assert data["counts"]["created"] == 3
