"""DynamoDB access for an org's tag registry, in the contacts table.

Key design (keys `pk`/`sk`; tag items have no index attributes):

| item     | pk              | sk          | attribute read or written |
|----------|-----------------|-------------|---------------------------|
| tag      | `O#{org}#TAGS`  | `T#{name}`  | the whole item            |
| counters | `O#{org}#N#{s}` | `#COUNTERS` | `t#{name}` (contacts' counter items, shard `{s}`) |

Attributes of a tag item: name, description, color, state (`ready`, `renaming`, `deleting`), renaming_to,
renaming_from, job_id and job (the background job changing the tag on contacts), version, created_at,
updated_at.

- An org's tags: one query on `O#{org}#TAGS` (at most 1,000 items).
- A tag by name: get `T#{name}`. Names are compared exactly, as contacts compare their tags.
- Contact counts are never stored here: they are the contact counters `t#{name}`, maintained in each
  contact's own transaction (ContactsRepository.counters), so a tag that is on contacts without being
  registered is counted as well.
- Every write is conditional on the version read (or on the item not existing), and a rename marks the old
  and the new name in one transaction. A job's completion deletes or clears an item only if it still carries
  that job's id, so a repeated completion changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from botocore.exceptions import ClientError

from audience import aws
from audience.contacts import keys
from audience.contacts.repository import deserialize, serialize
from audience.errors import ConcurrentUpdateError, ConflictError
from audience.tags.models import READY, Tag

TAG_PREFIX = "T#"


def tags_pk(org_id: str) -> str:
    return f"O#{org_id}#TAGS"


def counter_name(name: str) -> str:
    return f"t#{name}"


def tag_to_item(tag: Tag) -> dict[str, Any]:
    return {
        "pk": tags_pk(tag.org_id),
        "sk": f"{TAG_PREFIX}{tag.name}",
        "org_id": tag.org_id,
        "name": tag.name,
        "description": tag.description,
        "color": tag.color,
        "state": tag.state,
        "renaming_to": tag.renaming_to,
        "renaming_from": tag.renaming_from,
        "job_id": tag.job_id,
        "job": tag.job,
        "version": tag.version,
        "created_at": tag.created_at,
        "updated_at": tag.updated_at,
    }


def tag_from_item(item: dict[str, Any]) -> Tag:
    return Tag(
        org_id=item["org_id"],
        name=item["name"],
        description=item.get("description"),
        color=item.get("color"),
        state=item.get("state", READY),
        renaming_to=item.get("renaming_to"),
        renaming_from=item.get("renaming_from"),
        job_id=item.get("job_id"),
        job=item.get("job"),
        version=int(item.get("version", 0)),
        created_at=item.get("created_at"),
        updated_at=item.get("updated_at"),
    )


class TagsRepository:
    """The tag registry of each org, in the contacts table."""

    def __init__(self, table_name: str) -> None:
        self._table_name = table_name

    @property
    def _client(self) -> Any:
        return aws.client("dynamodb")

    # -- reads --------------------------------------------------------------------------------------

    def list(self, org_id: str) -> list[Tag]:
        """Every registered tag of the org, including those being renamed or deleted."""
        kwargs: dict[str, Any] = {
            "TableName": self._table_name,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :t)",
            "ExpressionAttributeValues": serialize({":pk": tags_pk(org_id), ":t": TAG_PREFIX}),
            "ConsistentRead": True,
        }
        tags: list[Tag] = []
        while True:
            response = self._client.query(**kwargs)
            tags.extend(tag_from_item(deserialize(i)) for i in response["Items"])
            if "LastEvaluatedKey" not in response:
                return tags
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def get(self, org_id: str, name: str) -> Tag | None:
        response = self._client.get_item(TableName=self._table_name, Key=self._key(org_id, name), ConsistentRead=True)
        return tag_from_item(deserialize(response["Item"])) if "Item" in response else None

    def get_many(self, org_id: str, names: Iterable[str]) -> dict[str, Tag]:
        """The registered tags among `names` (at most 100), by name."""
        wanted = list(dict.fromkeys(names))
        found: dict[str, Tag] = {}
        if not wanted:
            return found
        pending: dict[str, Any] = {
            self._table_name: {"Keys": [self._key(org_id, n) for n in wanted], "ConsistentRead": True}
        }
        for _ in range(10):
            response = self._client.batch_get_item(RequestItems=pending)
            for item in response["Responses"].get(self._table_name, []):
                tag = tag_from_item(deserialize(item))
                found[tag.name] = tag
            pending = response.get("UnprocessedKeys") or {}
            if not pending:
                return found
        raise ConcurrentUpdateError("the contacts table is throttling reads; retry shortly")

    # -- writes -------------------------------------------------------------------------------------

    def create(self, tag: Tag) -> None:
        """Register `tag`; ConflictError when a tag of that name is registered already."""
        try:
            self._client.put_item(
                TableName=self._table_name,
                Item=serialize(tag_to_item(tag)),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise ConflictError(f"tag {tag.name!r} already exists", tag=tag.name) from None
            raise

    def write(self, puts: list[tuple[Tag, int | None]], deletes: Iterable[Tag] = ()) -> None:
        """Put each tag, in one transaction, if the stored one still has the version given (None: if there
        is none), and delete each of `deletes` if it still has its version. ConflictError otherwise."""
        removed = list(deletes)
        ops: list[dict[str, Any]] = []
        for tag, expected in puts:
            put: dict[str, Any] = {"TableName": self._table_name, "Item": serialize(tag_to_item(tag))}
            if expected is None:
                put["ConditionExpression"] = "attribute_not_exists(pk)"
            else:
                put["ConditionExpression"] = "version = :v"
                put["ExpressionAttributeValues"] = serialize({":v": expected})
            ops.append({"Put": put})
        for tag in removed:
            ops.append(
                {
                    "Delete": {
                        "TableName": self._table_name,
                        "Key": self._key(tag.org_id, tag.name),
                        "ConditionExpression": "version = :v",
                        "ExpressionAttributeValues": serialize({":v": tag.version}),
                    }
                }
            )
        try:
            self._client.transact_write_items(TransactItems=ops)
        except ClientError as error:
            if error.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            names = [t.name for t, _ in puts] + [t.name for t in removed]
            raise ConflictError(
                "tag " + " / ".join(repr(n) for n in names) + " changed while it was being written; retry"
            ) from None

    def delete_for_job(self, org_id: str, name: str, job_id: str) -> bool:
        """Delete the tag if the job `job_id` still holds it; False when it does not (already done)."""
        try:
            self._client.delete_item(
                TableName=self._table_name,
                Key=self._key(org_id, name),
                ConditionExpression="job_id = :j",
                ExpressionAttributeValues=serialize({":j": job_id}),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def release(self, org_id: str, name: str, job_id: str, now: str) -> bool:
        """Mark the tag ready again if the job `job_id` holds it; False when it does not."""
        try:
            self._client.update_item(
                TableName=self._table_name,
                Key=self._key(org_id, name),
                UpdateExpression="SET #st = :ready, updated_at = :now ADD version :one "
                "REMOVE job_id, job, renaming_from, renaming_to",
                ConditionExpression="job_id = :j",
                ExpressionAttributeNames={"#st": "state"},
                ExpressionAttributeValues=serialize({":j": job_id, ":ready": READY, ":now": now, ":one": 1}),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def drop_counter_if_zero(self, org_id: str, name: str) -> None:
        """Remove the tag's contact counter from each counter shard where it is zero (a tag that no contact
        has any more). A shard that a contact wrote meanwhile keeps its count."""
        for shard in range(keys.SHARDS):
            try:
                self._client.update_item(
                    TableName=self._table_name,
                    Key=serialize({"pk": keys.counters_pk(org_id, shard), "sk": keys.COUNTERS_SK}),
                    UpdateExpression="REMOVE #t",
                    ConditionExpression="#t = :zero",
                    ExpressionAttributeNames={"#t": counter_name(name)},
                    ExpressionAttributeValues=serialize({":zero": 0}),
                )
            except ClientError as error:
                if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise

    # -- helpers ------------------------------------------------------------------------------------

    def _key(self, org_id: str, name: str) -> dict[str, Any]:
        return serialize({"pk": tags_pk(org_id), "sk": f"{TAG_PREFIX}{name}"})
