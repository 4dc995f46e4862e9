"""DynamoDB access for webhook endpoints and deliveries, in the broadcasts table (the table of outbound
messages and their delivery states, which already carries TTL).

| item     | pk                              | sk                | notes                                   |
|----------|---------------------------------|-------------------|-----------------------------------------|
| endpoint | `O#{org_id}#WH`                 | `EP#{endpoint_id}`| an org's endpoints: one query (≤ 20)   |
| delivery | `O#{org_id}#WH#{endpoint_id}`   | `D#{delivery_id}` | newest first (ids are ULIDs); TTL 30 d  |
| guard    | `O#{org_id}#WH#{endpoint_id}`   | `E#{event_id}`    | names the delivery of that event; TTL   |

A delivery is written in one transaction with the guard of its (endpoint, event id), both with
`attribute_not_exists(pk)`: a fan-out message that arrives twice finds the guard and creates nothing.
Attempts are claimed with a lease: a conditional write on (state, series, next_attempt, lease expired), so
two workers never attempt the same delivery at once, and only the lease owner records the outcome.
Signing secrets are never stored here (see secrets.py).
"""

from __future__ import annotations

import time
from dataclasses import fields
from decimal import Decimal
from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from boto3.dynamodb.types import TypeSerializer
from botocore.exceptions import ClientError

from audience import aws
from audience.errors import ConflictError, NotFoundError
from audience.outbound.models import Attempt, Delivery, Endpoint

DELIVERY_TTL_SECONDS = 30 * 86400
MAX_KEPT_ATTEMPTS = 60  # a redelivery trims older attempts to this many
MAX_PAGES_PER_LIST = 5  # pages of 100 items one listing reads at most (a state filter may skip many)


def endpoints_pk(org_id: str) -> str:
    return f"O#{org_id}#WH"


def endpoint_sk(endpoint_id: str) -> str:
    return f"EP#{endpoint_id}"


def deliveries_pk(org_id: str, endpoint_id: str) -> str:
    return f"O#{org_id}#WH#{endpoint_id}"


def delivery_sk(delivery_id: str) -> str:
    return f"D#{delivery_id}"


def event_sk(event_id: str) -> str:
    return f"E#{event_id}"


_ENDPOINT_FIELDS = {f.name for f in fields(Endpoint)}
_DELIVERY_FIELDS = {f.name for f in fields(Delivery)}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _endpoint(item: dict[str, Any]) -> Endpoint:
    return Endpoint(**{k: _plain(v) for k, v in item.items() if k in _ENDPOINT_FIELDS})


def _delivery(item: dict[str, Any]) -> Delivery:
    data = {k: _plain(v) for k, v in item.items() if k in _DELIVERY_FIELDS}
    data["attempts"] = [Attempt(**a) for a in data.get("attempts", [])]
    return Delivery(**data)


def _conditional_failed(error: ClientError) -> bool:
    return error.response["Error"]["Code"] == "ConditionalCheckFailedException"


class StaleEndpointError(ConflictError):
    """The endpoint changed between its read and a conditional update."""


class OutboundRepository:
    def __init__(self, table_name: str) -> None:
        self._name = table_name

    @property
    def _table(self) -> Any:
        return aws.table(self._name)

    # -- endpoints ---------------------------------------------------------------

    def endpoints(self, org_id: str) -> list[Endpoint]:
        """Every endpoint of the org, oldest first (ids are time-ordered)."""
        answer = self._table.query(
            KeyConditionExpression=Key("pk").eq(endpoints_pk(org_id)) & Key("sk").begins_with("EP#"),
            ConsistentRead=True,
        )
        return [_endpoint(item) for item in answer.get("Items", [])]

    def endpoint(self, org_id: str, endpoint_id: str) -> Endpoint:
        item = self._table.get_item(
            Key={"pk": endpoints_pk(org_id), "sk": endpoint_sk(endpoint_id)}, ConsistentRead=True
        ).get("Item")
        if item is None:
            raise NotFoundError(f"webhook endpoint {endpoint_id} not found")
        return _endpoint(item)

    def put_endpoint(self, endpoint: Endpoint, *, new: bool) -> None:
        """Write the endpoint: a new one must not exist, an existing one must still exist."""
        item = {"pk": endpoints_pk(endpoint.org_id), "sk": endpoint_sk(endpoint.id), **endpoint.as_dict()}
        condition = Attr("pk").not_exists() if new else Attr("pk").exists()
        try:
            self._table.put_item(Item={k: v for k, v in item.items() if v is not None}, ConditionExpression=condition)
        except ClientError as error:
            if not new and _conditional_failed(error):
                raise NotFoundError(f"webhook endpoint {endpoint.id} not found") from None
            raise

    def update_endpoint(
        self,
        org_id: str,
        endpoint_id: str,
        changes: dict[str, Any],
        *,
        expected_updated_at: str | None = None,
        bump_secret_version: bool = False,
    ) -> Endpoint:
        """Set only the fields in `changes` (None removes one), and add 1 to `secret_version` if asked, on the
        endpoint as it was when read (`updated_at` still `expected_updated_at`, when given): a change never
        writes back fields another writer (the delivery worker's disable(), a rotation) changed meanwhile.
        StaleEndpointError when it changed since; NotFoundError when it is gone. The endpoint as written."""
        sets: list[str] = []
        removes: list[str] = []
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        for index, (name, value) in enumerate(changes.items()):
            if name not in _ENDPOINT_FIELDS or name in ("id", "org_id", "secret_version"):
                raise ValueError(f"{name} cannot be changed")
            names[f"#c{index}"] = name
            if value is None:
                removes.append(f"#c{index}")
            else:
                sets.append(f"#c{index} = :c{index}")
                values[f":c{index}"] = value
        expression = (f"SET {', '.join(sets)} " if sets else "") + (f"REMOVE {', '.join(removes)} " if removes else "")
        if bump_secret_version:
            expression += "ADD secret_version :one"
            values[":one"] = 1
        condition = Attr("pk").exists()
        if expected_updated_at is not None:
            condition &= Attr("updated_at").eq(expected_updated_at)
        request: dict[str, Any] = {
            "Key": {"pk": endpoints_pk(org_id), "sk": endpoint_sk(endpoint_id)},
            "UpdateExpression": expression.strip(),
            "ConditionExpression": condition,
            "ReturnValues": "ALL_NEW",
        }
        if names:
            request["ExpressionAttributeNames"] = names
        if values:
            request["ExpressionAttributeValues"] = values
        try:
            answer = self._table.update_item(**request)
        except ClientError as error:
            if not _conditional_failed(error):
                raise
            self.endpoint(org_id, endpoint_id)  # NotFoundError when it is gone
            raise StaleEndpointError(f"webhook endpoint {endpoint_id} changed meanwhile; try again") from None
        return _endpoint(answer["Attributes"])

    def delete_endpoint(self, org_id: str, endpoint_id: str) -> None:
        try:
            self._table.delete_item(
                Key={"pk": endpoints_pk(org_id), "sk": endpoint_sk(endpoint_id)},
                ConditionExpression=Attr("pk").exists(),
            )
        except ClientError as error:
            if _conditional_failed(error):
                raise NotFoundError(f"webhook endpoint {endpoint_id} not found") from None
            raise

    def mark_failing(self, org_id: str, endpoint_id: str, since: str) -> str | None:
        """Record that deliveries to the endpoint fail (kept if already set); the time they started failing,
        or None when the endpoint is gone."""
        try:
            answer = self._table.update_item(
                Key={"pk": endpoints_pk(org_id), "sk": endpoint_sk(endpoint_id)},
                UpdateExpression="SET failing_since = if_not_exists(failing_since, :since)",
                ConditionExpression=Attr("pk").exists(),
                ExpressionAttributeValues={":since": since},
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if _conditional_failed(error):
                return None
            raise
        return str(answer["Attributes"]["failing_since"])

    def clear_failing(self, org_id: str, endpoint_id: str) -> None:
        """A delivery succeeded: the endpoint is no longer failing (one write only when it was)."""
        try:
            self._table.update_item(
                Key={"pk": endpoints_pk(org_id), "sk": endpoint_sk(endpoint_id)},
                UpdateExpression="REMOVE failing_since",
                ConditionExpression=Attr("failing_since").exists(),
            )
        except ClientError as error:
            if not _conditional_failed(error):
                raise

    def disable(self, org_id: str, endpoint_id: str, reason: str, at: str) -> bool:
        """Disable an enabled endpoint with `reason`; False when it was already disabled or is gone."""
        try:
            self._table.update_item(
                Key={"pk": endpoints_pk(org_id), "sk": endpoint_sk(endpoint_id)},
                UpdateExpression="SET #enabled = :false, disabled_reason = :reason, disabled_at = :at, "
                "updated_at = :at",
                ConditionExpression=Attr("enabled").eq(True),
                ExpressionAttributeNames={"#enabled": "enabled"},
                ExpressionAttributeValues={":false": False, ":reason": reason, ":at": at},
            )
        except ClientError as error:
            if _conditional_failed(error):
                return False
            raise
        return True

    # -- deliveries --------------------------------------------------------------

    def create_delivery(self, delivery: Delivery) -> str | None:
        """Write a new delivery with the guard of its (endpoint, event id), in one transaction; None, or the id
        of the delivery the endpoint already has for that event (then nothing is written)."""
        pk = deliveries_pk(delivery.org_id, delivery.endpoint_id)
        expires = int(time.time()) + DELIVERY_TTL_SECONDS
        guard = {"pk": pk, "sk": event_sk(delivery.event_id), "delivery_id": delivery.id, "expires_at": expires}
        item = {"pk": pk, "sk": delivery_sk(delivery.id), "expires_at": expires}
        item |= {k: v for k, v in _delivery_item(delivery).items() if v is not None}
        serialize = TypeSerializer().serialize
        try:
            aws.client("dynamodb").transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._name,
                            "Item": {k: serialize(v) for k, v in row.items()},
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    }
                    for row in (guard, item)
                ]
            )
        except ClientError as error:
            reasons = error.response.get("CancellationReasons") or []
            if error.response["Error"]["Code"] != "TransactionCanceledException" or not any(
                r.get("Code") == "ConditionalCheckFailed" for r in reasons
            ):
                raise
            existing = self._table.get_item(Key={"pk": pk, "sk": event_sk(delivery.event_id)}, ConsistentRead=True)
            if "Item" not in existing:
                raise
            return str(existing["Item"]["delivery_id"])
        return None

    def delivery(self, org_id: str, endpoint_id: str, delivery_id: str) -> Delivery:
        item = self._table.get_item(
            Key={"pk": deliveries_pk(org_id, endpoint_id), "sk": delivery_sk(delivery_id)}, ConsistentRead=True
        ).get("Item")
        if item is None:
            raise NotFoundError(f"delivery {delivery_id} not found")
        return _delivery(item)

    def deliveries(
        self, org_id: str, endpoint_id: str, *, state: str | None, take: int, before: str | None
    ) -> tuple[list[Delivery], str | None]:
        """Deliveries of an endpoint, newest first, optionally in one state; and the id to pass as `before`
        for the next page (None on the last). At most MAX_PAGES_PER_LIST pages of the partition are read per
        call: filtering by state may then answer fewer than `take` (even none) with a cursor to go on from."""
        condition = Key("pk").eq(deliveries_pk(org_id, endpoint_id))
        condition &= Key("sk").lt(delivery_sk(before)) if before else Key("sk").begins_with("D#")
        found: list[Delivery] = []
        start: dict[str, Any] | None = None
        for _ in range(MAX_PAGES_PER_LIST):
            request: dict[str, Any] = {"KeyConditionExpression": condition, "ScanIndexForward": False, "Limit": 100}
            if state:
                request["FilterExpression"] = Attr("state").eq(state)
            if start:
                request["ExclusiveStartKey"] = start
            answer = self._table.query(**request)
            for item in answer.get("Items", []):
                found.append(_delivery(item))
                if len(found) == take:
                    return found, found[-1].id
            start = answer.get("LastEvaluatedKey")
            if not start:
                return found, None
        assert start is not None
        return found, str(start["sk"]).removeprefix("D#")

    def claim(self, delivery: Delivery, series: int, attempt: int, owner: str, now_ms: int, lease_ms: int) -> bool:
        """Take the lease of attempt `attempt` of `series`; False when the delivery moved on, is not pending or
        another worker holds a live lease."""
        try:
            self._table.update_item(
                Key=self._key(delivery),
                UpdateExpression="SET lease_owner = :owner, lease_until = :until",
                ConditionExpression=(
                    Attr("state").eq("pending")
                    & Attr("series").eq(series)
                    & Attr("next_attempt").eq(attempt)
                    & (Attr("lease_until").not_exists() | Attr("lease_until").lt(now_ms))
                ),
                ExpressionAttributeValues={":owner": owner, ":until": now_ms + lease_ms},
            )
        except ClientError as error:
            if _conditional_failed(error):
                return False
            raise
        return True

    def record_attempt(self, delivery: Delivery, owner: str, attempt: Attempt, outcome: dict[str, Any]) -> bool:
        """Append `attempt` and apply `outcome` (state, next_attempt, ...; None values are removed) as the
        lease owner, releasing the lease; False when the lease was lost."""
        sets = ["attempts = list_append(if_not_exists(attempts, :empty), :attempt)"]
        removes = ["lease_owner", "lease_until"]
        values: dict[str, Any] = {":empty": [], ":attempt": [_attempt_item(attempt)]}
        names: dict[str, str] = {}
        for index, (name, value) in enumerate(outcome.items()):
            names[f"#o{index}"] = name
            if value is None:
                removes.append(f"#o{index}")
            else:
                sets.append(f"#o{index} = :o{index}")
                values[f":o{index}"] = value
        try:
            self._table.update_item(
                Key=self._key(delivery),
                UpdateExpression=f"SET {', '.join(sets)} REMOVE {', '.join(removes)}",
                ConditionExpression=Attr("lease_owner").eq(owner),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as error:
            if _conditional_failed(error):
                return False
            raise
        return True

    def fail(self, delivery: Delivery, series: int, reason: str, at: str) -> bool:
        """Stop a pending delivery of `series` without an attempt (its endpoint is disabled or gone)."""
        try:
            self._table.update_item(
                Key=self._key(delivery),
                UpdateExpression="SET #state = :failed, failure_reason = :reason, failed_at = :at "
                "REMOVE next_attempt_at, lease_owner, lease_until",
                ConditionExpression=Attr("state").eq("pending") & Attr("series").eq(series),
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={":failed": "failed", ":reason": reason, ":at": at},
            )
        except ClientError as error:
            if _conditional_failed(error):
                return False
            raise
        return True

    def mark_enqueued(self, delivery: Delivery, series: int, attempt: int) -> bool:
        """Record that a queue message for `attempt` was sent; False when one already was (or it moved on)."""
        try:
            self._table.update_item(
                Key=self._key(delivery),
                UpdateExpression="SET enqueued_through = :n",
                ConditionExpression=Attr("state").eq("pending")
                & Attr("series").eq(series)
                & Attr("next_attempt").eq(attempt)
                & Attr("enqueued_through").lt(attempt),
                ExpressionAttributeValues={":n": attempt},
            )
        except ClientError as error:
            if _conditional_failed(error):
                return False
            raise
        return True

    def restart(self, delivery: Delivery, at: str) -> Delivery:
        """Start a new attempt series of a delivered or failed delivery (same event, same body)."""
        kept = [_attempt_item(a) for a in delivery.attempts[-MAX_KEPT_ATTEMPTS:]]
        expires = int(time.time()) + DELIVERY_TTL_SECONDS  # a new series is kept 30 days from now
        try:
            answer = self._table.update_item(
                Key=self._key(delivery),
                UpdateExpression="SET #state = :pending, #series = #series + :one, next_attempt = :one, "
                "enqueued_through = :zero, series_started_at = :at, next_attempt_at = :at, attempts = :kept, "
                "expires_at = :expires "
                "REMOVE delivered_at, failed_at, failure_reason, lease_owner, lease_until",
                ConditionExpression=Attr("state").is_in(["delivered", "failed"]) & Attr("series").eq(delivery.series),
                ExpressionAttributeNames={"#state": "state", "#series": "series"},
                ExpressionAttributeValues={
                    ":pending": "pending",
                    ":one": 1,
                    ":zero": 0,
                    ":at": at,
                    ":kept": kept,
                    ":expires": expires,
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if _conditional_failed(error):
                raise ConflictError(f"delivery {delivery.id} is pending; it can be redelivered once it ends") from None
            raise
        # The guard of its event lives as long (written whole: TTL may already have removed it).
        self._table.update_item(
            Key={"pk": deliveries_pk(delivery.org_id, delivery.endpoint_id), "sk": event_sk(delivery.event_id)},
            UpdateExpression="SET delivery_id = :id, expires_at = :expires",
            ExpressionAttributeValues={":id": delivery.id, ":expires": expires},
        )
        return _delivery(answer["Attributes"])

    def _key(self, delivery: Delivery) -> dict[str, str]:
        return {"pk": deliveries_pk(delivery.org_id, delivery.endpoint_id), "sk": delivery_sk(delivery.id)}


def _attempt_item(attempt: Attempt) -> dict[str, Any]:
    return {k: v for k, v in {f.name: getattr(attempt, f.name) for f in fields(Attempt)}.items() if v is not None}


def _delivery_item(delivery: Delivery) -> dict[str, Any]:
    data = {f.name: getattr(delivery, f.name) for f in fields(Delivery)}
    data["attempts"] = [_attempt_item(a) for a in delivery.attempts]
    return data
