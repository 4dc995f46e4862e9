"""Bulk create, its dry-run twin, and bulk delete."""

import boto3


def _items(stack):
    return boto3.resource("dynamodb").Table(stack.resources["ContactsTable"]).scan()["Items"]


BATCH = [
    {"email": "new@x.io", "first_name": "New"},
    {"email": "NEW@x.io", "last_name": "Again"},  # same identity as the first: an update of it
    {"phone": "not a phone"},
    {"email": "existing@x.io", "first_name": "Changed"},
    {"email": "existing@x.io"},  # nothing new: unchanged
    {"first_name": "No identity"},
    {"email": "ok@x.io", "org_id": "org_other"},
]


def test_dry_run_reports_per_item_and_writes_nothing_then_real_run_matches(org, stack):
    org.client.post("/orgs/c/contacts", json={"email": "existing@x.io"})
    before = _items(stack)

    dry = org.client.post("/orgs/c/contacts/bulk/dry-run", json={"contacts": BATCH, "upsert": True})
    assert dry.status_code == 200, dry.text
    assert _items(stack) == before
    dry_actions = [r["action"] for r in dry.json()["results"]]
    assert dry_actions == ["created", "updated", "invalid", "updated", "unchanged", "invalid", "invalid"]
    invalid = dry.json()["results"][2]
    assert invalid["errors"][0]["field"] == "phone"
    assert invalid["errors"][0]["value"] == "not a phone"
    assert dry.json()["results"][6]["errors"][0]["field"] == "org_id"

    real = org.client.post("/orgs/c/contacts/bulk", json={"contacts": BATCH, "upsert": True})
    assert [r["action"] for r in real.json()["results"]] == dry_actions
    assert real.json()["summary"] == dry.json()["summary"]
    assert org.client.get("/orgs/c/contacts/stats").json()["total"] == 2
    new = org.client.get(f"/orgs/c/contacts/{real.json()['results'][0]['contact_id']}").json()
    assert new["full_name"] == "New Again"


def test_without_upsert_existing_identities_are_conflicts(org):
    existing = org.client.post("/orgs/c/contacts", json={"email": "existing@x.io"}).json()
    body = {"contacts": [{"email": "existing@x.io"}, {"email": "fresh@x.io"}, {"email": "fresh@x.io"}]}
    for path in ("/orgs/c/contacts/bulk/dry-run", "/orgs/c/contacts/bulk"):
        results = org.client.post(path, json=body).json()["results"]
        assert [r["action"] for r in results] == ["conflict", "created", "conflict"], path
        assert results[0]["contact_id"] == existing["id"]


def test_bulk_is_bounded_to_1000(org):
    response = org.client.post(
        "/orgs/c/contacts/bulk", json={"contacts": [{"email": f"{i}@x.io"} for i in range(1001)]}
    )
    assert response.status_code == 422
    assert org.client.post("/orgs/c/contacts/bulk", json={"contacts": []}).status_code == 422


def test_bulk_delete_reports_each_id(org, other_org):
    ids = [
        r["contact_id"]
        for r in org.client.post(
            "/orgs/c/contacts/bulk", json={"contacts": [{"email": f"d{i}@x.io"} for i in range(5)]}
        ).json()["results"]
    ]
    theirs = other_org.client.post("/orgs/c/contacts", json={"email": "t@x.io"}).json()["id"]
    response = org.client.post("/orgs/c/contacts/bulk-delete", json={"ids": [*ids[:3], theirs, "ct_nope"]})
    assert response.status_code == 200
    assert response.json()["summary"] == {"deleted": 3, "not_found": 2}
    assert org.client.get("/orgs/c/contacts/stats").json()["total"] == 2
    assert other_org.client.get(f"/orgs/c/contacts/{theirs}").status_code == 200
