"""Reactions to contact changes read from the contacts table stream (kept light: it runs at cold start)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import Any

from audience.contacts import keys


def contact_removed(record: Mapping[str, Any]) -> str | None:
    """The partition key of a contact the stream record deletes, or None for any other record."""
    if record.get("eventName") != "REMOVE":
        return None
    key = record.get("dynamodb", {}).get("Keys", {})
    if key.get("sk", {}).get("S") != keys.CONTACT_SK:
        return None
    return key["pk"]["S"]


# A contact merged into another: the merge's transaction writes this item in the absorbed contact's partition
# beside the deletion of its contact item, so the stream consumer tells a merge from a deletion; the purge
# removes it with the rest (ids only; it expires anyway).
MERGED_SK = "#MERGED"
MERGED_SECONDS = 7 * 86400


def merged_marker(org_id: str, contact_id: str, into: str, now: int) -> dict[str, Any]:
    """The item saying contact `contact_id` was merged into contact `into`."""
    return {
        "pk": keys.contact_pk(org_id, contact_id),
        "sk": MERGED_SK,
        "type": "merged_contact",
        "merged_into": into,
        "expires_at": now + MERGED_SECONDS,
    }


def merged_into(client: Any, table_name: str, pk: str) -> str | None:
    """The contact the contact of partition `pk` was merged into, while its partition is not purged yet;
    None for a contact deleted (or one whose partition is purged already)."""
    found = client.get_item(
        TableName=table_name,
        Key={"pk": {"S": pk}, "sk": {"S": MERGED_SK}},
        ProjectionExpression="merged_into",
        ConsistentRead=True,
    ).get("Item")
    return found["merged_into"]["S"] if found else None


STOPPED = ("UNSUBSCRIBED", "BLOCKED")


def contact_stopped(record: Mapping[str, Any]) -> tuple[str, str] | None:
    """(org id, contact id) of a contact the record deletes, or moves to UNSUBSCRIBED or BLOCKED (what
    ends its follow-ups); None for any other record."""
    data = record.get("dynamodb", {})
    key = data.get("Keys", {})
    if key.get("sk", {}).get("S") != keys.CONTACT_SK:
        return None
    if record.get("eventName") == "MODIFY":
        before = data.get("OldImage", {}).get("status", {}).get("S")
        after = data.get("NewImage", {}).get("status", {}).get("S")
        if after not in STOPPED or before == after:
            return None
    elif record.get("eventName") != "REMOVE":
        return None
    pk = key["pk"]["S"]
    return pk.split("#", 2)[1], keys.contact_id_from_pk(pk)


def purge_removed_contact(client: Any, table_name: str, record: Mapping[str, Any]) -> int:
    """Delete what a deleted (or merged-away) contact left in its partition; 0 for other records."""
    pk = contact_removed(record)
    return purge_partition(client, table_name, pk) if pk else 0


def purge_partition(client: Any, table_name: str, pk: str) -> int:
    """Delete every item in partition `pk` (idempotent: a second run finds nothing)."""
    deleted = 0
    kwargs: dict[str, Any] = {
        "TableName": table_name,
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": pk}},
        "ProjectionExpression": "pk, sk",
    }
    while True:
        page = client.query(**kwargs)
        memberships = [item for item in page["Items"] if item["sk"]["S"].startswith(keys.MEMBER_PREFIX)]
        for item in memberships:
            _leave_segment(client, table_name, item)
        for item in page["Items"]:
            if item["sk"]["S"].startswith(MESSAGE_LOG_PREFIX):
                _forget_message(client, table_name, pk, item["sk"]["S"])
        batch = [{"DeleteRequest": {"Key": item}} for item in page["Items"] if item not in memberships]
        for start in range(0, len(batch), 25):
            write_all(client, {table_name: batch[start : start + 25]})
        deleted += len(batch)
        if "LastEvaluatedKey" not in page:
            return deleted
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


MESSAGE_LOG_PREFIX = "G#"  # a message log entry: G#{at}#{channel}#{provider id} (inbound/repository.py)


def _forget_message(client: Any, table_name: str, pk: str, log_sk: str) -> None:
    """Replace the provider-id item of a message in the contact's log with a tombstone (provider ids can
    carry the person's address, e.g. Telegram's `{chat id}:{message id}`); only while it still names this
    contact. The tombstone holds no attribute but its key, and keeps a later status of the message from
    writing the item again (inbound/repository.py apply_status); it expires when the item would have."""
    channel, provider_id = log_sk.split("#", 3)[2:]
    org_id = pk.split("#", 2)[1]
    key = {"pk": {"S": f"O#{org_id}#P#{channel}#{provider_id}"}, "sk": {"S": "#MSG"}}
    found = client.get_item(TableName=table_name, Key=key, ConsistentRead=True).get("Item")
    if found is None or "erased" in found:
        return
    expires = found.get("expires_at", {}).get("N") or str(int(time.time()) + TOMBSTONE_SECONDS)
    # Another contact's item (ids are per org and channel) fails the condition and stays.
    with contextlib.suppress(client.exceptions.ConditionalCheckFailedException):
        client.put_item(
            TableName=table_name,
            Item={**key, "erased": {"BOOL": True}, "expires_at": {"N": expires}},
            ConditionExpression="contact_id = :contact",
            ExpressionAttributeValues={":contact": {"S": keys.contact_id_from_pk(pk)}},
        )


TOMBSTONE_SECONDS = 35 * 86400  # as long as a message's provider-id item lives


def _leave_segment(client: Any, table_name: str, key: Mapping[str, Any]) -> None:
    """Delete a segment membership and take it off the segment's count, once (a replay finds it gone)."""
    pk, sk = key["pk"]["S"], key["sk"]["S"]
    org_id = pk.split("#", 2)[1]
    contact_id = keys.contact_id_from_pk(pk)
    try:
        client.transact_write_items(
            TransactItems=[
                {
                    "Delete": {
                        "TableName": table_name,
                        "Key": {"pk": {"S": pk}, "sk": {"S": sk}},
                        "ConditionExpression": "attribute_exists(pk)",
                    }
                },
                {
                    "Update": {
                        "TableName": table_name,
                        "Key": {
                            "pk": {"S": keys.counters_pk(org_id, keys.shard_of(contact_id))},
                            "sk": {"S": keys.COUNTERS_SK},
                        },
                        "UpdateExpression": "ADD #g :minus",
                        "ExpressionAttributeNames": {"#g": keys.segment_counter(sk[len(keys.MEMBER_PREFIX) :])},
                        "ExpressionAttributeValues": {":minus": {"N": "-1"}},
                    }
                },
            ]
        )
    except client.exceptions.TransactionCanceledException as error:
        reasons = [r.get("Code") for r in error.response.get("CancellationReasons") or []]
        if reasons[:1] != ["ConditionalCheckFailed"]:
            raise


class PurgeIncompleteError(Exception):
    """DynamoDB kept items unprocessed; the stream record fails and is retried (then dead-lettered)."""


def write_all(client: Any, request: dict[str, Any], attempts: int = 6) -> int:
    """BatchWriteItem until nothing is left unprocessed, backing off between tries as AWS advises;
    returns the number of requests made."""
    pending = request
    for attempt in range(attempts):
        pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
        if not pending:
            return attempt + 1
        time.sleep(min(2.0, 0.05 * 2**attempt))
    raise PurgeIncompleteError(
        f"{sum(len(v) for v in pending.values())} writes still unprocessed after {attempts} tries"
    )
