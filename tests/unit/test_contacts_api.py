"""The Contacts API: create, read, update, delete, upsert, validation, custom fields, merge, activity."""

from concurrent.futures import ThreadPoolExecutor

import pytest


def _create(org, **body):
    response = org.client.post("/orgs/c/contacts", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_create_normalises_phone_and_email_and_detects_country(org):
    contact = _create(org, first_name="Sari", last_name="Wijaya", phone="0812-3456-7890", email="Sari@Example.com")
    assert contact["phone"] == "+6281234567890"
    assert contact["email"] == "sari@example.com"
    assert contact["country"] == "ID"
    assert contact["full_name"] == "Sari Wijaya"
    assert contact["status"] == "SUBSCRIBED"
    assert org.client.get(f"/orgs/c/contacts/{contact['id']}").json() == contact
    assert org.client.get(f"/orgs/{org.org_id}/contacts/{contact['id']}").json() == contact


def test_contact_needs_email_or_phone_or_a_channel(org):
    response = org.client.post("/orgs/c/contacts", json={"first_name": "Nobody"})
    assert response.status_code == 422
    assert "an email, a phone or a channel id" in response.json()["error"]["message"]
    # A person known only on a channel (a Telegram user, a Messenger PSID) is a contact too.
    response = org.client.post(
        "/orgs/c/contacts", json={"first_name": "Tele", "channels": [{"channel": "telegram", "user_id": "777"}]}
    )
    assert response.status_code == 201
    contact = response.json()
    removed = org.client.patch(f"/orgs/c/contacts/{contact['id']}", json={"channels": []})
    assert removed.status_code == 422


@pytest.mark.parametrize(
    ("body", "field", "value"),
    [
        ({"phone": "12345"}, "phone", "12345"),
        ({"email": "not-an-email"}, "email", "not-an-email"),
        ({"email": "a@b.io", "status": "ACTIVE"}, "status", "ACTIVE"),
        ({"email": "a@b.io", "channels": [{"channel": "fax", "user_id": "1"}]}, "channels.0.channel", "fax"),
        ({"email": "a@b.io", "custom_fields": {"undeclared": 1}}, "custom_fields.undeclared", 1),
    ],
)
def test_invalid_input_is_422_naming_field_and_value(org, body, field, value):
    response = org.client.post("/orgs/c/contacts", json=body)
    assert response.status_code == 422
    fields = response.json()["error"]["fields"]
    assert {"field": field, "value": value} == {k: fields[0][k] for k in ("field", "value")}


def test_fields_a_client_must_not_set_are_rejected_and_never_echoed(org):
    contact = _create(org, email="a@b.io")
    for body in ({"org_id": "org_other"}, {"version": 99}, {"id": "ct_x"}, {"key_hash": "x"}):
        response = org.client.patch(f"/orgs/c/contacts/{contact['id']}", json=body)
        assert response.status_code == 422, body
    current = org.client.get(f"/orgs/c/contacts/{contact['id']}").json()
    assert "org_id" not in current
    assert "version" not in current
    assert current == contact


def test_existing_identity_is_409_with_the_contact_id_or_updated_with_upsert(org):
    first = _create(org, phone="+62 812 3456 7890", first_name="Sari")
    duplicate = org.client.post("/orgs/c/contacts", json={"phone": "6281234567890"})
    assert duplicate.status_code == 409
    assert duplicate.json()["error"]["contact_id"] == first["id"]

    upserted = org.client.post("/orgs/c/contacts?upsert=true", json={"phone": "0812-3456-7890", "last_name": "W"})
    assert upserted.status_code == 200
    assert upserted.json()["id"] == first["id"]
    assert upserted.json()["full_name"] == "Sari W"
    assert org.client.get("/orgs/c/contacts/stats").json()["total"] == 1


def test_email_identity_is_case_insensitive(org):
    first = _create(org, email="Sari@Example.com")
    response = org.client.post("/orgs/c/contacts", json={"email": "SARI@example.COM"})
    assert response.status_code == 409
    assert response.json()["error"]["contact_id"] == first["id"]


def test_channel_user_id_is_an_identity(org):
    first = _create(org, email="a@b.io", channels=[{"channel": "telegram", "user_id": "42"}])
    clash = org.client.post(
        "/orgs/c/contacts", json={"email": "c@d.io", "channels": [{"channel": "telegram", "user_id": "42"}]}
    )
    assert clash.status_code == 409
    assert clash.json()["error"]["contact_id"] == first["id"]


def test_concurrent_creates_with_one_phone_yield_one_contact(org):
    from audience import container

    service = container.contact_service()

    def attempt(i):
        try:
            return service.create(org.org_id, {"phone": "+6281234567890", "first_name": f"n{i}"}).action
        except Exception as error:
            return type(error).__name__

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(attempt, range(16)))
    assert results.count("created") == 1
    assert set(results) <= {"created", "ConflictError"}
    listed = org.client.get("/orgs/c/contacts").json()["items"]
    assert len(listed) == 1
    assert org.client.get("/orgs/c/contacts/stats").json()["total"] == 1


def test_patch_changes_only_what_is_sent_and_null_clears(org):
    contact = _create(org, first_name="Sari", email="a@b.io", phone="081234567890", tags=["vip"])
    updated = org.client.patch(f"/orgs/c/contacts/{contact['id']}", json={"last_name": "W", "phone": None}).json()
    assert updated["first_name"] == "Sari"
    assert updated["last_name"] == "W"
    assert updated["phone"] is None
    assert updated["country"] is None
    assert updated["tags"] == ["vip"]
    # The released phone can now name another contact.
    _create(org, phone="081234567890")
    # A contact cannot lose both identities.
    response = org.client.patch(f"/orgs/c/contacts/{contact['id']}", json={"email": None})
    assert response.status_code == 422


def test_changing_email_to_one_in_use_is_409(org):
    a = _create(org, email="a@b.io")
    b = _create(org, email="b@b.io")
    response = org.client.patch(f"/orgs/c/contacts/{b['id']}", json={"email": "A@b.io"})
    assert response.status_code == 409
    assert response.json()["error"]["contact_id"] == a["id"]


def test_custom_fields_are_declared_typed_and_validated(org):
    for name, type_ in [
        ("plan", "string"),
        ("score", "number"),
        ("vip", "boolean"),
        ("birthday", "date"),
        ("last_order", "datetime"),
    ]:
        assert org.client.post("/orgs/c/contacts/fields", json={"name": name, "type": type_}).status_code == 201
    assert org.client.post("/orgs/c/contacts/fields", json={"name": "plan", "type": "string"}).status_code == 409
    assert org.client.post("/orgs/c/contacts/fields", json={"name": "Bad Name", "type": "string"}).status_code == 422
    contact = _create(
        org,
        email="a@b.io",
        custom_fields={
            "plan": "pro",
            "score": 4.5,
            "vip": True,
            "birthday": "1990-02-28",
            "last_order": "2026-11-01T10:00:00+07:00",
        },
    )
    assert contact["custom_fields"] == {
        "plan": "pro",
        "score": 4.5,
        "vip": True,
        "birthday": "1990-02-28",
        "last_order": "2026-11-01T03:00:00.000Z",
    }
    for bad in ({"score": "high"}, {"vip": "yes"}, {"birthday": "28/02/1990"}, {"last_order": "2026-11-01T10:00:00"}):
        response = org.client.patch(f"/orgs/c/contacts/{contact['id']}", json={"custom_fields": bad})
        assert response.status_code == 422, bad
        assert response.json()["error"]["fields"][0]["field"] == f"custom_fields.{next(iter(bad))}"
    merged = org.client.patch(
        f"/orgs/c/contacts/{contact['id']}", json={"custom_fields": {"plan": None, "score": 7}}
    ).json()
    assert merged["custom_fields"]["score"] == 7
    assert "plan" not in merged["custom_fields"]
    names = [f["name"] for f in org.client.get("/orgs/c/contacts/fields").json()]
    assert names == sorted(["plan", "score", "vip", "birthday", "last_order"])
    assert org.client.delete("/orgs/c/contacts/fields/plan").status_code == 204
    assert org.client.delete("/orgs/c/contacts/fields/plan").status_code == 404


def test_stats_follow_status_changes_and_deletes(org):
    a = _create(org, email="a@b.io")
    b = _create(org, email="b@b.io", status="BLOCKED")
    _create(org, email="c@b.io")
    org.client.patch(f"/orgs/c/contacts/{a['id']}", json={"status": "UNSUBSCRIBED"})
    assert org.client.get("/orgs/c/contacts/stats").json() == {
        "total": 3,
        "subscribed": 1,
        "unsubscribed": 1,
        "blocked": 1,
    }
    assert org.client.delete(f"/orgs/c/contacts/{b['id']}").status_code == 204
    assert org.client.get(f"/orgs/c/contacts/{b['id']}").status_code == 404
    assert org.client.delete(f"/orgs/c/contacts/{b['id']}").status_code == 404
    assert org.client.get("/orgs/c/contacts/stats").json() == {
        "total": 2,
        "subscribed": 1,
        "unsubscribed": 1,
        "blocked": 0,
    }


def test_activity_timeline_newest_first_with_pagination(org):
    contact = _create(org, email="a@b.io")
    org.client.patch(f"/orgs/c/contacts/{contact['id']}", json={"first_name": "A"})
    org.client.patch(f"/orgs/c/contacts/{contact['id']}", json={"status": "UNSUBSCRIBED"})
    page = org.client.get(f"/orgs/c/contacts/{contact['id']}/activity", params={"take": 2}).json()
    assert [e["type"] for e in page["items"]] == ["status_changed", "updated"]
    assert page["items"][0]["data"] == {"from": "SUBSCRIBED", "to": "UNSUBSCRIBED"}
    rest = org.client.get(
        f"/orgs/c/contacts/{contact['id']}/activity", params={"take": 2, "cursor": page["next_cursor"]}
    ).json()
    assert [e["type"] for e in rest["items"]] == ["created"]
    assert rest["next_cursor"] is None


def test_merge_moves_identities_channels_tags_and_keeps_the_opt_out(org):
    target = _create(org, first_name="Sari", email="sari@example.com", tags=["vip"])
    source = _create(
        org,
        last_name="Wijaya",
        email="sari.w@work.example",
        phone="081234567890",
        status="UNSUBSCRIBED",
        tags=["lead"],
        channels=[{"channel": "whatsapp", "user_id": "6281234567890"}],
    )
    response = org.client.post(f"/orgs/c/contacts/{target['id']}/merge", json={"source_contact_ids": [source["id"]]})
    assert response.status_code == 200, response.text
    merged = response.json()
    assert merged["email"] == "sari@example.com"
    assert merged["phone"] == "+6281234567890"
    assert merged["last_name"] == "Wijaya"
    assert merged["status"] == "UNSUBSCRIBED"
    assert set(merged["tags"]) == {"vip", "lead"}
    assert merged["channels"] == [{"channel": "whatsapp", "user_id": "6281234567890"}]
    assert {"type": "email", "value": "sari.w@work.example"} in merged["identities"]
    assert org.client.get(f"/orgs/c/contacts/{source['id']}").status_code == 404
    # The source's identities now name the target.
    for body in ({"email": "sari.w@work.example"}, {"phone": "081234567890"}):
        clash = org.client.post("/orgs/c/contacts", json=body)
        assert clash.json()["error"]["contact_id"] == target["id"], body
    assert org.client.get("/orgs/c/contacts/stats").json() == {
        "total": 1,
        "subscribed": 0,
        "unsubscribed": 1,
        "blocked": 0,
    }
    assert org.client.get("/orgs/c/contacts", params={"tag": "lead"}).headers["X-Total-Count"] == "1"
    activity = org.client.get(f"/orgs/c/contacts/{target['id']}/activity").json()["items"]
    assert activity[0]["type"] == "merged"
    assert activity[0]["data"] == {"source_contact_id": source["id"]}


def test_merge_rejects_self_and_unknown_sources(org, other_org):
    target = _create(org, email="a@b.io")
    theirs = other_org.client.post("/orgs/c/contacts", json={"email": "x@y.io"}).json()
    assert (
        org.client.post(
            f"/orgs/c/contacts/{target['id']}/merge", json={"source_contact_ids": [target["id"]]}
        ).status_code
        == 422
    )
    assert (
        org.client.post(
            f"/orgs/c/contacts/{target['id']}/merge", json={"source_contact_ids": [theirs["id"]]}
        ).status_code
        == 404
    )
    assert other_org.client.get(f"/orgs/c/contacts/{theirs['id']}").status_code == 200
