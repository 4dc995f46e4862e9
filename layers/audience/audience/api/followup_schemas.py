"""Request and response bodies of outbound messages, follow-ups and follow-up rules. The domain
(followups/rules.py, followups/service.py) checks them in depth and names the field at fault."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class TemplateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=512, description="An approved WhatsApp template")
    language: str = Field(default="en", max_length=16)
    body: list[str] = Field(default_factory=list, max_length=20, description="Values of its body placeholders")


class MessageContent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(default=None, max_length=4096, description="Free text (inside the 24-hour window)")
    template: TemplateIn | None = Field(default=None, description="A WhatsApp template (outside the window)")


class MessageIn(MessageContent):
    connection_id: str = Field(max_length=64, description="The connection to send through")


class MessageSent(BaseModel):
    id: str = Field(description="The provider's message id (statuses and replies refer to it)")
    contact_id: str
    channel: str
    connection_id: str
    kind: Literal["text", "template"]
    at: str
    follow_up_due_at: str | None = Field(
        default=None, description="When the first follow-up is due if the contact does not answer (rules on)"
    )


class FollowUpIn(MessageContent):
    connection_id: str = Field(max_length=64)
    at: str | None = Field(default=None, max_length=40, description="When: ISO 8601 with a zone")
    in_: int | Annotated[str, Field(max_length=16)] | None = Field(
        default=None, alias="in", description='Or after how long: seconds, or "90m", "24h", "2d" (at most 360 days)'
    )
    note: str | None = Field(default=None, max_length=500)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class FollowUpOut(BaseModel):
    id: str
    kind: Literal["requested", "idle"]
    channel: str
    connection_id: str | None = None
    status: str
    reason: str | None = None
    due_at: str | None = None
    due_in_seconds: int | None = None
    due_in: str | None = Field(default=None, description='"in 23 hours"')
    message: dict[str, Any] | None = None
    note: str | None = None
    message_id: str | None = None
    created_at: str | None = None
    step: int | None = Field(default=None, description="Idle follow-ups: the number of the next step")
    closing: bool | None = Field(default=None, description="Idle follow-ups: the next step closes the conversation")
    max_follow_ups: int | None = None
    after_message_id: str | None = Field(default=None, description="Idle follow-ups: the message they follow")
    last: dict[str, Any] | None = Field(default=None, description="Idle follow-ups: what the last step did")


class FollowUpList(BaseModel):
    items: list[FollowUpOut]


class BusinessHoursIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(
        default_factory=lambda: ["mon", "tue", "wed", "thu", "fri"], min_length=1, max_length=7
    )
    start: str = Field(max_length=5, description="Opens at (HH:MM, local time)")
    end: str = Field(max_length=5, description="Closes at (HH:MM, later than start)")
    timezone: str = Field(default="UTC", max_length=64, description="For contacts whose phone tells no zone")


class ClosingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resolve: bool = Field(default=True, description="Mark the conversation resolved")
    after_seconds: int | None = Field(
        default=None, ge=1, description="After the last follow-up (default: the last interval)"
    )
    message: MessageContent | None = Field(default=None, description="A closing or satisfaction message")


class FollowUpRulesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    idle_seconds: int = Field(default=3600, ge=1, description="Idle time after the last outbound message")
    intervals_seconds: list[int] = Field(
        default_factory=list, max_length=10, description="Between follow-ups (the last repeats)"
    )
    max_follow_ups: int = Field(default=3, ge=0, le=10)
    messages: list[MessageContent] = Field(default_factory=list, max_length=10, description="One per step")
    business_hours: BusinessHoursIn | None = None
    closing: ClosingIn = Field(default_factory=ClosingIn)


class FollowUpRulesOut(BaseModel):
    enabled: bool
    idle_seconds: int
    intervals_seconds: list[int]
    max_follow_ups: int
    messages: list[dict[str, Any]]
    business_hours: dict[str, Any] | None = None
    closing: dict[str, Any]
    connection_id: str | None = None
    updated_at: str | None = None
