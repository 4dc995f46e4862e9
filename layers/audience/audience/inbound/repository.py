"""DynamoDB items of inbound processing, in the contacts table.

| item                | pk                                  | sk                      | notes                     |
|---------------------|-------------------------------------|-------------------------|---------------------------|
| message log entry   | `O#{org}#C#{contact}`               | `G#{at}#{channel}#{id}` | the conversation log      |
| conversation        | `O#{org}#C#{contact}`               | `#CONV#{channel}`       | last inbound, 24-h window |
| message by provider | `O#{org}#P#{channel}#{provider_id}` | `#MSG`                  | status; TTL 35 days       |
| processed event     | `O#{org}#D#{dedupe_key}`            | `#DEDUPE`               | TTL 8 days                |
| org event log       | `O#{org}#L#{day}`                   | `{at}#{dedupe_key}`     | other events; TTL 35 days |

Everything about a person lives in the contact's partition, so deleting the contact purges it; the
provider-id items hold ids and statuses only, and expire (a deleted contact's become tombstones, which
statuses arriving later leave as they are). A message log entry is appended in one
transaction with the provider-id item (completed only if it names no log entry yet), its activity entry
and the conversation's count, so a redelivered message is never logged twice. Statuses move the provider-id
item forward only (a rank condition), so a late "sent" never overwrites "read".
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from botocore.exceptions import ClientError

from audience import aws
from audience.contacts import keys as contact_keys
from audience.contacts.repository import deserialize, serialize
from audience.inbound.events import STATUS_RANK

DEDUPE_TTL_SECONDS = 8 * 24 * 3600  # Meta retries for up to 7 days
MESSAGE_TTL_SECONDS = 35 * 24 * 3600
WINDOW_SECONDS = 24 * 3600  # WhatsApp's customer service window
LOG_PREFIX = "G#"
CONVERSATION_PREFIX = "#CONV#"
MAX_KEY = 900  # DynamoDB partition keys are at most 2048 bytes; provider ids are hashed past this


def _bounded(value: str) -> str:
    if len(value.encode()) <= MAX_KEY:
        return value
    return "h:" + hashlib.sha256(value.encode()).hexdigest()


def message_pk(org_id: str, channel: str, provider_id: str) -> str:
    return f"O#{org_id}#P#{channel}#{_bounded(provider_id)}"


def dedupe_pk(org_id: str, key: str) -> str:
    return f"O#{org_id}#D#{_bounded(key)}"


def log_sk(at: str, channel: str, provider_id: str) -> str:
    return f"{LOG_PREFIX}{at}#{channel}#{_bounded(provider_id)}"


def conversation_sk(channel: str) -> str:
    return f"{CONVERSATION_PREFIX}{channel}"


def _failed_condition(error: ClientError) -> bool:
    code = error.response["Error"]["Code"]
    if code == "ConditionalCheckFailedException":
        return True
    if code == "TransactionCanceledException":
        reasons = error.response.get("CancellationReasons") or []
        return any(r.get("Code") == "ConditionalCheckFailed" for r in reasons) and all(
            r.get("Code") in ("None", "ConditionalCheckFailed", None) for r in reasons
        )
    return False


class InboundRepository:
    def __init__(self, table_name: str, *, now: Any = time.time) -> None:
        self._table_name = table_name
        self._now = now

    @property
    def _client(self) -> Any:
        return aws.client("dynamodb")

    # -- dedupe ----------------------------------------------------------------------------------------

    def seen(self, org_id: str, key: str) -> bool:
        item = self._client.get_item(
            TableName=self._table_name,
            Key=serialize({"pk": dedupe_pk(org_id, key), "sk": "#DEDUPE"}),
            ProjectionExpression="pk",
            ConsistentRead=True,
        ).get("Item")
        return item is not None

    def mark(self, org_id: str, key: str, at: str) -> None:
        self._client.put_item(
            TableName=self._table_name,
            Item=serialize(
                {
                    "pk": dedupe_pk(org_id, key),
                    "sk": "#DEDUPE",
                    "type": "processed_event",
                    "at": at,
                    "expires_at": int(self._now()) + DEDUPE_TTL_SECONDS,
                }
            ),
        )

    # -- messages --------------------------------------------------------------------------------------

    def record_message(
        self,
        *,
        org_id: str,
        contact_id: str,
        channel: str,
        connection_id: str,
        provider_id: str,
        direction: str,
        at: str,
        entry: dict[str, Any],
        activity: dict[str, Any] | None,
        ref: dict[str, Any] | None = None,
    ) -> bool:
        """Append a message to the contact's log, once: False when it was recorded before. `ref` adds
        attributes to the provider-id item (what a later status needs to know of the message)."""
        pk = contact_keys.contact_pk(org_id, contact_id)
        sk = log_sk(at, channel, provider_id)
        expires = int(self._now()) + MESSAGE_TTL_SECONDS
        # The provider-id item may exist already without a log entry: a status of an outbound message can
        # arrive before the sender records it. It is completed then, not taken as a repeat.
        fields: dict[str, Any] = {
            **(ref or {}),
            "type": "message_ref",
            "org_id": org_id,
            "contact_id": contact_id,
            "provider_id": provider_id,
            "log_sk": sk,
            "direction": direction,
            "channel": channel,
            "expires_at": expires,
        }
        names = {f"#f{i}": name for i, name in enumerate(fields)}
        ops: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self._table_name,
                    "Key": serialize({"pk": message_pk(org_id, channel, provider_id), "sk": "#MSG"}),
                    "UpdateExpression": "SET " + ", ".join(f"#f{i} = :f{i}" for i in range(len(fields))),
                    "ConditionExpression": "attribute_not_exists(log_sk)",
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": serialize({f":f{i}": v for i, v in enumerate(fields.values())}),
                }
            },
            {
                "Put": {
                    "TableName": self._table_name,
                    "Item": serialize(
                        {
                            **entry,
                            "pk": pk,
                            "sk": sk,
                            "type": "message",
                            "provider_id": provider_id,
                            "direction": direction,
                            "channel": channel,
                            "connection_id": connection_id,
                            "at": at,
                        }
                    ),
                }
            },
            {
                "Update": {
                    "TableName": self._table_name,
                    "Key": serialize({"pk": pk, "sk": conversation_sk(channel)}),
                    "UpdateExpression": "ADD #count :one SET #type = :type, channel = :channel, connection_id = :conn",
                    "ExpressionAttributeNames": {"#count": f"{direction}_count", "#type": "type"},
                    "ExpressionAttributeValues": serialize(
                        {":one": 1, ":type": "conversation", ":channel": channel, ":conn": connection_id}
                    ),
                }
            },
            # The contact must still exist: a message never revives a deleted contact's partition.
            {
                "ConditionCheck": {
                    "TableName": self._table_name,
                    "Key": serialize({"pk": pk, "sk": contact_keys.CONTACT_SK}),
                    "ConditionExpression": "attribute_exists(pk)",
                }
            },
        ]
        if activity is not None:
            ops.append({"Put": {"TableName": self._table_name, "Item": serialize(activity)}})
        try:
            self._client.transact_write_items(TransactItems=ops)
        except ClientError as error:
            if not _failed_condition(error):
                raise
            reasons = error.response.get("CancellationReasons") or []
            if len(reasons) > 3 and reasons[3].get("Code") == "ConditionalCheckFailed":
                raise ContactGoneError(contact_id) from None
            return False
        return True

    def touch_conversation(
        self, org_id: str, contact_id: str, channel: str, *, direction: str, at: str, message_id: str
    ) -> None:
        """Move the conversation's last-{direction} time forward (never back); an inbound message opens
        the 24-hour window until `at` + 24 h."""
        names = {"#last": f"last_{direction}_at", "#msg": f"last_{direction}_message"}
        values: dict[str, Any] = {":at": at, ":msg": message_id}
        update = "SET #last = :at, #msg = :msg"
        if direction == "inbound":
            update += ", window_expires_at = :window"
            values[":window"] = _plus_seconds(at, WINDOW_SECONDS)
        try:
            self._client.update_item(
                TableName=self._table_name,
                Key=serialize({"pk": contact_keys.contact_pk(org_id, contact_id), "sk": conversation_sk(channel)}),
                UpdateExpression=update,
                ConditionExpression="attribute_exists(pk) AND (attribute_not_exists(#last) OR #last < :at)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=serialize(values),
            )
        except ClientError as error:
            if not _failed_condition(error):
                raise

    def conversations(self, org_id: str, contact_id: str) -> list[dict[str, Any]]:
        response = self._client.query(
            TableName=self._table_name,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues=serialize(
                {":pk": contact_keys.contact_pk(org_id, contact_id), ":prefix": CONVERSATION_PREFIX}
            ),
            ConsistentRead=True,
        )
        return [deserialize(item) for item in response["Items"]]

    def log(self, org_id: str, contact_id: str, *, before: str | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """The contact's messages newest first, before the log position `before`, and whether more follow."""
        upper = before if before else LOG_PREFIX + "~"
        response = self._client.query(
            TableName=self._table_name,
            KeyConditionExpression="pk = :pk AND sk BETWEEN :lo AND :hi",
            ExpressionAttributeValues=serialize(
                {":pk": contact_keys.contact_pk(org_id, contact_id), ":lo": LOG_PREFIX, ":hi": upper}
            ),
            ScanIndexForward=False,
            Limit=limit + 2,
        )
        items = [deserialize(i) for i in response["Items"] if deserialize(i)["sk"] != before]
        return items[:limit], len(items) > limit

    def statuses(self, org_id: str, refs: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        """Provider-id items of (channel, provider id) pairs, by that pair."""
        found: dict[tuple[str, str], dict[str, Any]] = {}
        wanted = list(dict.fromkeys(refs))
        for start in range(0, len(wanted), 100):
            chunk = wanted[start : start + 100]
            request = {
                self._table_name: {
                    "Keys": [serialize({"pk": message_pk(org_id, c, p), "sk": "#MSG"}) for c, p in chunk]
                }
            }
            while request:
                response = self._client.batch_get_item(RequestItems=request)
                for raw in response["Responses"].get(self._table_name, []):
                    item = deserialize(raw)
                    found[(item["channel"], item["provider_id"])] = item
                request = response.get("UnprocessedKeys") or {}
        return found

    def message(self, org_id: str, channel: str, provider_id: str) -> dict[str, Any] | None:
        item = self._client.get_item(
            TableName=self._table_name,
            Key=serialize({"pk": message_pk(org_id, channel, provider_id), "sk": "#MSG"}),
            ConsistentRead=True,
        ).get("Item")
        return deserialize(item) if item else None

    # -- statuses --------------------------------------------------------------------------------------

    def apply_status(
        self,
        org_id: str,
        channel: str,
        provider_id: str,
        status: str,
        at: str,
        *,
        error_code: str | None = None,
        error_title: str | None = None,
    ) -> dict[str, Any] | None:
        """Move the message to `status` if that is forward; record the time of every status seen either
        way. The message's item after the move, or None when the status did not move it or the message's
        contact was deleted (its item is a tombstone then, contacts/stream.py, and stays one)."""
        rank = STATUS_RANK[status]
        key = serialize({"pk": message_pk(org_id, channel, provider_id), "sk": "#MSG"})
        stamp = f"{status}_at"
        values: dict[str, Any] = {
            ":status": status,
            ":rank": rank,
            ":at": at,
            ":type": "message_ref",
            ":org": org_id,
            ":channel": channel,
            ":pid": provider_id,
            ":expires": int(self._now()) + MESSAGE_TTL_SECONDS,
        }
        sets = [
            "#status = :status",
            "status_rank = :rank",
            "status_at = :at",
            "#stamp = if_not_exists(#stamp, :at)",
            "#type = if_not_exists(#type, :type)",
            "org_id = :org",
            "channel = :channel",
            "provider_id = :pid",
            "expires_at = if_not_exists(expires_at, :expires)",
        ]
        if error_code is not None:
            sets.append("error_code = :code")
            values[":code"] = error_code
        if error_title is not None:
            sets.append("error_title = :title")
            values[":title"] = error_title[:500]
        names = {"#status": "status", "#stamp": stamp, "#type": "type"}
        try:
            response = self._client.update_item(
                TableName=self._table_name,
                Key=key,
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression=(
                    "attribute_not_exists(erased) AND (attribute_not_exists(status_rank) OR status_rank < :rank)"
                ),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=serialize(values),
                ReturnValues="ALL_NEW",
            )
            return deserialize(response["Attributes"])
        except ClientError as error:
            if not _failed_condition(error):
                raise
        # Not forward (a late "sent" after "read", or a repeat): keep only when it happened.
        try:
            self._client.update_item(
                TableName=self._table_name,
                Key=key,
                UpdateExpression="SET #stamp = if_not_exists(#stamp, :at)",
                ConditionExpression="attribute_not_exists(erased)",
                ExpressionAttributeNames={"#stamp": stamp},
                ExpressionAttributeValues=serialize({":at": at}),
            )
        except ClientError as error:
            if not _failed_condition(error):
                raise
        return None

    # -- other events --------------------------------------------------------------------------------

    def record_other(self, org_id: str, key: str, at: str, item: dict[str, Any]) -> None:
        """Keep an event that is neither a message nor a status in the org's event log (35 days)."""
        self._client.put_item(
            TableName=self._table_name,
            Item=serialize(
                {
                    **item,
                    "pk": f"O#{org_id}#L#{at[:10]}",
                    "sk": f"{at}#{_bounded(key)}",
                    "type": "inbound_event",
                    "expires_at": int(self._now()) + MESSAGE_TTL_SECONDS,
                }
            ),
        )


class ContactGoneError(Exception):
    """The contact was deleted while its message was being recorded."""


def _plus_seconds(at: str, seconds: int) -> str:
    from datetime import datetime, timedelta

    from audience import clock

    return clock.iso(datetime.fromisoformat(at.replace("Z", "+00:00")) + timedelta(seconds=seconds))
