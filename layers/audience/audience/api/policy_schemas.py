"""Request and response models of the send policy routes."""

from __future__ import annotations

from pydantic import Field

from audience.api.schemas import Model, Strict
from audience.policies.frequency import MAX_LIMIT, MAX_WINDOW_SECONDS, MIN_LIMIT


class FrequencyCapIn(Strict):
    limit: int = Field(
        strict=True,
        ge=MIN_LIMIT,
        le=MAX_LIMIT,
        description="At most this many marketing messages per contact in the window",
    )
    window_hours: float = Field(
        strict=True,
        gt=0,
        le=MAX_WINDOW_SECONDS // 3600,
        description="The rolling window, in hours (at least one minute: 1/60; at most 720, 30 days)",
    )


class SendPolicyIn(Strict):
    frequency_cap: FrequencyCapIn | None = Field(
        description="A cap on the marketing messages each contact gets, or null for none (transactional "
        "messages are never capped)"
    )


class FrequencyCapOut(Model):
    limit: int
    window_hours: float


class SendPolicyOut(Model):
    frequency_cap: FrequencyCapOut | None
    updated_at: str | None = Field(default=None, description="When the policy was last set; null if never")
