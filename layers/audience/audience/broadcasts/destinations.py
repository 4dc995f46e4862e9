"""Per-destination limit of transactional sends: at most `limit` messages of one broadcast to one address
in any `period_seconds` (by default 5 in 10 minutes), so that a flood of one-time codes at one phone
number, inbox or chat is refused with 429 while everyone else's codes still go.

A destination is the address a message actually goes to, in one form per kind: a phone in E.164 (WhatsApp
and SMS to the same number share it), an email lower-cased, or `{channel}:{user id}` for the chat
channels. Each (org, broadcast, destination) has one item in the broadcasts table whose key holds a
SHA-256 digest of the three, never the address itself: `O#{org}#B#{id}#D#{digest}`, sk `#D`. The item is
a GCRA schedule (`tat`, the theoretical arrival time in epoch microseconds): every send moves it on by
`period / limit`, and a send is refused while that would put it more than a period ahead of now. This is
a rolling limit (no burst at a window's edge) kept by one conditional write per destination. The item
expires (TTL `expires_at`) once its schedule is in the past, when it means the same as no item.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from audience import aws
from audience.contacts.normalize import normalize_phone
from audience.contacts.repository import deserialize, serialize
from audience.errors import RateLimitedError, ValidationError

DEFAULT_LIMIT = 5
DEFAULT_PERIOD_SECONDS = 600
MAX_LIMIT = 10_000
MAX_PERIOD_SECONDS = 86_400
DESTINATION_SK = "#D"
PHONE_CHANNELS = ("whatsapp", "sms")
_MICRO = 1_000_000
ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class DestinationLimit:
    """At most `limit` sends of a broadcast to one destination in any `period_seconds`."""

    limit: int = DEFAULT_LIMIT
    period_seconds: int = DEFAULT_PERIOD_SECONDS

    @classmethod
    def parse(cls, value: Any) -> DestinationLimit:
        """The limit a broadcast's `destination_rate_limit` gives (the default when it is None)."""
        if value is None:
            return cls()
        if not isinstance(value, dict) or set(value) - {"limit", "period_seconds"}:
            raise ValidationError.for_field("destination_rate_limit", None, "must be {limit, period_seconds}")
        limit = value.get("limit", DEFAULT_LIMIT)
        period = value.get("period_seconds", DEFAULT_PERIOD_SECONDS)
        for name, number, high in (("limit", limit, MAX_LIMIT), ("period_seconds", period, MAX_PERIOD_SECONDS)):
            if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= high:
                raise ValidationError.for_field(
                    f"destination_rate_limit.{name}", number, f"must be a whole number from 1 to {high:,}"
                )
        return cls(int(limit), int(period))

    def as_dict(self) -> dict[str, int]:
        return {"limit": self.limit, "period_seconds": self.period_seconds}

    @property
    def interval_us(self) -> int:
        """How far one send moves the schedule on."""
        return math.ceil(self.period_seconds * _MICRO / self.limit)

    @property
    def tolerance_us(self) -> int:
        """How far ahead of now the schedule may be for one more send: `limit` sends fit in a period."""
        return self.period_seconds * _MICRO - self.interval_us


def destination(channel: str, to: str, country: str | None = None) -> str:
    """The destination a message on `channel` to `to` counts against. A WhatsApp id is always the
    international number's digits; an SMS phone as a caller wrote it is read in `country` when given (a
    national form counts as the E.164 number it is)."""
    if channel in PHONE_CHANNELS:
        if country and channel != "whatsapp":
            with contextlib.suppress(ValidationError):
                return normalize_phone(to, country).e164
        return "+" + "".join(ch for ch in to if ch.isdigit())
    if channel == "email":
        return to.strip().lower()
    return f"{channel}:{to}"


def destination_pk(org_id: str, broadcast_id: str, destination_value: str) -> str:
    digest = hashlib.sha256(f"{org_id}\n{broadcast_id}\n{destination_value}".encode()).hexdigest()
    return f"O#{org_id}#B#{broadcast_id}#D#{digest}"


@dataclass(frozen=True, slots=True)
class Taken:
    """The destinations one send was counted against (given back with `DestinationLimits.release`)."""

    pks: tuple[str, ...]
    limit: DestinationLimit


class DestinationLimits:
    """The per-destination schedules in the broadcasts table."""

    def __init__(self, table_name: str) -> None:
        self._table_name = table_name

    @property
    def _client(self) -> Any:
        return aws.client("dynamodb")

    def take(
        self,
        org_id: str,
        broadcast_id: str,
        destinations: Iterable[str],
        limit: DestinationLimit,
        *,
        now: float | None = None,
    ) -> Taken:
        """Count one send against each destination (once each); RateLimitedError, with nothing counted,
        when any of them has had `limit` sends in the last period. Any other error counts nothing either."""
        now_us = int((time.time() if now is None else now) * _MICRO)
        pks = list(dict.fromkeys(destination_pk(org_id, broadcast_id, d) for d in destinations))
        taken: list[str] = []
        for pk in pks:
            try:
                wait_us = self._take_one(pk, limit, now_us)
            except BaseException:
                # A fault on one destination: the call fails, so the others it counted are given back.
                self.release(Taken(tuple(taken), limit))
                raise
            if wait_us is not None:
                self.release(Taken(tuple(taken), limit))
                retry_after = max(1, math.ceil(wait_us / _MICRO))
                raise RateLimitedError(
                    f"this broadcast sends at most {limit.limit} messages per {limit.period_seconds} s to one "
                    f"destination (destination_rate_limit); retry after {retry_after} s",
                    retry_after=retry_after,
                    limit=limit.limit,
                )
            taken.append(pk)
        return Taken(tuple(taken), limit)

    def release(self, taken: Taken) -> None:
        """Give back the sends `take` counted (the call was refused after all)."""
        for pk in taken.pks:
            try:
                self._client.update_item(
                    TableName=self._table_name,
                    Key=serialize({"pk": pk, "sk": DESTINATION_SK}),
                    UpdateExpression="SET tat = tat - :step",
                    ConditionExpression="attribute_exists(tat)",
                    ExpressionAttributeValues=serialize({":step": taken.limit.interval_us}),
                )
            except ClientError as error:
                if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise

    def _take_one(self, pk: str, limit: DestinationLimit, now_us: int) -> int | None:
        """None when the send was counted, else how long (µs) until one more fits."""
        step = limit.interval_us
        # The schedule never runs more than a period ahead, so the item means nothing after this.
        expires_at = math.ceil(now_us / _MICRO) + limit.period_seconds + 1
        key = serialize({"pk": pk, "sk": DESTINATION_SK})
        booked = 0
        for _ in range(ATTEMPTS):
            try:
                # Idle (or no item): the schedule starts again from now.
                self._client.update_item(
                    TableName=self._table_name,
                    Key=key,
                    UpdateExpression="SET tat = :next, expires_at = :exp",
                    ConditionExpression="attribute_not_exists(tat) OR tat <= :now",
                    ExpressionAttributeValues=serialize({":next": now_us + step, ":now": now_us, ":exp": expires_at}),
                )
                return None
            except ClientError as error:
                if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
            try:
                # Busy: one more fits while the schedule is at most the tolerance ahead of now.
                self._client.update_item(
                    TableName=self._table_name,
                    Key=key,
                    UpdateExpression="SET tat = tat + :step, expires_at = :exp",
                    ConditionExpression="tat > :now AND tat <= :latest",
                    ExpressionAttributeValues=serialize(
                        {":step": step, ":now": now_us, ":latest": now_us + limit.tolerance_us, ":exp": expires_at}
                    ),
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
                return None
            except ClientError as error:
                if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
                booked = int(deserialize(error.response.get("Item") or {}).get("tat", 0))
            if booked > now_us + limit.tolerance_us:
                return booked - limit.tolerance_us - now_us
            # The schedule went idle between the two writes (a release, or time): start again.
        return max(step, booked - limit.tolerance_us - now_us)
