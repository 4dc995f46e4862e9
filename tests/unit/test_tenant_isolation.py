"""Every route, called with org A's key on org B's ids, answers 404; without a key, 401."""

import re

import pytest

from audience.api.openapi import document

ROUTES = sorted(
    (method.upper(), path)
    for path, operations in document()["paths"].items()
    if path.startswith("/orgs/")
    for method in operations
)

BODIES = {
    ("POST", "/orgs/{org_id}/api-keys"): {"name": "k"},
    ("POST", "/orgs/{org_id}/contacts"): {"email": "new@x.io"},
    ("POST", "/orgs/{org_id}/contacts/fields"): {"name": "plan", "type": "string"},
    ("POST", "/orgs/{org_id}/contacts/bulk"): {"contacts": [{"email": "new@x.io"}]},
    ("POST", "/orgs/{org_id}/contacts/bulk/dry-run"): {"contacts": [{"email": "new@x.io"}]},
    ("POST", "/orgs/{org_id}/contacts/bulk-delete"): {"ids": ["ct_00000000000000000000000000"]},
    ("PATCH", "/orgs/{org_id}"): {"name": "mine now"},
    ("PATCH", "/orgs/{org_id}/contacts/{contact_id}"): {"first_name": "Mallory"},
    ("POST", "/orgs/{org_id}/contacts/{contact_id}/consent"): {"channel": "all", "opted_in": False},
    ("POST", "/orgs/{org_id}/contacts/{contact_id}/tags"): {"tags": ["x"]},
    ("POST", "/orgs/{org_id}/segments"): {"name": "s", "type": "static"},
    ("POST", "/orgs/{org_id}/segments/preview"): {"rules": {"match": "all", "rules": []}},
    ("PATCH", "/orgs/{org_id}/segments/{segment_id}"): {"name": "mine now"},
    ("POST", "/orgs/{org_id}/segments/{segment_id}/contacts"): {"contact_ids": ["ct_" + "0" * 26]},
    ("POST", "/orgs/{org_id}/segments/{segment_id}/contacts/remove"): {"contact_ids": ["ct_" + "0" * 26]},
    ("POST", "/orgs/{org_id}/events"): {"events": [{"email": "victim@x.io", "name": "x"}]},
    ("POST", "/orgs/{org_id}/tags"): {"name": "mine"},
    ("PATCH", "/orgs/{org_id}/tags/{name}"): {"color": "#000000"},
    ("POST", "/orgs/{org_id}/tags/{name}/contacts"): {"segment_id": "sg_" + "0" * 26},
    ("POST", "/orgs/{org_id}/tags/{name}/contacts/remove"): {"segment_id": "sg_" + "0" * 26},
    ("POST", "/orgs/{org_id}/do-not-contact"): {"identifier": "victim@x.io"},
    ("POST", "/orgs/{org_id}/exports"): {"kind": "contacts"},
    ("POST", "/orgs/{org_id}/imports"): {"file_name": "x.csv"},
    ("PUT", "/orgs/{org_id}/imports/{import_id}/mapping"): {"columns": [{"index": 0, "target": "email"}]},
    ("POST", "/orgs/{org_id}/imports/{import_id}/start"): {"consent_confirmed": True},
    ("POST", "/orgs/{org_id}/connections"): {
        "platform": "custom",
        "name": "mine",
        "secrets": {"signing_secret": "0123456789abcdef0123"},
    },
    ("PATCH", "/orgs/{org_id}/connections/{connection_id}"): {"name": "mine now"},
    ("PUT", "/orgs/{org_id}/inbound-settings"): {"opt_out_keywords": ["BERHENTI"]},
    ("PUT", "/orgs/{org_id}/send-policy"): {"frequency_cap": {"limit": 3, "window_hours": 24}},
    ("PATCH", "/orgs/{org_id}/broadcasts/{broadcast_id}"): {"name": "mine now"},
    ("POST", "/orgs/{org_id}/broadcasts/{broadcast_id}/send"): {"email": "victim@x.io"},
    ("POST", "/orgs/{org_id}/broadcasts/{broadcast_id}/test"): {"email": "victim@x.io"},
    ("POST", "/orgs/{org_id}/broadcasts/{broadcast_id}/schedule"): {},
    ("POST", "/orgs/{org_id}/contacts/{contact_id}/messages"): {"connection_id": "ch_" + "0" * 26, "text": "x"},
    ("POST", "/orgs/{org_id}/contacts/{contact_id}/follow-ups"): {
        "connection_id": "ch_" + "0" * 26,
        "in": "1h",
        "text": "x",
    },
    ("PUT", "/orgs/{org_id}/follow-up-rules"): {"enabled": False},
    ("PUT", "/orgs/{org_id}/connections/{connection_id}/follow-up-rules"): {"enabled": False},
    ("PUT", "/orgs/{org_id}/connections/{connection_id}/inbound-rules"): {"on_new_contact": {"tags": ["mine"]}},
    ("POST", "/orgs/{org_id}/webhook-endpoints"): {"url": "https://hooks.example.com/mine"},
    ("PATCH", "/orgs/{org_id}/webhook-endpoints/{endpoint_id}"): {"description": "mine now"},
}
QUERIES = {
    ("GET", "/orgs/{org_id}/connections/{connection_id}/auto-reply-check"): {"email": "victim@x.io"},
    ("GET", "/orgs/{org_id}/contacts/{contact_id}/eligibility"): {"channel": "email", "purpose": "marketing"},
    ("POST", "/orgs/{org_id}/imports/file"): {"file_name": "x.csv"},
}


@pytest.fixture
def victim(other_org):
    """Org B with one object of every kind."""
    contact = other_org.client.post("/orgs/c/contacts", json={"email": "victim@x.io"}).json()
    source = other_org.client.post("/orgs/c/contacts", json={"email": "victim2@x.io"}).json()
    key = other_org.client.post("/orgs/c/api-keys", json={"name": "b"}).json()
    other_org.client.post("/orgs/c/contacts/fields", json={"name": "secret", "type": "string"})
    other_org.client.post("/orgs/c/tags", json={"name": "secret"})
    segment = other_org.client.post("/orgs/c/segments", json={"name": "theirs", "type": "static"}).json()
    entry = other_org.client.post("/orgs/c/do-not-contact", json={"identifier": "dnc@x.io"}).json()
    export = other_org.client.post("/orgs/c/exports", json={"kind": "contacts"}).json()
    upload = other_org.client.post("/orgs/c/imports", json={"file_name": "theirs.csv"}).json()
    connection = other_org.client.post(
        "/orgs/c/connections",
        json={"platform": "telegram", "name": "theirs", "secrets": {"bot_token": "123456:" + "A" * 35}},
    ).json()
    other_org.client.put("/orgs/c/inbound-settings", json={"opt_out_keywords": ["HALT"]})
    other_org.client.put("/orgs/c/send-policy", json={"frequency_cap": {"limit": 5, "window_hours": 48}})
    other_org.client.put("/orgs/c/follow-up-rules", json={"enabled": False, "idle_seconds": 60})
    broadcast = other_org.client.post(
        "/orgs/c/broadcasts",
        json={
            "type": "transactional",
            "name": "theirs",
            "channels": [{"channel": "telegram", "connection_id": connection["id"], "text": {"text": "Your code"}}],
        },
    ).json()
    other_org.client.post(f"/orgs/c/broadcasts/{broadcast['id']}/activate")
    endpoint = other_org.client.post("/orgs/c/webhook-endpoints", json={"url": "https://hooks.example.com/b"}).json()
    delivery = other_org.client.post(f"/orgs/c/webhook-endpoints/{endpoint['id']}/test").json()
    # Disabled, so the test delivery stops at its first try instead of retrying an unreachable host.
    other_org.client.patch(f"/orgs/c/webhook-endpoints/{endpoint['id']}", json={"enabled": False})
    ids = {
        "contact_id": contact["id"],
        "key_id": key["id"],
        "name": "secret",
        "segment_id": segment["id"],
        "entry_id": entry["id"],
        "export_id": export["id"],
        "import_id": upload["import"]["id"],
        "connection_id": connection["id"],
        "broadcast_id": broadcast["id"],
        "follow_up_id": "idle-telegram",
        "endpoint_id": endpoint["id"],
        "delivery_id": delivery["delivery_id"],
    }
    return other_org, ids, source["id"]


def _fill(path, org_id, ids):
    return re.sub(r"\{(\w+)\}", lambda m: org_id if m.group(1) == "org_id" else ids[m.group(1)], path)


def test_every_org_route_is_listed():
    assert len(ROUTES) >= 50


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_org_a_key_on_org_b_ids_is_404(org, victim, method, path):
    b, ids, source_id = victim
    body = BODIES.get((method, path))
    params = QUERIES.get((method, path))
    if path.endswith("/merge"):
        body = {"source_contact_ids": [source_id]}
    # 1. B's org id in the path.
    response = org.client.request(method, _fill(path, b.org_id, ids), json=body, params=params)
    assert response.status_code == 404, (method, path, response.status_code, response.text)
    # 2. A's own org (`c`) with B's object ids.
    if "{" in path.replace("{org_id}", ""):
        response = org.client.request(method, _fill(path, "c", ids), json=body, params=params)
        assert response.status_code == 404, (method, path, response.status_code, response.text)
    # B's objects are untouched.
    assert b.client.get(f"/orgs/c/contacts/{ids['contact_id']}").json()["email"] == "victim@x.io"
    assert b.client.get(f"/orgs/c/contacts/{source_id}").status_code == 200
    assert ids["key_id"] in {k["id"] for k in b.client.get("/orgs/c/api-keys").json()}
    assert "secret" in {f["name"] for f in b.client.get("/orgs/c/contacts/fields").json()}
    assert b.client.get("/orgs/c").json()["name"] == "Globex"
    assert b.client.get(f"/orgs/c/segments/{ids['segment_id']}").json()["name"] == "theirs"
    assert b.client.get(f"/orgs/c/do-not-contact/{ids['entry_id']}").status_code == 200
    assert b.client.get(f"/orgs/c/exports/{ids['export_id']}").status_code == 200
    assert b.client.get("/orgs/c/tags/secret").status_code == 200
    assert b.client.get(f"/orgs/c/imports/{ids['import_id']}").json()["status"] == "awaiting_upload"
    assert b.client.get(f"/orgs/c/connections/{ids['connection_id']}").json()["name"] == "theirs"
    assert b.client.get("/orgs/c/inbound-settings").json()["opt_out_keywords"] == ["HALT"]
    assert b.client.get("/orgs/c/send-policy").json()["frequency_cap"] == {"limit": 5, "window_hours": 48.0}
    assert b.client.get("/orgs/c/follow-up-rules").json()["idle_seconds"] == 60
    theirs = b.client.get(f"/orgs/c/broadcasts/{ids['broadcast_id']}").json()
    assert (theirs["name"], theirs["status"], theirs["stats"]["total"]) == ("theirs", "ACTIVE", 0)
    assert b.client.get(f"/orgs/c/webhook-endpoints/{ids['endpoint_id']}").json()["description"] == ""


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_needs_a_key(org, victim, method, path):
    _b, ids, _ = victim
    response = org.client.request(
        method,
        _fill(path, "c", ids),
        json=BODIES.get((method, path)),
        params=QUERIES.get((method, path)),
        headers={"Authorization": ""},
    )
    assert response.status_code == 401, (method, path, response.status_code)
