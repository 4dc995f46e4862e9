"""Follow-ups of idle conversations on the local stack, with intervals of a second or two: an outbound
message starts the conversation's timer (one Step Functions execution); the configured follow-ups go,
then the conversation is closed. A reply, an opt-out, a cancel or a deleted contact stops what is left;
business hours defer a step; a repeated event starts one timer."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devstack.stack import DrainTimeoutError
from tests.channels import CUSTOM_SECRET, BotApiStub, Tenant, connect, custom_headers

USER = 5512345678


def _contact(org: Tenant, user: int = USER, **extra: Any) -> str:
    answer = org.client.post(
        "/orgs/c/contacts",
        json={"first_name": "Sari", "channels": [{"channel": "telegram", "user_id": str(user)}], **extra},
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def _rules(org: Tenant, **rules: Any) -> dict[str, Any]:
    body = {
        "enabled": True,
        "idle_seconds": 1,
        "intervals_seconds": [1],
        "max_follow_ups": 2,
        "messages": [{"text": "Still there?"}, {"text": "Last call"}],
        "closing": {"after_seconds": 1, "message": {"text": "Closing this chat, thanks"}},
        **rules,
    }
    answer = org.client.put("/orgs/c/follow-up-rules", json=body)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _send(org: Tenant, contact_id: str, connection_id: str, text: str = "Your order is ready", **extra: Any) -> Any:
    return org.client.post(
        f"/orgs/c/contacts/{contact_id}/messages", json={"connection_id": connection_id, "text": text}, **extra
    )


def _texts(bot_api: BotApiStub, token: str) -> list[str]:
    return [call["text"] for call in bot_api.sent(token)]


def _reply(stack: Any, connection_id: str, secret: str, text: str, *, user: int = USER, update: int) -> None:
    from fastapi.testclient import TestClient

    payload = {
        "update_id": update,
        "message": {
            "message_id": update,
            "from": {"id": user, "is_bot": False, "first_name": "Sari"},
            "chat": {"id": user, "type": "private", "first_name": "Sari"},
            "date": int(time.time()),
            "text": text,
        },
    }
    answer = TestClient(stack.http_app).post(
        f"/webhooks/{connection_id}",
        content=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": secret},
    )
    assert answer.status_code == 200, answer.text


def _conversation(org: Tenant, contact_id: str, channel: str = "telegram") -> dict[str, Any]:
    from audience import container

    found = container.follow_up_service()._repo.conversation(org.org_id, contact_id, channel)
    assert found is not None
    return found


def _wait_for(done: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _executions(stack: Any, contact_id: str) -> list[dict[str, Any]]:
    sfn = stack.client("stepfunctions")
    arn = stack.resources["FollowUpStateMachine"]
    found = []
    for execution in sfn.list_executions(stateMachineArn=arn)["executions"]:
        payload = json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])
        if payload.get("contact_id") == contact_id:
            found.append({**execution, "input": payload})
    return found


def test_an_idle_conversation_gets_exactly_its_follow_ups_then_is_closed(
    stack: Any, org: Tenant, bot_api: BotApiStub, bot: tuple[str, str, str]
) -> None:
    connection_id, token, _ = bot
    contact_id = _contact(org)
    _rules(org)

    sent = _send(org, contact_id, connection_id)
    assert sent.status_code == 201, sent.text
    assert sent.json()["kind"] == "text"
    assert sent.json()["follow_up_due_at"]
    listed = org.client.get(f"/orgs/c/contacts/{contact_id}/follow-ups").json()["items"]
    assert [(f["id"], f["kind"], f["step"], f["status"]) for f in listed] == [("idle-telegram", "idle", 1, "scheduled")]

    stack.drain(timeout=60)  # until the execution has ended

    assert _texts(bot_api, token) == ["Your order is ready", "Still there?", "Last call", "Closing this chat, thanks"]
    conversation = _conversation(org, contact_id)
    assert conversation["status"] == "resolved"
    assert conversation["fu_state"] == "closed"
    assert conversation["fu_step"] == 3
    assert conversation["fu_reason"] == "no_reply"
    (execution,) = _executions(stack, contact_id)
    assert execution["status"] == "SUCCEEDED"
    log = org.client.get(f"/orgs/c/contacts/{contact_id}/messages").json()["items"]
    assert [(m["direction"], m["text"]) for m in reversed(log)] == [
        ("outbound", "Your order is ready"),
        ("outbound", "Still there?"),
        ("outbound", "Last call"),
        ("outbound", "Closing this chat, thanks"),
    ]
    assert org.client.get(f"/orgs/c/contacts/{contact_id}/follow-ups").json()["items"] == []
    (shown,) = org.client.get(f"/orgs/c/contacts/{contact_id}/conversations").json()["items"]
    assert (shown["status"], shown["follow_up_state"], shown["outbound_count"]) == ("resolved", "closed", 4)


def test_a_reply_between_follow_ups_stops_the_rest(
    stack: Any, org: Tenant, bot_api: BotApiStub, bot: tuple[str, str, str]
) -> None:
    connection_id, token, secret = bot
    contact_id = _contact(org)
    _rules(org, intervals_seconds=[2], max_follow_ups=3)

    assert _send(org, contact_id, connection_id).status_code == 201
    _wait_for(lambda: len(_texts(bot_api, token)) == 2)  # the first follow-up went
    _reply(stack, connection_id, secret, "yes, I am here", update=9001)
    stack.drain(timeout=60)
    time.sleep(2.5)  # past when the second follow-up was due

    assert _texts(bot_api, token) == ["Your order is ready", "Still there?"]
    conversation = _conversation(org, contact_id)
    assert conversation["fu_state"] == "replied"
    assert conversation["fu_step"] == 1
    assert conversation.get("status") == "open"
    assert all(e["status"] != "RUNNING" for e in _executions(stack, contact_id))


def test_an_opt_out_stops_them(stack: Any, org: Tenant, bot_api: BotApiStub, bot: tuple[str, str, str]) -> None:
    connection_id, token, secret = bot
    contact_id = _contact(org)
    _rules(org, idle_seconds=2)

    assert _send(org, contact_id, connection_id).status_code == 201
    _reply(stack, connection_id, secret, "STOP", update=9101)
    stack.drain(timeout=60)
    time.sleep(2.5)

    assert _texts(bot_api, token) == ["Your order is ready"]
    assert _conversation(org, contact_id)["fu_state"] in ("replied", "opted_out")
    # A new outbound message after the opt-out is a service message; its follow-ups never go.
    assert _send(org, contact_id, connection_id, "Your refund is on its way").status_code == 201
    stack.drain(timeout=60)
    assert _texts(bot_api, token) == ["Your order is ready", "Your refund is on its way"]
    assert _conversation(org, contact_id)["fu_state"] == "opted_out"


def test_a_new_outbound_message_restarts_the_timer(
    stack: Any, org: Tenant, bot_api: BotApiStub, bot: tuple[str, str, str]
) -> None:
    connection_id, token, _ = bot
    contact_id = _contact(org)
    _rules(org, idle_seconds=3, max_follow_ups=1, closing={"resolve": True, "after_seconds": 1})

    first = _send(org, contact_id, connection_id, "One")
    time.sleep(1.5)
    second = _send(org, contact_id, connection_id, "Two")
    assert first.status_code == second.status_code == 201
    stack.drain(timeout=60)

    assert _texts(bot_api, token) == ["One", "Two", "Still there?"]
    conversation = _conversation(org, contact_id)
    assert conversation["fu_gen"] == second.json()["id"]
    assert conversation["fu_state"] == "closed"
    executions = _executions(stack, contact_id)
    assert len(executions) == 2  # the first timer was superseded before its step
    assert sorted(e["status"] for e in executions) in (["ABORTED", "SUCCEEDED"], ["SUCCEEDED", "SUCCEEDED"])


def test_business_hours_defer_a_follow_up_to_the_next_opening(
    stack: Any, org: Tenant, bot_api: BotApiStub, bot: tuple[str, str, str]
) -> None:
    connection_id, token, _ = bot
    contact_id = _contact(org)
    opening_day = (datetime.now(UTC) + timedelta(days=3)).date()
    day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[opening_day.weekday()]
    _rules(org, business_hours={"days": [day], "start": "09:00", "end": "17:00", "timezone": "Asia/Jakarta"})

    assert _send(org, contact_id, connection_id).status_code == 201
    expected = datetime(opening_day.year, opening_day.month, opening_day.day, 2, 0, tzinfo=UTC)  # 09:00 WIB

    def deferred() -> bool:
        listed = org.client.get(f"/orgs/c/contacts/{contact_id}/follow-ups").json()["items"]
        return bool(listed) and listed[0]["due_at"] == expected.strftime("%Y-%m-%dT%H:%M:%S.000Z")

    _wait_for(deferred)
    (item,) = org.client.get(f"/orgs/c/contacts/{contact_id}/follow-ups").json()["items"]
    assert item["due_in"].startswith("in ")
    assert item["due_in_seconds"] > 24 * 3600
    assert _texts(bot_api, token) == ["Your order is ready"]

    cancelled = org.client.delete(f"/orgs/c/contacts/{contact_id}/follow-ups/idle-telegram")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    stack.drain(timeout=30)  # the cancel stopped the waiting execution
    assert org.client.get(f"/orgs/c/contacts/{contact_id}/follow-ups").json()["items"] == []
    assert org.client.delete(f"/orgs/c/contacts/{contact_id}/follow-ups/idle-telegram").status_code == 409


def test_a_deleted_contact_gets_no_follow_up(
    stack: Any, org: Tenant, bot_api: BotApiStub, bot: tuple[str, str, str]
) -> None:
    connection_id, token, _ = bot
    contact_id = _contact(org)
    _rules(org, idle_seconds=2)

    assert _send(org, contact_id, connection_id).status_code == 201
    assert org.client.delete(f"/orgs/c/contacts/{contact_id}").status_code == 204
    stack.drain(timeout=60)

    assert _texts(bot_api, token) == ["Your order is ready"]
    assert all(e["status"] != "RUNNING" for e in _executions(stack, contact_id))


@pytest.mark.parametrize("change", ["delete", "unsubscribe", "block"])
def test_a_contact_deleted_unsubscribed_or_blocked_has_its_timers_stopped_at_once(
    stack: Any, org: Tenant, bot_api: BotApiStub, bot: tuple[str, str, str], change: str
) -> None:
    """Through the contacts stream, not at the next step: nothing stays scheduled for ten minutes."""
    connection_id, token, _ = bot
    contact_id = _contact(org)
    _rules(org, idle_seconds=600)
    assert _send(org, contact_id, connection_id).status_code == 201
    requested = org.client.post(
        f"/orgs/c/contacts/{contact_id}/follow-ups", json={"connection_id": connection_id, "in": "1h", "text": "Hi"}
    )
    assert requested.status_code == 201, requested.text
    if change == "delete":
        assert org.client.delete(f"/orgs/c/contacts/{contact_id}").status_code == 204
    else:
        status = "UNSUBSCRIBED" if change == "unsubscribe" else "BLOCKED"
        answer = org.client.patch(f"/orgs/c/contacts/{contact_id}", json={"status": status})
        assert answer.status_code == 200, answer.text

    stack.drain(timeout=30)  # the stream stopped both waiting executions

    executions = _executions(stack, contact_id)
    assert len(executions) == 2
    assert {e["status"] for e in executions} == {"ABORTED"}
    assert _texts(bot_api, token) == ["Your order is ready"]
    if change != "delete":
        assert _conversation(org, contact_id)["fu_state"] == "opted_out"
        assert org.client.get(f"/orgs/c/contacts/{contact_id}/follow-ups").json()["items"] == []


def test_a_repeated_call_or_status_starts_one_timer(stack: Any, org: Tenant, live_api: str) -> None:
    """A retried send (one Idempotency-Key) and statuses of the message arriving again and again: one
    execution for the conversation."""
    sandbox = connect(org, "sandbox", {"channel": "sms"}, {"signing_secret": CUSTOM_SECRET})
    contact = org.client.post("/orgs/c/contacts", json={"first_name": "Ana", "phone": "+6281234567001"}).json()
    _rules(org, idle_seconds=600)
    calls = [
        _send(org, contact["id"], sandbox["id"], "Hello", headers={"Idempotency-Key": "order-77-ready"})
        for _ in range(3)
    ]
    assert {c.status_code for c in calls} == {201}
    assert len({c.json()["id"] for c in calls}) == 1
    message_id = calls[0].json()["id"]

    from fastapi.testclient import TestClient

    http = TestClient(stack.http_app)
    status = {
        "events": [{"type": "status", "message_id": message_id, "status": "delivered", "timestamp": int(time.time())}]
    }
    body = json.dumps(status).encode()
    for _ in range(3):
        assert http.post(f"/webhooks/{sandbox['id']}", content=body, headers=custom_headers(body)).status_code == 200
    with pytest.raises(DrainTimeoutError):
        stack.drain(timeout=3)  # the one timer waits ten minutes

    executions = _executions(stack, contact["id"])
    assert len(executions) == 1
    assert executions[0]["status"] == "RUNNING"
    stored = json.dumps(org.client.get(f"/orgs/c/contacts/{contact['id']}/messages").json())
    assert stored.count(message_id) == 1
    assert org.client.delete(f"/orgs/c/contacts/{contact['id']}/follow-ups/idle-sms").status_code == 200
    stack.drain(timeout=30)


def test_a_status_of_the_message_starts_the_timer_the_api_could_not(
    stack: Any, org: Tenant, live_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Step Functions unreachable when the message went: the call still answers 201 (a retry would send
    again), and the message's first status starts the one timer."""
    from audience import container

    sandbox = connect(org, "sandbox", {"channel": "sms"}, {"signing_secret": CUSTOM_SECRET})
    contact = org.client.post("/orgs/c/contacts", json={"first_name": "Ana", "phone": "+6281234567002"}).json()
    _rules(org, idle_seconds=600)
    service = container.follow_up_service()

    def unreachable(name: str, payload: dict[str, Any]) -> None:
        raise ConnectionError("states.us-east-1.amazonaws.com unreachable")

    with monkeypatch.context() as patch:
        patch.setattr(service, "_start", unreachable)
        sent = _send(org, contact["id"], sandbox["id"], "Hello")
    assert sent.status_code == 201, sent.text
    assert sent.json()["follow_up_due_at"] is None
    assert _executions(stack, contact["id"]) == []

    def started() -> bool:
        with pytest.raises(DrainTimeoutError):  # the sandbox posts "sent" a second later, then "delivered"
            stack.drain(timeout=1)
        return bool(_executions(stack, contact["id"]))

    _wait_for(started)
    (execution,) = _executions(stack, contact["id"])
    assert execution["status"] == "RUNNING"
    # The input names the message by a digest: Step Functions keeps it past the contact's deletion.
    from audience.followups.service import gen_token

    assert execution["input"]["gen"] == gen_token(sent.json()["id"])
    assert org.client.delete(f"/orgs/c/contacts/{contact['id']}/follow-ups/idle-sms").status_code == 200
    stack.drain(timeout=30)


@pytest.mark.parametrize("name", ["followups_step_idle", "followups_step_requested"])
def test_the_sample_events_of_the_function_end_a_timer_that_is_stale(stack: Any, name: str) -> None:
    from tests.channels import fixture

    assert stack.invoke("FollowUpFunction", fixture(name))["done"] is True


def test_follow_ups_count_against_the_frequency_cap(
    stack: Any, org: Tenant, bot_api: BotApiStub, bot: tuple[str, str, str]
) -> None:
    """One marketing message per contact a day: the first follow-up takes it; the second and the closing
    message are skipped, the conversation is still closed; the conversation message itself is not capped."""
    connection_id, token, _ = bot
    contact_id = _contact(org)
    answer = org.client.put("/orgs/c/send-policy", json={"frequency_cap": {"limit": 1, "window_hours": 24}})
    assert answer.status_code == 200, answer.text
    _rules(org)

    assert _send(org, contact_id, connection_id).status_code == 201
    stack.drain(timeout=60)

    assert _texts(bot_api, token) == ["Your order is ready", "Still there?"]
    conversation = _conversation(org, contact_id)
    assert conversation["fu_state"] == "closed"
    assert conversation["status"] == "resolved"
    assert conversation["fu_step"] == 3
    assert conversation["fu_last"]["reason"] == "frequency_cap"
    assert org.client.put("/orgs/c/send-policy", json={"frequency_cap": None}).status_code == 200


def test_a_skipped_step_is_recorded(stack: Any, org: Tenant, bot_api: BotApiStub, bot: tuple[str, str, str]) -> None:
    """A capped step shows in the timer's last step (what the listing shows as `last`)."""
    connection_id, token, _ = bot
    contact_id = _contact(org)
    assert (
        org.client.put("/orgs/c/send-policy", json={"frequency_cap": {"limit": 1, "window_hours": 24}}).status_code
        == 200
    )
    _rules(org, max_follow_ups=2, intervals_seconds=[1], closing={"after_seconds": 30})

    assert _send(org, contact_id, connection_id).status_code == 201

    def second_step_done() -> bool:
        return int(_conversation(org, contact_id).get("fu_step", 0)) == 2

    _wait_for(second_step_done)
    (item,) = org.client.get(f"/orgs/c/contacts/{contact_id}/follow-ups").json()["items"]
    assert item["closing"] is True
    assert item["last"]["outcome"] == "skipped"
    assert item["last"]["reason"] == "frequency_cap"
    assert _texts(bot_api, token) == ["Your order is ready", "Still there?"]
    assert org.client.delete(f"/orgs/c/contacts/{contact_id}/follow-ups/idle-telegram").status_code == 200
    stack.drain(timeout=30)
