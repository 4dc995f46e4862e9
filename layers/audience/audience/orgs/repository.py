"""DynamoDB access for the orgs table.

Key design (table `OrgsTable`, keys `pk`/`sk`, GSI `gsi1` on `gsi1pk`/`gsi1sk`, TTL `expires_at`):

| item                 | pk                      | sk               | gsi1pk            | gsi1sk                 |
|----------------------|-------------------------|------------------|-------------------|------------------------|
| org                  | `ORG#{org_id}`          | `#ORG`           |                   |                        |
| API key              | `KEY#{key_id}`          | `#KEY`           | `ORG#{org_id}#KEYS` | `{created_at}#{key_id}` |
| custom field         | `ORG#{org_id}`          | `FIELD#{name}`   |                   |                        |
| rate-limit window    | `RATE#{key_id}#{window}` | `#RATE`         |                   |                        |
| inbound settings     | `ORG#{org_id}`          | `#INBOUND`       |                   |                        |
| send policy          | `ORG#{org_id}`          | `#SENDPOLICY`    |                   |                        |

Access patterns: authenticate a key by its id (strongly consistent get, so a deleted key is refused at
once); list an org's keys (GSI); read an org with its field definitions (one query on `ORG#{org_id}`);
count a request in the caller's current minute (one conditional update; items expire by TTL).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from audience import aws
from audience.errors import ConflictError, NotFoundError
from audience.orgs.models import ApiKey, FieldDefinition, Org

MAX_FIELDS_PER_ORG = 100


def _org_pk(org_id: str) -> str:
    return f"ORG#{org_id}"


def _key_pk(key_id: str) -> str:
    return f"KEY#{key_id}"


def _conditional_failed(error: ClientError) -> bool:
    return error.response["Error"]["Code"] == "ConditionalCheckFailedException"


class OrgsRepository:
    """Orgs, keys, field definitions and rate windows in the orgs table."""

    def __init__(self, table_name: str) -> None:
        self._table_name = table_name

    @property
    def _table(self) -> Any:
        return aws.table(self._table_name)

    # -- orgs -------------------------------------------------------------------------------------

    def put_org(self, org: Org) -> None:
        """Create the org; an existing org with the same id is left as it is."""
        try:
            self._table.put_item(
                Item={
                    "pk": _org_pk(org.id),
                    "sk": "#ORG",
                    "id": org.id,
                    "name": org.name,
                    "default_country": org.default_country,
                    "created_at": org.created_at,
                },
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as error:
            if not _conditional_failed(error):
                raise

    def get_org(self, org_id: str) -> Org:
        item = self._table.get_item(Key={"pk": _org_pk(org_id), "sk": "#ORG"}).get("Item")
        if not item:
            raise NotFoundError("org not found")
        return Org(item["id"], item["name"], item["default_country"], item["created_at"])

    def update_org(self, org_id: str, *, name: str | None, default_country: str | None) -> Org:
        sets, names, values = [], {}, {}
        if name is not None:
            sets.append("#n = :n")
            names["#n"] = "name"
            values[":n"] = name
        if default_country is not None:
            sets.append("default_country = :c")
            values[":c"] = default_country
        if not sets:
            return self.get_org(org_id)
        kwargs: dict[str, Any] = {
            "Key": {"pk": _org_pk(org_id), "sk": "#ORG"},
            "UpdateExpression": "SET " + ", ".join(sets),
            "ConditionExpression": "attribute_exists(pk)",
            "ExpressionAttributeValues": values,
            "ReturnValues": "ALL_NEW",
        }
        if names:
            kwargs["ExpressionAttributeNames"] = names
        try:
            item = self._table.update_item(**kwargs)["Attributes"]
        except ClientError as error:
            if _conditional_failed(error):
                raise NotFoundError("org not found") from None
            raise
        return Org(item["id"], item["name"], item["default_country"], item["created_at"])

    # -- API keys ---------------------------------------------------------------------------------

    def put_key(self, key: ApiKey) -> None:
        item: dict[str, Any] = {
            "pk": _key_pk(key.id),
            "sk": "#KEY",
            "gsi1pk": f"ORG#{key.org_id}#KEYS",
            "gsi1sk": f"{key.created_at}#{key.id}",
            "id": key.id,
            "org_id": key.org_id,
            "name": key.name,
            "prefix": key.prefix,
            "key_hash": key.key_hash,
            "created_at": key.created_at,
        }
        if key.rate_limit_per_minute is not None:
            item["rate_limit_per_minute"] = key.rate_limit_per_minute
        self._table.put_item(Item=item, ConditionExpression="attribute_not_exists(pk)")

    def get_key(self, key_id: str) -> ApiKey | None:
        """The key with this id, read strongly consistent, or None."""
        item = self._table.get_item(Key={"pk": _key_pk(key_id), "sk": "#KEY"}, ConsistentRead=True).get("Item")
        return _key_from_item(item) if item else None

    def list_keys(self, org_id: str) -> list[ApiKey]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "IndexName": "gsi1",
            "KeyConditionExpression": "gsi1pk = :pk",
            "ExpressionAttributeValues": {":pk": f"ORG#{org_id}#KEYS"},
        }
        while True:
            page = self._table.query(**kwargs)
            items.extend(page["Items"])
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return [_key_from_item(item) for item in items]

    def delete_key(self, org_id: str, key_id: str) -> None:
        """Delete the org's key; a key of another org, or none, is a NotFoundError."""
        try:
            self._table.delete_item(
                Key={"pk": _key_pk(key_id), "sk": "#KEY"},
                ConditionExpression="org_id = :org",
                ExpressionAttributeValues={":org": org_id},
            )
        except ClientError as error:
            if _conditional_failed(error):
                raise NotFoundError("API key not found") from None
            raise

    # -- inbound settings -------------------------------------------------------------------------

    def get_inbound_settings(self, org_id: str) -> dict[str, Any]:
        """The org's inbound settings (its own opt-out and opt-in keywords, its name capture settings);
        empty when never set."""
        item = self._table.get_item(Key={"pk": _org_pk(org_id), "sk": "#INBOUND"}).get("Item") or {}
        return {
            "opt_out_keywords": list(item.get("opt_out_keywords") or []),
            "opt_in_keywords": list(item.get("opt_in_keywords") or []),
            "name_capture": dict(item.get("name_capture") or {}),
            "updated_at": item.get("updated_at"),
        }

    def put_inbound_settings(self, org_id: str, settings: dict[str, Any]) -> None:
        self._table.put_item(Item={"pk": _org_pk(org_id), "sk": "#INBOUND", **settings})

    # -- send policy ------------------------------------------------------------------------------

    def get_send_policy(self, org_id: str) -> dict[str, Any]:
        """The org's send policy: `frequency_cap` ({"limit", "window_seconds"}, or None when the org has
        none) and `updated_at` (None when never set). Read strongly consistent, so a change applies at once."""
        item = (
            self._table.get_item(Key={"pk": _org_pk(org_id), "sk": "#SENDPOLICY"}, ConsistentRead=True).get("Item")
            or {}
        )
        cap = item.get("frequency_cap")
        return {
            "frequency_cap": (
                {"limit": int(cap["limit"]), "window_seconds": int(cap["window_seconds"])} if cap else None
            ),
            "updated_at": item.get("updated_at"),
        }

    def put_send_policy(self, org_id: str, policy: dict[str, Any]) -> None:
        """Replace the org's send policy (`frequency_cap` None: no cap)."""
        item = {"pk": _org_pk(org_id), "sk": "#SENDPOLICY", **{k: v for k, v in policy.items() if v is not None}}
        self._table.put_item(Item=item)

    # -- custom fields ----------------------------------------------------------------------------

    def list_fields(self, org_id: str) -> list[FieldDefinition]:
        page = self._table.query(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :f)",
            ExpressionAttributeValues={":pk": _org_pk(org_id), ":f": "FIELD#"},
        )
        return [
            FieldDefinition(item["name"], item["type"], item.get("label", item["name"]), item["created_at"])
            for item in page["Items"]
        ]

    def put_field(self, org_id: str, definition: FieldDefinition) -> None:
        if len(self.list_fields(org_id)) >= MAX_FIELDS_PER_ORG:
            raise ConflictError(f"an org can declare at most {MAX_FIELDS_PER_ORG} custom fields")
        try:
            self._table.put_item(
                Item={
                    "pk": _org_pk(org_id),
                    "sk": f"FIELD#{definition.name}",
                    "name": definition.name,
                    "type": definition.type,
                    "label": definition.label,
                    "created_at": definition.created_at,
                },
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as error:
            if _conditional_failed(error):
                raise ConflictError(f"custom field {definition.name!r} already exists", field=definition.name) from None
            raise

    def delete_field(self, org_id: str, name: str) -> None:
        try:
            self._table.delete_item(
                Key={"pk": _org_pk(org_id), "sk": f"FIELD#{name}"},
                ConditionExpression="attribute_exists(pk)",
            )
        except ClientError as error:
            if _conditional_failed(error):
                raise NotFoundError(f"custom field {name!r} not found") from None
            raise

    # -- rate limits ------------------------------------------------------------------------------

    def count_request(self, key_id: str, window: int, limit: int, expires_at: int) -> int | None:
        """Count one request in `window`; the new count, or None when the window is already full."""
        try:
            result = self._table.update_item(
                Key={"pk": f"RATE#{key_id}#{window}", "sk": "#RATE"},
                UpdateExpression="ADD #c :one SET expires_at = if_not_exists(expires_at, :exp)",
                ConditionExpression="attribute_not_exists(#c) OR #c < :limit",
                ExpressionAttributeNames={"#c": "count"},
                ExpressionAttributeValues={":one": 1, ":limit": limit, ":exp": expires_at},
                ReturnValues="UPDATED_NEW",
            )
        except ClientError as error:
            if _conditional_failed(error):
                return None
            raise
        return int(result["Attributes"]["count"])


def _key_from_item(item: dict[str, Any]) -> ApiKey:
    limit = item.get("rate_limit_per_minute")
    return ApiKey(
        id=item["id"],
        org_id=item["org_id"],
        name=item["name"],
        prefix=item["prefix"],
        created_at=item["created_at"],
        rate_limit_per_minute=int(limit) if limit is not None else None,
        key_hash=item["key_hash"],
    )
