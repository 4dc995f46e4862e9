"""Reactions to contact changes read from the contacts table stream (kept light: it runs at cold start)."""

from __future__ import annotations

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
        batch = [{"DeleteRequest": {"Key": item}} for item in page["Items"]]
        for start in range(0, len(batch), 25):
            _write_all(client, {table_name: batch[start : start + 25]})
        deleted += len(batch)
        if "LastEvaluatedKey" not in page:
            return deleted
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


class PurgeIncompleteError(Exception):
    """DynamoDB kept items unprocessed; the stream record fails and is retried (then dead-lettered)."""


def _write_all(client: Any, request: dict[str, Any], attempts: int = 6) -> None:
    """BatchWriteItem until nothing is left unprocessed, backing off between tries as AWS advises."""
    pending = request
    for attempt in range(attempts):
        pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
        if not pending:
            return
        time.sleep(min(2.0, 0.05 * 2**attempt))
    raise PurgeIncompleteError(
        f"{sum(len(v) for v in pending.values())} deletes still unprocessed after {attempts} tries"
    )
