"""DynamoDB access for exports (the contacts table).

Key design (keys `pk`/`sk`; TTL `expires_at`, 7 days after the request, when the file expires too):

| item   | pk                 | sk            |
|--------|--------------------|---------------|
| export | `O#{org}#EXPORTS`  | `{export id}` |

- An export by id: get; another org's id is another key, so never found. Items past `expires_at` are
  treated as gone before DynamoDB's TTL removes them.
- An org's recent exports, newest first: query the org's partition backwards (ids are ULIDs, so they
  sort by creation time). Exports are requested by people, a few a day: one partition per org is enough.
- Progress is written with conditions on the run and its step (`start`, `claim`, `checkpoint`, `finish`),
  so a redelivered or superseded message never moves an export it no longer owns.
"""

from __future__ import annotations

import time
from typing import Any

from botocore.exceptions import ClientError

from audience import aws
from audience.contacts.repository import deserialize, serialize
from audience.exports.models import DONE, FAILED, QUEUED, RUNNING, Checkpoint, Export


def export_pk(org_id: str) -> str:
    return f"O#{org_id}#EXPORTS"


def export_to_item(export: Export) -> dict[str, Any]:
    return {
        "pk": export_pk(export.org_id),
        "sk": export.id,
        "type": "export",
        "id": export.id,
        "org_id": export.org_id,
        "kind": export.kind,
        "status": export.status,
        "segment_id": export.segment_id,
        "filters": export.filters or None,
        "object_key": export.object_key,
        "created_at": export.created_at,
        "expires_at": export.expires_at,
    }


def export_from_item(item: dict[str, Any]) -> Export:
    checkpoint = item.get("checkpoint")
    return Export(
        id=item["id"],
        org_id=item["org_id"],
        kind=item["kind"],
        status=item["status"],
        created_at=item["created_at"],
        expires_at=int(item["expires_at"]),
        segment_id=item.get("segment_id"),
        filters=dict(item.get("filters") or {}),
        rows=item.get("rows"),
        object_key=item.get("object_key"),
        error=item.get("error"),
        started_at=item.get("started_at"),
        finished_at=item.get("finished_at"),
        run=item.get("run"),
        step=int(item.get("step", 0)),
        columns=list(item.get("columns") or []),
        checkpoint=Checkpoint(
            cursor=checkpoint.get("cursor"),
            rows=int(checkpoint.get("rows", 0)),
            upload_id=checkpoint.get("upload_id"),
            parts=list(checkpoint.get("parts") or []),
        )
        if checkpoint
        else None,
    )


class ExportsRepository:
    """Export records and their progress."""

    def __init__(self, table_name: str) -> None:
        self._table_name = table_name

    @property
    def _client(self) -> Any:
        return aws.client("dynamodb")

    def create(self, export: Export) -> None:
        self._client.put_item(
            TableName=self._table_name,
            Item=serialize(export_to_item(export)),
            ConditionExpression="attribute_not_exists(pk)",
        )

    def get(self, org_id: str, export_id: str) -> Export | None:
        response = self._client.get_item(
            TableName=self._table_name,
            Key=serialize({"pk": export_pk(org_id), "sk": export_id}),
            ConsistentRead=True,
        )
        if "Item" not in response:
            return None
        export = export_from_item(deserialize(response["Item"]))
        return export if export.expires_at > time.time() else None

    def page(self, org_id: str, *, after: str | None, limit: int) -> tuple[list[Export], str | None]:
        """Up to `limit` exports, newest first, strictly before the id `after`; and the next `after`."""
        kwargs: dict[str, Any] = {
            "TableName": self._table_name,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": serialize({":pk": export_pk(org_id)}),
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if after:
            kwargs["ExclusiveStartKey"] = serialize({"pk": export_pk(org_id), "sk": after})
        response = self._client.query(**kwargs)
        now = time.time()
        items = [deserialize(i) for i in response["Items"]]
        exports = [export_from_item(i) for i in items]
        last = response.get("LastEvaluatedKey")
        return [e for e in exports if e.expires_at > now], (items[-1]["sk"] if last and items else None)

    # -- progress -----------------------------------------------------------------------------------

    def start(self, org_id: str, export_id: str, *, run: str, columns: list[str], now: str) -> Export | None:
        """Begin a fresh run (step 1), dropping any earlier run's progress; returns the export as it was,
        or None when it is already done or failed."""
        return self._update(
            org_id,
            export_id,
            "SET #status = :running, #run = :run, step = :one, started_at = :now, #columns = :columns "
            "REMOVE checkpoint, #error",
            "#status IN (:queued, :running)",
            {":running": RUNNING, ":queued": QUEUED, ":run": run, ":one": 1, ":now": now, ":columns": columns},
            old=True,
        )

    def claim(self, org_id: str, export_id: str, *, run: str, step: int) -> bool:
        """Take the next step of a run (a continuation); False when another worker took it first."""
        return (
            self._update(
                org_id,
                export_id,
                "SET step = :next",
                "#status = :running AND #run = :run AND step = :step",
                {":running": RUNNING, ":run": run, ":step": step, ":next": step + 1},
            )
            is not None
        )

    def checkpoint(self, org_id: str, export_id: str, *, run: str, step: int, checkpoint: Checkpoint) -> bool:
        value = {
            "cursor": checkpoint.cursor,
            "rows": checkpoint.rows,
            "upload_id": checkpoint.upload_id,
            "parts": checkpoint.parts,
        }
        return (
            self._update(
                org_id,
                export_id,
                "SET checkpoint = :checkpoint",
                "#status = :running AND #run = :run AND step = :step",
                {":running": RUNNING, ":run": run, ":step": step, ":checkpoint": value},
            )
            is not None
        )

    def finish(self, org_id: str, export_id: str, *, run: str, step: int, rows: int, key: str, now: str) -> bool:
        return (
            self._update(
                org_id,
                export_id,
                "SET #status = :done, #rows = :rows, object_key = :key, finished_at = :now REMOVE checkpoint",
                "#status = :running AND #run = :run AND step = :step",
                {
                    ":running": RUNNING,
                    ":run": run,
                    ":step": step,
                    ":done": DONE,
                    ":rows": rows,
                    ":key": key,
                    ":now": now,
                },
            )
            is not None
        )

    def fail(self, org_id: str, export_id: str, *, error: str, now: str, run: str | None = None) -> Export | None:
        """Mark the export failed (unless it is done); with `run`, only while that run owns it."""
        condition = "#status IN (:queued, :running)" + (" AND #run = :run" if run else "")
        values: dict[str, Any] = {":queued": QUEUED, ":running": RUNNING, ":failed": FAILED, ":error": error[:1000]}
        values[":now"] = now
        if run:
            values[":run"] = run
        return self._update(
            org_id,
            export_id,
            "SET #status = :failed, #error = :error, finished_at = :now",
            condition,
            values,
            old=True,
        )

    def _update(
        self, org_id: str, export_id: str, update: str, condition: str, values: dict[str, Any], *, old: bool = False
    ) -> Export | None:
        names = {"#status": "status", "#run": "run", "#error": "error", "#rows": "rows", "#columns": "columns"}
        used = {k: v for k, v in names.items() if k in update or k in condition}
        try:
            response = self._client.update_item(
                TableName=self._table_name,
                Key=serialize({"pk": export_pk(org_id), "sk": export_id}),
                UpdateExpression=update,
                ConditionExpression=f"attribute_exists(pk) AND {condition}",
                ExpressionAttributeNames=used,
                ExpressionAttributeValues=serialize(values),
                ReturnValues="ALL_OLD" if old else "ALL_NEW",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None
            raise
        return export_from_item(deserialize(response["Attributes"]))
