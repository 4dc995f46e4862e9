"""A connection's secrets in AWS Secrets Manager: one secret per connection, a JSON object of named values.

Secret values never go to the table or to a response; the table only records which names are set.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from audience import aws
from audience.channels.keys import secret_name
from audience.errors import NotFoundError


class SecretStore:
    def __init__(self, stage: str) -> None:
        self._stage = stage

    @property
    def _client(self) -> Any:
        return aws.client("secretsmanager")

    def name(self, connection_id: str) -> str:
        return secret_name(self._stage, connection_id)

    def get(self, connection_id: str) -> dict[str, str]:
        try:
            raw = self._client.get_secret_value(SecretId=self.name(connection_id))["SecretString"]
        except (self._client.exceptions.ResourceNotFoundException, self._client.exceptions.InvalidRequestException):
            # None, or scheduled for deletion with its connection.
            raise NotFoundError(f"the secrets of connection {connection_id} are missing") from None
        return dict(json.loads(raw))

    def put(
        self, connection_id: str, values: dict[str, str], *, merge: bool, remove: tuple[str, ...] = ()
    ) -> dict[str, str]:
        """Store `values` (merged into what is there when `merge`), without the names in `remove`;
        returns everything now stored."""
        name = self.name(connection_id)
        current: dict[str, str] = {}
        if merge:
            try:
                current = self.get(connection_id)
            except NotFoundError:
                current = {}
        stored = {k: v for k, v in {**current, **values}.items() if k not in remove}
        body = json.dumps(stored, separators=(",", ":"), sort_keys=True)
        try:
            self._client.put_secret_value(SecretId=name, SecretString=body)
        except self._client.exceptions.ResourceNotFoundException:
            self._client.create_secret(Name=name, SecretString=body, Description="Audience channel connection secrets")
        return stored

    def delete(self, connection_id: str) -> None:
        with contextlib.suppress(self._client.exceptions.ResourceNotFoundException):
            self._client.delete_secret(SecretId=self.name(connection_id), RecoveryWindowInDays=7)
