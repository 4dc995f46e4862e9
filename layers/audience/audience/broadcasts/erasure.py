"""What a deleted contact's broadcast messages keep: the recipient rows stay (a broadcast's counts and list
of recipients do not change), without the address, the per-recipient values, the provider's message id or
error text, and out of the contact index; the message → recipient items and the property values uploaded for
the contact are deleted (kept light: it runs in the contacts stream consumer).

A row still on its way out (PENDING or SENDING) is marked instead (`erase_on_finish`): the sender needs its
address, and `BroadcastsRepository.finish` strips it when it records the outcome (a send already under way
completes; its message → recipient item is deleted then, so later receipts are dropped). A row written
after the deletion (a transactional send that read the contact just before) is skipped by the sender, which
reads the contact after the row is written and finds it gone, and stripped the same way. The one row left
as it was is one written by a send call that stopped before handing its batch to the sender (a 5xx answer)
and that is never retried with its Idempotency-Key: it stays PENDING, is never sent, and keeps the address.

A contact merged into another is no deletion: its rows keep everything and move to the survivor's contact
index (`hand_over`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from audience.broadcasts import keys
from audience.contacts.keys import contact_id_from_pk
from audience.contacts.stream import contact_removed, merged_into

IN_FLIGHT = ("PENDING", "SENDING")
# What a row loses: the person's address and values, the provider's id and error text (both can carry the
# address), and its place in the contact index (so a retry walks only what is left).
PERSONAL = "#to, properties, overrides, provider_message_id, error_title, gsi2pk, gsi2sk"
ERASE_MARK = "erase_on_finish"


def on_contact_removed(record: Mapping[str, Any]) -> int:
    """`erase_removed_contact` with the stack's tables (validated settings); 0 where the function has no
    broadcasts table."""
    from audience import aws
    from audience.settings import get_settings

    settings = get_settings()
    if not settings.broadcasts_table:
        return 0
    return erase_removed_contact(
        aws.client("dynamodb"),
        record,
        contacts_table=settings.contacts_table,
        broadcasts_table=settings.broadcasts_table,
    )


def erase_removed_contact(client: Any, record: Mapping[str, Any], *, contacts_table: str, broadcasts_table: str) -> int:
    """Erase the broadcast data of a contact a contacts stream record deletes; the number of rows stripped,
    0 for any other record. A contact merged into another is not erased: its rows and values move to the
    survivor's contact index (their messages keep their links, so receipts still count, and deleting the
    survivor later erases them). Runs before the contact's partition is purged: a record replayed after the
    purge no longer sees the merge, but finds nothing left in the merged contact's index either."""
    pk = contact_removed(record)
    if pk is None:
        return 0
    org_id, contact_id = pk.split("#", 2)[1], contact_id_from_pk(pk)
    survivor = merged_into(client, contacts_table, pk)
    if survivor is not None:
        hand_over(client, broadcasts_table, org_id, contact_id, survivor)
        return 0
    return forget_recipients(client, broadcasts_table, org_id, contact_id)


def hand_over(client: Any, table_name: str, org_id: str, contact_id: str, survivor: str) -> None:
    """Move the recipient rows and uploaded values of a merged contact to the survivor's contact index.
    Idempotent, and a retry resumes: a moved item leaves the merged contact's index."""
    for partition, moved_to in (
        (keys.contact_partition(org_id, contact_id), keys.contact_partition(org_id, survivor)),
        (keys.contact_values_partition(org_id, contact_id), keys.contact_values_partition(org_id, survivor)),
    ):
        for key in _indexed(client, table_name, partition):
            with contextlib.suppress(client.exceptions.ConditionalCheckFailedException):  # deleted meanwhile
                client.update_item(
                    TableName=table_name,
                    Key=key,
                    UpdateExpression="SET gsi2pk = :to",
                    ConditionExpression="attribute_exists(pk)",
                    ExpressionAttributeValues={":to": {"S": moved_to}},
                )


def forget_recipients(client: Any, table_name: str, org_id: str, contact_id: str) -> int:
    """Strip the personal fields from every recipient row of the contact (marking those still being sent)
    and delete their message → recipient items, and delete the property values uploaded for the contact
    (both found through the contact index); the number of rows stripped. Idempotent, and a retry resumes:
    a stripped row leaves the index."""
    stripped = 0
    for key in _indexed(client, table_name, keys.contact_partition(org_id, contact_id)):
        stripped += _strip(client, table_name, org_id, key)
    for key in _indexed(client, table_name, keys.contact_values_partition(org_id, contact_id)):
        client.delete_item(TableName=table_name, Key=key)
    return stripped


def _indexed(client: Any, table_name: str, partition: str) -> Iterator[dict[str, Any]]:
    """The table keys of the items in a contact index partition (read a page at a time: each page is
    handled before the next is read, so rows leaving the index do not disturb the walk)."""
    kwargs: dict[str, Any] = {
        "TableName": table_name,
        "IndexName": "gsi2",
        "KeyConditionExpression": "gsi2pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": partition}},
    }
    while True:
        page = client.query(**kwargs)
        yield from ({"pk": item["pk"], "sk": item["sk"]} for item in page["Items"])
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _strip(client: Any, table_name: str, org_id: str, key: dict[str, Any]) -> int:
    old = _strip_settled(client, table_name, key)
    if old is None:
        # Still being sent: marked, so that the sender's outcome strips it. The mark comes first and the
        # status is read with it: a row that ended meanwhile (without seeing the mark) is stripped here.
        try:
            now = client.update_item(
                TableName=table_name,
                Key=key,
                UpdateExpression=f"SET {ERASE_MARK} = :true",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":true": {"BOOL": True}},
                ReturnValues="ALL_NEW",
            )["Attributes"]
        except client.exceptions.ConditionalCheckFailedException:
            return 0  # deleted with its broadcast
        if now.get("status", {}).get("S") in IN_FLIGHT:
            return 0
        old = _strip_settled(client, table_name, key)
        if old is None:
            return 0  # planned again meanwhile (it keeps the mark)
    message = old.get("provider_message_id", {}).get("S")
    if message:
        pk = keys.message_pk(org_id, old["channel"]["S"], message)
        client.delete_item(TableName=table_name, Key={"pk": {"S": pk}, "sk": {"S": keys.MESSAGE_SK}})
    return 1


def _strip_settled(client: Any, table_name: str, key: dict[str, Any]) -> dict[str, Any] | None:
    """Remove the personal fields of a row that is not being sent; the row as it was, or None when it is
    being sent (or gone)."""
    try:
        return client.update_item(
            TableName=table_name,
            Key=key,
            UpdateExpression=f"REMOVE {PERSONAL}",
            ConditionExpression="attribute_exists(pk) AND NOT #st IN (:pending, :sending)",
            ExpressionAttributeNames={"#to": "to", "#st": "status"},
            ExpressionAttributeValues={":pending": {"S": IN_FLIGHT[0]}, ":sending": {"S": IN_FLIGHT[1]}},
            ReturnValues="ALL_OLD",
        ).get("Attributes", {})
    except client.exceptions.ConditionalCheckFailedException:
        return None
