"""Connections and their routes in the orgs table (key formats in audience.channels.keys)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from audience import aws
from audience.channels import keys
from audience.channels.models import SETTINGS, Connection
from audience.contacts.repository import deserialize, serialize
from audience.errors import ConcurrentUpdateError, ConflictError, NotFoundError

MAX_CONNECTIONS_PER_ORG = 100


def connection_item(connection: Connection) -> dict[str, Any]:
    return {
        "pk": keys.connection_pk(connection.id),
        "sk": keys.CONNECTION_SK,
        "gsi1pk": keys.org_connections(connection.org_id),
        "gsi1sk": f"{connection.created_at}#{connection.id}",
        "type": "connection",
        "id": connection.id,
        "org_id": connection.org_id,
        "platform": connection.platform,
        "name": connection.name,
        "settings": connection.settings or None,
        "secret_names": list(connection.secret_names) or None,
        "telegram_webhook": connection.telegram_webhook,
        "inbound_rules": connection.inbound_rules or None,
        "created_at": connection.created_at,
        "updated_at": connection.updated_at,
    }


def connection_from_item(item: dict[str, Any]) -> Connection:
    return Connection(
        id=item["id"],
        org_id=item["org_id"],
        platform=item["platform"],
        name=item["name"],
        settings=dict(item.get("settings") or {}),
        secret_names=tuple(item.get("secret_names") or ()),
        telegram_webhook=item.get("telegram_webhook"),
        inbound_rules=item.get("inbound_rules"),
        created_at=item["created_at"],
        updated_at=item["updated_at"],
    )


class ConnectionsRepository:
    def __init__(self, table_name: str) -> None:
        self._table_name = table_name

    @property
    def _client(self) -> Any:
        return aws.client("dynamodb")

    def get(self, org_id: str, connection_id: str) -> Connection:
        """The org's connection; another org's (or no) connection is not found."""
        connection = self.find(connection_id)
        if connection is None or connection.org_id != org_id:
            raise NotFoundError(f"connection {connection_id} not found")
        return connection

    def find(self, connection_id: str) -> Connection | None:
        item = self._client.get_item(
            TableName=self._table_name,
            Key=serialize({"pk": keys.connection_pk(connection_id), "sk": keys.CONNECTION_SK}),
            ConsistentRead=True,
        ).get("Item")
        return connection_from_item(deserialize(item)) if item else None

    def route(self, kind: str, account_id: str) -> tuple[str, str] | None:
        """(org id, connection id) owning an account id, or None."""
        item = self._client.get_item(
            TableName=self._table_name, Key=serialize({"pk": keys.route_pk(kind, account_id), "sk": keys.ROUTE_SK})
        ).get("Item")
        if not item:
            return None
        route = deserialize(item)
        return route["org_id"], route["connection_id"]

    def list(self, org_id: str) -> list[Connection]:
        kwargs: dict[str, Any] = {
            "TableName": self._table_name,
            "IndexName": "gsi1",
            "KeyConditionExpression": "gsi1pk = :pk",
            "ExpressionAttributeValues": serialize({":pk": keys.org_connections(org_id)}),
            "ScanIndexForward": False,
        }
        found: list[Connection] = []
        while True:
            page = self._client.query(**kwargs)
            for raw in page["Items"]:
                item = deserialize(raw)
                found.append(connection_from_item(item))
            if "LastEvaluatedKey" not in page:
                return found
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def create(self, connection: Connection) -> None:
        """Write the connection and claim its routes in one transaction; an account id another connection
        already owns (in this org or any other) is a ConflictError naming the setting."""
        ops: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self._table_name,
                    "Item": serialize(connection_item(connection)),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
        ]
        routes = connection.routes()
        for kind, account in routes:
            ops.append(
                {
                    "Put": {
                        "TableName": self._table_name,
                        "Item": serialize(
                            {
                                "pk": keys.route_pk(kind, account),
                                "sk": keys.ROUTE_SK,
                                "org_id": connection.org_id,
                                "connection_id": connection.id,
                            }
                        ),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
            )
        try:
            self._client.transact_write_items(TransactItems=ops)
        except ClientError as error:
            reasons = error.response.get("CancellationReasons") or []
            for index, reason in enumerate(reasons[1:]):
                if reason.get("Code") == "ConditionalCheckFailed":
                    kind, account = routes[index]
                    setting = next(n for n, r in SETTINGS[connection.platform].items() if r.route == kind)
                    raise ConflictError(
                        f"{setting} {account!r} is already connected", field=setting, value=account
                    ) from None
            if error.response["Error"]["Code"] == "TransactionCanceledException":
                raise ConcurrentUpdateError("the connection could not be written; retry") from None
            raise

    def update(self, connection: Connection, previous: Connection) -> None:
        """Replace the connection item (routes never change), if nobody changed it since `previous`."""
        try:
            self._client.put_item(
                TableName=self._table_name,
                Item=serialize(connection_item(connection)),
                ConditionExpression="updated_at = :seen",
                ExpressionAttributeValues=serialize({":seen": previous.updated_at}),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise ConcurrentUpdateError(f"connection {connection.id} was changed meanwhile; retry") from None
            raise

    def delete(self, connection: Connection) -> None:
        ops: list[dict[str, Any]] = [
            {
                "Delete": {
                    "TableName": self._table_name,
                    "Key": serialize({"pk": keys.connection_pk(connection.id), "sk": keys.CONNECTION_SK}),
                }
            }
        ]
        for kind, account in connection.routes():
            ops.append(
                {
                    "Delete": {
                        "TableName": self._table_name,
                        "Key": serialize({"pk": keys.route_pk(kind, account), "sk": keys.ROUTE_SK}),
                        "ConditionExpression": "connection_id = :me",
                        "ExpressionAttributeValues": serialize({":me": connection.id}),
                    }
                }
            )
        self._client.transact_write_items(TransactItems=ops)
