"""A contact deleted while its broadcast messages are on their way out keeps nothing in them: a row still
waiting is skipped and stripped, a send under way completes and its row is stripped when it ends (with no
message → recipient item left). A contact merged into another is no deletion: its rows and their message
links stay, so receipts still reach them."""

from __future__ import annotations

from typing import Any

import pytest

from audience.broadcasts import keys
from audience.broadcasts.erasure import forget_recipients
from tests.channels import BotApiStub, Tenant
from tests.integration.broadcasts.test_transactional_send import send, setup

PERSONAL = {"to", "properties", "overrides", "provider_message_id", "error_title", "gsi2pk", "gsi2sk"}


def _rows(stack: Any, org: Tenant, broadcast_id: str) -> list[dict[str, Any]]:
    """The broadcast's recipient rows as stored (every attribute)."""
    client, table = stack.client("dynamodb"), stack.resources["BroadcastsTable"]
    found = []
    for shard in range(keys.SHARDS):
        found += client.query(
            TableName=table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": keys.recipient_pk(org.org_id, broadcast_id, shard)}},
            ConsistentRead=True,
        )["Items"]
    return found


def _linked(stack: Any, org: Tenant, message_id: str) -> bool:
    key = {"pk": {"S": keys.message_pk(org.org_id, "telegram", message_id)}, "sk": {"S": keys.MESSAGE_SK}}
    return "Item" in stack.client("dynamodb").get_item(TableName=stack.resources["BroadcastsTable"], Key=key)


def test_a_send_under_way_when_the_contact_is_deleted_ends_without_the_persons_data(
    stack: Any, org: Tenant, bot_api: BotApiStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a transactional broadcast and a contact, and a Bot API during whose answer the contact's
    # deletion reaches the stream consumer (the row is SENDING then)
    broadcast_id, _, (contact_id,) = setup(org)
    answer = bot_api.answer
    erased: list[int] = []

    def deleted_meanwhile(path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if path.endswith("/sendMessage") and not erased:
            client, table = stack.client("dynamodb"), stack.resources["BroadcastsTable"]
            erased.append(forget_recipients(client, table, org.org_id, contact_id))
        return answer(path, body)

    monkeypatch.setattr(bot_api, "answer", deleted_meanwhile)
    # When the message is sent
    sent = send(org, broadcast_id)
    assert sent.status_code == 200, sent.text
    # Then the message went (it was already under way), and its row was not stripped while being sent ...
    assert erased == [0]
    (row,) = _rows(stack, org, broadcast_id)
    message_id = str(bot_api._next_id)
    # ... but once it ended: it keeps its outcome and nothing of the person, and no message link is left
    assert row["status"]["S"] == "SENT"
    assert not PERSONAL & set(row), row
    assert not _linked(stack, org, f"1:{message_id}")


def test_a_row_waiting_to_be_sent_when_the_contact_is_deleted_is_skipped_and_stripped(
    stack: Any, org: Tenant, bot_api: BotApiStub
) -> None:
    # Given a send queued in the background for a contact
    broadcast_id, token, (contact_id,) = setup(org)
    queued = send(org, broadcast_id, background=True)
    assert queued.status_code == 202, queued.text
    (row,) = _rows(stack, org, broadcast_id)
    assert row["status"]["S"] == "PENDING"
    assert "to" in row
    # When the contact is deleted before the sender gets to it
    assert org.client.delete(f"/orgs/c/contacts/{contact_id}").status_code == 204
    stack.drain()
    # Then nothing went out, and the row is skipped without the person's address or values
    assert bot_api.sent(token) == []
    (row,) = _rows(stack, org, broadcast_id)
    assert (row["status"]["S"], row["reason"]["S"]) == ("SKIPPED", "contact_deleted")
    assert not PERSONAL & set(row), row


def test_a_merged_contacts_messages_keep_their_rows_and_links_until_the_survivor_is_deleted(
    stack: Any, org: Tenant, bot_api: BotApiStub
) -> None:
    # Given a message sent to a contact
    broadcast_id, _, (absorbed, survivor) = setup(org, contacts=2)
    sent = send(org, broadcast_id)
    assert sent.status_code == 200, sent.text
    (before,) = _rows(stack, org, broadcast_id)
    message_id = before["provider_message_id"]["S"]
    assert _linked(stack, org, message_id)
    # When the contact is merged into another one (its contact item is removed) and the stream is consumed
    merged = org.client.post(f"/orgs/c/contacts/{survivor}/merge", json={"source_contact_ids": [absorbed]})
    assert merged.status_code == 200, merged.text
    stack.drain()
    assert org.client.get(f"/orgs/c/contacts/{absorbed}").status_code == 404
    # Then the message's row and its link stay (later receipts still reach it), in the survivor's index
    (after,) = _rows(stack, org, broadcast_id)
    assert after == {**before, "gsi2pk": {"S": keys.contact_partition(org.org_id, survivor)}}
    assert _linked(stack, org, message_id)
    # ... until the survivor is deleted: then the row loses the person's data as the survivor's own would
    assert org.client.delete(f"/orgs/c/contacts/{survivor}").status_code == 204
    stack.drain()
    (erased,) = _rows(stack, org, broadcast_id)
    assert erased["status"]["S"] == "SENT"
    assert not PERSONAL & set(erased), erased
    assert not _linked(stack, org, message_id)
