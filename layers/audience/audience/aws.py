"""boto3 clients and resources, created lazily and once per execution environment."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=3, read_timeout=10)


@cache
def _session() -> boto3.session.Session:
    # One session per execution environment: creating one loads botocore's data loaders (~50 ms).
    return boto3.session.Session()


@cache
def client(service: str) -> Any:
    """A shared low-level client; boto3 honours AWS_ENDPOINT_URL, which is how the local stack plugs in."""
    return _session().client(service, config=_CONFIG)


@cache
def table(name: str) -> Any:
    """A DynamoDB Table resource for `name`."""
    return _session().resource("dynamodb", config=_CONFIG).Table(name)


def reset() -> None:
    """Forget cached clients and the session (the local stack calls this when it swaps endpoints)."""
    client.cache_clear()
    table.cache_clear()
    _session.cache_clear()
