"""Channel connections: validation, secrets kept in Secrets Manager only, one account per org, rotation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.channels import APP_SECRET, VERIFY_TOKEN, connect_whatsapp

WHATSAPP = {"phone_number_id": "106540352242922", "business_account_id": "102290129340398"}


def _scan(stack: Any, table_output: str) -> str:
    client = stack.client("dynamodb")
    return json.dumps(client.scan(TableName=stack.outputs[table_output])["Items"])


def test_secrets_live_in_secrets_manager_never_in_a_table_or_a_response(stack: Any, org: Any) -> None:
    connection = connect_whatsapp(org, WHATSAPP["phone_number_id"])
    listed = org.client.get("/orgs/c/connections").json()
    fetched = org.client.get(f"/orgs/c/connections/{connection['id']}").json()
    for shown in (connection, listed, fetched):
        assert APP_SECRET not in json.dumps(shown)
        assert VERIFY_TOKEN not in json.dumps(shown)
    for table in ("OrgsTableName", "ContactsTableName"):
        dump = _scan(stack, table)
        assert APP_SECRET not in dump
        assert VERIFY_TOKEN not in dump
    secret = stack.client("secretsmanager").get_secret_value(SecretId=f"audience/test/connections/{connection['id']}")
    assert json.loads(secret["SecretString"])["app_secret"] == APP_SECRET
    assert fetched["settings"] == WHATSAPP
    assert fetched["channel"] == "whatsapp"
    assert [c["id"] for c in listed["items"]] == [connection["id"]]


def test_an_account_belongs_to_one_connection_in_one_org(org: Any, other_org: Any) -> None:
    connect_whatsapp(org, WHATSAPP["phone_number_id"])
    again = other_org.client.post(
        "/orgs/c/connections",
        json={
            "platform": "whatsapp",
            "name": "theirs",
            "settings": {"phone_number_id": WHATSAPP["phone_number_id"], "business_account_id": "999"},
            "secrets": {"app_secret": "x" * 20, "verify_token": "y" * 10},
        },
    )
    assert again.status_code == 409
    assert "phone_number_id" in again.json()["error"]["message"]
    # Nothing of the refused connection is left behind.
    assert other_org.client.get("/orgs/c/connections").json()["items"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"platform": "fax", "name": "x"}, "platform"),
        ({"platform": "whatsapp", "name": "x", "settings": {"phone_number_id": "1"}}, "settings.business_account_id"),
        (
            {"platform": "whatsapp", "name": "x", "settings": {**WHATSAPP, "phone_number_id": "12ab"}},
            "settings.phone_number_id",
        ),
        ({"platform": "whatsapp", "name": "x", "settings": {**WHATSAPP, "page_id": "1"}}, "settings.page_id"),
        (
            {"platform": "whatsapp", "name": "x", "settings": WHATSAPP, "secrets": {"app_secret": "s"}},
            "secrets.verify_token",
        ),
        ({"platform": "telegram", "name": "x", "secrets": {"bot_token": "not-a-token"}}, "secrets.bot_token"),
        ({"platform": "custom", "name": "x", "secrets": {"signing_secret": "short"}}, "secrets.signing_secret"),
        (
            {"platform": "custom", "name": "x", "secrets": {"signing_secret": "has spaces in it!!"}},
            "secrets.signing_secret",
        ),
        ({"platform": "ses", "name": "x", "settings": {"identity": "not an identity"}}, "settings.identity"),
        (
            {"platform": "ses", "name": "x", "settings": {"identity": "example.com", "topic_arns": ["arn:nope"]}},
            "settings.topic_arns",
        ),
        (
            {"platform": "sms", "name": "x", "settings": {"origination_number": "5550100"}},
            "settings.origination_number",
        ),
    ],
)
def test_bad_connections_are_refused_naming_the_field(org: Any, body: dict[str, Any], field: str) -> None:
    response = org.client.post("/orgs/c/connections", json=body)
    assert response.status_code == 422, response.text
    assert field in response.text
    assert org.client.get("/orgs/c/connections").json()["items"] == []


def test_a_refused_secret_is_never_echoed(org: Any) -> None:
    leaked = "sensitive value with spaces"
    response = org.client.post(
        "/orgs/c/connections",
        json={"platform": "custom", "name": "x", "secrets": {"signing_secret": leaked}},
    )
    assert response.status_code == 422
    assert leaked not in response.text


def test_settings_that_name_the_account_cannot_change_but_secrets_rotate(stack: Any, org: Any) -> None:
    connection = connect_whatsapp(org, WHATSAPP["phone_number_id"])
    moved = org.client.patch(f"/orgs/c/connections/{connection['id']}", json={"settings": {"phone_number_id": "42"}})
    assert moved.status_code == 422
    assert "cannot change" in moved.text
    rotated = org.client.patch(
        f"/orgs/c/connections/{connection['id']}",
        json={"name": "Support line", "secrets": {"app_secret": "rotated-secret-0123456789"}},
    )
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["name"] == "Support line"
    stored = json.loads(
        stack.client("secretsmanager").get_secret_value(SecretId=f"audience/test/connections/{connection['id']}")[
            "SecretString"
        ]
    )
    assert stored["app_secret"] == "rotated-secret-0123456789"
    assert stored["verify_token"] == VERIFY_TOKEN  # merged, not replaced


def test_deleting_a_connection_frees_its_account_and_its_webhook(org: Any, other_org: Any) -> None:
    connection = connect_whatsapp(org, WHATSAPP["phone_number_id"])
    assert org.client.delete(f"/orgs/c/connections/{connection['id']}").status_code == 204
    assert org.client.get(f"/orgs/c/connections/{connection['id']}").status_code == 404
    taken = connect_whatsapp(other_org, WHATSAPP["phone_number_id"])
    assert taken["id"] != connection["id"]


def test_telegram_registration_needs_an_https_address(org: Any) -> None:
    created = org.client.post(
        "/orgs/c/connections",
        json={"platform": "telegram", "name": "bot", "secrets": {"bot_token": "123456:" + "A" * 35}},
    ).json()
    assert created["settings"]["bot_id"] == "123456"
    response = org.client.post(f"/orgs/c/connections/{created['id']}/telegram-webhook")
    assert response.status_code == 422
    assert "https" in response.text


def test_inbound_keywords_are_validated_and_kept(org: Any) -> None:
    empty = org.client.get("/orgs/c/inbound-settings").json()
    assert empty["opt_out_keywords"] == []
    assert "STOP" in empty["default_opt_out_keywords"]
    saved = org.client.put("/orgs/c/inbound-settings", json={"opt_out_keywords": ["BERHENTI", "berhenti ", "Keluar"]})
    assert saved.status_code == 200
    assert saved.json()["opt_out_keywords"] == ["BERHENTI", "berhenti", "Keluar"]
    clash = org.client.put("/orgs/c/inbound-settings", json={"opt_in_keywords": ["stop"]})
    assert clash.status_code == 422
    blank = org.client.put("/orgs/c/inbound-settings", json={"opt_in_keywords": ["!!!"]})
    assert blank.status_code == 422
    assert org.client.get("/orgs/c/inbound-settings").json()["opt_out_keywords"] == ["BERHENTI", "berhenti", "Keluar"]
