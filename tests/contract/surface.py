"""The API's surface as the contract tests see it: every operation of the OpenAPI document, the few that are
public and why, an org holding one object of every kind a path names, and what that org reads back."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from audience.api.openapi import document
from tests.unit.test_tenant_isolation import BODIES, QUERIES

ROOT = Path(__file__).resolve().parents[2]

# Operations answered without an API key, each with why. Any other operation must demand one.
PUBLIC = {
    ("GET", "/health"): "liveness probe for load balancers and monitors; answers a constant",
    ("GET", "/u/{token}"): "unsubscribe page opened from an email; the signed token is the credential",
    ("POST", "/u/{token}"): "one-click unsubscribe (RFC 8058) sent by mail clients; the signed token is the credential",
}
# HTTP routes of template.yaml served by a function other than the API's; none takes an API key.
PUBLIC_ROUTES = {
    ("WebhookFunction", "ANY", "/webhooks/{connection_id}"): (
        "channel platforms (Meta, Telegram, SNS, custom) call it; every call is verified by the platform's own "
        "signature or secret, as the forgery corpus (tests/integration/channels/test_webhook_security.py) shows"
    ),
}
# Who may call the API function: its catch-all route, which reaches the operations above.
API_ROUTE = ("ApiFunction", "ANY", "/{proxy+}")

OPERATIONS = sorted((method.upper(), path) for path, operations in document()["paths"].items() for method in operations)
PROTECTED = [op for op in OPERATIONS if op not in PUBLIC]
MARKER = "acme private"  # in the names of the victim's objects: never in another org's answers


@dataclass
class Tenant:
    org_id: str
    api_key: str
    client: TestClient

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


def path_params(path: str) -> list[str]:
    return re.findall(r"\{(\w+)\}", path)


def fill(path: str, org_id: str, ids: dict[str, str]) -> str:
    """`path` with `{org_id}` as `org_id` and every other parameter as the seeded object's id."""
    return re.sub(r"\{(\w+)\}", lambda m: org_id if m.group(1) == "org_id" else ids[m.group(1)], path)


def body_of(method: str, path: str) -> Any:
    """A valid body for the operation (so that only the caller's rights can refuse it), or None."""
    return BODIES.get((method, path))


def query_of(method: str, path: str) -> dict[str, str] | None:
    return QUERIES.get((method, path))


def _created(response: Any) -> dict[str, Any]:
    assert response.status_code in (200, 201, 202), (response.request.url, response.status_code, response.text)
    return response.json()


def seed_every_kind(tenant: Tenant, stack: Any) -> dict[str, str]:
    """Give the org one object of every kind a path names; the id of each by path parameter. The stack is
    drained once the objects are settled (segment builds, the export, the test delivery), before the
    follow-up is scheduled: its timer runs for an hour."""
    from audience import admin

    c = tenant.client
    sandbox = admin.ensure_sandbox(tenant.org_id)
    contact = _created(
        c.post(
            "/orgs/c/contacts",
            json={
                "email": "victim@x.io",
                "first_name": MARKER,
                "channels": [{"channel": "telegram", "user_id": "424242"}],
            },
        )
    )
    key = _created(c.post("/orgs/c/api-keys", json={"name": MARKER}))
    _created(c.post("/orgs/c/contacts/fields", json={"name": "secret", "type": "string"}))
    _created(c.post("/orgs/c/tags", json={"name": "secret"}))
    _created(c.post(f"/orgs/c/contacts/{contact['id']}/tags", json={"tags": ["secret"]}))
    segment = _created(c.post("/orgs/c/segments", json={"name": MARKER, "type": "static"}))
    _created(c.post(f"/orgs/c/segments/{segment['id']}/contacts", json={"contact_ids": [contact["id"]]}))
    entry = _created(c.post("/orgs/c/do-not-contact", json={"identifier": "dnc@x.io"}))
    export = _created(c.post("/orgs/c/exports", json={"kind": "contacts"}))
    upload = _created(c.post("/orgs/c/imports", json={"file_name": "acme.csv"}))
    connection = _created(
        c.post(
            "/orgs/c/connections",
            json={"platform": "telegram", "name": MARKER, "secrets": {"bot_token": "123456:" + "A" * 35}},
        )
    )
    _created(c.put("/orgs/c/inbound-settings", json={"opt_out_keywords": ["HALT"]}))
    _created(c.put("/orgs/c/send-policy", json={"frequency_cap": {"limit": 5, "window_hours": 48}}))
    _created(c.put("/orgs/c/follow-up-rules", json={"enabled": False, "idle_seconds": 60}))
    broadcast = _created(
        c.post(
            "/orgs/c/broadcasts",
            json={
                "type": "transactional",
                "name": MARKER,
                "channels": [{"channel": "telegram", "connection_id": connection["id"], "text": {"text": "Code"}}],
            },
        )
    )
    _created(c.post(f"/orgs/c/broadcasts/{broadcast['id']}/activate"))
    endpoint = _created(
        c.post("/orgs/c/webhook-endpoints", json={"url": "https://hooks.example.com/a", "description": MARKER})
    )
    delivery = _created(c.post(f"/orgs/c/webhook-endpoints/{endpoint['id']}/test"))
    # Disabled, so the test delivery stops at its first try instead of retrying an unreachable host.
    _created(c.patch(f"/orgs/c/webhook-endpoints/{endpoint['id']}", json={"enabled": False}))
    stack.drain()
    follow_up = _created(
        c.post(
            f"/orgs/c/contacts/{contact['id']}/follow-ups",
            json={"connection_id": sandbox["telegram"], "in": "1h", "text": MARKER},
        )
    )
    return {
        "contact_id": contact["id"],
        "key_id": key["id"],
        "name": "secret",  # a custom field and a tag
        "segment_id": segment["id"],
        "entry_id": entry["id"],
        "export_id": export["id"],
        "import_id": upload["import"]["id"],
        "connection_id": connection["id"],
        "broadcast_id": broadcast["id"],
        "follow_up_id": follow_up["id"],
        "endpoint_id": endpoint["id"],
        "delivery_id": delivery["delivery_id"],
    }


# Parts of an answer that change with time alone: presigned URLs carry their signing time, and relative
# times ("in 59 minutes") count down, and a download link expires a while after it is read.
_VOLATILE = re.compile(r"(_url|due_in|due_in_seconds|download_expires_at)$")


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if not _VOLATILE.search(k)}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def read(tenant: Tenant, path: str, ids: dict[str, str]) -> tuple[int, Any]:
    """What the org reads on the GET operation `path` with its own objects' ids (what time alone changes
    left out)."""
    response = tenant.client.get(fill(path, "c", ids), params=query_of("GET", path))
    is_json = response.headers.get("content-type", "").startswith("application/json")
    return response.status_code, _stable(response.json()) if is_json else response.text


def snapshot(tenant: Tenant, ids: dict[str, str]) -> dict[str, Any]:
    """What the org reads on every GET operation of the document, with its own objects' ids."""
    return {path: read(tenant, path, ids) for method, path in PROTECTED if method == "GET"}


def changed(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """The GET paths whose answer differs between two snapshots."""
    return [path for path in before if before[path] != after[path]]
