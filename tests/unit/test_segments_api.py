"""Segments through the API on the local stack: CRUD, static and dynamic membership, jobs, events."""

from __future__ import annotations

from typing import Any

import pytest

ACTIVE = "sg_00000000000000000000active"
INACTIVE = "sg_000000000000000000inactive"


def _contact(org: Any, **fields: Any) -> dict[str, Any]:
    response = org.client.post("/orgs/c/contacts", json=fields)
    assert response.status_code == 201, response.text
    return response.json()


def _segment(org: Any, **body: Any) -> dict[str, Any]:
    response = org.client.post("/orgs/c/segments", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def _members(org: Any, segment_id: str) -> set[str]:
    found: set[str] = set()
    cursor = None
    while True:
        params = {"take": 100, **({"cursor": cursor} if cursor else {})}
        page = org.client.get(f"/orgs/c/segments/{segment_id}/contacts", params=params)
        assert page.status_code == 200, page.text
        found |= {c["id"] for c in page.json()["items"]}
        cursor = page.json()["next_cursor"]
        if not cursor:
            return found


def _get(org: Any, segment_id: str) -> dict[str, Any]:
    response = org.client.get(f"/orgs/c/segments/{segment_id}")
    assert response.status_code == 200, response.text
    return response.json()


VIP_RULES = {"match": "all", "rules": [{"attribute": "tags", "operator": "contains", "value": "vip"}]}


# -- static segments --------------------------------------------------------------------------------


def test_static_segment_crud_and_membership(org: Any, stack: Any) -> None:
    a, b, c = (_contact(org, email=f"{n}@x.io") for n in "abc")
    segment = _segment(org, name="  Newsletter   readers ", type="static", description="Signed up at the fair")
    assert segment["name"] == "Newsletter readers"
    assert segment["contact_count"] == 0
    assert segment["state"] == "ready"

    assert org.client.put(f"/orgs/c/contacts/{a['id']}/segments/{segment['id']}").status_code == 204
    assert org.client.put(f"/orgs/c/contacts/{a['id']}/segments/{segment['id']}").status_code == 204  # idempotent
    bulk = org.client.post(
        f"/orgs/c/segments/{segment['id']}/contacts", json={"contact_ids": [a["id"], b["id"], "ct_" + "0" * 26]}
    ).json()
    assert bulk == {"changed": 1, "unchanged": 1, "not_found": ["ct_" + "0" * 26]}
    assert _get(org, segment["id"])["contact_count"] == 2
    assert _members(org, segment["id"]) == {a["id"], b["id"]}

    listed = org.client.get("/orgs/c/contacts", params={"segment": segment["id"]})
    assert listed.headers["x-total-count"] == "2"
    narrowed = org.client.get("/orgs/c/contacts", params={"segment": segment["id"], "q": "b@"})
    assert [x["id"] for x in narrowed.json()["items"]] == [b["id"]]

    mine = org.client.get(f"/orgs/c/contacts/{a['id']}/segments").json()["items"]
    assert [(s["id"], s["source"]) for s in mine] == [(segment["id"], "client")]

    assert org.client.delete(f"/orgs/c/contacts/{a['id']}/segments/{segment['id']}").status_code == 204
    removed = org.client.post(f"/orgs/c/segments/{segment['id']}/contacts/remove", json={"contact_ids": [b["id"]]})
    assert removed.json()["changed"] == 1
    assert _get(org, segment["id"])["contact_count"] == 0
    assert _members(org, segment["id"]) == set()
    assert c["id"] not in _members(org, segment["id"])

    renamed = org.client.patch(f"/orgs/c/segments/{segment['id']}", json={"name": "Readers"})
    assert renamed.json()["name"] == "Readers"


def test_contacts_join_static_segments_at_create(org: Any) -> None:
    segment = _segment(org, name="Fair", type="static")
    contact = _contact(org, email="fair@x.io", segments=[segment["id"]])
    assert _members(org, segment["id"]) == {contact["id"]}
    dynamic = _segment(org, name="VIP", type="dynamic", rules=VIP_RULES)
    refused = org.client.post("/orgs/c/contacts", json={"email": "no@x.io", "segments": [dynamic["id"]]})
    assert refused.status_code == 422
    assert refused.json()["error"]["fields"][0]["field"] == "segments"
    # Nothing was created by the refused request.
    assert org.client.get("/orgs/c/contacts", params={"q": "no@"}).json()["items"] == []


def test_duplicate_static_copies_members_and_delete_keeps_contacts(org: Any, stack: Any) -> None:
    contacts = [_contact(org, email=f"m{i}@x.io") for i in range(5)]
    source = _segment(org, name="Fair", type="static")
    org.client.post(f"/orgs/c/segments/{source['id']}/contacts", json={"contact_ids": [c["id"] for c in contacts]})

    copy = org.client.post(f"/orgs/c/segments/{source['id']}/duplicate").json()
    assert copy["name"] == "Fair (Copy)"
    assert copy["state"] == "building"
    stack.drain()
    assert _get(org, copy["id"])["state"] == "ready"
    assert _members(org, copy["id"]) == {c["id"] for c in contacts}
    assert _get(org, copy["id"])["contact_count"] == 5

    assert org.client.delete(f"/orgs/c/segments/{source['id']}").status_code == 204
    assert org.client.get(f"/orgs/c/segments/{source['id']}").status_code == 404
    stack.drain()
    assert org.client.get("/orgs/c/contacts/stats").json()["total"] == 5
    for contact in contacts:
        ids = {s["id"] for s in org.client.get(f"/orgs/c/contacts/{contact['id']}/segments").json()["items"]}
        assert ids - {ACTIVE, INACTIVE} == {copy["id"]}
    assert source["id"] not in {s["id"] for s in org.client.get("/orgs/c/segments").json()["items"]}


def test_segment_locked_by_a_broadcast_cannot_be_deleted_or_get_new_rules(org: Any, stack: Any) -> None:
    from audience import container

    segment = _segment(org, name="VIP", type="dynamic", rules=VIP_RULES)
    stack.drain()
    container.segment_service().lock(org.org_id, segment["id"], "bc_1", "Black Friday", "SCHEDULED")
    shown = _get(org, segment["id"])
    assert shown["broadcast_count"] == 1
    assert shown["broadcasts"][0]["name"] == "Black Friday"

    deleted = org.client.delete(f"/orgs/c/segments/{segment['id']}")
    assert deleted.status_code == 409
    assert "Black Friday" in deleted.json()["error"]["message"]
    edited = org.client.patch(f"/orgs/c/segments/{segment['id']}", json={"rules": {"match": "any", "rules": []}})
    assert edited.status_code in (409, 422)
    edited = org.client.patch(
        f"/orgs/c/segments/{segment['id']}",
        json={"rules": {"match": "all", "rules": [{"attribute": "tags", "operator": "contains", "value": "gold"}]}},
    )
    assert edited.status_code == 409
    assert "Black Friday" in edited.json()["error"]["message"]
    assert org.client.patch(f"/orgs/c/segments/{segment['id']}", json={"name": "VIPs"}).status_code == 200

    container.segment_service().unlock(org.org_id, segment["id"], "bc_1")
    assert org.client.delete(f"/orgs/c/segments/{segment['id']}").status_code == 204


# -- dynamic segments -------------------------------------------------------------------------------


def test_dynamic_membership_follows_contact_changes(org: Any, stack: Any) -> None:
    before = _contact(org, email="old@x.io", tags=["vip"])
    _contact(org, email="plain@x.io")
    segment = _segment(org, name="VIP", type="dynamic", rules=VIP_RULES)
    assert segment["state"] == "building"
    stack.drain()
    assert _get(org, segment["id"])["state"] == "ready"
    assert _members(org, segment["id"]) == {before["id"]}

    joined = _contact(org, email="new@x.io", tags=["vip"])
    stack.drain()
    assert _members(org, segment["id"]) == {before["id"], joined["id"]}

    org.client.patch(f"/orgs/c/contacts/{before['id']}", json={"tags": []})
    stack.drain()
    assert _members(org, segment["id"]) == {joined["id"]}
    assert _get(org, segment["id"])["contact_count"] == 1
    mine = org.client.get(f"/orgs/c/contacts/{joined['id']}/segments").json()["items"]
    assert (segment["id"], "rules") in {(s["id"], s["source"]) for s in mine}

    refused = org.client.put(f"/orgs/c/contacts/{before['id']}/segments/{segment['id']}")
    assert refused.status_code == 422

    org.client.delete(f"/orgs/c/contacts/{joined['id']}")
    stack.drain()
    assert _members(org, segment["id"]) == set()
    assert _get(org, segment["id"])["contact_count"] == 0


def test_rule_change_rebuilds_members(org: Any, stack: Any) -> None:
    assert org.client.post("/orgs/c/contacts/fields", json={"name": "plan", "type": "string"}).status_code == 201
    gold = _contact(org, email="g@x.io", custom_fields={"plan": "Gold"})
    silver = _contact(org, email="s@x.io", custom_fields={"plan": "silver"})
    rules = {"match": "all", "rules": [{"attribute": "custom_fields.plan", "operator": "is", "value": "gold"}]}
    segment = _segment(org, name="Gold", type="dynamic", rules=rules)
    stack.drain()
    assert _members(org, segment["id"]) == {gold["id"]}

    rules["rules"][0] = {"attribute": "custom_fields.plan", "operator": "in_list", "value": ["silver"]}
    changed = org.client.patch(f"/orgs/c/segments/{segment['id']}", json={"rules": rules})
    assert changed.status_code == 200
    assert changed.json()["state"] == "building"
    stack.drain()
    assert _members(org, segment["id"]) == {silver["id"]}
    assert _get(org, segment["id"])["state"] == "ready"

    copy = org.client.post(f"/orgs/c/segments/{segment['id']}/duplicate", json={"name": "Silver too"}).json()
    assert copy["rules"] == changed.json()["rules"]
    stack.drain()
    assert _members(org, copy["id"]) == {silver["id"]}


def test_events_drive_event_rules(org: Any, stack: Any) -> None:
    buyer = _contact(org, email="buyer@x.io", phone="0812-1111-2222")
    browser = _contact(org, email="browser@x.io")
    rules = {
        "match": "all",
        "rules": [
            {
                "event": "purchase",
                "occurs": "more_than",
                "count": 1,
                "window": {"type": "within_last", "value": 7, "unit": "days"},
                "where": [{"property": "amount", "operator": "greater_than", "value": 100}],
            }
        ],
    }
    segment = _segment(org, name="Big spenders", type="dynamic", rules=rules)
    stack.drain()
    assert _members(org, segment["id"]) == set()

    events = [
        {"phone": "+62 812 1111 2222", "name": "purchase", "properties": {"amount": 150}, "id": "o-1"},
        {"email": "BUYER@x.io", "name": "purchase", "properties": {"amount": 50}, "id": "o-2"},
        {"contact_id": browser["id"], "name": "purchase", "properties": {"amount": 500}, "id": "o-3"},
    ]
    recorded = org.client.post("/orgs/c/events", json={"events": events}).json()
    assert recorded["summary"] == {"recorded": 3, "duplicate": 0, "invalid": 0, "not_found": 0}
    stack.drain()
    assert _members(org, segment["id"]) == set()  # one big purchase each is not "more than 1"

    again = org.client.post(
        "/orgs/c/events",
        json={
            "events": [
                {"email": "buyer@x.io", "name": "purchase", "properties": {"amount": 101}, "id": "o-4"},
                {"email": "buyer@x.io", "name": "purchase", "properties": {"amount": 101}, "id": "o-4"},
            ]
        },
    ).json()
    assert sorted(r["result"] for r in again["results"]) == ["duplicate", "recorded"]
    stack.drain()
    assert _members(org, segment["id"]) == {buyer["id"]}

    explained = org.client.get(f"/orgs/c/segments/{segment['id']}/explain/{buyer['id']}").json()
    assert explained["member"] is True
    assert explained["matched"] is True
    assert explained["rules"]["rules"][0]["actual_count"] == 2
    explained = org.client.get(f"/orgs/c/segments/{segment['id']}/explain/{browser['id']}").json()
    assert explained["matched"] is False
    assert explained["rules"]["rules"][0]["actual_count"] == 1

    # Active holds everyone with an event in the last 30 days; Inactive the rest.
    quiet = _contact(org, email="quiet@x.io")
    stack.drain()
    assert _members(org, ACTIVE) == {buyer["id"], browser["id"]}
    assert _members(org, INACTIVE) == {quiet["id"]}


def test_event_input_errors_are_per_item(org: Any) -> None:
    _contact(org, email="e@x.io")
    results = org.client.post(
        "/orgs/c/events",
        json={
            "events": [
                {"email": "nobody@x.io", "name": "login"},
                {"email": "e@x.io", "name": "bad name!"},
                {"email": "e@x.io", "name": "login", "at": "2999-01-01T00:00:00Z"},
                {"email": "e@x.io", "name": "login", "properties": {"nested": {"a": 1}}},
                {"email": "e@x.io", "phone": "+628111", "name": "login"},
                {"email": "e@x.io", "name": "login", "at": "2026-01-01T10:00:00+07:00"},
            ]
        },
    ).json()["results"]
    assert [r["result"] for r in results] == ["not_found", "invalid", "invalid", "invalid", "invalid", "recorded"]
    assert results[1]["errors"][0]["field"] == "name"
    assert results[2]["errors"][0]["field"] == "at"
    assert results[3]["errors"][0]["field"] == "properties.nested"


def test_preview_counts_without_saving(org: Any) -> None:
    vip = [_contact(org, email=f"v{i}@x.io", tags=["vip"]) for i in range(3)]
    _contact(org, email="other@x.io")
    preview = org.client.post("/orgs/c/segments/preview", json={"rules": VIP_RULES, "take": 2}).json()
    assert preview["count"] == 3
    assert preview["exact"] is True
    assert preview["evaluated"] == 4
    assert len(preview["contacts"]) == 2
    assert {c["id"] for c in preview["contacts"]} <= {c["id"] for c in vip}
    names = {s["name"] for s in org.client.get("/orgs/c/segments").json()["items"]}
    assert names == {"Active", "Inactive"}


@pytest.mark.parametrize(
    ("rules", "field"),
    [
        ({"match": "all", "rules": [{"attribute": "nope", "operator": "is", "value": 1}]}, "rules.rules[0].attribute"),
        (
            {"match": "all", "rules": [{"attribute": "email", "operator": "greater_than", "value": 1}]},
            "rules.rules[0].operator",
        ),
        (
            {"match": "all", "rules": [{"attribute": "tags", "operator": "contains", "value": "x"}] * 26},
            "rules",
        ),
    ],
)
def test_invalid_rules_are_422_naming_the_part(org: Any, rules: dict[str, Any], field: str) -> None:
    response = org.client.post("/orgs/c/segments", json={"name": "X", "type": "dynamic", "rules": rules})
    assert response.status_code == 422, response.text
    assert field in {f["field"] for f in response.json()["error"]["fields"]}
    preview = org.client.post("/orgs/c/segments/preview", json={"rules": rules})
    assert preview.status_code == 422


def test_other_orgs_segments_are_not_found(org: Any, other_org: Any) -> None:
    segment = _segment(org, name="Mine", type="static")
    contact = _contact(org, email="me@x.io")
    theirs = _contact(other_org, email="them@x.io")
    sid = segment["id"]
    assert other_org.client.get(f"/orgs/c/segments/{sid}").status_code == 404
    assert other_org.client.get(f"/orgs/{org.org_id}/segments").status_code == 404
    assert other_org.client.delete(f"/orgs/c/segments/{sid}").status_code == 404
    assert other_org.client.put(f"/orgs/c/contacts/{theirs['id']}/segments/{sid}").status_code == 404
    assert other_org.client.get("/orgs/c/contacts", params={"segment": sid}).status_code == 404
    # Their contact cannot be put into my segment either.
    bulk = org.client.post(f"/orgs/c/segments/{sid}/contacts", json={"contact_ids": [theirs["id"], contact["id"]]})
    assert bulk.json()["not_found"] == [theirs["id"]]
