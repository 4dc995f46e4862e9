"""Key formats of connections in the orgs table and the names of their secrets.

Shared by the repository and the webhook acknowledge path, which reads these items with the low-level
client (it must stay light), so both agree on one definition.

| item       | pk                         | sk       | gsi1pk             | gsi1sk                  |
|------------|----------------------------|----------|--------------------|-------------------------|
| connection | `CONN#{connection_id}`     | `#CONN`  | `ORG#{org_id}#CONNS` | `{created_at}#{id}`   |
| route      | `ROUTE#{kind}#{account}`   | `#ROUTE` |                    |                         |

A route names the connection that owns an account id as it appears in webhook payloads (a WhatsApp
phone_number_id or business account id, a page id, an Instagram account id, an SES identity, an SMS
origination number). Routes are written with `attribute_not_exists`, so one account belongs to one org.
"""

from __future__ import annotations

CONNECTION_SK = "#CONN"
ROUTE_SK = "#ROUTE"


def connection_pk(connection_id: str) -> str:
    return f"CONN#{connection_id}"


def org_connections(org_id: str) -> str:
    return f"ORG#{org_id}#CONNS"


def route_pk(kind: str, account_id: str) -> str:
    return f"ROUTE#{kind}#{account_id}"


def secret_name(stage: str, connection_id: str) -> str:
    """The Secrets Manager name of a connection's secrets (IAM grants `audience/{stage}/connections/*`)."""
    return f"audience/{stage}/connections/{connection_id}"
