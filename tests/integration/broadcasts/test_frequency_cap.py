"""The org's frequency cap (`PUT /orgs/{org}/send-policy`) on the module's local stack: marketing recipients
over it end SKIPPED (`frequency_cap`), counted in the broadcast's stats and the org's analytics, and never
reach Telegram; transactional messages are never capped; a message that failed for good gives its place
back; turning the cap off lets the next broadcast through."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tests.channels import BotApiStub, Tenant
from tests.integration.broadcasts.conftest import telegram_connection, telegram_contacts, text_broadcast
from tests.integration.broadcasts.test_marketing_send import _audited, _chats, _schedule
from tests.integration.broadcasts.test_transactional_send import send, transactional

CHAT_NOT_FOUND = (400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"})


def _policy(org: Tenant, frequency_cap: dict[str, Any] | None) -> dict[str, Any]:
    answer = org.client.put("/orgs/c/send-policy", json={"frequency_cap": frequency_cap})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _run(stack: Any, org: Tenant, connection_id: str, name: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A marketing broadcast to every contact, sent to the end: the broadcast and its rows by contact."""
    draft = text_broadcast(org, connection_id, audience_all=True, name=name)
    _schedule(org, draft["id"])
    stack.drain()
    view, rows = _audited(org, draft["id"])
    assert view["status"] == "SENT", view
    return view, rows


def _today(org: Tenant) -> dict[str, Any]:
    answer = org.client.get("/orgs/c/analytics", params={"from": datetime.now(UTC).date().isoformat()})
    assert answer.status_code == 200, answer.text
    (today,) = answer.json()["broadcast_recipients"]
    return dict(today)


def test_capped_contacts_are_skipped_and_counted_until_the_cap_is_off(
    stack: Any, bot_api: BotApiStub, org: Tenant
) -> None:
    # Given an org that allows one marketing message per contact a day, and three contacts on Telegram
    connection_id, token = telegram_connection(org)
    contacts = telegram_contacts(org, 3)
    assert org.client.get("/orgs/c/send-policy").json() == {"frequency_cap": None, "updated_at": None}
    policy = _policy(org, {"limit": 1, "window_hours": 24})
    assert policy["frequency_cap"] == {"limit": 1, "window_hours": 24.0}
    assert policy["updated_at"]
    assert org.client.get("/orgs/c/send-policy").json() == policy

    # When a first marketing broadcast goes, everyone gets it
    first, _ = _run(stack, org, connection_id, "Monday")
    assert first["stats"]["by_status"]["sent"] == 3
    assert first["stats"]["skipped_by_reason"] == {}
    assert sorted(_chats(bot_api, token)) == [1, 2, 3]

    # Then a second one the same day reaches nobody: every recipient is skipped for the cap, and counted
    second, rows = _run(stack, org, connection_id, "Monday again")
    assert {(row["status"], row["reason"]) for row in rows.values()} == {("SKIPPED", "frequency_cap")}
    assert set(rows) == set(contacts)
    assert second["stats"]["skipped"] == 3
    assert second["stats"]["skipped_by_reason"] == {"frequency_cap": 3}
    assert len(bot_api.sent(token)) == 3
    today = _today(org)
    assert (today["sent"], today["skipped"], today["marketing"]) == (3, 3, 6)
    assert today["skipped_by_reason"] == {"frequency_cap": 3}

    # A transactional message to a capped contact still goes out
    otp = transactional(org, connection_id)
    answer = send(org, otp, contact_channel_id="telegram:1")
    assert answer.status_code == 200, answer.text
    assert [r["status"] for r in answer.json()["recipients"]] == ["SENT"]
    assert _chats(bot_api, token)[-1] == 1

    # Turning the cap off lets the next broadcast through
    off = _policy(org, None)
    assert off["frequency_cap"] is None
    assert off["updated_at"] >= policy["updated_at"]
    third, _ = _run(stack, org, connection_id, "Tuesday")
    assert third["stats"]["by_status"]["sent"] == 3
    assert sorted(_chats(bot_api, token)) == [1, 1, 1, 2, 2, 3, 3]
    assert _today(org)["skipped_by_reason"] == {"frequency_cap": 3}


def test_a_message_that_failed_for_good_does_not_count_against_the_cap(
    stack: Any, bot_api: BotApiStub, org: Tenant
) -> None:
    connection_id, token = telegram_connection(org)
    telegram_contacts(org, 3)
    _policy(org, {"limit": 1, "window_hours": 24})
    bot_api.faults.append(CHAT_NOT_FOUND)  # the first send of the run is refused for good

    first, rows = _run(stack, org, connection_id, "Monday")
    (failed,) = [row for row in rows.values() if row["status"] == "FAILED"]
    assert (first["stats"]["failed"], first["stats"]["by_status"]["sent"]) == (1, 2)

    # The contact whose message failed can still be sent one; the others are at their cap.
    second, rows = _run(stack, org, connection_id, "Monday again")
    assert rows[failed["contact_id"]]["status"] == "SENT"
    assert second["stats"]["skipped_by_reason"] == {"frequency_cap": 2}
    assert len(bot_api.sent(token)) == 3


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "frequency_cap"),
        ({"frequency_cap": {"limit": 0, "window_hours": 24}}, "frequency_cap.limit"),
        ({"frequency_cap": {"limit": 101, "window_hours": 24}}, "frequency_cap.limit"),
        ({"frequency_cap": {"limit": 2.5, "window_hours": 24}}, "frequency_cap.limit"),
        ({"frequency_cap": {"limit": True, "window_hours": 24}}, "frequency_cap.limit"),
        ({"frequency_cap": {"limit": "3", "window_hours": 24}}, "frequency_cap.limit"),
        ({"frequency_cap": {"window_hours": 24}}, "frequency_cap.limit"),
        ({"frequency_cap": {"limit": 3, "window_hours": 0}}, "frequency_cap.window_hours"),
        ({"frequency_cap": {"limit": 3, "window_hours": 721}}, "frequency_cap.window_hours"),
        ({"frequency_cap": {"limit": 3, "window_hours": 0.001}}, "frequency_cap.window_hours"),
        ({"frequency_cap": {"limit": 3, "window_hours": "a day"}}, "frequency_cap.window_hours"),
        ({"frequency_cap": {"limit": 3, "window_hours": 24, "channel": "sms"}}, "frequency_cap.channel"),
    ],
)
def test_a_bad_send_policy_is_422_naming_the_field(org: Tenant, body: dict[str, Any], field: str) -> None:
    answer = org.client.put("/orgs/c/send-policy", json=body)
    assert answer.status_code == 422, answer.text
    assert field in {f["field"] for f in answer.json()["error"]["fields"]}, answer.text
    assert org.client.get("/orgs/c/send-policy").json()["frequency_cap"] is None
