"""DynamoDB items of follow-ups.

In the contacts table, in the contact's partition (deleting the contact purges them with it):

| item                   | pk                    | sk                | notes                                      |
|------------------------|-----------------------|-------------------|--------------------------------------------|
| conversation           | `O#{org}#C#{contact}` | `#CONV#{channel}` | `fu_*`: the timer of the idle follow-ups   |
| requested follow-up    | `O#{org}#C#{contact}` | `#FU#{id}`        | due time, message, status                  |

The conversation item (see audience.inbound.repository) carries the timer of its idle follow-ups:
`fu_gen` names the outbound message the timer follows (one Step Functions execution per generation),
`fu_base` its time, `fu_step` the follow-ups sent, `fu_state` waiting / replied / cancelled / opted_out /
closed / disabled, `fu_prev_at` when the last step went, `fu_due_at` when the next is due, `fu_last` what
the last step did, and `fu_lease` / `fu_lease_by` the second until which an attempt (its owner token)
holds the right to send a step. Every move is a conditional write on the
generation and the step (or on owning the lease), so a stale or repeated execution changes nothing, and an
inbound message (which moves `fu_state` off waiting) stops any step that has not claimed its send yet.

In the orgs table: the org's rules (`ORG#{org}`, `#FOLLOWUP`) and a connection's own (`#FOLLOWUP#{id}`).
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from audience import aws
from audience.contacts import keys as contact_keys
from audience.contacts.repository import deserialize, serialize
from audience.errors import NotFoundError
from audience.followups.rules import Rules, parse_rules
from audience.inbound.repository import conversation_sk

WAITING = "waiting"
SCHEDULED = "scheduled"
SENDING = "sending"
FOLLOW_UP_PREFIX = "#FU#"
RULES_SK = "#FOLLOWUP"


def follow_up_sk(follow_up_id: str) -> str:
    return f"{FOLLOW_UP_PREFIX}{follow_up_id}"


def _failed(error: ClientError) -> bool:
    return error.response["Error"]["Code"] == "ConditionalCheckFailedException"


class FollowUpsRepository:
    def __init__(self, contacts_table: str, orgs_table: str) -> None:
        self._contacts = contacts_table
        self._orgs = orgs_table

    @property
    def _client(self) -> Any:
        return aws.client("dynamodb")

    def _update(self, table: str, key: dict[str, Any], **request: Any) -> dict[str, Any] | None:
        """An update whose condition may fail: the item's attributes as asked (ReturnValues), {} when none
        were asked, None when the condition failed."""
        values = request.pop("values", None)
        if values is not None:
            request["ExpressionAttributeValues"] = serialize(values)
        try:
            response = self._client.update_item(TableName=table, Key=serialize(key), **request)
        except ClientError as error:
            if _failed(error):
                return None
            raise
        return deserialize(response["Attributes"]) if "Attributes" in response else {}

    # -- rules -------------------------------------------------------------------------------------------

    def rules(self, org_id: str, connection_id: str | None) -> Rules | None:
        """The rules of the org (connection_id None) or of one connection; None when never set."""
        sk = RULES_SK if connection_id is None else f"{RULES_SK}#{connection_id}"
        item = self._client.get_item(
            TableName=self._orgs, Key=serialize({"pk": f"ORG#{org_id}", "sk": sk}), ConsistentRead=True
        ).get("Item")
        if item is None:
            return None
        found = deserialize(item)
        return parse_rules(json.loads(found["rules"]), connection_id=connection_id, updated_at=found.get("updated_at"))

    def put_rules(self, org_id: str, connection_id: str | None, rules: dict[str, Any], updated_at: str) -> None:
        sk = RULES_SK if connection_id is None else f"{RULES_SK}#{connection_id}"
        self._client.put_item(
            TableName=self._orgs,
            Item=serialize(
                {
                    "pk": f"ORG#{org_id}",
                    "sk": sk,
                    "rules": json.dumps(rules, separators=(",", ":"), ensure_ascii=False),
                    "updated_at": updated_at,
                }
            ),
        )

    def delete_rules(self, org_id: str, connection_id: str) -> bool:
        response = self._client.delete_item(
            TableName=self._orgs,
            Key=serialize({"pk": f"ORG#{org_id}", "sk": f"{RULES_SK}#{connection_id}"}),
            ReturnValues="ALL_OLD",
        )
        return "Attributes" in response

    # -- the idle timer of a conversation --------------------------------------------------------------------

    def _conversation_key(self, org_id: str, contact_id: str, channel: str) -> dict[str, str]:
        return {"pk": contact_keys.contact_pk(org_id, contact_id), "sk": conversation_sk(channel)}

    def conversation(self, org_id: str, contact_id: str, channel: str) -> dict[str, Any] | None:
        item = self._client.get_item(
            TableName=self._contacts,
            Key=serialize(self._conversation_key(org_id, contact_id, channel)),
            ConsistentRead=True,
        ).get("Item")
        return deserialize(item) if item else None

    def arm(
        self,
        org_id: str,
        contact_id: str,
        channel: str,
        *,
        gen: str,
        base: str,
        reply_cutoff: str,
        connection_id: str,
        due_at: str | None,
    ) -> dict[str, Any] | None:
        """Start the timer of generation `gen` (an outbound message sent at `base`): only when it is newer
        than the timer there and the contact has not written since `reply_cutoff` (platforms stamp messages
        to the second). The item as it was before (the old generation, to stop its execution), or None when
        the timer was not moved. A `due_at` of None records the generation without a timer (rules off)."""
        sets = [
            "fu_gen = :gen",
            "fu_base = :base",
            "fu_step = :zero",
            "fu_prev_at = :base",
            "fu_connection = :conn",
            "#status = :open",
        ]
        values: dict[str, Any] = {
            ":gen": gen,
            ":base": base,
            ":zero": 0,
            ":conn": connection_id,
            ":open": "open",
            ":cutoff": reply_cutoff,
        }
        # The lease stays: a step of the previous generation may be sending, and whoever ends this timer
        # waits for it. The next generation's first claim waits for it too.
        removes = ["fu_reason", "resolved_at"]
        if due_at is None:
            sets.append("fu_state = :off")
            values[":off"] = "disabled"
            removes.append("fu_due_at")
        else:
            sets += ["fu_state = :waiting", "fu_due_at = :due"]
            values.update({":waiting": WAITING, ":due": due_at})
        return self._update(
            self._contacts,
            self._conversation_key(org_id, contact_id, channel),
            UpdateExpression=f"SET {', '.join(sets)} REMOVE {', '.join(removes)}",
            ConditionExpression=(
                "attribute_exists(pk) AND (attribute_not_exists(fu_base) OR fu_base < :base) "
                "AND (attribute_not_exists(last_inbound_at) OR last_inbound_at < :cutoff)"
            ),
            ExpressionAttributeNames={"#status": "status"},
            values=values,
            ReturnValues="ALL_OLD",
        )

    def claim(
        self,
        org_id: str,
        contact_id: str,
        channel: str,
        gen: str,
        step: int,
        *,
        owner: str,
        reply_cutoff: str,
        now: int,
        lease: int,
    ) -> dict[str, Any] | None:
        """Take the right to send step `step` of generation `gen` for `lease` seconds, as `owner`: only while
        the timer waits on exactly that step, the contact has not written since `reply_cutoff`, and no
        lease is held (or the one held ran out). The item as it was (a `fu_lease_by` there means an attempt
        that stopped: its message may have gone), or None when the step could not be claimed."""
        return self._update(
            self._contacts,
            self._conversation_key(org_id, contact_id, channel),
            UpdateExpression="SET fu_lease = :until, fu_lease_by = :owner",
            ConditionExpression=(
                "fu_gen = :gen AND fu_step = :step AND fu_state = :waiting "
                "AND (attribute_not_exists(last_inbound_at) OR last_inbound_at < :cutoff) "
                "AND (attribute_not_exists(fu_lease) OR fu_lease < :now)"
            ),
            values={
                ":gen": gen,
                ":step": step,
                ":waiting": WAITING,
                ":cutoff": reply_cutoff,
                ":now": now,
                ":until": now + lease,
                ":owner": owner,
            },
            ReturnValues="ALL_OLD",
        )

    def advance(
        self,
        org_id: str,
        contact_id: str,
        channel: str,
        step: int,
        *,
        owner: str,
        at: str,
        due_at: str | None,
        outcome: dict[str, Any],
        close: tuple[str, bool] | None = None,
    ) -> bool:
        """Record step `step` done (sent, or skipped with a reason) by the attempt holding the lease, and when
        the next is due; the lease goes. With `close` (reason, resolve) the timer ends there too, in the same
        write, so a closing step is never done twice."""
        sets = ["fu_step = :next", "fu_prev_at = :at", "fu_last = :outcome"]
        values: dict[str, Any] = {":owner": owner, ":step": step, ":next": step + 1, ":at": at, ":outcome": outcome}
        removes = ["fu_lease", "fu_lease_by"]
        names: dict[str, str] = {}
        if due_at is not None:
            sets.append("fu_due_at = :due")
            values[":due"] = due_at
        if close is not None:
            reason, resolve = close
            sets += ["fu_state = :closed", "fu_reason = :reason", "fu_ended_at = :at"]
            values.update({":closed": "closed", ":reason": reason})
            removes.append("fu_due_at")
            if resolve:
                sets += ["#status = :resolved", "resolved_at = :at"]
                values[":resolved"] = "resolved"
                names["#status"] = "status"
        extra: dict[str, Any] = {"ExpressionAttributeNames": names} if names else {}
        return (
            self._update(
                self._contacts,
                self._conversation_key(org_id, contact_id, channel),
                UpdateExpression=f"SET {', '.join(sets)} REMOVE {', '.join(removes)}",
                ConditionExpression="fu_lease_by = :owner AND fu_step = :step",
                values=values,
                **extra,
            )
            is not None
        )

    def reschedule(self, org_id: str, contact_id: str, channel: str, gen: str, step: int, due_at: str) -> None:
        """Record that step `step` is due later than planned (business hours deferred it)."""
        self._update(
            self._contacts,
            self._conversation_key(org_id, contact_id, channel),
            UpdateExpression="SET fu_due_at = :due",
            ConditionExpression="fu_gen = :gen AND fu_step = :step AND fu_state = :waiting",
            values={":gen": gen, ":step": step, ":waiting": WAITING, ":due": due_at},
        )

    def release(self, org_id: str, contact_id: str, channel: str, owner: str) -> None:
        """Give back the lease `owner` holds (its send did not happen, or its timer moved on meanwhile)."""
        self._update(
            self._contacts,
            self._conversation_key(org_id, contact_id, channel),
            UpdateExpression="REMOVE fu_lease, fu_lease_by",
            ConditionExpression="fu_lease_by = :owner",
            values={":owner": owner},
        )

    def end(
        self,
        org_id: str,
        contact_id: str,
        channel: str,
        *,
        state: str,
        reason: str,
        at: str,
        gen: str | None = None,
        before: str | None = None,
    ) -> dict[str, Any] | None:
        """Stop a waiting timer (of generation `gen`, or whichever is there; with `before`, only one that
        follows a message sent before then): the item after the move, or None when no such timer was
        waiting."""
        condition = "fu_state = :waiting"
        values: dict[str, Any] = {":waiting": WAITING, ":state": state, ":reason": reason, ":at": at}
        if gen is not None:
            condition += " AND fu_gen = :gen"
            values[":gen"] = gen
        if before is not None:
            condition += " AND fu_base < :before"
            values[":before"] = before
        sets = ["fu_state = :state", "fu_reason = :reason", "fu_ended_at = :at"]
        return self._update(
            self._contacts,
            self._conversation_key(org_id, contact_id, channel),
            UpdateExpression=f"SET {', '.join(sets)} REMOVE fu_due_at",
            ConditionExpression=condition,
            values=values,
            ReturnValues="ALL_NEW",
        )

    # -- follow-ups requested for a time ---------------------------------------------------------------------

    def put_requested(self, org_id: str, contact_id: str, item: dict[str, Any]) -> None:
        """Store a requested follow-up; the contact must still exist (a write never revives a deleted one)."""
        pk = contact_keys.contact_pk(org_id, contact_id)
        try:
            self._client.transact_write_items(
                TransactItems=[
                    {
                        "ConditionCheck": {
                            "TableName": self._contacts,
                            "Key": serialize({"pk": pk, "sk": contact_keys.CONTACT_SK}),
                            "ConditionExpression": "attribute_exists(pk)",
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._contacts,
                            "Item": serialize({**item, "pk": pk, "sk": follow_up_sk(item["id"]), "type": "follow_up"}),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                ]
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "TransactionCanceledException":
                raise NotFoundError(f"contact {contact_id} not found") from None
            raise

    def requested(self, org_id: str, contact_id: str, follow_up_id: str) -> dict[str, Any] | None:
        item = self._client.get_item(
            TableName=self._contacts,
            Key=serialize({"pk": contact_keys.contact_pk(org_id, contact_id), "sk": follow_up_sk(follow_up_id)}),
            ConsistentRead=True,
        ).get("Item")
        return deserialize(item) if item else None

    def list_requested(self, org_id: str, contact_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        request: dict[str, Any] = {
            "TableName": self._contacts,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": serialize(
                {":pk": contact_keys.contact_pk(org_id, contact_id), ":prefix": FOLLOW_UP_PREFIX}
            ),
            "ConsistentRead": True,
        }
        while True:
            response = self._client.query(**request)
            found += [deserialize(i) for i in response["Items"]]
            if "LastEvaluatedKey" not in response:
                return found
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def move_requested(
        self,
        org_id: str,
        contact_id: str,
        follow_up_id: str,
        *,
        expected: str,
        changes: dict[str, Any],
        now: int | None = None,
        lease: int | None = None,
    ) -> dict[str, Any] | None:
        """Move a requested follow-up from status `expected` (a held lease blocks the move unless it ran out
        before `now`); the item after the move, or None when it was not in that state."""
        names = {"#status": "status"}
        values: dict[str, Any] = {":expected": expected}
        sets = []
        for index, (name, value) in enumerate(changes.items()):
            names[f"#c{index}"] = name
            values[f":c{index}"] = value
            sets.append(f"#c{index} = :c{index}")
        condition = "#status = :expected"
        if now is not None:
            condition += " AND (attribute_not_exists(lease_until) OR lease_until < :now)"
            values[":now"] = now
        if lease is not None and now is not None:
            sets.append("lease_until = :until")
            values[":until"] = now + lease
        update = f"SET {', '.join(sets)}"
        if lease is None:
            update += " REMOVE lease_until"
        return self._update(
            self._contacts,
            {"pk": contact_keys.contact_pk(org_id, contact_id), "sk": follow_up_sk(follow_up_id)},
            UpdateExpression=update,
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            values=values,
            ReturnValues="ALL_NEW",
        )
