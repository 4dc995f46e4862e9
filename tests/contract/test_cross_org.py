"""Org B's key against org A's objects over every operation of the OpenAPI document: A's org id in the path,
or B's own org (`c`) with A's object ids in the path, or A's ids in the body or query of B's own
operations. Nothing answers 2xx with A's objects, nothing answers 5xx, no answer carries A's data, and
every GET A makes reads the same afterwards."""

from __future__ import annotations

from typing import Any

from tests.contract.surface import (
    MARKER,
    PROTECTED,
    body_of,
    changed,
    fill,
    path_params,
    query_of,
    snapshot,
)


def test_every_path_parameter_has_a_seeded_object(victim):
    _a, ids = victim
    named = {param for _method, path in PROTECTED for param in path_params(path)} - {"org_id"}
    assert named - set(ids) == set(), "seed_every_kind must create an object for each of these"


def _leaks(response: Any) -> bool:
    return MARKER in response.text or "victim@x.io" in response.text


def test_org_b_reaches_none_of_org_as_objects_through_any_path(victim, other_org):
    a, ids = victim
    before = snapshot(a, ids)
    reached = []
    calls = 0
    for method, path in PROTECTED:
        targets = [fill(path, a.org_id, ids)]  # A's org id: refused whatever the rest of the path
        if path_params(path) != ["org_id"]:
            targets.append(fill(path, "c", ids))  # B's own org, A's objects
        for url in targets:
            response = other_org.client.request(method, url, json=body_of(method, path), params=query_of(method, path))
            calls += 1
            if not 400 <= response.status_code < 500 or _leaks(response):
                reached.append((method, url, response.status_code, response.text[:200]))
    assert reached == []
    assert calls > 150
    assert changed(before, snapshot(a, ids)) == []


def test_org_as_ids_in_org_bs_own_bodies_and_queries_reach_nothing(victim, other_org):
    a, ids = victim
    b = other_org.client
    mine = b.post("/orgs/c/contacts", json={"email": "mine@globex.io"}).json()["id"]
    my_segment = b.post("/orgs/c/segments", json={"name": "mine", "type": "static"}).json()["id"]
    b.post("/orgs/c/tags", json={"name": "mine"})
    before = snapshot(a, ids)
    calls = [
        ("POST", "/orgs/c/contacts/bulk-delete", {"ids": [ids["contact_id"]]}, None),
        ("POST", f"/orgs/c/contacts/{mine}/merge", {"source_contact_ids": [ids["contact_id"]]}, None),
        ("POST", f"/orgs/c/segments/{my_segment}/contacts", {"contact_ids": [ids["contact_id"]]}, None),
        ("POST", f"/orgs/c/segments/{my_segment}/contacts/remove", {"contact_ids": [ids["contact_id"]]}, None),
        ("POST", "/orgs/c/tags/mine/contacts", {"segment_id": ids["segment_id"]}, None),
        ("POST", "/orgs/c/tags/secret/contacts/remove", {"segment_id": ids["segment_id"]}, None),
        ("POST", f"/orgs/c/contacts/{mine}/messages", {"connection_id": ids["connection_id"], "text": "x"}, None),
        (
            "POST",
            f"/orgs/c/contacts/{mine}/follow-ups",
            {"connection_id": ids["connection_id"], "in": "1h", "text": "x"},
            None,
        ),
        ("POST", "/orgs/c/exports", {"kind": "contacts", "segment_id": ids["segment_id"]}, None),
        ("GET", "/orgs/c/contacts", None, {"segment": ids["segment_id"]}),
        ("GET", "/orgs/c/contacts", None, {"q": "victim@x.io"}),
        ("GET", "/orgs/c/contacts", None, {"tag": "secret"}),
        ("GET", "/orgs/c/do-not-contact", None, {"q": "dnc@x.io"}),
        (
            "GET",
            f"/orgs/c/connections/{ids['connection_id']}/auto-reply-check",
            None,
            {"contact_id": ids["contact_id"]},
        ),
        (
            "POST",
            "/orgs/c/broadcasts",
            {
                "type": "transactional",
                "name": "mine",
                "channels": [{"channel": "telegram", "connection_id": ids["connection_id"], "text": {"text": "x"}}],
            },
            None,
        ),
    ]
    reached = []
    for method, url, body, params in calls:
        response = b.request(method, url, json=body, params=params)
        if response.status_code >= 500 or _leaks(response) or ids["contact_id"] in _listed_ids(response):
            reached.append((method, url, response.status_code, response.text[:300]))
    assert reached == []
    assert changed(before, snapshot(a, ids)) == []
    assert b.get(f"/orgs/c/segments/{my_segment}/contacts").json()["items"] == []


def _listed_ids(response: Any) -> set[str]:
    if not response.headers.get("content-type", "").startswith("application/json"):
        return set()
    items = response.json().get("items") if isinstance(response.json(), dict) else None
    return {item.get("id") for item in items or [] if isinstance(item, dict)}
