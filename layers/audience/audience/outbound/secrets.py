"""Signing secrets of webhook endpoints, in AWS Secrets Manager only: one secret per endpoint, named
`audience/{stage}/webhook-endpoints/{endpoint_id}` (IAM grants that prefix). The secret is shown once, when
it is created or rotated; the table records only its version."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from audience import aws, ids
from audience.errors import NotFoundError

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
_CACHE_SECONDS = 300


def secret_name(stage: str, endpoint_id: str) -> str:
    return f"audience/{stage}/webhook-endpoints/{endpoint_id}"


def new_secret() -> str:
    """`whsec_` and 40 base32 characters (200 bits) from the OS CSPRNG."""
    return SECRET_PREFIX + ids.random_token(40)


class EndpointSecrets:
    def __init__(self, stage: str) -> None:
        self._stage = stage
        # (endpoint id, version) -> (secret, read at): a worker reads a secret once per version and 5 minutes.
        self._cache: dict[tuple[str, int], tuple[str, float]] = {}

    @property
    def _client(self) -> Any:
        return aws.client("secretsmanager")

    def put(self, endpoint_id: str, secret: str) -> None:
        name = secret_name(self._stage, endpoint_id)
        try:
            self._client.put_secret_value(SecretId=name, SecretString=secret)
        except self._client.exceptions.ResourceNotFoundException:
            self._client.create_secret(Name=name, SecretString=secret, Description="Audience webhook signing secret")

    def get(self, endpoint_id: str, version: int) -> str:
        cached = self._cache.get((endpoint_id, version))
        if cached and time.monotonic() - cached[1] < _CACHE_SECONDS:
            return cached[0]
        try:
            secret = self._client.get_secret_value(SecretId=secret_name(self._stage, endpoint_id))["SecretString"]
        except (self._client.exceptions.ResourceNotFoundException, self._client.exceptions.InvalidRequestException):
            raise NotFoundError(f"the signing secret of webhook endpoint {endpoint_id} is missing") from None
        self._cache[(endpoint_id, version)] = (str(secret), time.monotonic())
        return str(secret)

    def previous(self, endpoint_id: str, version: int) -> str | None:
        """The secret before the last rotation (Secrets Manager keeps it as the AWSPREVIOUS version), or None."""
        key = (f"{endpoint_id}#previous", version)
        cached = self._cache.get(key)
        if cached and time.monotonic() - cached[1] < _CACHE_SECONDS:
            return cached[0] or None
        try:
            answer = self._client.get_secret_value(
                SecretId=secret_name(self._stage, endpoint_id), VersionStage="AWSPREVIOUS"
            )
            secret = str(answer["SecretString"])
        except (self._client.exceptions.ResourceNotFoundException, self._client.exceptions.InvalidRequestException):
            secret = ""
        self._cache[key] = (secret, time.monotonic())
        return secret or None

    def delete(self, endpoint_id: str) -> None:
        with contextlib.suppress(self._client.exceptions.ResourceNotFoundException):
            self._client.delete_secret(SecretId=secret_name(self._stage, endpoint_id), RecoveryWindowInDays=7)
