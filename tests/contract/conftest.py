"""One stack per contract test module (provisioning one per operation would cost most of the run); every
test still gets orgs of its own. These fixtures override the per-test ones of tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.contract.surface import Tenant, seed_every_kind
from tests.stacks import module_stack


@pytest.fixture(scope="module")
def stack() -> Iterator[Any]:
    # Not drained afterwards: the victim's follow-up timer would keep a drain busy for its hour.
    with module_stack() as running:
        yield running


@pytest.fixture(scope="module")
def app(stack: Any) -> Any:
    from audience.api.app import create_app

    return create_app()


def new_tenant(app: Any, name: str, country: str, *, rate_limit: int | None = None) -> Tenant:
    """A new org and a client of `app` sending its key (`rate_limit` requests a minute, or the default)."""
    from audience import admin, container

    created = admin.create_org(name, default_country=country)
    api_key = created["api_key"]
    if rate_limit is not None:
        _, api_key = container.org_service().create_key(created["org_id"], "contract", rate_limit_per_minute=rate_limit)
    return Tenant(created["org_id"], api_key, TestClient(app, headers={"Authorization": f"Bearer {api_key}"}))


@pytest.fixture
def org(app: Any) -> Tenant:
    return new_tenant(app, "Acme", "ID")


@pytest.fixture
def other_org(app: Any) -> Tenant:
    return new_tenant(app, "Globex", "US")


@pytest.fixture(scope="module")
def victim(stack: Any, app: Any) -> tuple[Tenant, dict[str, str]]:
    """Org A, holding one object of every kind a path names, and the id of each by path parameter."""
    tenant = new_tenant(app, "Acme private org", "ID", rate_limit=1_000_000)
    return tenant, seed_every_kind(tenant, stack)
