"""Webhook endpoints, deliveries and their attempts."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

DeliveryState = Literal["pending", "delivered", "failed"]

MAX_ENDPOINTS_PER_ORG = 20
MAX_DESCRIPTION = 500
MAX_EVENT_TYPES = 50
ALL_EVENTS = "*"


@dataclass(slots=True)
class Endpoint:
    id: str
    org_id: str
    url: str
    event_types: list[str]
    description: str
    enabled: bool
    created_at: str
    updated_at: str
    disabled_reason: str | None = None
    disabled_at: str | None = None
    # When deliveries started failing without a success since (cleared by the next success).
    failing_since: str | None = None
    # Bumped by each rotation, so a delivery worker's cached secret is read again.
    secret_version: int = 1
    # Until then (24 h after a rotation) attempts are signed with the previous secret too (a second v1=).
    previous_secret_until: str | None = None

    def subscribes(self, event_type: str) -> bool:
        return ALL_EVENTS in self.event_types or event_type in self.event_types

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class Attempt:
    series: int
    number: int
    at: str
    duration_ms: int
    status_code: int | None = None
    error: str | None = None


@dataclass(slots=True)
class Delivery:
    id: str
    org_id: str
    endpoint_id: str
    event_id: str
    event_type: str
    body: str  # the exact JSON posted, so every attempt and redelivery sends the same bytes
    state: DeliveryState
    created_at: str
    series: int = 1  # one per redelivery
    next_attempt: int = 1  # number of the next attempt in the series
    enqueued_through: int = 0  # the highest attempt number a queue message was sent for
    series_started_at: str = ""
    next_attempt_at: str | None = None
    delivered_at: str | None = None
    failed_at: str | None = None
    failure_reason: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    lease_owner: str | None = None
    lease_until: int | None = None  # epoch milliseconds

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("lease_owner")
        data.pop("lease_until")
        data.pop("enqueued_through")
        data.pop("body")
        data["attempt_count"] = len(self.attempts)
        last = self.attempts[-1] if self.attempts else None
        data["last_status_code"] = last.status_code if last else None
        data["last_error"] = last.error if last else None
        return data
