"""Transactional sends through the HTTP API: one recipient per call, sent while the caller waits or in the
background (TransactionalQueue), with Idempotency-Key replays, the broadcast's rate limit, the refusals, and
what analytics and the contact's history show afterwards. Telegram's Bot API is the local stand-in."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.channels import BotApiStub, Tenant
from tests.integration.broadcasts.conftest import telegram_connection, telegram_contacts, text_broadcast

CODE = "123456"


# -- helpers --------------------------------------------------------------------------------------------


def transactional(
    org: Tenant,
    connection_id: str,
    *,
    activate: bool = True,
    text: str = "Your code is {{code}}",
    properties: list[dict[str, Any]] | None = None,
    rate_limit: dict[str, int] | None = None,
) -> str:
    """A transactional broadcast with one Telegram template (ACTIVE unless told); its id."""
    body: dict[str, Any] = {
        "type": "transactional",
        "name": "Login code",
        "channels": [{"channel": "telegram", "connection_id": connection_id, "text": {"text": text}}],
        "properties": properties if properties is not None else [{"name": "code"}],
    }
    if rate_limit is not None:
        body["rate_limit"] = rate_limit
    created = org.client.post("/orgs/c/broadcasts", json=body)
    assert created.status_code == 201, created.text
    broadcast_id = created.json()["id"]
    if activate:
        answer = org.client.post(f"/orgs/c/broadcasts/{broadcast_id}/activate")
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "ACTIVE"
    return broadcast_id


def send(org: Tenant, broadcast_id: str, *, key: str | None = None, **fields: Any) -> Any:
    """POST .../send; `fields` replace the defaults (chat 1, code 123456, the telegram template)."""
    body: dict[str, Any] = {
        "contact_channel_id": "telegram:1",
        "variables": {"code": CODE},
        "template_ids": ["telegram"],
        **fields,
    }
    body = {k: v for k, v in body.items() if v is not None}
    headers = {"Idempotency-Key": key} if key is not None else {}
    return org.client.post(f"/orgs/c/broadcasts/{broadcast_id}/send", json=body, headers=headers)


def setup(org: Tenant, contacts: int = 1, **broadcast: Any) -> tuple[str, str, list[str]]:
    """A Telegram connection, an ACTIVE transactional broadcast on it and contacts with chats 1, 2, ...:
    (broadcast id, bot token, contact ids)."""
    connection_id, token = telegram_connection(org)
    return transactional(org, connection_id, **broadcast), token, telegram_contacts(org, contacts)


def stats(org: Tenant, broadcast_id: str) -> dict[str, Any]:
    answer = org.client.get(f"/orgs/c/broadcasts/{broadcast_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()["stats"]


def recipients(org: Tenant, broadcast_id: str) -> list[dict[str, Any]]:
    answer = org.client.get(f"/orgs/c/broadcasts/{broadcast_id}/recipients")
    assert answer.status_code == 200, answer.text
    return answer.json()["items"]


def last_message_id(bot_api: BotApiStub) -> int:
    """The message id the stand-in gave its latest sendMessage answer."""
    return bot_api._next_id


def fresh_window(period: int, room: float = 5.0) -> None:
    """Wait for the next rate window when fewer than `room` seconds are left in this one, so a test's sends
    all fall in one window."""
    left = period - time.time() % period
    if left < room:
        time.sleep(left + 0.05)


def error(answer: Any, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    return answer.json()["error"]


BAD_GATEWAY = (502, {"ok": False, "error_code": 502, "description": "Bad Gateway"})


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sender retries transient faults at once (its back-off would add 1.5 s per failed send)."""
    from audience import container

    monkeypatch.setattr(container.broadcast_sender(), "_sleep", lambda _: None)


def lenient(app: Any, org: Tenant) -> TestClient:
    """A client of the org that answers a server error as the API would (500) instead of raising it."""
    return TestClient(app, headers=dict(org.client.headers), raise_server_exceptions=False)


# -- sending ----------------------------------------------------------------------------------------------


def test_sync_send_answers_with_the_provider_message_id(org: Tenant, bot_api: BotApiStub) -> None:
    broadcast_id, token, (contact_id,) = setup(org)

    answer = send(org, broadcast_id)

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"send_id", "contact_id", "recipients"}
    assert body["send_id"].startswith("s")
    assert body["contact_id"] == contact_id
    (recipient,) = body["recipients"]
    assert recipient["id"] == f"{body['send_id']}#telegram"
    assert recipient["broadcast_id"] == broadcast_id
    assert recipient["contact_id"] == contact_id
    assert recipient["channel"] == "telegram"
    assert recipient["status"] == "SENT"
    assert recipient["provider_message_id"] == f"1:{last_message_id(bot_api)}"
    assert recipient["attempts"] == 1
    assert "error_code" not in recipient
    assert bot_api.sent(token) == [{"chat_id": 1, "text": f"Your code is {CODE}"}]


def test_background_send_is_accepted_then_sent_by_the_queue(org: Tenant, bot_api: BotApiStub, stack: Any) -> None:
    broadcast_id, token, (contact_id,) = setup(org)

    answer = send(org, broadcast_id, background=True)

    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["contact_id"] == contact_id
    (accepted,) = body["recipients"]
    assert accepted["id"] == f"{body['send_id']}#telegram"
    assert accepted["status"] == "PENDING"
    assert "provider_message_id" not in accepted
    assert bot_api.sent(token) == []
    assert stats(org, broadcast_id)["by_status"]["pending"] == 1

    stack.drain()

    assert bot_api.sent(token) == [{"chat_id": 1, "text": f"Your code is {CODE}"}]
    (row,) = recipients(org, broadcast_id)
    assert row["id"] == accepted["id"]
    assert row["status"] == "SENT"
    assert row["provider_message_id"] == f"1:{last_message_id(bot_api)}"
    counted = stats(org, broadcast_id)
    assert (counted["total"], counted["sent"], counted["by_status"]["pending"]) == (1, 1, 0)


def test_property_default_fills_a_variable_not_given(org: Tenant, bot_api: BotApiStub) -> None:
    broadcast_id, token, _ = setup(org, properties=[{"name": "code", "default": "000000"}])

    answer = send(org, broadcast_id, variables={})

    assert answer.status_code == 200, answer.text
    assert answer.json()["recipients"][0]["status"] == "SENT"
    assert bot_api.sent(token) == [{"chat_id": 1, "text": "Your code is 000000"}]


def test_missing_variable_without_default_fails_the_recipient(org: Tenant, bot_api: BotApiStub) -> None:
    broadcast_id, token, _ = setup(org)

    answer = send(org, broadcast_id, variables={})

    assert answer.status_code == 200, answer.text
    (recipient,) = answer.json()["recipients"]
    assert recipient["status"] == "FAILED"
    assert recipient["error_code"] == "missing_variable"
    assert recipient["error_title"] == (
        "text: {{code}} has no value for this contact (no value was given for property code and it has no default)"
    )
    assert "provider_message_id" not in recipient
    assert bot_api.sent(token) == []
    counted = stats(org, broadcast_id)
    assert (counted["total"], counted["sent"], counted["failed"]) == (1, 0, 1)


def test_blocked_chat_fails_the_recipient_with_403(org: Tenant, bot_api: BotApiStub) -> None:
    broadcast_id, token, _ = setup(org)
    bot_api.blocked.add("1")

    answer = send(org, broadcast_id)

    assert answer.status_code == 200, answer.text
    (recipient,) = answer.json()["recipients"]
    assert recipient["status"] == "FAILED"
    assert recipient["error_code"] == "403"
    assert recipient["error_title"] == "Forbidden: bot was blocked by the user"
    assert "provider_message_id" not in recipient
    assert bot_api.sent(token) == []


def test_contact_blocked_before_the_queue_sends_is_skipped(org: Tenant, bot_api: BotApiStub, stack: Any) -> None:
    broadcast_id, token, (contact_id,) = setup(org)
    accepted = send(org, broadcast_id, background=True)
    assert accepted.status_code == 202, accepted.text
    assert org.client.patch(f"/orgs/c/contacts/{contact_id}", json={"status": "BLOCKED"}).status_code == 200

    stack.drain()

    (row,) = recipients(org, broadcast_id)
    assert (row["status"], row["reason"]) == ("SKIPPED", "blocked")
    assert bot_api.sent(token) == []
    counted = stats(org, broadcast_id)
    assert (counted["total"], counted["skipped"], counted["by_status"]["pending"]) == (1, 1, 0)


# -- who the recipient is ------------------------------------------------------------------------------------


def test_contact_channel_id_wins_over_contact_id_and_email(org: Tenant, bot_api: BotApiStub) -> None:
    broadcast_id, token, (first, second) = setup(org, contacts=2)

    answer = send(org, broadcast_id, contact_channel_id="telegram:1", contact_id=second, email="x@example.com")

    assert answer.status_code == 200, answer.text
    assert answer.json()["contact_id"] == first
    assert [m["chat_id"] for m in bot_api.sent(token)] == [1]


def test_contact_id_wins_over_phone_and_email(org: Tenant, bot_api: BotApiStub) -> None:
    broadcast_id, token, (_, second) = setup(org, contacts=2)

    answer = send(org, broadcast_id, contact_channel_id=None, contact_id=second, email="y@example.com")

    assert answer.status_code == 200, answer.text
    assert answer.json()["contact_id"] == second
    assert [m["chat_id"] for m in bot_api.sent(token)] == [2]
    found = org.client.get("/orgs/c/contacts", params={"q": "y@example.com"})
    assert found.status_code == 200, found.text
    assert found.json()["items"] == []


def test_phone_finds_the_contact_that_has_it(org: Tenant, bot_api: BotApiStub) -> None:
    connection_id, token = telegram_connection(org)
    broadcast_id = transactional(org, connection_id)
    created = org.client.post(
        "/orgs/c/contacts",
        json={"phone": "+6281234567890", "channels": [{"channel": "telegram", "user_id": "55"}]},
    )
    assert created.status_code == 201, created.text

    answer = send(org, broadcast_id, contact_channel_id=None, phone="+6281234567890")

    assert answer.status_code == 200, answer.text
    assert answer.json()["contact_id"] == created.json()["id"]
    assert bot_api.sent(token) == [{"chat_id": 55, "text": f"Your code is {CODE}"}]


def test_email_creates_a_contact_without_a_telegram_address(org: Tenant, bot_api: BotApiStub) -> None:
    broadcast_id, token, _ = setup(org, contacts=0)

    answer = send(org, broadcast_id, contact_channel_id=None, template_ids=None, email="new@example.com")

    refusal = error(answer, 409)
    assert refusal["code"] == "conflict"
    assert refusal["reason"] == "no_address"
    assert refusal["message"] == "the contact has no address on any channel of this broadcast (telegram)"
    contact = org.client.get(f"/orgs/c/contacts/{refusal['contact_id']}")
    assert contact.status_code == 200, contact.text
    assert contact.json()["email"] == "new@example.com"
    assert bot_api.sent(token) == []
    assert stats(org, broadcast_id)["total"] == 0


def test_email_recipient_with_the_telegram_template_named_is_a_422(org: Tenant, bot_api: BotApiStub) -> None:
    broadcast_id, token, _ = setup(org, contacts=0)

    answer = send(org, broadcast_id, contact_channel_id=None, email="named@example.com")

    refusal = error(answer, 422)
    assert refusal["fields"] == [
        {"field": "template_ids", "value": "telegram", "message": "the contact has no address on telegram"}
    ]
    assert bot_api.sent(token) == []


def test_unknown_contact_channel_id_and_contact_id_are_404(org: Tenant, bot_api: BotApiStub) -> None:
    broadcast_id, token, _ = setup(org)

    by_channel = send(org, broadcast_id, contact_channel_id="telegram:999")
    by_id = send(org, broadcast_id, contact_channel_id=None, contact_id="ct_01jzzzzzzzzzzzzzzzzzzzzzzz")

    assert error(by_channel, 404) == {"code": "not_found", "message": "no contact has telegram id 999"}
    assert error(by_id, 404)["code"] == "not_found"
    assert bot_api.sent(token) == []


# -- refusals ------------------------------------------------------------------------------------------------


def draft_and_paused(org: Tenant) -> tuple[str, str, str]:
    """A Telegram connection, chat 1, and two transactional broadcasts: (DRAFT id, PAUSED id, bot token)."""
    connection_id, token = telegram_connection(org)
    telegram_contacts(org, 1)
    draft = transactional(org, connection_id, activate=False)
    paused = transactional(org, connection_id)
    assert org.client.post(f"/orgs/c/broadcasts/{paused}/pause").status_code == 200
    return draft, paused, token


@pytest.mark.parametrize("status", ["DRAFT", "PAUSED"])
def test_draft_or_paused_broadcast_refuses_with_409(org: Tenant, status: str) -> None:
    draft, paused, _ = draft_and_paused(org)

    refusal = error(send(org, draft if status == "DRAFT" else paused), 409)

    assert refusal == {
        "code": "conflict",
        "message": f"this broadcast is {status}: activate it to send",
        "status": status,
    }


def test_draft_and_paused_broadcasts_send_nothing(org: Tenant, app: Any, bot_api: BotApiStub) -> None:
    draft, paused, token = draft_and_paused(org)
    client = lenient(app, org)

    answers = [
        client.post(
            f"/orgs/c/broadcasts/{b}/send", json={"contact_channel_id": "telegram:1", "variables": {"code": CODE}}
        )
        for b in (draft, paused)
    ]

    assert [a.status_code for a in answers if a.status_code in (200, 202)] == []
    assert bot_api.sent(token) == []
    assert stats(org, draft)["total"] == stats(org, paused)["total"] == 0


def test_marketing_broadcast_refuses_a_send(org: Tenant, bot_api: BotApiStub) -> None:
    connection_id, token = telegram_connection(org)
    telegram_contacts(org, 1)
    broadcast_id = text_broadcast(org, connection_id)["id"]

    refusal = error(send(org, broadcast_id, variables={}), 409)

    assert refusal == {
        "code": "conflict",
        "message": "only a transactional broadcast is sent one recipient per call; schedule this one",
    }
    assert bot_api.sent(token) == []


@pytest.mark.parametrize("status", ["UNSUBSCRIBED", "BLOCKED"])
def test_unsubscribed_or_blocked_contact_is_refused(org: Tenant, bot_api: BotApiStub, status: str) -> None:
    broadcast_id, token, (contact_id,) = setup(org)
    patched = org.client.patch(f"/orgs/c/contacts/{contact_id}", json={"status": status})
    assert patched.status_code == 200, patched.text

    refusal = error(send(org, broadcast_id), 409)

    assert refusal == {
        "code": "conflict",
        "message": f"the contact is {status}: nothing is sent to it",
        "contact_id": contact_id,
        "reason": status.lower(),
    }
    assert bot_api.sent(token) == []
    assert stats(org, broadcast_id)["total"] == 0


def test_do_not_contact_entry_on_telegram_is_refused(org: Tenant, bot_api: BotApiStub) -> None:
    broadcast_id, token, (contact_id,) = setup(org)
    entry = org.client.post("/orgs/c/do-not-contact", json={"identifier": "1", "channel": "telegram"})
    assert entry.status_code == 201, entry.text

    refusal = error(send(org, broadcast_id), 409)

    assert refusal["code"] == "conflict"
    assert refusal["reason"] == "do_not_contact"
    assert refusal["contact_id"] == contact_id
    assert refusal["message"].startswith("1 is on the do-not-contact list on telegram")
    assert bot_api.sent(token) == []


def test_unknown_variable_and_unknown_template_are_422(org: Tenant, bot_api: BotApiStub) -> None:
    broadcast_id, token, _ = setup(org)

    variable = error(send(org, broadcast_id, variables={"code": CODE, "coupon": "X"}), 422)
    template = error(send(org, broadcast_id, template_ids=["email"]), 422)
    channel = error(send(org, broadcast_id, template_ids=["fax"]), 422)

    assert variable["fields"] == [
        {"field": "variables.coupon", "value": None, "message": "is not a property of the broadcast"}
    ]
    assert template["fields"] == [
        {
            "field": "template_ids",
            "value": "email",
            "message": "is not a template of this broadcast (its templates: telegram)",
        }
    ]
    assert channel["code"] == "validation_error"
    assert channel["fields"][0]["field"] == "template_ids.0"
    assert bot_api.sent(token) == []
    assert stats(org, broadcast_id)["total"] == 0


# -- Idempotency-Key -------------------------------------------------------------------------------------------


def test_idempotent_replay_answers_as_the_first_call_and_sends_once(org: Tenant, bot_api: BotApiStub) -> None:
    broadcast_id, token, _ = setup(org)

    first = send(org, broadcast_id, key="otp-1")
    again = send(org, broadcast_id, key="otp-1")

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert first.json()["recipients"][0]["provider_message_id"] == f"1:{last_message_id(bot_api)}"
    assert len(bot_api.sent(token)) == 1
    assert len(recipients(org, broadcast_id)) == 1
    assert stats(org, broadcast_id)["total"] == 1


def test_idempotent_replay_of_a_background_send_queues_nothing_more(
    org: Tenant, bot_api: BotApiStub, stack: Any
) -> None:
    broadcast_id, token, _ = setup(org)

    first = send(org, broadcast_id, key="bg-1", background=True)
    stack.drain()
    again = send(org, broadcast_id, key="bg-1", background=True)
    stack.drain()

    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert len(bot_api.sent(token)) == 1
    assert [r["status"] for r in recipients(org, broadcast_id)] == ["SENT"]


def test_same_key_with_another_body_is_422(org: Tenant, bot_api: BotApiStub) -> None:
    broadcast_id, token, _ = setup(org)
    assert send(org, broadcast_id, key="otp-2").status_code == 200

    refusal = error(send(org, broadcast_id, key="otp-2", variables={"code": "654321"}), 422)

    assert refusal["fields"] == [
        {
            "field": "Idempotency-Key",
            "value": "otp-2",
            "message": "was already used with a different request body",
        }
    ]
    assert bot_api.sent(token) == [{"chat_id": 1, "text": f"Your code is {CODE}"}]


def test_a_key_belongs_to_one_broadcast(org: Tenant, bot_api: BotApiStub) -> None:
    connection_id, token = telegram_connection(org)
    telegram_contacts(org, 1)
    login = transactional(org, connection_id)
    reset = transactional(org, connection_id, text="Reset code {{code}}")

    first = send(org, login, key="shared")
    second = send(org, reset, key="shared")

    assert first.status_code == second.status_code == 200
    assert second.json()["recipients"][0]["broadcast_id"] == reset
    assert bot_api.sent(token) == [
        {"chat_id": 1, "text": f"Your code is {CODE}"},
        {"chat_id": 1, "text": f"Reset code {CODE}"},
    ]
    assert second.json()["recipients"][0]["provider_message_id"] != first.json()["recipients"][0]["provider_message_id"]


def test_a_refused_call_does_not_spend_its_key(org: Tenant, bot_api: BotApiStub) -> None:
    broadcast_id, token, (contact_id,) = setup(org)
    assert org.client.patch(f"/orgs/c/contacts/{contact_id}", json={"status": "BLOCKED"}).status_code == 200
    assert send(org, broadcast_id, key="retry-me").status_code == 409
    assert org.client.patch(f"/orgs/c/contacts/{contact_id}", json={"status": "SUBSCRIBED"}).status_code == 200

    answer = send(org, broadcast_id, key="retry-me")

    assert answer.status_code == 200, answer.text
    assert answer.json()["recipients"][0]["status"] == "SENT"
    assert len(bot_api.sent(token)) == 1


# -- rate limit ------------------------------------------------------------------------------------------------


def test_third_send_in_the_window_is_429_with_retry_after(org: Tenant, bot_api: BotApiStub) -> None:
    broadcast_id, token, _ = setup(org, contacts=3, rate_limit={"limit": 2, "period_seconds": 60})
    fresh_window(60)

    assert send(org, broadcast_id, contact_channel_id="telegram:1").status_code == 200
    assert send(org, broadcast_id, contact_channel_id="telegram:2").status_code == 200
    limited = send(org, broadcast_id, contact_channel_id="telegram:3")

    refusal = error(limited, 429)
    assert refusal["code"] == "rate_limited"
    retry_after = limited.headers["Retry-After"]
    assert retry_after.isdigit()
    assert 1 <= int(retry_after) <= 60
    assert [m["chat_id"] for m in bot_api.sent(token)] == [1, 2]
    assert stats(org, broadcast_id)["total"] == 2


def test_broadcast_429_names_the_broadcast_limit_once(org: Tenant) -> None:
    broadcast_id, _, _ = setup(org, rate_limit={"limit": 1, "period_seconds": 60})
    fresh_window(60)
    assert send(org, broadcast_id).status_code == 200

    limited = send(org, broadcast_id)

    assert limited.status_code == 429, limited.text
    assert limited.headers.get_list("X-RateLimit-Limit") == ["1"]
    assert limited.headers.get_list("X-RateLimit-Remaining") == ["0"]


def test_replays_do_not_spend_the_rate_limit(org: Tenant, bot_api: BotApiStub) -> None:
    broadcast_id, token, _ = setup(org, contacts=3, rate_limit={"limit": 2, "period_seconds": 60})
    fresh_window(60)

    first = send(org, broadcast_id, key="once", contact_channel_id="telegram:1")
    replays = [send(org, broadcast_id, key="once", contact_channel_id="telegram:1") for _ in range(3)]
    second = send(org, broadcast_id, contact_channel_id="telegram:2")
    third = send(org, broadcast_id, contact_channel_id="telegram:3")

    assert first.status_code == 200, first.text
    assert all(r.status_code == 200 and r.json() == first.json() for r in replays)
    assert second.status_code == 200, second.text
    assert third.status_code == 429, third.text
    assert [m["chat_id"] for m in bot_api.sent(token)] == [1, 2]


def test_refused_sends_do_not_spend_the_rate_limit(org: Tenant, bot_api: BotApiStub) -> None:
    broadcast_id, token, (contact_id,) = setup(org, rate_limit={"limit": 1, "period_seconds": 60})
    fresh_window(60)
    assert org.client.patch(f"/orgs/c/contacts/{contact_id}", json={"status": "UNSUBSCRIBED"}).status_code == 200
    assert send(org, broadcast_id).status_code == 409
    assert send(org, broadcast_id, variables={"nope": "1"}).status_code == 422
    assert org.client.patch(f"/orgs/c/contacts/{contact_id}", json={"status": "SUBSCRIBED"}).status_code == 200

    answer = send(org, broadcast_id)

    assert answer.status_code == 200, answer.text
    assert len(bot_api.sent(token)) == 1


def test_rate_limit_is_per_broadcast_and_per_org(org: Tenant, other_org: Tenant, bot_api: BotApiStub) -> None:
    limit = {"limit": 1, "period_seconds": 60}
    connection_id, token = telegram_connection(org)
    telegram_contacts(org, 1)
    spent = transactional(org, connection_id, rate_limit=limit)
    sibling = transactional(org, connection_id, rate_limit=limit)
    other_broadcast, other_token, _ = setup(other_org, rate_limit=limit)
    fresh_window(60)

    assert send(org, spent).status_code == 200
    assert send(org, spent).status_code == 429
    beside = send(org, sibling)
    elsewhere = send(other_org, other_broadcast)

    assert beside.status_code == 200, beside.text
    assert elsewhere.status_code == 200, elsewhere.text
    assert len(bot_api.sent(token)) == 2
    assert len(bot_api.sent(other_token)) == 1


# -- analytics and the contact's history ----------------------------------------------------------------------


def test_stats_count_every_send_by_outcome(org: Tenant, bot_api: BotApiStub, stack: Any) -> None:
    broadcast_id, _, _ = setup(org, contacts=3)
    bot_api.blocked.add("3")

    assert send(org, broadcast_id, contact_channel_id="telegram:1").status_code == 200
    assert send(org, broadcast_id, contact_channel_id="telegram:2", background=True).status_code == 202
    assert send(org, broadcast_id, contact_channel_id="telegram:3").status_code == 200
    assert send(org, broadcast_id, contact_channel_id="telegram:1", variables={}).status_code == 200
    stack.drain()

    counted = stats(org, broadcast_id)
    assert (counted["total"], counted["sent"], counted["failed"]) == (4, 2, 2)
    assert counted["by_status"] == {
        "pending": 0,
        "sent": 2,
        "delivered": 0,
        "read": 0,
        "failed": 2,
        "skipped": 0,
        "cancelled": 0,
    }
    assert counted["by_channel"] == {"telegram": 4}
    assert (counted["sent_pct"], counted["failed_pct"]) == (50.0, 50.0)
    assert sorted(r["status"] for r in recipients(org, broadcast_id)) == ["FAILED", "FAILED", "SENT", "SENT"]


def test_contact_history_lists_its_transactional_messages(org: Tenant, bot_api: BotApiStub) -> None:
    connection_id, _ = telegram_connection(org)
    first, second = telegram_contacts(org, 2)
    login = transactional(org, connection_id)
    reset = transactional(org, connection_id, text="Reset code {{code}}")

    sends = [send(org, login), send(org, reset), send(org, login, contact_channel_id="telegram:2")]

    assert [s.status_code for s in sends] == [200, 200, 200]
    history = org.client.get(f"/orgs/c/contacts/{first}/broadcasts")
    assert history.status_code == 200, history.text
    items = history.json()
    assert [(i["broadcast_id"], i["status"]) for i in items] == [(reset, "SENT"), (login, "SENT")]
    assert [i["id"] for i in items] == [sends[1].json()["recipients"][0]["id"], sends[0].json()["recipients"][0]["id"]]
    assert all(i["contact_id"] == first for i in items)
    other = org.client.get(f"/orgs/c/contacts/{second}/broadcasts").json()
    assert [i["id"] for i in other] == [sends[2].json()["recipients"][0]["id"]]


# -- provider faults and edge cases ----------------------------------------------------------------------------


@pytest.mark.usefixtures("no_backoff")
def test_a_retry_with_the_same_key_recovers_a_send_the_provider_failed(
    org: Tenant, app: Any, bot_api: BotApiStub, stack: Any
) -> None:
    broadcast_id, token, _ = setup(org)
    bot_api.faults.extend([BAD_GATEWAY] * 3)
    client = lenient(app, org)
    body = {"contact_channel_id": "telegram:1", "variables": {"code": CODE}}
    url = f"/orgs/c/broadcasts/{broadcast_id}/send"

    failed = client.post(url, json=body, headers={"Idempotency-Key": "flaky"})
    retried = client.post(url, json=body, headers={"Idempotency-Key": "flaky"})
    stack.drain()

    assert failed.status_code != 200, failed.text
    assert retried.status_code in (200, 202), retried.text
    assert bot_api.sent(token) == [{"chat_id": 1, "text": f"Your code is {CODE}"}]
    assert [r["status"] for r in recipients(org, broadcast_id)] == ["SENT"]
    counted = stats(org, broadcast_id)
    assert (counted["total"], counted["sent"], counted["by_status"]["pending"]) == (1, 1, 0)


@pytest.mark.usefixtures("no_backoff")
def test_transient_provider_fault_on_a_sync_send_is_not_a_500_nor_a_stranded_recipient(
    org: Tenant, app: Any, bot_api: BotApiStub, stack: Any
) -> None:
    broadcast_id, _, _ = setup(org)
    bot_api.faults.extend([BAD_GATEWAY] * 3)

    answer = lenient(app, org).post(
        f"/orgs/c/broadcasts/{broadcast_id}/send",
        json={"contact_channel_id": "telegram:1", "variables": {"code": CODE}},
    )
    stack.drain()

    # Not taken yet: carried on in the background, then sent once the faults are over.
    assert answer.status_code == 202, answer.text
    assert [r["status"] for r in answer.json()["recipients"]] == ["PENDING"]
    assert [r["status"] for r in recipients(org, broadcast_id)] == ["SENT"]
    assert stats(org, broadcast_id)["by_status"]["pending"] == 0
    assert stats(org, broadcast_id)["sent"] == 1


def test_a_channel_named_twice_in_template_ids_is_not_a_500(org: Tenant, app: Any, bot_api: BotApiStub) -> None:
    broadcast_id, token, _ = setup(org)

    answer = lenient(app, org).post(
        f"/orgs/c/broadcasts/{broadcast_id}/send",
        json={
            "contact_channel_id": "telegram:1",
            "variables": {"code": CODE},
            "template_ids": ["telegram", "telegram"],
        },
    )

    assert answer.status_code in (200, 422), answer.text
    assert len(bot_api.sent(token)) == (1 if answer.status_code == 200 else 0)


def test_a_key_reused_after_it_expired_is_a_new_send(org: Tenant, bot_api: BotApiStub, stack: Any) -> None:
    broadcast_id, token, _ = setup(org)
    first = send(org, broadcast_id, key="daily")
    assert first.status_code == 200, first.text
    # The key's record 24 h later: expired (DynamoDB's TTL deletes it some time after that, or not yet).
    digest = hashlib.sha256(b"daily").hexdigest()
    stack.client("dynamodb").update_item(
        TableName=stack.template.ref("BroadcastsTable"),
        Key={"pk": {"S": f"O#{org.org_id}#B#{broadcast_id}#K#{digest}"}, "sk": {"S": "#K"}},
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 1)}},
    )

    second = send(org, broadcast_id, key="daily")

    assert second.status_code == 200, second.text
    assert len(bot_api.sent(token)) == 2
    assert second.json()["send_id"] != first.json()["send_id"]
    assert len(recipients(org, broadcast_id)) == 2
    assert stats(org, broadcast_id)["sent"] == 2


def test_a_waiting_send_does_not_outwait_the_api(org: Tenant, bot_api: BotApiStub, stack: Any) -> None:
    """Telegram asks for 25 s: longer than a waiting call may take (20 s), so it goes on in the background,
    once the connection's schedule has waited those 25 s."""
    broadcast_id, token, _ = setup(org)
    bot_api.faults.append(
        (429, {"ok": False, "error_code": 429, "description": "Too Many Requests", "parameters": {"retry_after": 25}})
    )
    started = time.monotonic()
    answer = send(org, broadcast_id)
    assert time.monotonic() - started < 10
    assert answer.status_code == 202, answer.text
    assert [r["status"] for r in answer.json()["recipients"]] == ["PENDING"]
    stack.drain(timeout=90)
    assert time.monotonic() - started >= 25  # every sender of the connection waited out the retry_after
    assert [r["status"] for r in recipients(org, broadcast_id)] == ["SENT"]
    assert len(bot_api.sent(token)) == 1
