"""The per-destination limit of transactional sends through the HTTP API: a flood of codes at one chat is
refused with 429 and Retry-After once the broadcast's `destination_rate_limit` is spent, other chats still
get theirs, and replays and refused calls count nothing. Telegram's Bot API is the local stand-in."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from audience import aws
from audience.api.app import create_app
from audience.broadcasts import keys
from tests.channels import BotApiStub, GraphStub, Tenant, connect_whatsapp, new_tenant
from tests.integration.broadcasts.conftest import telegram_connection, telegram_contacts


def otp_broadcast(org: Tenant, **fields: Any) -> tuple[str, str]:
    """An ACTIVE transactional Telegram broadcast "Your code is {{code}}": (broadcast id, bot token)."""
    connection_id, token = telegram_connection(org)
    body = {
        "type": "transactional",
        "name": "Login code",
        "channels": [{"channel": "telegram", "connection_id": connection_id, "text": {"text": "Code {{code}}"}}],
        "properties": [{"name": "code"}],
        **fields,
    }
    created = org.client.post("/orgs/c/broadcasts", json=body)
    assert created.status_code == 201, created.text
    broadcast_id = created.json()["id"]
    assert org.client.post(f"/orgs/c/broadcasts/{broadcast_id}/activate").status_code == 200
    return broadcast_id, token


def send(org: Tenant, broadcast_id: str, chat: int, *, key: str | None = None, **fields: Any) -> Any:
    body = {"contact_channel_id": f"telegram:{chat}", "variables": {"code": "123456"}, **fields}
    headers = {"Idempotency-Key": key} if key else {}
    return org.client.post(f"/orgs/c/broadcasts/{broadcast_id}/send", json=body, headers=headers)


def fresh_window(period: int, room: float) -> None:
    """Wait for the next fixed window of the broadcast's limit when fewer than `room` seconds are left."""
    left = period - time.time() % period
    if left < room:
        time.sleep(left + 0.05)


def test_a_new_transactional_broadcast_has_the_default_destination_limit(org: Tenant) -> None:
    broadcast_id, _ = otp_broadcast(org)

    shown = org.client.get(f"/orgs/c/broadcasts/{broadcast_id}").json()

    assert shown["destination_rate_limit"] == {"limit": 5, "period_seconds": 600}


def test_a_flood_at_one_chat_is_refused_past_the_limit_while_another_chat_gets_its_code(
    org: Tenant, bot_api: BotApiStub
) -> None:
    telegram_contacts(org, 2)
    broadcast_id, token = otp_broadcast(org, destination_rate_limit={"limit": 3, "period_seconds": 3600})

    flood = [send(org, broadcast_id, 1) for _ in range(6)]
    other = send(org, broadcast_id, 2)

    assert [a.status_code for a in flood] == [200, 200, 200, 429, 429, 429]
    for refused in flood[3:]:
        error = refused.json()["error"]
        assert error["code"] == "rate_limited"
        assert "destination_rate_limit" in error["message"]
        assert "3 messages per 3600 s" in error["message"]
        assert "telegram:1" not in refused.text
        # One send frees up an interval (3600 s / 3) after the first.
        assert 1 <= int(refused.headers["Retry-After"]) <= 1200
        assert refused.headers.get_list("X-RateLimit-Limit") == ["3"]
    assert other.status_code == 200, other.text
    assert [m["chat_id"] for m in bot_api.sent(token)] == [1, 1, 1, 2]
    stats = org.client.get(f"/orgs/c/broadcasts/{broadcast_id}").json()["stats"]
    assert stats["total"] == 4


def test_replays_and_refused_calls_do_not_count(org: Tenant, bot_api: BotApiStub) -> None:
    (contact_id,) = telegram_contacts(org, 1)
    broadcast_id, token = otp_broadcast(org, destination_rate_limit={"limit": 2, "period_seconds": 3600})

    first = send(org, broadcast_id, 1, key="login-1")
    replays = [send(org, broadcast_id, 1, key="login-1") for _ in range(3)]
    assert org.client.patch(f"/orgs/c/contacts/{contact_id}", json={"status": "UNSUBSCRIBED"}).status_code == 200
    assert send(org, broadcast_id, 1).status_code == 409
    assert send(org, broadcast_id, 1, variables={"nope": "1"}).status_code == 422
    assert org.client.patch(f"/orgs/c/contacts/{contact_id}", json={"status": "SUBSCRIBED"}).status_code == 200
    second = send(org, broadcast_id, 1)
    third = send(org, broadcast_id, 1)

    assert first.status_code == 200, first.text
    assert all(r.status_code == 200 and r.json() == first.json() for r in replays)
    assert second.status_code == 200, second.text
    assert third.status_code == 429, third.text
    assert len(bot_api.sent(token)) == 2


def test_a_send_refused_by_the_destination_limit_leaves_the_broadcast_limit_alone(
    org: Tenant, bot_api: BotApiStub
) -> None:
    telegram_contacts(org, 2)
    broadcast_id, token = otp_broadcast(
        org,
        rate_limit={"limit": 2, "period_seconds": 3600},
        destination_rate_limit={"limit": 1, "period_seconds": 3600},
    )

    assert send(org, broadcast_id, 1).status_code == 200
    assert send(org, broadcast_id, 1).status_code == 429  # the destination's limit
    assert send(org, broadcast_id, 2).status_code == 200  # the broadcast's second send is still there

    assert [m["chat_id"] for m in bot_api.sent(token)] == [1, 2]


def test_a_send_refused_by_the_broadcast_limit_leaves_the_destination_limit_alone(
    org: Tenant, bot_api: BotApiStub
) -> None:
    telegram_contacts(org, 2)
    period = 5
    broadcast_id, token = otp_broadcast(
        org,
        rate_limit={"limit": 1, "period_seconds": period},
        destination_rate_limit={"limit": 1, "period_seconds": 3600},
    )
    fresh_window(period, room=4)
    assert send(org, broadcast_id, 1).status_code == 200
    refused = send(org, broadcast_id, 2)
    assert refused.status_code == 429, refused.text
    assert "destination_rate_limit" not in refused.json()["error"]["message"]

    # In the broadcast's next window, chat 2's one send of the hour is still there.
    time.sleep(period - time.time() % period + 0.05)
    again = send(org, broadcast_id, 2)

    assert again.status_code == 200, again.text
    assert [m["chat_id"] for m in bot_api.sent(token)] == [1, 2]


def test_destination_limit_is_validated_and_only_for_transactional(org: Tenant) -> None:
    connection_id, _ = telegram_connection(org)
    channels = [{"channel": "telegram", "connection_id": connection_id, "text": {"text": "Hi"}}]

    def create(**fields: Any) -> Any:
        return org.client.post("/orgs/c/broadcasts", json={"name": "X", "channels": channels, **fields})

    too_many = create(type="transactional", destination_rate_limit={"limit": 10_001, "period_seconds": 60})
    zero = create(type="transactional", destination_rate_limit={"limit": 0})
    marketing = create(type="marketing", destination_rate_limit={"limit": 5, "period_seconds": 600})
    fine = create(type="transactional", destination_rate_limit={"limit": 10, "period_seconds": 60})

    assert too_many.status_code == 422, too_many.text
    assert too_many.json()["error"]["fields"][0]["field"] == "destination_rate_limit.limit"
    assert zero.status_code == 422, zero.text
    assert marketing.status_code == 422, marketing.text
    assert "transactional broadcasts only" in marketing.json()["error"]["message"]
    assert fine.status_code == 201, fine.text
    assert fine.json()["destination_rate_limit"] == {"limit": 10, "period_seconds": 60}
    copy = org.client.post(f"/orgs/c/broadcasts/{fine.json()['id']}/duplicate")
    assert copy.status_code == 201, copy.text
    assert copy.json()["destination_rate_limit"] == {"limit": 10, "period_seconds": 60}


@pytest.mark.usefixtures("graph_api")
def test_one_phone_written_in_three_ways_is_one_destination(org: Tenant, graph: GraphStub) -> None:
    phone_number_id = "710500001"
    connection = connect_whatsapp(org, phone_number_id, waba="711500001")
    template = {"name": "otp", "language": "en_US", "body": [{"kind": "property", "value": "code"}]}
    broadcast_id, _ = otp_broadcast(
        org,
        channels=[{"channel": "whatsapp", "connection_id": connection["id"], "whatsapp": template}],
        destination_rate_limit={"limit": 2, "period_seconds": 3600},
    )

    def send_to(phone: str) -> Any:
        body = {"phone": phone, "variables": {"code": "123456"}}
        return org.client.post(f"/orgs/c/broadcasts/{broadcast_id}/send", json=body)

    answers = [send_to(p) for p in ("+62 812-3456-7890", "0812 3456 7890", "6281234567890")]

    assert [a.status_code for a in answers] == [200, 200, 429]
    sent = [body["to"] for path, body in graph.sent if path.endswith(f"/{phone_number_id}/messages")]
    assert len(sent) == 2


class Stopped(BaseException):
    """The runtime ending a call mid-way (a timeout): no handler of the call runs."""


@contextlib.contextmanager
def failing(operation: str, error: BaseException, when: Callable[[dict[str, Any]], bool]) -> Iterator[list[str]]:
    """The shared DynamoDB client raises `error` on the first `operation` call whose parameters match."""
    hits: list[str] = []

    def fail(params: dict[str, Any], **_: Any) -> None:
        if not hits and when(params):
            hits.append(operation)
            raise error

    client = aws.client("dynamodb")
    event = f"provide-client-params.dynamodb.{operation}"
    client.meta.events.register(event, fail)
    try:
        yield hits
    finally:
        client.meta.events.unregister(event, fail)


def throttled(operation: str) -> ClientError:
    error = {"Code": "ProvisionedThroughputExceededException", "Message": "Rate of requests exceeds the allowed"}
    return ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}, operation)


def recipient_row(params: dict[str, Any]) -> bool:
    return params.get("Item", {}).get("status", {}).get("S") == "PENDING"


def planned_marker(params: dict[str, Any]) -> bool:
    return any(
        op.get("Put", {}).get("Item", {}).get("sk", {}).get("S", "").startswith("Q#") for op in params["TransactItems"]
    )


@pytest.mark.parametrize(("operation", "when"), [("PutItem", recipient_row), ("TransactWriteItems", planned_marker)])
def test_a_backend_fault_after_counting_gives_the_send_back(
    org: Tenant, bot_api: BotApiStub, operation: str, when: Callable[[dict[str, Any]], bool]
) -> None:
    telegram_contacts(org, 1)
    broadcast_id, token = otp_broadcast(org, destination_rate_limit={"limit": 1, "period_seconds": 3600})

    # The call fails with the fault (500; the test client raises the server's error instead).
    with failing(operation, throttled(operation), when) as hits, pytest.raises(ClientError, match="Rate of requests"):
        send(org, broadcast_id, 1, key="login-1")
    retried = send(org, broadcast_id, 1, key="login-1")

    assert hits == [operation]
    # The failed call sent nothing and counted nothing: its retry is the one send of the hour.
    assert retried.status_code == 200, retried.text
    assert len(bot_api.sent(token)) == 1
    assert send(org, broadcast_id, 1).status_code == 429


def test_a_stopped_send_taken_over_is_not_counted_twice(stack: Any, org: Tenant, bot_api: BotApiStub) -> None:
    telegram_contacts(org, 1)
    broadcast_id, token = otp_broadcast(org, destination_rate_limit={"limit": 1, "period_seconds": 3600})
    # The first call counts the send and writes its row, then stops before recording it as planned.
    with failing("TransactWriteItems", Stopped(), planned_marker), pytest.raises(Stopped):
        send(org, broadcast_id, 1, key="login-1")
    # Long after, the key's holder counts as stopped: a retry with the key takes its send over.
    key = {"pk": {"S": keys.idempotency_pk(org.org_id, broadcast_id, "login-1")}, "sk": {"S": keys.IDEMPOTENCY_SK}}
    stack.client("dynamodb").update_item(
        TableName=stack.outputs["BroadcastsTableName"],
        Key=key,
        UpdateExpression="SET held_at = :old",
        ExpressionAttributeValues={":old": {"N": str(int(time.time()) - 3600)}},
    )

    resumed = send(org, broadcast_id, 1, key="login-1")

    assert resumed.status_code == 200, resumed.text
    assert len(bot_api.sent(token)) == 1
    assert send(org, broadcast_id, 1).status_code == 429


def test_the_list_does_not_show_the_default_for_a_custom_destination_limit(org: Tenant) -> None:
    custom, _ = otp_broadcast(org, destination_rate_limit={"limit": 10, "period_seconds": 60})

    listed = org.client.get("/orgs/c/broadcasts").json()["items"]

    shown = next(b for b in listed if b["id"] == custom)
    assert shown.get("destination_rate_limit") in (None, {"limit": 10, "period_seconds": 60})
    assert org.client.get(f"/orgs/c/broadcasts/{custom}").json()["destination_rate_limit"] == {
        "limit": 10,
        "period_seconds": 60,
    }


@pytest.mark.usefixtures("graph_api")
def test_a_whatsapp_number_counts_once_in_an_org_outside_its_country(stack: Any) -> None:
    # A German org: the phone the call gives and the contact's WhatsApp id are the same destination.
    german = new_tenant(create_app(), "Bund", "DE")
    connection = connect_whatsapp(german, "710500002", waba="711500002")
    template = {"name": "otp", "language": "en_US", "body": [{"kind": "property", "value": "code"}]}
    broadcast_id, _ = otp_broadcast(
        german,
        channels=[{"channel": "whatsapp", "connection_id": connection["id"], "whatsapp": template}],
        destination_rate_limit={"limit": 1, "period_seconds": 3600},
    )
    url = f"/orgs/c/broadcasts/{broadcast_id}/send"

    by_phone = german.client.post(url, json={"phone": "+49 151 12345678", "variables": {"code": "1"}})
    by_contact = german.client.post(url, json={"contact_id": by_phone.json()["contact_id"], "variables": {"code": "2"}})

    assert by_phone.status_code == 200, by_phone.text
    assert by_contact.status_code == 429, by_contact.text
