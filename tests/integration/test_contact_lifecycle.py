"""End to end on the local stack: HTTP API → ApiFunction (Mangum) → DynamoDB → stream → ContactStreamFunction."""

import boto3
import pytest
from fastapi.testclient import TestClient

from audience import admin


@pytest.fixture
def gateway(stack):
    """A client of the local HTTP API, which invokes ApiFunction's Lambda handler per request."""
    created = admin.create_org("Acme", default_country="ID")
    client = TestClient(stack.http_app, headers={"Authorization": f"Bearer {created['api_key']}"})
    return client, created


def _table_items(stack):
    return boto3.resource("dynamodb").Table(stack.resources["ContactsTable"]).scan()["Items"]


def test_requests_run_through_the_lambda_handler(gateway):
    client, created = gateway
    response = client.post("/orgs/c/contacts?upsert=false", json={"full_name": "Sari", "phone": "0812-3456-7890"})
    assert response.status_code == 201, response.text
    contact = response.json()
    assert contact["phone"] == "+6281234567890"
    listed = client.get("/orgs/c/contacts", params={"q": "sar"})
    assert listed.headers["x-ratelimit-limit"] == "500"
    assert [c["id"] for c in listed.json()["items"]] == [contact["id"]]
    assert client.get(f"/orgs/{created['org_id']}/contacts/stats").json()["total"] == 1
    assert client.get("/orgs/c/contacts", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/openapi.json").json()["info"]["title"] == "Audience API"


def test_delete_leaves_no_personal_data_in_the_table(gateway, stack):
    client, _ = gateway
    keep = client.post("/orgs/c/contacts", json={"email": "keep@x.io"}).json()
    gone = client.post(
        "/orgs/c/contacts",
        json={
            "full_name": "Sari Wijaya",
            "email": "sari@example.com",
            "phone": "081234567890",
            "tags": ["vip"],
            "channels": [{"channel": "telegram", "user_id": "tg-777"}],
        },
    ).json()
    for status in ("UNSUBSCRIBED", "SUBSCRIBED"):
        client.patch(f"/orgs/c/contacts/{gone['id']}", json={"status": status})
    assert client.delete(f"/orgs/c/contacts/{gone['id']}").status_code == 204
    stack.drain()

    dumped = repr(_table_items(stack))
    for personal in (gone["id"], "sari@example.com", "+6281234567890", "6281234567890", "sari wijaya", "tg-777"):
        assert personal not in dumped, personal
    assert keep["id"] in dumped
    # Identities are free again.
    assert client.post("/orgs/c/contacts", json={"email": "sari@example.com"}).status_code == 201


def test_merged_away_contact_is_purged_and_its_identities_kept_by_the_target(gateway, stack):
    client, _ = gateway
    target = client.post("/orgs/c/contacts", json={"email": "a@x.io"}).json()
    source = client.post("/orgs/c/contacts", json={"email": "b@x.io", "tags": ["lead"]}).json()
    client.patch(f"/orgs/c/contacts/{source['id']}", json={"first_name": "B"})
    merged = client.post(f"/orgs/c/contacts/{target['id']}/merge", json={"source_contact_ids": [source["id"]]})
    assert merged.status_code == 200, merged.text
    stack.drain()

    items = _table_items(stack)
    # Nothing of the source is left; the target's timeline records the merge by id.
    leftovers = [i for i in items if source["id"] in repr(i) and not i["pk"].endswith(target["id"])]
    assert leftovers == []
    merged_entry = [i for i in items if i["pk"].endswith(target["id"]) and i.get("type") == "merged"]
    assert merged_entry[0]["data"] == {"source_contact_id": source["id"]}
    identity = [i for i in items if i["pk"].endswith("#I#email#b@x.io")]
    assert len(identity) == 1
    assert identity[0]["contact_id"] == target["id"]
