"""Test sends: a broadcast's messages sent once to a given address, in any status, counted nowhere."""

from __future__ import annotations

from typing import Any

from tests.channels import BotApiStub
from tests.integration.broadcasts.conftest import telegram_connection, telegram_contacts, text_broadcast


def _test(org: Any, broadcast_id: str, **body: Any) -> Any:
    return org.client.post(f"/orgs/c/broadcasts/{broadcast_id}/test", json=body)


def test_a_draft_is_tested_with_the_given_name_and_nothing_is_counted(org: Any, bot_api: BotApiStub) -> None:
    connection, token = telegram_connection(org)
    broadcast = text_broadcast(org, connection, audience_all=True)
    answer = _test(org, broadcast["id"], contact_channel_id="telegram:9001", name="Zed Quinn")
    assert answer.status_code == 200, answer.text
    (result,) = answer.json()["results"]
    assert (result["channel"], result["status"], result["to"]) == ("telegram", "SENT", "9001")
    assert result["provider_message_id"].startswith("9001:")
    assert [m["text"] for m in bot_api.sent(token)] == ["Hi Zed"]
    after = org.client.get(f"/orgs/c/broadcasts/{broadcast['id']}").json()
    assert (after["status"], after["stats"]["total"]) == ("DRAFT", 0)
    assert org.client.get(f"/orgs/c/broadcasts/{broadcast['id']}/recipients").json()["items"] == []


def test_an_existing_contact_fills_the_template(org: Any, bot_api: BotApiStub) -> None:
    connection, token = telegram_connection(org)
    telegram_contacts(org, 1, start=4242)  # first name P4242
    broadcast = text_broadcast(org, connection)
    (result,) = _test(org, broadcast["id"], contact_channel_id="telegram:4242", name="Ignored").json()["results"]
    assert result["status"] == "SENT"
    assert [m["text"] for m in bot_api.sent(token)] == ["Hi P4242"]


def test_failures_come_back_per_channel(org: Any, bot_api: BotApiStub) -> None:
    connection, _ = telegram_connection(org)
    broadcast = text_broadcast(org, connection)
    bot_api.blocked.add("777")
    (blocked,) = _test(org, broadcast["id"], contact_channel_id="telegram:777", name="Bo").json()["results"]
    assert (blocked["status"], blocked["error_code"]) == ("FAILED", "403")
    (nameless,) = _test(org, broadcast["id"], contact_channel_id="telegram:778").json()["results"]
    assert (nameless["status"], nameless["error_code"]) == ("FAILED", "missing_variable")
    assert "contact.first_name" in nameless["error_title"]
    (unreachable,) = _test(org, broadcast["id"], email="no-telegram@x.io").json()["results"]
    assert (unreachable["status"], unreachable["reason"]) == ("SKIPPED", "no_address")


def test_bad_requests_name_the_field(org: Any) -> None:
    connection, _ = telegram_connection(org)
    broadcast = text_broadcast(org, connection)
    nothing = _test(org, broadcast["id"])
    assert nothing.status_code == 422
    assert nothing.json()["error"]["fields"][0]["field"] == "phone"
    other = _test(org, broadcast["id"], email="a@x.io", template_ids=["email"])
    assert other.status_code == 422
    assert other.json()["error"]["fields"][0]["field"] == "template_ids"
    malformed = _test(org, broadcast["id"], contact_channel_id="nochannel")
    assert malformed.status_code == 422
    assert _test(org, "bc_" + "0" * 26, email="a@x.io").status_code == 404
