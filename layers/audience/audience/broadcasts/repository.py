"""DynamoDB access for broadcasts, their recipients and counters (the broadcasts table; keys in keys.py).

Every recipient moves by conditional writes only (PENDING → SENDING → SENT/FAILED/SKIPPED/CANCELLED, then
receipts forward), so a redelivered batch or a retried task never moves one twice. Counters are exact
without a scan and without a transaction per message:

- the planner adds a batch's recipients to the counters in the same transaction that records the batch as
  planned (`Q#`), once per batch whatever the retries;
- the sender moves them from `pending` to their outcome in the same transaction that records the batch as
  tallied (`T#`), once per batch;
- a receipt (delivered, read, failed after sending) moves one recipient and its counter in one transaction.

The counters are the recipients' current statuses, so `total` always equals the sum of the others.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from audience import aws, ids
from audience.broadcasts import keys
from audience.broadcasts.erasure import ERASE_MARK, PERSONAL
from audience.contacts import keys as contacts_keys
from audience.contacts.repository import add_op, deserialize, query_all, serialize
from audience.contacts.stream import write_all
from audience.errors import ConcurrentUpdateError, ConflictError, NotFoundError

PENDING = "PENDING"
SENDING = "SENDING"
SENT = "SENT"
DELIVERED = "DELIVERED"
READ = "READ"
FAILED = "FAILED"
SKIPPED = "SKIPPED"
CANCELLED = "CANCELLED"
RECIPIENT_STATUSES = (PENDING, SENDING, SENT, DELIVERED, READ, FAILED, SKIPPED, CANCELLED)
OUTCOMES = (SENT, FAILED, SKIPPED, CANCELLED)
# Receipts only move forward: their rank in the life of a sent message.
RECEIPT_RANK = {SENDING: 0, SENT: 1, DELIVERED: 2, READ: 3, FAILED: 4}
# Counter names: one per status a recipient can rest in, plus totals kept beside them.
COUNTED = ("pending", "sent", "delivered", "read", "failed", "skipped", "cancelled")
IDEMPOTENCY_SECONDS = 24 * 3600
UNSUBSCRIBE_SECONDS = 366 * 86400
SANDBOX_SECONDS = 7 * 86400
MAX_SCANNED = 2000  # rows one filtered page of recipients reads at most
MESSAGE_SECONDS = 35 * 86400


@dataclass(frozen=True, slots=True)
class RecipientRef:
    """Where a recipient row is: its shard and sort key."""

    shard: int
    sk: str

    def as_list(self) -> list[Any]:
        return [self.shard, self.sk]

    @classmethod
    def of(cls, value: Any) -> RecipientRef:
        shard, sk = value
        return cls(int(shard), str(sk))


CONFLICT_RETRIES = 4


def _failed_condition(error: ClientError) -> bool:
    return error.response["Error"]["Code"] == "ConditionalCheckFailedException"


def _cancelled_for(error: ClientError, code: str) -> bool:
    """Whether a transaction was cancelled, and one of its items for `code` (ConditionalCheckFailed: a
    condition did not hold; TransactionConflict: another transaction was writing the item)."""
    if error.response["Error"]["Code"] != "TransactionCanceledException":
        return False
    reasons = error.response.get("CancellationReasons") or []
    return any(r.get("Code") == code for r in reasons)


def _conflicted(error: ClientError) -> bool:
    return _cancelled_for(error, "TransactionConflict")


def _cancelled_by_condition(error: ClientError) -> bool:
    return _cancelled_for(error, "ConditionalCheckFailed")


class BroadcastsRepository:
    def __init__(self, table_name: str) -> None:
        self._table_name = table_name

    @property
    def _client(self) -> Any:
        return aws.client("dynamodb")

    # -- broadcasts ---------------------------------------------------------------------------------

    def create(self, summary: dict[str, Any], content: dict[str, Any]) -> None:
        self._client.transact_write_items(
            TransactItems=[
                {"Put": {**self._summary_put(summary), "ConditionExpression": "attribute_not_exists(pk)"}},
                self._content_put(summary, content),
            ]
        )

    def _summary_put(self, summary: dict[str, Any]) -> dict[str, Any]:
        org_id, broadcast_id = summary["org_id"], summary["id"]
        item = {
            **summary,
            "pk": keys.broadcast_pk(org_id, broadcast_id),
            "sk": keys.SUMMARY_SK,
            "gsi1pk": keys.list_partition(org_id),
            "gsi1sk": f"{summary['created_at']}#{broadcast_id}",
        }
        return {"TableName": self._table_name, "Item": serialize(item)}

    def _content_put(self, summary: dict[str, Any], content: dict[str, Any]) -> dict[str, Any]:
        pk = keys.broadcast_pk(summary["org_id"], summary["id"])
        item = {"pk": pk, "sk": keys.CONTENT_SK, "content": json.dumps(content)}
        return {"Put": {"TableName": self._table_name, "Item": serialize(item)}}

    def head(self, org_id: str, broadcast_id: str, *, consistent: bool = True) -> dict[str, Any]:
        """Summary, content and counters of a broadcast in one query: {"summary", "content", "counters"}."""
        items = self._query_all(
            KeyConditionExpression="pk = :pk AND sk < :end",
            ExpressionAttributeValues=serialize(
                {":pk": keys.broadcast_pk(org_id, broadcast_id), ":end": keys.HEAD_END}
            ),
            ConsistentRead=consistent,
        )
        summary = next((i for i in items if i["sk"] == keys.SUMMARY_SK), None)
        if summary is None:
            raise NotFoundError(f"broadcast {broadcast_id} not found")
        content = next((i for i in items if i["sk"] == keys.CONTENT_SK), None)
        return {
            "summary": _public(summary),
            "content": json.loads(content["content"]) if content else {},
            "counters": _sum_counters(i for i in items if i["sk"].startswith(keys.COUNTER_PREFIX)),
            "plans": {i["sk"][len(keys.PLAN_PREFIX) :]: i for i in items if i["sk"].startswith(keys.PLAN_PREFIX)},
        }

    def summary(self, org_id: str, broadcast_id: str, *, consistent: bool = True) -> dict[str, Any]:
        response = self._client.get_item(
            TableName=self._table_name,
            Key=serialize({"pk": keys.broadcast_pk(org_id, broadcast_id), "sk": keys.SUMMARY_SK}),
            ConsistentRead=consistent,
        )
        if "Item" not in response:
            raise NotFoundError(f"broadcast {broadcast_id} not found")
        return _public(deserialize(response["Item"]))

    def content(self, org_id: str, broadcast_id: str) -> dict[str, Any]:
        response = self._client.get_item(
            TableName=self._table_name,
            Key=serialize({"pk": keys.broadcast_pk(org_id, broadcast_id), "sk": keys.CONTENT_SK}),
            ConsistentRead=True,
        )
        if "Item" not in response:
            raise NotFoundError(f"broadcast {broadcast_id} not found")
        return dict(json.loads(deserialize(response["Item"])["content"]))

    def counters(self, org_id: str, broadcast_id: str) -> dict[str, int]:
        items = self._query_all(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :n)",
            ExpressionAttributeValues=serialize(
                {":pk": keys.broadcast_pk(org_id, broadcast_id), ":n": keys.COUNTER_PREFIX}
            ),
            ConsistentRead=True,
        )
        return _sum_counters(items)

    def list(self, org_id: str, *, after: str | None, limit: int) -> tuple[list[dict[str, Any]], str | None]:
        """Summaries newest first; the sort key to continue after, when more follow."""
        kwargs: dict[str, Any] = {
            "TableName": self._table_name,
            "IndexName": "gsi1",
            "KeyConditionExpression": "gsi1pk = :pk",
            "ExpressionAttributeValues": serialize({":pk": keys.list_partition(org_id)}),
            "ScanIndexForward": False,
            "Limit": limit + 1,
        }
        if after:
            kwargs["KeyConditionExpression"] += " AND gsi1sk < :after"
            kwargs["ExpressionAttributeValues"] = serialize({":pk": keys.list_partition(org_id), ":after": after})
        items = [deserialize(i) for i in self._client.query(**kwargs)["Items"]]
        more = len(items) > limit
        items = items[:limit]
        return [_public(i) for i in items], (items[-1]["gsi1sk"] if more else None)

    def replace(self, summary: dict[str, Any], content: dict[str, Any], *, expected_version: int) -> None:
        """Rewrite a draft's summary and content; ConcurrentUpdateError when it changed or left DRAFT."""
        guarded = {
            **self._summary_put(summary),
            "ConditionExpression": "version = :v AND #st = :draft",
            "ExpressionAttributeNames": {"#st": "status"},
            "ExpressionAttributeValues": serialize({":v": expected_version, ":draft": "DRAFT"}),
        }
        try:
            self._client.transact_write_items(TransactItems=[{"Put": guarded}, self._content_put(summary, content)])
        except ClientError as error:
            if _cancelled_by_condition(error):
                raise ConcurrentUpdateError(
                    f"broadcast {summary['id']} changed or left DRAFT while it was being edited; read it again"
                ) from None
            raise

    def move(
        self,
        org_id: str,
        broadcast_id: str,
        *,
        expected: Iterable[str],
        changes: dict[str, Any],
        remove: Iterable[str] = (),
        run: str | None = None,
    ) -> dict[str, Any] | None:
        """Set `changes` on the summary if its status is one of `expected` (and its run is `run`, when
        given); the new summary, or None when not (the caller reads it again and explains)."""
        names = {"#st": "status"}
        values: dict[str, Any] = {":one": 1}
        condition = ""
        if run is not None:
            names["#run"] = "run"
            values[":run"] = run
            condition = " AND #run = :run"
        sets = []
        for i, (name, value) in enumerate(changes.items()):
            names[f"#a{i}"] = name
            values[f":a{i}"] = value
            sets.append(f"#a{i} = :a{i}")
        statuses = list(expected)
        for i, status in enumerate(statuses):
            values[f":s{i}"] = status
        expression = "SET " + ", ".join(sets) + " ADD version :one"
        removed = list(remove)
        if removed:
            for i, name in enumerate(removed):
                names[f"#r{i}"] = name
            expression += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(removed)))
        try:
            response = self._client.update_item(
                TableName=self._table_name,
                Key=serialize({"pk": keys.broadcast_pk(org_id, broadcast_id), "sk": keys.SUMMARY_SK}),
                UpdateExpression=expression,
                ConditionExpression="attribute_exists(pk) AND #st IN ("
                + ", ".join(f":s{i}" for i in range(len(statuses)))
                + ")"
                + condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=serialize(values),
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if _failed_condition(error):
                return None
            raise
        return _public(deserialize(response["Attributes"]))

    def delete(self, org_id: str, broadcast_id: str) -> None:
        """Delete the broadcast's items and its recipients (not while SENDING: checked on the summary)."""
        pk = keys.broadcast_pk(org_id, broadcast_id)
        try:
            self._client.delete_item(
                TableName=self._table_name,
                Key=serialize({"pk": pk, "sk": keys.SUMMARY_SK}),
                ConditionExpression="attribute_exists(pk) AND #st <> :sending",
                ExpressionAttributeNames={"#st": "status"},
                ExpressionAttributeValues=serialize({":sending": "SENDING"}),
            )
        except ClientError as error:
            if _failed_condition(error):
                raise ConflictError(f"broadcast {broadcast_id} is SENDING: cancel it before deleting it") from None
            raise
        partitions = [pk] + [keys.recipient_pk(org_id, broadcast_id, s) for s in range(keys.SHARDS)]
        for partition in partitions:
            self._purge(partition)

    def _purge(self, pk: str) -> None:
        kwargs: dict[str, Any] = {
            "TableName": self._table_name,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": serialize({":pk": pk}),
            "ProjectionExpression": "pk, sk",
        }
        while True:
            response = self._client.query(**kwargs)
            batch = [{"DeleteRequest": {"Key": item}} for item in response["Items"]]
            for start in range(0, len(batch), 25):
                write_all(self._client, {self._table_name: batch[start : start + 25]})
            if "LastEvaluatedKey" not in response:
                return
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    # -- planning ------------------------------------------------------------------------------------

    def plan_cursor(self, org_id: str, broadcast_id: str, run: str) -> dict[str, Any]:
        response = self._client.get_item(
            TableName=self._table_name,
            Key=serialize({"pk": keys.broadcast_pk(org_id, broadcast_id), "sk": f"{keys.PLAN_PREFIX}{run}"}),
            ConsistentRead=True,
        )
        return deserialize(response["Item"]) if "Item" in response else {}

    def save_plan_cursor(self, org_id: str, broadcast_id: str, run: str, state: dict[str, Any]) -> None:
        self._client.put_item(
            TableName=self._table_name,
            Item=serialize({**state, "pk": keys.broadcast_pk(org_id, broadcast_id), "sk": f"{keys.PLAN_PREFIX}{run}"}),
        )

    def planned(self, org_id: str, broadcast_id: str, batch: str) -> dict[str, Any] | None:
        """The message of a batch already recorded as planned, if it is."""
        response = self._client.get_item(
            TableName=self._table_name,
            Key=serialize({"pk": keys.broadcast_pk(org_id, broadcast_id), "sk": f"{keys.PLANNED_PREFIX}{batch}"}),
            ConsistentRead=True,
        )
        return json.loads(deserialize(response["Item"])["message"]) if "Item" in response else None

    def claim_rows(self, rows: list[dict[str, Any]], *, run: str, batch: str) -> list[dict[str, Any]]:
        """Write planned recipient rows for `batch` (not yet recorded as planned, so none of its rows has
        been sent); the rows that belong to it (new ones, cancelled ones planned again, and rows this batch
        claimed in an earlier attempt), each with `planned_from` (NEW or CANCELLED). A row another batch holds, or
        one already sent, is left alone."""

        def claim(row: dict[str, Any]) -> dict[str, Any] | None:
            item = {**row, "status": PENDING, "run": run, "batch": batch}
            fields = _fields(item)
            names = {"#st": "status", "#run": "run", **{f"#f{i}": n for i, n in enumerate(fields)}}
            values = {f":f{i}": item[n] for i, n in enumerate(fields)}
            sets = ", ".join(f"#f{i} = :f{i}" for i in range(len(fields)))
            key = serialize({"pk": row["pk"], "sk": row["sk"]})
            try:  # a new row, or a row a cancelled run left behind (its outcome says what it was)
                response = self._client.update_item(
                    TableName=self._table_name,
                    Key=key,
                    UpdateExpression=f"SET {sets}, planned_from = if_not_exists(outcome, :new) REMOVE {_RESET}",
                    ConditionExpression="attribute_not_exists(pk) OR (#st = :cancelled AND #run <> :run)",
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=serialize(
                        {**values, ":cancelled": CANCELLED, ":run": run, ":new": "NEW"}
                    ),
                    ReturnValues="ALL_NEW",
                )
                return deserialize(response["Attributes"])
            except ClientError as error:
                if not _failed_condition(error):
                    raise
            try:  # claimed by an earlier attempt of this very batch
                response = self._client.update_item(
                    TableName=self._table_name,
                    Key=key,
                    UpdateExpression="SET #b = :batch",
                    ConditionExpression="#run = :run AND #b = :batch",
                    ExpressionAttributeNames={"#run": "run", "#b": "batch"},
                    ExpressionAttributeValues=serialize({":run": run, ":batch": batch}),
                    ReturnValues="ALL_NEW",
                )
                return deserialize(response["Attributes"])
            except ClientError as error:
                if not _failed_condition(error):
                    raise
            return None

        with ThreadPoolExecutor(max_workers=8) as pool:
            return [row for row in pool.map(claim, rows) if row is not None]

    def mark_planned(
        self, org_id: str, broadcast_id: str, batch: str, deltas: dict[str, int], message: dict[str, Any]
    ) -> bool:
        """Record the batch as planned and add its recipients to the counters, once; False when the batch
        was already recorded (by an earlier attempt)."""
        item = {"sk": f"{keys.PLANNED_PREFIX}{batch}", "message": json.dumps(message)}
        return self._record_once(org_id, broadcast_id, item, deltas, keys.shard_of(batch))

    # -- recipients ------------------------------------------------------------------------------------

    def recipients(
        self, org_id: str, broadcast_id: str, refs: list[RecipientRef]
    ) -> dict[RecipientRef, dict[str, Any]]:
        found: dict[RecipientRef, dict[str, Any]] = {}
        for start in range(0, len(refs), 100):
            request: dict[str, Any] = {
                self._table_name: {
                    "Keys": [
                        serialize({"pk": keys.recipient_pk(org_id, broadcast_id, r.shard), "sk": r.sk})
                        for r in refs[start : start + 100]
                    ],
                    "ConsistentRead": True,
                }
            }
            for _ in range(10):
                response = self._client.batch_get_item(RequestItems=request)
                for raw in response["Responses"].get(self._table_name, []):
                    item = deserialize(raw)
                    found[RecipientRef(int(item["pk"].rsplit("#", 1)[1]), item["sk"])] = item
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
            if request:
                raise ConcurrentUpdateError("the broadcasts table is throttling reads; retry shortly")
        return found

    def put_recipients(self, rows: list[dict[str, Any]]) -> None:
        """The rows of a transactional send; a row already written (by a call that stopped and is taken
        over with the same idempotency key) is left as it is."""
        for row in rows:
            try:
                self._client.put_item(
                    TableName=self._table_name, Item=serialize(row), ConditionExpression="attribute_not_exists(pk)"
                )
            except ClientError as error:
                if not _failed_condition(error):
                    raise

    def start_sending(self, item: dict[str, Any], at: str, *, now: int, lease: int) -> dict[str, Any] | None:
        """Claim the row for one attempt, held for `lease` seconds (renewed before each provider call):
        PENDING → SENDING, or SENDING → SENDING again when an earlier attempt's lease ran out before it
        recorded a result (it stopped: its message may have left, so the row is marked as a possible
        duplicate). The row after the move, or None when it is not as read or another attempt holds it."""
        status = item["status"]
        attempts = int(item.get("attempts", 0))
        flag = ", possible_duplicate = :true" if status == SENDING else ""
        condition = "#st = :status AND (attribute_not_exists(attempts) OR attempts = :attempts)"
        if status == SENDING:
            condition += " AND (attribute_not_exists(lease_until) OR lease_until < :now)"
        try:
            response = self._client.update_item(
                TableName=self._table_name,
                Key=serialize({"pk": item["pk"], "sk": item["sk"]}),
                UpdateExpression=f"SET #st = :sending, attempts = :next, sending_at = :at, lease_until = :lease{flag}",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#st": "status"},
                ExpressionAttributeValues=serialize(
                    {
                        ":sending": SENDING,
                        ":next": attempts + 1,
                        ":at": at,
                        ":status": status,
                        ":attempts": attempts,
                        ":lease": now + lease,
                        **({":true": True, ":now": now} if flag else {}),
                    }
                ),
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if _failed_condition(error):
                return None
            raise
        return deserialize(response["Attributes"])

    def renew(self, item: dict[str, Any], *, now: int, lease: int) -> bool:
        """Hold a claimed row `lease` more seconds (before another provider call); False if it was lost."""
        return self._update_held(item, "SET lease_until = :lease", {":lease": now + lease})

    def _update_held(self, item: dict[str, Any], expression: str, values: dict[str, Any]) -> bool:
        """Update a row still SENDING under the attempt that claimed it; False when it is not any more."""
        try:
            self._client.update_item(
                TableName=self._table_name,
                Key=serialize({"pk": item["pk"], "sk": item["sk"]}),
                UpdateExpression=expression,
                ConditionExpression="#st = :sending AND attempts = :attempts",
                ExpressionAttributeNames={"#st": "status"},
                ExpressionAttributeValues=serialize(
                    {**values, ":sending": SENDING, ":attempts": int(item.get("attempts", 0))}
                ),
            )
        except ClientError as error:
            if _failed_condition(error):
                return False
            raise
        return True

    def row(self, pk: str, sk: str) -> dict[str, Any] | None:
        response = self._client.get_item(
            TableName=self._table_name, Key=serialize({"pk": pk, "sk": sk}), ConsistentRead=True
        )
        return deserialize(response["Item"]) if "Item" in response else None

    def mark_possible_duplicate(self, item: dict[str, Any]) -> bool:
        """Mark a claimed row as a possible duplicate: a provider call of it got no answer (the message may
        have left), so whatever is sent for it next may be a second copy. False if the row was lost."""
        return self._update_held(item, "SET possible_duplicate = :true", {":true": True})

    def release(self, item: dict[str, Any]) -> None:
        """SENDING → PENDING for a row whose send the provider refused for now (nothing left): the batch
        is retried later without counting a duplicate."""
        self._update_held(item, "SET #st = :pending", {":pending": PENDING})

    def finish(self, item: dict[str, Any], outcome: str, at: str, **fields: Any) -> dict[str, Any]:
        """Record the sender's outcome. From SENDING (or PENDING for a recipient skipped or cancelled
        before any attempt) the status becomes the outcome; if a receipt already moved the row on (it can
        arrive before this write), only `outcome` and the fields are recorded. A row of a deleted contact
        (skipped for it, or marked while it was being sent) loses its personal fields then. Returns the row."""
        ended = self._finish(item, outcome, at, **fields)
        if ended.get(ERASE_MARK) or (outcome == SKIPPED and fields.get("reason") == "contact_deleted"):
            ended = self._erase(item)
        return ended

    def _erase(self, item: dict[str, Any]) -> dict[str, Any]:
        """Strip a finished row of a deleted contact (broadcasts/erasure.py); the row after."""
        response = self._client.update_item(
            TableName=self._table_name,
            Key=serialize({"pk": item["pk"], "sk": item["sk"]}),
            UpdateExpression=f"SET {ERASE_MARK} = :true REMOVE {PERSONAL}",
            ExpressionAttributeNames={"#to": "to"},
            ExpressionAttributeValues=serialize({":true": True}),
            ReturnValues="ALL_NEW",
        )
        return deserialize(response["Attributes"])

    def _finish(self, item: dict[str, Any], outcome: str, at: str, **fields: Any) -> dict[str, Any]:
        values = {f":f{i}": v for i, v in enumerate(fields.values()) if v is not None}
        names = {f"#f{i}": k for i, (k, v) in enumerate(fields.items()) if v is not None}
        extra = "".join(f", #f{i} = :f{i}" for i, (k, v) in enumerate(fields.items()) if v is not None)
        stamp = f"{outcome.lower()}_at"
        try:
            response = self._client.update_item(
                TableName=self._table_name,
                Key=serialize({"pk": item["pk"], "sk": item["sk"]}),
                UpdateExpression=f"SET #st = :outcome, outcome = :outcome, #stamp = :at{extra}",
                ConditionExpression="#st IN (:sending, :pending)",
                ExpressionAttributeNames={"#st": "status", "#stamp": stamp, **names},
                ExpressionAttributeValues=serialize(
                    {":outcome": outcome, ":at": at, ":sending": SENDING, ":pending": PENDING, **values}
                ),
                ReturnValues="ALL_NEW",
            )
            return deserialize(response["Attributes"])
        except ClientError as error:
            if not _failed_condition(error):
                raise
        kwargs: dict[str, Any] = {"ExpressionAttributeNames": names} if names else {}
        response = self._client.update_item(
            TableName=self._table_name,
            Key=serialize({"pk": item["pk"], "sk": item["sk"]}),
            UpdateExpression=f"SET outcome = if_not_exists(outcome, :outcome){extra}",
            ExpressionAttributeValues=serialize({":outcome": outcome, **values}),
            ReturnValues="ALL_NEW",
            **kwargs,
        )
        return deserialize(response["Attributes"])

    def link_message(self, org_id: str, channel: str, provider_id: str, row: dict[str, Any], now: int) -> None:
        """Remember which recipient a provider's message id belongs to (receipts name only the message)."""
        self._client.put_item(
            TableName=self._table_name,
            Item=serialize(
                {
                    "pk": keys.message_pk(org_id, channel, provider_id),
                    "sk": keys.MESSAGE_SK,
                    "recipient_pk": row["pk"],
                    "recipient_sk": row["sk"],
                    "broadcast_id": row["broadcast_id"],
                    "expires_at": now + MESSAGE_SECONDS,
                }
            ),
        )

    def unlink_message(self, org_id: str, channel: str, provider_id: str) -> None:
        """Forget which recipient a message id belongs to (its contact was deleted while it was sent)."""
        self._client.delete_item(
            TableName=self._table_name,
            Key=serialize({"pk": keys.message_pk(org_id, channel, provider_id), "sk": keys.MESSAGE_SK}),
        )

    def tally(
        self, org_id: str, broadcast_id: str, batch: str, deltas: dict[str, int], activity: dict[str, int], day: str
    ) -> bool:
        """Record the batch as sent and move its counts, and the org's activity of `day`, once; False when
        it was already tallied."""
        item = {"sk": f"{keys.TALLY_PREFIX}{batch}", "deltas": deltas}
        shard = keys.shard_of(batch)
        extra = [
            add_op(self._table_name, {"pk": keys.activity_pk(org_id, shard), "sk": keys.activity_sk(day)}, activity)
        ]
        return self._record_once(org_id, broadcast_id, item, deltas, shard, extra if activity else [])

    def record_split(self, org_id: str, broadcast_id: str, batch: str, parts: list[dict[str, Any]]) -> bool:
        """Record that `batch` was split into `parts` (one batch per time zone), in the batch's tally marker:
        the batch itself is then never tallied, and every delivery of it replays the same parts. False when
        the marker was there already (an earlier delivery split or tallied it)."""
        item = {"sk": f"{keys.TALLY_PREFIX}{batch}", "split": json.dumps(parts)}
        return self._record_once(org_id, broadcast_id, item, {}, keys.shard_of(batch))

    def split_of(self, org_id: str, broadcast_id: str, batch: str) -> list[dict[str, Any]] | None:
        """The parts `batch` was split into; [] when it was tallied whole; None when it is neither yet."""
        response = self._client.get_item(
            TableName=self._table_name,
            Key=serialize({"pk": keys.broadcast_pk(org_id, broadcast_id), "sk": f"{keys.TALLY_PREFIX}{batch}"}),
            ConsistentRead=True,
        )
        if "Item" not in response:
            return None
        split = deserialize(response["Item"]).get("split")
        return list(json.loads(split)) if split else []

    def activity(self, org_id: str, first_day: str, last_day: str) -> dict[str, dict[str, int]]:
        """The org's sending activity per day from `first_day` to `last_day` (YYYY-MM-DD, both included):
        what the tallies added, summed over the shards."""
        days: dict[str, dict[str, int]] = {}
        for shard in range(keys.SHARDS):
            for item in self._query_all(
                KeyConditionExpression="pk = :pk AND sk BETWEEN :a AND :b",
                ExpressionAttributeValues=serialize(
                    {
                        ":pk": keys.activity_pk(org_id, shard),
                        ":a": keys.activity_sk(first_day),
                        ":b": keys.activity_sk(last_day),
                    }
                ),
            ):
                day = days.setdefault(item["sk"].removeprefix(keys.activity_sk("")), {})
                for name, value in item.items():
                    if name not in ("pk", "sk") and isinstance(value, int):
                        day[name] = day.get(name, 0) + value
        return days

    def list_recipients(
        self, org_id: str, broadcast_id: str, *, status: str | None, after: tuple[int, str] | None, limit: int
    ) -> tuple[list[dict[str, Any]], tuple[int, str] | None]:
        """Recipients shard by shard (status filtered server-side); a position to continue from. A filtered
        page reads at most MAX_SCANNED rows, so a rare status costs bounded reads per page (the page may then
        hold fewer than `limit`, with a position to continue from)."""
        shard, start = after if after else (0, None)
        found: list[dict[str, Any]] = []
        scanned = 0
        while shard < keys.SHARDS and len(found) < limit:
            if scanned >= MAX_SCANNED:
                return found, (shard, start or "")
            kwargs: dict[str, Any] = {
                "TableName": self._table_name,
                "KeyConditionExpression": "pk = :pk",
                "ExpressionAttributeValues": {":pk": {"S": keys.recipient_pk(org_id, broadcast_id, shard)}},
                "Limit": max(limit - len(found), 1) * (4 if status else 1),
            }
            if status:
                kwargs["FilterExpression"] = "#st = :st"
                kwargs["ExpressionAttributeNames"] = {"#st": "status"}
                kwargs["ExpressionAttributeValues"][":st"] = {"S": status}
            if start:
                kwargs["ExclusiveStartKey"] = {
                    "pk": {"S": keys.recipient_pk(org_id, broadcast_id, shard)},
                    "sk": {"S": start},
                }
            response = self._client.query(**kwargs)
            scanned += int(response.get("ScannedCount", len(response["Items"])))
            items = [deserialize(i) for i in response["Items"]]
            room = limit - len(found)
            found.extend(items[:room])
            if len(items) > room:
                return found, (shard, items[room - 1]["sk"])
            if "LastEvaluatedKey" in response:
                start = response["LastEvaluatedKey"]["sk"]["S"]
                if len(found) >= limit:
                    return found, (shard, start)
                continue
            shard, start = shard + 1, None
        return found, ((shard, "") if shard < keys.SHARDS else None)

    def contact_broadcasts(self, org_id: str, contact_id: str, *, limit: int = 100) -> list[dict[str, Any]]:
        """The recipient rows of a contact, newest first (the index holds keys; rows are read after)."""
        response = self._client.query(
            TableName=self._table_name,
            IndexName="gsi2",
            KeyConditionExpression="gsi2pk = :pk",
            ExpressionAttributeValues=serialize({":pk": keys.contact_partition(org_id, contact_id)}),
            ScanIndexForward=False,
            Limit=limit,
        )
        wanted = [(i["pk"]["S"], i["sk"]["S"]) for i in response["Items"]]
        if not wanted:
            return []
        request: dict[str, Any] = {self._table_name: {"Keys": [serialize({"pk": pk, "sk": sk}) for pk, sk in wanted]}}
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        while request:
            answer = self._client.batch_get_item(RequestItems=request)
            for raw in answer["Responses"].get(self._table_name, []):
                item = deserialize(raw)
                rows[(item["pk"], item["sk"])] = item
            request = answer.get("UnprocessedKeys") or {}
        return [rows[k] for k in wanted if k in rows]

    # -- receipts --------------------------------------------------------------------------------------

    def linked(self, org_id: str, channel: str, provider_id: str) -> dict[str, Any] | None:
        response = self._client.get_item(
            TableName=self._table_name,
            Key=serialize({"pk": keys.message_pk(org_id, channel, provider_id), "sk": keys.MESSAGE_SK}),
        )
        return deserialize(response["Item"]) if "Item" in response else None

    def apply_receipt(
        self,
        org_id: str,
        link: dict[str, Any],
        status: str,
        at: str,
        *,
        error_code: str | None,
        error_title: str | None,
    ) -> dict[str, Any] | None:
        """Move the recipient forward to `status` (DELIVERED, READ or FAILED) with its counters; the row as
        it was read when it moved, else None. A row still SENDING counts as SENT (its sender's tally counts
        it so)."""
        rank = RECEIPT_RANK[status]
        for _ in range(5):
            response = self._client.get_item(
                TableName=self._table_name,
                Key=serialize({"pk": link["recipient_pk"], "sk": link["recipient_sk"]}),
                ConsistentRead=True,
            )
            if "Item" not in response:
                return None
            row = deserialize(response["Item"])
            current = row["status"]
            if current not in RECEIPT_RANK or RECEIPT_RANK[current] >= rank:
                return None
            counted_from = SENT if current in (SENDING, SENT) else current
            values: dict[str, Any] = {":to": status, ":at": at, ":from": current}
            extra = ""
            if error_code:
                values[":code"] = error_code
                extra += ", error_code = :code"
            if error_title:
                values[":title"] = error_title[:500]
                extra += ", error_title = :title"
            # A row still SENDING is counted as sent (its batch's tally says so), so a "sent" receipt
            # that arrives first moves no counter.
            deltas = {} if counted_from == status else {counted_from.lower(): -1, status.lower(): 1}
            try:
                self._client.transact_write_items(
                    TransactItems=[
                        {
                            "Update": {
                                "TableName": self._table_name,
                                "Key": serialize({"pk": row["pk"], "sk": row["sk"]}),
                                "UpdateExpression": f"SET #st = :to, #stamp = :at{extra}",
                                "ConditionExpression": "#st = :from",
                                "ExpressionAttributeNames": {"#st": "status", "#stamp": f"{status.lower()}_at"},
                                "ExpressionAttributeValues": serialize(values),
                            }
                        },
                        self._counter_op(org_id, row["broadcast_id"], int(row["pk"].rsplit("#", 1)[1]), deltas),
                    ]
                )
            except ClientError as error:
                if _cancelled_by_condition(error):
                    continue  # moved meanwhile: read it again
                raise
            return row
        return None

    # -- transactional: idempotency keys and rate windows -------------------------------------------

    def begin_request(
        self, org_id: str, broadcast_id: str, key: str, fingerprint: str, now: int, *, stale_after: int
    ) -> tuple[bool, dict[str, Any]]:
        """Claim an idempotency key: (True, record) when this call owns it (new, or an earlier call's that
        stopped more than `stale_after` seconds ago without finishing: taken over with its `claim`, so its
        send is picked up where it stopped), else (False, the record an earlier call left)."""
        pk = keys.idempotency_pk(org_id, broadcast_id, key)
        record = {
            "pk": pk,
            "sk": keys.IDEMPOTENCY_SK,
            "fingerprint": fingerprint,
            "state": "in_progress",
            "claim": ids.ulid(),  # names the send this claim makes (kept when a stopped call is taken over)
            "started_at": now,
            "held_at": now,
            "expires_at": now + IDEMPOTENCY_SECONDS,
        }
        try:
            self._client.put_item(
                TableName=self._table_name,
                Item=serialize(record),
                ConditionExpression="attribute_not_exists(pk) OR expires_at < :now",
                ExpressionAttributeValues=serialize({":now": now}),
            )
            return True, record
        except ClientError as error:
            if not _failed_condition(error):
                raise
        response = self._client.get_item(
            TableName=self._table_name, Key=serialize({"pk": pk, "sk": keys.IDEMPOTENCY_SK}), ConsistentRead=True
        )
        found = deserialize(response["Item"]) if "Item" in response else {}
        if found.get("state") != "in_progress" or found.get("fingerprint") != fingerprint:
            return False, found
        try:
            response = self._client.update_item(
                TableName=self._table_name,
                Key=serialize({"pk": pk, "sk": keys.IDEMPOTENCY_SK}),
                UpdateExpression="SET held_at = :now",
                ConditionExpression="#s = :progress AND held_at < :stale",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues=serialize(
                    {":now": now, ":progress": "in_progress", ":stale": now - stale_after}
                ),
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if not _failed_condition(error):
                raise
            return False, found
        return True, deserialize(response["Attributes"])

    def complete_request(self, org_id: str, broadcast_id: str, key: str, status: int, body: dict[str, Any]) -> None:
        self._client.update_item(
            TableName=self._table_name,
            Key=serialize({"pk": keys.idempotency_pk(org_id, broadcast_id, key), "sk": keys.IDEMPOTENCY_SK}),
            UpdateExpression="SET #s = :done, http_status = :status, body = :body",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues=serialize({":done": "done", ":status": status, ":body": json.dumps(body)}),
        )

    def release_request(self, org_id: str, broadcast_id: str, key: str) -> None:
        """Forget a claimed key whose call failed before sending anything (so a retry may go ahead)."""
        self._client.delete_item(
            TableName=self._table_name,
            Key=serialize({"pk": keys.idempotency_pk(org_id, broadcast_id, key), "sk": keys.IDEMPOTENCY_SK}),
        )

    def count_send(self, org_id: str, broadcast_id: str, window: int, limit: int, expires_at: int) -> int | None:
        """Count one send in the window; the new count, or None when the window is full."""
        try:
            response = self._client.update_item(
                TableName=self._table_name,
                Key=serialize({"pk": keys.window_pk(org_id, broadcast_id, window), "sk": keys.WINDOW_SK}),
                UpdateExpression="ADD #c :one SET expires_at = if_not_exists(expires_at, :exp)",
                ConditionExpression="attribute_not_exists(#c) OR #c < :limit",
                ExpressionAttributeNames={"#c": "count"},
                ExpressionAttributeValues=serialize({":one": 1, ":limit": limit, ":exp": expires_at}),
                ReturnValues="UPDATED_NEW",
            )
        except ClientError as error:
            if _failed_condition(error):
                return None
            raise
        return int(deserialize(response["Attributes"])["count"])

    # -- pacing ----------------------------------------------------------------------------------------

    def take_tokens(self, pk: str, wanted: int, limit: int, expires_at: int) -> bool:
        """Take `wanted` of the `limit` sends of a pacing slot (a second, or a day); False when too few
        are left."""
        try:
            self._client.update_item(
                TableName=self._table_name,
                Key=serialize({"pk": pk, "sk": keys.PACE_SK}),
                UpdateExpression="ADD used :n SET expires_at = if_not_exists(expires_at, :exp)",
                ConditionExpression="attribute_not_exists(used) OR used <= :room",
                ExpressionAttributeValues=serialize({":n": wanted, ":room": limit - wanted, ":exp": expires_at}),
            )
        except ClientError as error:
            if _failed_condition(error):
                return False
            raise
        return True

    def reserve_pace(
        self, pk: str, span_us: int, soonest_us: int, horizon_us: int, expires_at: int, *, idle: bool = False
    ) -> tuple[bool, int]:
        """Reserve `span_us` of a connection's sending schedule, starting no sooner than `soonest_us` (GCRA:
        the item holds the time the schedule is booked until). Returns (True, start of the reservation), or
        (False, the time booked until) when the schedule is booked more than `horizon_us` past `soonest_us`:
        wait until it comes within reach. `idle`: the caller expects the schedule to be idle (tried first,
        so that a sender slower than the rate books with one request)."""
        attempts = (self._book_from, self._book_after) if idle else (self._book_after, self._book_from)
        booked = 0
        for attempt in attempts:
            done, booked = attempt(pk, span_us, soonest_us, horizon_us, expires_at)
            if done:
                return True, booked
            if booked > soonest_us + horizon_us:
                break
        return False, max(booked, soonest_us)

    def _book_after(self, pk: str, span_us: int, soonest_us: int, horizon_us: int, expires_at: int) -> tuple[bool, int]:
        """Busy: book on after whatever is booked, if that is not too far ahead."""
        try:
            answer = self._client.update_item(
                TableName=self._table_name,
                Key=serialize({"pk": pk, "sk": keys.PACE_SK}),
                UpdateExpression="SET tat = tat + :span, expires_at = :exp",
                ConditionExpression="tat BETWEEN :soonest AND :latest",
                ExpressionAttributeValues=serialize(
                    {":span": span_us, ":soonest": soonest_us, ":latest": soonest_us + horizon_us, ":exp": expires_at}
                ),
                ReturnValues="UPDATED_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            return True, int(deserialize(answer["Attributes"])["tat"])
        except ClientError as error:
            if not _failed_condition(error):
                raise
            return False, int(deserialize(error.response.get("Item") or {}).get("tat", 0))

    def _book_from(self, pk: str, span_us: int, soonest_us: int, horizon_us: int, expires_at: int) -> tuple[bool, int]:
        """Idle (or about to be): the reservation starts at `soonest_us`."""
        try:
            self._client.update_item(
                TableName=self._table_name,
                Key=serialize({"pk": pk, "sk": keys.PACE_SK}),
                UpdateExpression="SET tat = :end, expires_at = :exp",
                ConditionExpression="attribute_not_exists(tat) OR tat < :soonest",
                ExpressionAttributeValues=serialize(
                    {":end": soonest_us + span_us, ":soonest": soonest_us, ":exp": expires_at}
                ),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            return True, soonest_us
        except ClientError as error:
            if not _failed_condition(error):
                raise
            return False, int(deserialize(error.response.get("Item") or {}).get("tat", 0))

    def hold_pace(self, pk: str, until_us: int, expires_at: int) -> None:
        """Book nothing on the schedule until `until_us` (the provider asked every sender to wait)."""
        try:
            self._client.update_item(
                TableName=self._table_name,
                Key=serialize({"pk": pk, "sk": keys.PACE_SK}),
                UpdateExpression="SET tat = :until, expires_at = :exp",
                ConditionExpression="attribute_not_exists(tat) OR tat < :until",
                ExpressionAttributeValues=serialize({":until": until_us, ":exp": expires_at}),
            )
        except ClientError as error:
            if not _failed_condition(error):
                raise

    # -- per-recipient property values -----------------------------------------------------------------

    def put_property_values(
        self, org_id: str, broadcast_id: str, version: str, values: dict[str, dict[str, str]], expires_at: int
    ) -> None:
        """Write an upload's values (contact id → {property: value}) under `version`; the summary is then
        pointed at it, so a broadcast never reads half an upload."""
        items = [
            {
                "PutRequest": {
                    "Item": serialize(
                        {
                            "pk": keys.values_pk(org_id, broadcast_id, version, contacts_keys.shard_of(contact_id)),
                            "sk": contact_id,
                            "values": chosen,
                            "expires_at": expires_at,
                            # The contact's deletion finds (and deletes) its values through the contact index.
                            "gsi2pk": keys.contact_values_partition(org_id, contact_id),
                            "gsi2sk": f"{broadcast_id}#{version}",
                        }
                    )
                }
            }
            for contact_id, chosen in values.items()
        ]
        chunks = [items[i : i + 25] for i in range(0, len(items), 25)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda chunk: write_all(self._client, {self._table_name: chunk}), chunks))

    def property_values(
        self, org_id: str, broadcast_id: str, version: str, contact_ids: Iterable[str]
    ) -> dict[str, dict[str, str]]:
        """The values of `version` for these contacts (those the upload named)."""
        wanted = [
            serialize({"pk": keys.values_pk(org_id, broadcast_id, version, contacts_keys.shard_of(c)), "sk": c})
            for c in dict.fromkeys(contact_ids)
        ]
        found: dict[str, dict[str, str]] = {}
        for start in range(0, len(wanted), 100):
            pending: dict[str, Any] = {self._table_name: {"Keys": wanted[start : start + 100]}}
            while pending:
                answer = self._client.batch_get_item(RequestItems=pending)
                for item in answer["Responses"].get(self._table_name, []):
                    plain = deserialize(item)
                    found[plain["sk"]] = dict(plain.get("values") or {})
                pending = answer.get("UnprocessedKeys") or {}
        return found

    # -- one-click unsubscribe links ------------------------------------------------------------------

    def put_unsubscribe(self, token: str, link: dict[str, Any], now: int) -> None:
        self._client.put_item(
            TableName=self._table_name,
            Item=serialize(
                {
                    **link,
                    "pk": keys.unsubscribe_pk(token),
                    "sk": keys.UNSUBSCRIBE_SK,
                    "expires_at": now + UNSUBSCRIBE_SECONDS,
                }
            ),
        )

    def unsubscribe_link(self, token: str, now: int) -> dict[str, Any] | None:
        response = self._client.get_item(
            TableName=self._table_name, Key=serialize({"pk": keys.unsubscribe_pk(token), "sk": keys.UNSUBSCRIBE_SK})
        )
        item = deserialize(response["Item"]) if "Item" in response else None
        if item is None or int(item.get("expires_at", 0)) < now:
            return None
        return item

    # -- sandbox messages -------------------------------------------------------------------------------

    def record_sandbox(self, org_id: str, connection_id: str, message_id: str, data: dict[str, Any], at: str) -> None:
        self._client.put_item(
            TableName=self._table_name,
            Item=serialize(
                {
                    "pk": keys.sandbox_pk(org_id, connection_id),
                    "sk": f"{at}#{message_id}",
                    "id": message_id,
                    "at": at,
                    "message": json.dumps(data),
                    "expires_at": now_seconds() + SANDBOX_SECONDS,
                }
            ),
        )

    def sandbox_messages(self, org_id: str, connection_id: str, *, limit: int) -> list[dict[str, Any]]:
        response = self._client.query(
            TableName=self._table_name,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues=serialize({":pk": keys.sandbox_pk(org_id, connection_id)}),
            ScanIndexForward=False,
            Limit=limit,
        )
        items = [deserialize(i) for i in response["Items"]]
        return [{"id": i["id"], "at": i["at"], **json.loads(i["message"])} for i in items]

    # -- helpers ----------------------------------------------------------------------------------------

    def _counter_op(self, org_id: str, broadcast_id: str, shard: int, deltas: dict[str, int]) -> dict[str, Any]:
        moves = {name: delta for name, delta in deltas.items() if delta} or {"batches": 0}
        return add_op(
            self._table_name, {"pk": keys.broadcast_pk(org_id, broadcast_id), "sk": keys.counter_sk(shard)}, moves
        )

    def _query_all(self, **kwargs: Any) -> list[dict[str, Any]]:
        return query_all(self._client, self._table_name, **kwargs)

    def _record_once(
        self,
        org_id: str,
        broadcast_id: str,
        item: dict[str, Any],
        deltas: dict[str, int],
        shard: int,
        extra: list[dict[str, Any]] | None = None,
    ) -> bool:
        """Put a marker item and add `deltas` to a counter shard in one transaction, once: False when the
        marker was already there (an earlier attempt recorded it). A conflict with another transaction on
        the same counter items (busy broadcasts share an org's activity items) is retried a few times."""
        for attempt in range(CONFLICT_RETRIES + 1):
            try:
                self._client.transact_write_items(
                    TransactItems=[
                        {
                            "Put": {
                                "TableName": self._table_name,
                                "Item": serialize({"pk": keys.broadcast_pk(org_id, broadcast_id), **item}),
                                "ConditionExpression": "attribute_not_exists(pk)",
                            }
                        },
                        self._counter_op(org_id, broadcast_id, shard, deltas),
                        *(extra or []),
                    ]
                )
            except ClientError as error:
                if _cancelled_by_condition(error):
                    return False
                if not _conflicted(error) or attempt == CONFLICT_RETRIES:
                    raise
                time.sleep(0.05 * 2**attempt)
                continue
            return True
        return False  # not reached: the last attempt returns or raises

    def iter_batches(self, org_id: str, broadcast_id: str, prefix: str) -> Iterator[dict[str, Any]]:
        """Batch markers (`Q#` planned or `T#` tallied), for checks and recounts."""
        yield from self._query_all(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :p)",
            ExpressionAttributeValues=serialize({":pk": keys.broadcast_pk(org_id, broadcast_id), ":p": prefix}),
        )


# What a cancelled run left on a row that is planned again.
_RESET = "outcome, reason, error_code, error_title, possible_duplicate, attempts, cancelled_at, sending_at, lease_until"


def _fields(item: dict[str, Any]) -> list[str]:
    return [name for name in item if name not in ("pk", "sk") and item[name] is not None]


def _public(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k not in ("pk", "sk", "gsi1pk", "gsi1sk")}


def _sum_counters(items: Iterable[dict[str, Any]]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for item in items:
        for name, value in item.items():
            if name not in ("pk", "sk") and isinstance(value, int):
                totals[name] = totals.get(name, 0) + value
    return totals


def now_seconds() -> int:
    return int(time.time())
