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
def regional_client(service: str, region: str) -> Any:
    """A shared client for another region (an SNS topic's own region, for instance)."""
    return _session().client(service, region_name=region, config=_CONFIG)


@cache
def table(name: str) -> Any:
    """A DynamoDB Table resource for `name`."""
    return _session().resource("dynamodb", config=_CONFIG).Table(name)


@cache
def signing_s3() -> Any:
    """An S3 client that signs with Signature Version 4, which presigned URLs and forms need (botocore
    still signs S3 URLs with v2 unless told); the shared session's, with that one setting changed."""
    return _session().client("s3", config=_CONFIG.merge(Config(signature_version="s3v4")))


def presigned_get(bucket: str, key: str, expires_in: int) -> str:
    """A presigned GET URL of an object, valid `expires_in` seconds (at most as long as the credentials
    that sign it: a Lambda role's session may end sooner)."""
    return str(
        signing_s3().generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_in)
    )


def reset() -> None:
    """Forget cached clients and the session (the local stack calls this when it swaps endpoints)."""
    client.cache_clear()
    regional_client.cache_clear()
    table.cache_clear()
    signing_s3.cache_clear()
    _session.cache_clear()
