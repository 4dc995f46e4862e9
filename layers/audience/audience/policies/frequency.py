"""Frequency caps: at most `limit` marketing messages per contact in a rolling window, per org.

The org's cap is part of its send policy (orgs table, `#SENDPOLICY`); an org without one is not capped.
What a contact was sent is one item per org and contact in the broadcasts table (`O#{org}#FC#{contact}`,
`#FC`; key design in audience/broadcasts/keys.py): `takes`, a map of take key → epoch seconds. A take
reads the item, drops the entries older than the window, and writes it back conditioned on the `version`
it read (read again and retried when another sender wrote first). Takes are idempotent per key, so a
redelivered batch or a retried task never counts one message twice; a release forgets a take whose
message did not go out. The item expires (TTL `expires_at`) once its newest take has left the window.

Transactional messages are never capped: only marketing senders take.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from audience import aws
from audience.broadcasts import keys
from audience.contacts.repository import deserialize, serialize
from audience.errors import ConcurrentUpdateError, ValidationError
from audience.orgs.repository import OrgsRepository

logger = Logger(child=True)

MIN_LIMIT, MAX_LIMIT = 1, 100
MIN_WINDOW_SECONDS, MAX_WINDOW_SECONDS = 60, 30 * 86400
# How long an org's policy is used before it is read again (a change made elsewhere applies within this).
POLICY_SECONDS = 30.0
WRITE_ATTEMPTS = 5


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class FrequencyCap:
    """At most `limit` marketing messages per contact in any `window_seconds`."""

    limit: int
    window_seconds: int

    def __post_init__(self) -> None:
        if not _whole(self.limit) or not MIN_LIMIT <= self.limit <= MAX_LIMIT:
            raise ValidationError.for_field(
                "frequency_cap.limit", self.limit, f"must be a whole number from {MIN_LIMIT} to {MAX_LIMIT}"
            )
        if not _whole(self.window_seconds) or not MIN_WINDOW_SECONDS <= self.window_seconds <= MAX_WINDOW_SECONDS:
            raise ValidationError.for_field(
                "frequency_cap.window_seconds",
                self.window_seconds,
                f"must be a whole number of seconds from {MIN_WINDOW_SECONDS} (1 minute) to "
                f"{MAX_WINDOW_SECONDS} (30 days)",
            )

    @classmethod
    def of_hours(cls, limit: int, window_hours: float) -> FrequencyCap:
        """`limit` messages per `window_hours` hours (from 1 minute to 720 hours, to the second)."""
        number = isinstance(window_hours, int | float) and not isinstance(window_hours, bool)
        seconds = round(window_hours * 3600) if number and math.isfinite(window_hours) else None
        if seconds is None or not MIN_WINDOW_SECONDS <= seconds <= MAX_WINDOW_SECONDS:
            raise ValidationError.for_field(
                "frequency_cap.window_hours",
                window_hours,
                f"must be a number of hours from 1/60 (1 minute) to {MAX_WINDOW_SECONDS // 3600} (30 days)",
            )
        return cls(limit, seconds)

    @classmethod
    def stored(cls, data: dict[str, Any] | None) -> FrequencyCap | None:
        """The cap a send policy holds (`{"limit", "window_seconds"}`), or None."""
        return cls(int(data["limit"]), int(data["window_seconds"])) if data else None

    @property
    def window_hours(self) -> float:
        return self.window_seconds / 3600

    def as_dict(self) -> dict[str, int]:
        return {"limit": self.limit, "window_seconds": self.window_seconds}


class FrequencyCaps:
    """Each org's frequency cap, enforced per contact: `take` before a marketing message goes, `release`
    when it did not go after all."""

    def __init__(self, table_name: str, orgs: OrgsRepository, *, now: Callable[[], float] = time.time) -> None:
        self._takes = TakesRepository(table_name)
        self._orgs = orgs
        self._now = now
        self._policies: dict[str, tuple[float, FrequencyCap | None]] = {}  # org → (read at, monotonic; cap)

    def policy(self, org_id: str) -> FrequencyCap | None:
        """The org's cap (None: not capped), read again once POLICY_SECONDS have passed or `forget` was
        called for the org (a change made through this process)."""
        cached = self._policies.get(org_id)
        if cached is not None and time.monotonic() - cached[0] < POLICY_SECONDS:
            return cached[1]
        cap = FrequencyCap.stored(self._orgs.get_send_policy(org_id)["frequency_cap"])
        self._policies[org_id] = (time.monotonic(), cap)
        return cap

    def forget(self, org_id: str) -> None:
        """Read the org's policy again on its next use (it was just changed)."""
        self._policies.pop(org_id, None)

    def take(self, org_id: str, contact_id: str, key: str) -> bool:
        """Whether a marketing message to the contact may go now under the org's cap (always, when the org
        has none), recording it under `key`; False when the contact already had `limit` messages in the
        window. A key taken before answers True without counting again (a redelivery, a retry).
        ConcurrentUpdateError when other senders kept writing the contact's item first."""
        cap = self.policy(org_id)
        if cap is None:
            return True
        for _ in range(WRITE_ATTEMPTS):
            moment = self._now()
            takes, version = self._takes.read(org_id, contact_id)
            if key in takes:
                return True
            live = {k: at for k, at in takes.items() if at > moment - cap.window_seconds}
            if len(live) >= cap.limit:
                return False
            # Whole seconds, rounded up: a take is never counted for less than the window.
            at = math.ceil(moment)
            live[key] = at
            if self._takes.write(org_id, contact_id, live, version=version, expires_at=at + cap.window_seconds):
                return True
        raise ConcurrentUpdateError(
            f"the frequency cap of contact {contact_id} was written {WRITE_ATTEMPTS} times by others meanwhile"
        )

    def release(self, org_id: str, contact_id: str, key: str) -> None:
        """Forget the take `key` (its message did not go out), if it is there. Best effort: an org without
        a cap now is left alone, and a failure is logged, not raised (the take then counts until it leaves
        the window)."""
        if self.policy(org_id) is None:
            return
        try:
            self._takes.forget(org_id, contact_id, key)
        except ClientError as error:
            logger.warning(
                "a frequency cap take was not released",
                extra={"org_id": org_id, "contact_id": contact_id, "key": key, "error": str(error)},
            )


class TakesRepository:
    """The contacts' frequency cap items in the broadcasts table."""

    def __init__(self, table_name: str) -> None:
        self._table_name = table_name

    @property
    def _client(self) -> Any:
        return aws.client("dynamodb")

    def _key(self, org_id: str, contact_id: str) -> dict[str, Any]:
        return serialize({"pk": keys.frequency_pk(org_id, contact_id), "sk": keys.FREQUENCY_SK})

    def read(self, org_id: str, contact_id: str) -> tuple[dict[str, int], int]:
        """The contact's takes (key → epoch seconds) and the item's version (0: no item)."""
        response = self._client.get_item(
            TableName=self._table_name, Key=self._key(org_id, contact_id), ConsistentRead=True
        )
        item = deserialize(response["Item"]) if "Item" in response else {}
        return {k: int(v) for k, v in (item.get("takes") or {}).items()}, int(item.get("version", 0))

    def write(self, org_id: str, contact_id: str, takes: dict[str, int], *, version: int, expires_at: int) -> bool:
        """Replace the contact's takes if its item is still at `version`; False when another writer came
        first."""
        item = {
            "pk": keys.frequency_pk(org_id, contact_id),
            "sk": keys.FREQUENCY_SK,
            "takes": takes,
            "version": version + 1,
            "expires_at": expires_at,
        }
        condition: dict[str, Any] = (
            {"ConditionExpression": "attribute_not_exists(pk)"}
            if version == 0
            else {"ConditionExpression": "version = :v", "ExpressionAttributeValues": serialize({":v": version})}
        )
        try:
            self._client.put_item(TableName=self._table_name, Item=serialize(item), **condition)
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def forget(self, org_id: str, contact_id: str, key: str) -> None:
        """Remove the take `key`, if it is there (a new version, so a take in flight reads again)."""
        try:
            self._client.update_item(
                TableName=self._table_name,
                Key=self._key(org_id, contact_id),
                UpdateExpression="REMOVE takes.#k ADD version :one",
                ConditionExpression="attribute_exists(takes.#k)",
                ExpressionAttributeNames={"#k": key},
                ExpressionAttributeValues=serialize({":one": 1}),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
