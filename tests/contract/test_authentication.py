"""Every operation of the OpenAPI document demands a valid API key, except the few in PUBLIC: without a key,
with a malformed one, an unknown one, a real key id with a wrong secret, a deleted key or a key sent
where keys do not go, each answers 401 and does nothing. An operation added later is covered as soon
as it is in the document; one that is public must be added to PUBLIC, with why."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from audience.api.openapi import document
from devstack.template import load_yaml
from tests.contract.surface import (
    API_ROUTE,
    OPERATIONS,
    PROTECTED,
    PUBLIC,
    PUBLIC_ROUTES,
    ROOT,
    body_of,
    changed,
    fill,
    query_of,
    snapshot,
)


def test_the_public_operations_are_the_allow_listed_ones():
    paths = document()["paths"]
    declared_public = {
        (method.upper(), path)
        for path, operations in paths.items()
        for method, operation in operations.items()
        if not operation.get("security")
    }
    assert declared_public == set(PUBLIC), "a public operation must be listed in PUBLIC with why, and only those"
    assert set(PUBLIC) <= set(OPERATIONS)
    assert len(PROTECTED) >= 100


def test_every_http_route_of_the_template_reaches_the_api_or_is_allow_listed():
    resources = load_yaml(ROOT / "template.yaml")["Resources"]
    routes = {
        (logical_id, event["Properties"]["Method"].upper(), event["Properties"]["Path"])
        for logical_id, resource in resources.items()
        for event in (resource.get("Properties", {}).get("Events") or {}).values()
        if event["Type"] in ("HttpApi", "Api")
    }
    assert routes == {API_ROUTE, *PUBLIC_ROUTES}


@pytest.fixture(scope="module")
def credentials(victim: tuple[Any, dict[str, str]]) -> dict[str, dict[str, str]]:
    """Headers that must not authenticate, by what is wrong with them."""
    a, _ids = victim
    deleted = a.client.post("/orgs/c/api-keys", json={"name": "deleted"}).json()
    assert a.client.delete(f"/orgs/c/api-keys/{deleted['id']}").status_code == 204
    prefix, key_id, secret = a.api_key.split("_")
    other_secret = secret[::-1] if secret[::-1] != secret else "0" * len(secret)
    return {
        "no key": {},
        "empty bearer": {"Authorization": "Bearer "},
        "malformed": {"Authorization": "Bearer not-an-api-key"},
        "wrong scheme": {"Authorization": "Basic " + base64.b64encode(f"{a.org_id}:{a.api_key}".encode()).decode()},
        "unknown key": {"Authorization": f"Bearer {prefix}_{'0' * len(key_id)}_{'1' * len(secret)}"},
        "real key id, wrong secret": {"Authorization": f"Bearer {prefix}_{key_id}_{other_secret}"},
        "deleted key": {"Authorization": f"Bearer {deleted['key']}"},
        "key in another header": {"Authorization": "", "X-API-Key": a.api_key},
    }


def test_no_operation_answers_a_request_without_a_valid_key_and_none_changes_anything(victim, credentials):
    a, ids = victim
    before = snapshot(a, ids)
    answered = []
    for method, path in PROTECTED:
        # The key's own org and objects, and a valid body: a call that skipped authentication would succeed.
        url = fill(path, a.org_id, ids)
        for problem, headers in credentials.items():
            response = a.client.request(
                method,
                url,
                json=body_of(method, path),
                params=query_of(method, path),
                headers={"Authorization": "", **headers},
            )
            refused = (
                response.status_code == 401
                and response.json()["error"]["code"] == "unauthorized"
                and response.headers["WWW-Authenticate"].startswith("Bearer")
            )
            if not refused:
                answered.append((problem, method, path, response.status_code, response.text[:200]))
    assert answered == []
    assert changed(before, snapshot(a, ids)) == []


@pytest.mark.parametrize(("method", "path"), sorted(PUBLIC))
def test_a_public_operation_answers_without_a_key_and_never_with_a_server_error(app, method, path):
    from fastapi.testclient import TestClient

    response = TestClient(app).request(method, fill(path, "c", {"token": "0" * 40}))
    assert response.status_code < 500, (method, path, response.status_code, response.text)
    assert response.status_code != 401, (method, path)
