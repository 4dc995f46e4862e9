"""Shared fixtures: the application's own stack, built from template.yaml, in process on moto."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

warnings.filterwarnings("ignore", message=".*httpx2.*")
# FastAPI wraps body parameters in Field(alias="body"); pydantic notes it when a deferred model builds,
# sometimes from a worker thread after pytest's own warning capture has ended.
warnings.filterwarnings("ignore", message="The 'alias' attribute with value 'body'")

from fastapi.testclient import TestClient  # noqa: E402

from devstack.testing import local_stack  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def stack() -> Iterator[object]:
    """The whole application provisioned from template.yaml on moto, functions in process."""
    with local_stack(str(ROOT / "template.yaml"), parameters={"Stage": "test"}) as running:
        from audience import container

        container.reset()
        yield running
        # Let background work a test started (segment jobs) finish inside its own stack; a test that
        # broke the stack has already failed, so a failure here is not reported twice.
        with contextlib.suppress(Exception):
            running.drain(timeout=60)
        container.reset()


@dataclass
class Tenant:
    org_id: str
    api_key: str
    client: TestClient

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


def _tenant(name: str, country: str) -> Tenant:
    from audience import admin
    from audience.api.app import create_app

    created = admin.create_org(name, default_country=country)
    client = TestClient(create_app(), headers={"Authorization": f"Bearer {created['api_key']}"})
    return Tenant(created["org_id"], created["api_key"], client)


@pytest.fixture
def org(stack: object) -> Tenant:
    """An org (default country ID) with a client that sends its API key."""
    return _tenant("Acme", "ID")


@pytest.fixture
def other_org(stack: object) -> Tenant:
    """A second, unrelated org."""
    return _tenant("Globex", "US")
