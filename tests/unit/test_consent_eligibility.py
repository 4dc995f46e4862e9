"""Consent records (append only, written by status changes) and the eligibility rules, one by one."""

from datetime import UTC, datetime, timedelta

import boto3
import pytest

from audience import container
from audience.compliance.models import Decision


def _contact(org, **body):
    body.setdefault("phone", "+62 812-3456-7890")
    response = org.client.post("/orgs/c/contacts", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def _consent(org, contact_id, **body):
    response = org.client.post(f"/orgs/c/contacts/{contact_id}/consent", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def _eligible(org, contact_id, channel, purpose, sender=None):
    params = {"channel": channel, "purpose": purpose, **({"sender": sender} if sender else {})}
    response = org.client.get(f"/orgs/c/contacts/{contact_id}/eligibility", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    return body["allowed"], body["reason"]


def _ago(**delta):
    return (datetime.now(UTC) - timedelta(**delta)).isoformat()


def _consent_items(stack, org_id, contact_id):
    table = boto3.resource("dynamodb").Table(stack.resources["ContactsTable"])
    items = table.query(
        KeyConditionExpression="pk = :pk AND begins_with(sk, :k)",
        ExpressionAttributeValues={":pk": f"O#{org_id}#C#{contact_id}", ":k": "K#"},
    )["Items"]
    return items


# -- consent records ------------------------------------------------------------------------------


def test_records_are_appended_and_listed_newest_first(org):
    contact = _contact(org)
    first = _consent(
        org, contact["id"], channel="whatsapp", opted_in=True, source="web_form", proof="I agree", at=_ago(days=2)
    )
    second = _consent(org, contact["id"], channel="all", opted_in=False, at=_ago(days=1))
    third = _consent(org, contact["id"], channel="email", opted_in=True, source="import", proof="x" * 2000)
    assert (first["channel"], first["opted_in"], first["source"], first["proof"]) == (
        "whatsapp",
        True,
        "web_form",
        "I agree",
    )
    assert second["source"] == "api"

    pages, cursor = [], None
    while True:
        params = {"take": 1, **({"cursor": cursor} if cursor else {})}
        body = org.client.get(f"/orgs/c/contacts/{contact['id']}/consent", params=params).json()
        pages.append([r["id"] for r in body["items"]])
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert pages == [[third["id"]], [second["id"]], [first["id"]]]
    only = org.client.get(f"/orgs/c/contacts/{contact['id']}/consent", params={"channel": "whatsapp"}).json()
    assert [r["id"] for r in only["items"]] == [first["id"]]


def test_records_are_never_rewritten(org, stack):
    contact = _contact(org)
    _consent(org, contact["id"], channel="sms", opted_in=True)
    before = _consent_items(stack, org.org_id, contact["id"])
    _consent(org, contact["id"], channel="sms", opted_in=False)
    after = _consent_items(stack, org.org_id, contact["id"])
    assert len(after) == 2
    assert before[0] in after  # the first record is untouched
    # There is no route that changes or deletes a record.
    record_id = before[0]["id"]
    for method in ("PUT", "PATCH", "DELETE"):
        assert org.client.request(method, f"/orgs/c/contacts/{contact['id']}/consent/{record_id}").status_code in (
            404,
            405,
        )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"channel": "fax", "opted_in": True}, "channel"),
        ({"channel": "sms", "opted_in": True, "proof": "x" * 2001}, "proof"),
        ({"channel": "sms", "opted_in": True, "source": "Not A Slug"}, "source"),
        ({"channel": "sms", "opted_in": True, "at": "2026-01-01T00:00:00"}, "at"),
        ({"channel": "sms", "opted_in": True, "at": "yesterday"}, "at"),
        ({"channel": "sms", "opted_in": True, "at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}, "at"),
    ],
)
def test_invalid_records_are_422(org, body, field):
    contact = _contact(org)
    response = org.client.post(f"/orgs/c/contacts/{contact['id']}/consent", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["fields"][0]["field"] == field


def test_another_orgs_contact_is_not_found(org, other_org):
    theirs = _contact(other_org)
    for method, path, kwargs in (
        ("GET", "consent", {}),
        ("POST", "consent", {"json": {}}),  # 404 before the (invalid) body is looked at
        ("GET", "eligibility", {}),  # and before the (missing) query
    ):
        response = org.client.request(method, f"/orgs/c/contacts/{theirs['id']}/{path}", **kwargs)
        assert response.status_code == 404, (method, path, response.text)
    assert other_org.client.get(f"/orgs/c/contacts/{theirs['id']}/consent").json()["items"] == []


# -- consent written by status changes ------------------------------------------------------------


def test_a_status_change_appends_a_consent_record_for_all_channels(org):
    contact = _contact(org)
    history = f"/orgs/c/contacts/{contact['id']}/consent"
    org.client.patch(f"/orgs/c/contacts/{contact['id']}", json={"first_name": "Sari"})
    assert org.client.get(history).json()["items"] == []  # no status change, no record

    unsubscribed = org.client.patch(f"/orgs/c/contacts/{contact['id']}", json={"status": "UNSUBSCRIBED"}).json()
    records = org.client.get(history).json()["items"]
    assert [(r["channel"], r["opted_in"], r["source"]) for r in records] == [("all", False, "api")]
    assert records[0]["at"] == unsubscribed["updated_at"]
    assert "SUBSCRIBED to UNSUBSCRIBED" in records[0]["proof"]

    # An upsert that changes the status records it too.
    upserted = org.client.post(
        "/orgs/c/contacts?upsert=true", json={"phone": "+62 812 3456 7890", "status": "SUBSCRIBED"}
    )
    assert upserted.status_code == 200
    assert [r["opted_in"] for r in org.client.get(history).json()["items"]] == [True, False]


def test_a_merge_that_changes_the_status_records_it_on_the_target(org):
    target = _contact(org, email="a@x.io", phone=None)
    source = _contact(org, email="b@x.io", phone=None, status="UNSUBSCRIBED")
    merged = org.client.post(f"/orgs/c/contacts/{target['id']}/merge", json={"source_contact_ids": [source["id"]]})
    assert merged.json()["status"] == "UNSUBSCRIBED"
    records = org.client.get(f"/orgs/c/contacts/{target['id']}/consent").json()["items"]
    assert [(r["channel"], r["opted_in"]) for r in records] == [("all", False)]
    assert _eligible(org, target["id"], "email", "marketing") == (False, "unsubscribed")


def test_deleting_a_contact_leaves_no_consent_records(org, stack):
    contact = _contact(org)
    _consent(org, contact["id"], channel="whatsapp", opted_in=True, proof="checked the box")
    org.client.patch(f"/orgs/c/contacts/{contact['id']}", json={"status": "UNSUBSCRIBED"})
    assert len(_consent_items(stack, org.org_id, contact["id"])) == 2
    assert org.client.delete(f"/orgs/c/contacts/{contact['id']}").status_code == 204
    stack.drain()
    assert _consent_items(stack, org.org_id, contact["id"]) == []
    # Nor can a record be appended to a contact that is gone.
    assert (
        org.client.post(
            f"/orgs/c/contacts/{contact['id']}/consent", json={"channel": "sms", "opted_in": True}
        ).status_code
        == 404
    )


# -- eligibility, rule by rule --------------------------------------------------------------------


def test_a_subscribed_contact_with_an_address_is_allowed(org):
    contact = _contact(org, email="sari@example.com")
    for channel in ("whatsapp", "sms", "email"):
        for purpose in ("marketing", "transactional"):
            assert _eligible(org, contact["id"], channel, purpose) == (True, "ok")


def test_blocked_is_never_sent_to(org):
    contact = _contact(org, status="BLOCKED")
    assert _eligible(org, contact["id"], "sms", "marketing") == (False, "blocked")
    assert _eligible(org, contact["id"], "sms", "transactional") == (False, "blocked")
    # The first failing rule is named, even when a later one fails too.
    assert _eligible(org, contact["id"], "telegram", "transactional") == (False, "blocked")


def test_unsubscribed_gets_transactional_messages_only(org):
    contact = _contact(org, status="UNSUBSCRIBED")
    assert _eligible(org, contact["id"], "whatsapp", "marketing") == (False, "unsubscribed")
    assert _eligible(org, contact["id"], "whatsapp", "transactional") == (True, "ok")


def test_do_not_contact_on_the_phone_blocks_marketing_on_phone_channels(org):
    contact = _contact(org, email="sari@example.com")
    org.client.post("/orgs/c/do-not-contact", json={"identifier": "+6281234567890"})
    assert _eligible(org, contact["id"], "whatsapp", "marketing") == (False, "do_not_contact")
    assert _eligible(org, contact["id"], "sms", "marketing") == (False, "do_not_contact")
    assert _eligible(org, contact["id"], "sms", "transactional") == (True, "ok")
    assert _eligible(org, contact["id"], "email", "marketing") == (True, "ok")  # the email is not on the list


def test_do_not_contact_is_matched_on_channel_and_sender(org):
    contact = _contact(org, email="Sari@Example.com")
    org.client.post(
        "/orgs/c/do-not-contact", json={"identifier": "sari@example.com", "channel": "email", "sender": "news@shop.io"}
    )
    assert _eligible(org, contact["id"], "email", "marketing", sender="News@Shop.io") == (False, "do_not_contact")
    assert _eligible(org, contact["id"], "email", "marketing", sender="billing@shop.io") == (True, "ok")
    assert _eligible(org, contact["id"], "email", "marketing") == (True, "ok")  # no sender: every-sender entries only
    org.client.post("/orgs/c/do-not-contact", json={"identifier": "+6281234567890", "channel": "sms"})
    assert _eligible(org, contact["id"], "sms", "marketing") == (False, "do_not_contact")
    assert _eligible(org, contact["id"], "whatsapp", "marketing") == (True, "ok")  # another channel


def test_do_not_contact_uses_the_identifiers_of_the_channel(org):
    contact = _contact(
        org,
        phone=None,
        email="sari@example.com",
        channels=[{"channel": "telegram", "user_id": "777"}, {"channel": "whatsapp", "user_id": "6281299990000"}],
    )
    org.client.post("/orgs/c/do-not-contact", json={"identifier": "777", "channel": "telegram"})
    assert _eligible(org, contact["id"], "telegram", "marketing") == (False, "do_not_contact")
    assert _eligible(org, contact["id"], "telegram", "transactional") == (True, "ok")
    # A WhatsApp id is the phone number: an entry for the number applies to it.
    assert _eligible(org, contact["id"], "whatsapp", "marketing") == (True, "ok")
    org.client.post("/orgs/c/do-not-contact", json={"identifier": "+6281299990000"})
    assert _eligible(org, contact["id"], "whatsapp", "marketing") == (False, "do_not_contact")
    decision = org.client.get(
        f"/orgs/c/contacts/{contact['id']}/eligibility", params={"channel": "whatsapp", "purpose": "marketing"}
    ).json()
    assert "+6281299990000" in decision["detail"]


def test_an_opt_out_blocks_marketing_and_the_latest_record_wins(org):
    contact = _contact(org, email="sari@example.com")
    _consent(org, contact["id"], channel="whatsapp", opted_in=False, at=_ago(days=3))
    assert _eligible(org, contact["id"], "whatsapp", "marketing") == (False, "opted_out")
    assert _eligible(org, contact["id"], "whatsapp", "transactional") == (True, "ok")
    assert _eligible(org, contact["id"], "sms", "marketing") == (True, "ok")  # another channel

    _consent(org, contact["id"], channel="all", opted_in=True, at=_ago(days=2))  # later, for every channel
    assert _eligible(org, contact["id"], "whatsapp", "marketing") == (True, "ok")
    _consent(org, contact["id"], channel="all", opted_in=False, at=_ago(days=1))
    assert _eligible(org, contact["id"], "email", "marketing") == (False, "opted_out")
    _consent(org, contact["id"], channel="email", opted_in=True, at=_ago(hours=1))  # later, for the channel
    assert _eligible(org, contact["id"], "email", "marketing") == (True, "ok")
    assert _eligible(org, contact["id"], "sms", "marketing") == (False, "opted_out")
    # A record dated before the latest does not override it.
    _consent(org, contact["id"], channel="sms", opted_in=True, at=_ago(days=5))
    assert _eligible(org, contact["id"], "sms", "marketing") == (False, "opted_out")


def test_no_address_on_the_channel_is_not_allowed(org):
    contact = _contact(org, phone=None, email="sari@example.com")
    for purpose in ("marketing", "transactional"):
        assert _eligible(org, contact["id"], "sms", purpose) == (False, "no_address")
        assert _eligible(org, contact["id"], "telegram", purpose) == (False, "no_address")
    assert _eligible(org, contact["id"], "email", "marketing") == (True, "ok")


def test_rules_are_checked_in_order(org):
    contact = _contact(org, phone=None, email="sari@example.com", status="UNSUBSCRIBED")
    org.client.post("/orgs/c/do-not-contact", json={"identifier": "sari@example.com"})
    _consent(org, contact["id"], channel="all", opted_in=False)
    assert _eligible(org, contact["id"], "email", "marketing") == (False, "unsubscribed")
    org.client.patch(f"/orgs/c/contacts/{contact['id']}", json={"status": "SUBSCRIBED"})  # appends an opt-in
    assert _eligible(org, contact["id"], "email", "marketing") == (False, "do_not_contact")
    assert _eligible(org, contact["id"], "sms", "marketing") == (False, "no_address")


def test_the_domain_service_answers_senders_directly(org):
    contact = _contact(org)
    service = container.eligibility_service()
    assert service.check(org.org_id, contact["id"], channel="sms", purpose="marketing") == Decision(
        True, "ok", "marketing messages on sms are allowed"
    )
    request = service.request("sms", "transactional", sender=" Shop ")
    assert request.sender == "Shop"
    record = container.contact_service().get(org.org_id, contact["id"])
    assert service.decide(record, request).allowed


def test_invalid_queries_are_422(org):
    contact = _contact(org)
    path = f"/orgs/c/contacts/{contact['id']}/eligibility"
    assert org.client.get(path, params={"channel": "sms", "purpose": "spam"}).status_code == 422
    assert org.client.get(path, params={"channel": "fax", "purpose": "marketing"}).status_code == 422
    assert org.client.get(path, params={"purpose": "marketing"}).status_code == 422
