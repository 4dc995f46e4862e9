"""What a deleted contact's broadcast messages keep: the recipient rows stay (a broadcast's counts and list
of recipients do not change), without the address, the per-recipient values or the provider's message id;
the message → recipient items and the property values uploaded for the contact are deleted (kept light: it
runs in the contacts stream consumer)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from audience.broadcasts import keys

# A row still on its way out keeps its address for the sender, which finds the contact gone and skips it.
_IN_FLIGHT = ("PENDING", "SENDING")


def forget_recipients(client: Any, table_name: str, org_id: str, contact_id: str) -> int:
    """Strip the personal fields from every recipient row of the contact and delete their message →
    recipient items, and delete the property values uploaded for the contact (both found through the
    contact index); the number of rows stripped. Idempotent."""
    stripped = 0
    for key in _indexed(client, table_name, keys.contact_partition(org_id, contact_id)):
        stripped += _strip(client, table_name, org_id, key)
    for key in _indexed(client, table_name, keys.contact_values_partition(org_id, contact_id)):
        client.delete_item(TableName=table_name, Key=key)
    return stripped


def _indexed(client: Any, table_name: str, partition: str) -> Iterator[dict[str, Any]]:
    """The table keys of the items in a contact index partition."""
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
    try:
        old = client.update_item(
            TableName=table_name,
            Key=key,
            UpdateExpression="REMOVE #to, properties, overrides, provider_message_id",
            ConditionExpression="attribute_exists(pk) AND NOT #st IN (:pending, :sending)",
            ExpressionAttributeNames={"#to": "to", "#st": "status"},
            ExpressionAttributeValues={":pending": {"S": _IN_FLIGHT[0]}, ":sending": {"S": _IN_FLIGHT[1]}},
            ReturnValues="ALL_OLD",
        ).get("Attributes", {})
    except client.exceptions.ConditionalCheckFailedException:
        return 0
    message = old.get("provider_message_id", {}).get("S")
    if message:
        pk = keys.message_pk(org_id, old["channel"]["S"], message)
        client.delete_item(TableName=table_name, Key={"pk": {"S": pk}, "sk": {"S": "#R"}})
    return 1
