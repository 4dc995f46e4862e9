"""Request and response bodies of outbound webhook endpoints and their deliveries. The domain
(outbound/service.py) checks URLs and event types in depth and names the field at fault."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from audience.outbound.addresses import MAX_URL_LENGTH
from audience.outbound.models import MAX_DESCRIPTION, MAX_EVENT_TYPES

EventTypes = Literal["*"] | list[str]


class WebhookEndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=MAX_URL_LENGTH, description="Where events are POSTed: an https URL of a public host")
    event_types: EventTypes = Field(
        default="*", description='"*" for every event type, or a list of them (e.g. ["contact.created"])'
    )
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION)
    enabled: bool = True


class WebhookEndpointPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, max_length=MAX_URL_LENGTH)
    event_types: EventTypes | None = Field(default=None)
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION)
    enabled: bool | None = Field(default=None, description="true re-enables a disabled endpoint (clearing its reason)")


class WebhookEndpointOut(BaseModel):
    id: str
    url: str
    event_types: list[str] = Field(max_length=MAX_EVENT_TYPES)
    description: str
    enabled: bool
    disabled_reason: str | None = None
    disabled_at: str | None = None
    failing_since: str | None = Field(default=None, description="Deliveries have failed since then with no success")
    created_at: str
    updated_at: str


class WebhookEndpointCreated(WebhookEndpointOut):
    secret: str = Field(description="The signing secret (`whsec_...`); shown only now, keep it safe")


class WebhookEndpointList(BaseModel):
    items: list[WebhookEndpointOut]


class WebhookSecretOut(BaseModel):
    id: str
    secret: str = Field(description="The new signing secret; it signs from the next attempt on")


class AttemptOut(BaseModel):
    series: int = Field(description="1, then one more per redelivery")
    number: int = Field(description="The attempt's number in its series (the Audience-Attempt header)")
    at: str
    duration_ms: int
    status_code: int | None = None
    error: str | None = None


class DeliveryOut(BaseModel):
    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    state: Literal["pending", "delivered", "failed"]
    series: int
    attempt_count: int
    created_at: str
    next_attempt_at: str | None = None
    delivered_at: str | None = None
    failed_at: str | None = None
    failure_reason: str | None = None
    last_status_code: int | None = None
    last_error: str | None = None


class DeliveryDetail(DeliveryOut):
    attempts: list[AttemptOut]
    event: dict[str, object] = Field(description="The envelope posted (the body of every attempt)")


class DeliveryList(BaseModel):
    items: list[DeliveryOut]
    next_before: str | None = Field(description="Pass as `before` to get the next page; null on the last page")


class TestSent(BaseModel):
    delivery_id: str
    event_id: str
