"""Request and response bodies of broadcasts. Templates are validated in depth by the domain
(broadcasts/models.py), which names the path of whatever is wrong."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ChannelName = Literal["whatsapp", "messenger", "instagram", "telegram", "email", "sms"]


class RateLimit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=100, ge=1, le=100_000)
    period_seconds: int = Field(default=60, ge=1, le=86_400)


class DestinationRateLimit(BaseModel):
    """At most `limit` sends of the broadcast to one address (phone, email, chat) in any `period_seconds`."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=5, ge=1, le=10_000)
    period_seconds: int = Field(default=600, ge=1, le=86_400)


class QuietHours(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: str = Field(max_length=5, description="No sends from this local time (HH:MM)...")
    end: str = Field(max_length=5, description="...until this one, the next day when earlier than start")
    timezone: str = Field(
        default="UTC", max_length=64, description="IANA zone of recipients whose phone does not tell theirs"
    )


class BroadcastFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    channels: list[dict[str, Any]] | None = Field(
        default=None,
        max_length=10,
        description="One template per channel: {channel, connection_id, and `whatsapp` {name, language, header, "
        "body, buttons}, `email` {subject, html, text} or `text` {text}}. WhatsApp parameters are sources "
        "{kind: contact_name|contact_first_name|contact_phone|contact_email|custom_field|property|static, value}; "
        "email and text use {{placeholders}} naming a property or contact.first_name, contact.name, "
        "contact.phone, contact.email, contact.fields.<field>.",
    )
    properties: list[dict[str, Any]] | None = Field(
        default=None, max_length=50, description="Values given per recipient: {name, default}"
    )
    segment_ids: list[str] | None = Field(default=None, max_length=20, description="Marketing: the audience's segments")
    audience_all: bool | None = Field(default=None, description="Marketing: send to every contact")
    rate_limit: RateLimit | None = Field(default=None, description="Transactional: sends allowed per period")
    destination_rate_limit: DestinationRateLimit | None = Field(
        default=None,
        description="Transactional: sends allowed to one destination address per period (default 5 per 600 s); "
        "over it a send is refused with 429 and Retry-After",
    )
    quiet_hours: QuietHours | None = Field(
        default=None,
        description="Marketing: hold each recipient's message while it is quiet hours in the recipient's time zone "
        "(from the phone's country and area)",
    )


class BroadcastIn(BroadcastFields):
    type: Literal["marketing", "transactional"]
    name: str = Field(min_length=1, max_length=200)
    channels: list[dict[str, Any]] = Field(max_length=10)


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: str | None = Field(default=None, max_length=40, description="ISO 8601 time with a zone; now when left out")


class SendIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contact_channel_id: str | None = Field(default=None, max_length=300, description="<channel>:<user id>")
    contact_id: str | None = Field(default=None, max_length=64)
    phone: str | None = Field(default=None, max_length=40)
    email: str | None = Field(default=None, max_length=320)
    name: str | None = Field(default=None, max_length=200)
    variables: dict[str, str] = Field(default_factory=dict, max_length=50)
    template_ids: list[ChannelName] | None = Field(default=None, max_length=10, description="Channels to send on")
    background: bool = False


class TestSendIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contact_channel_id: str | None = Field(default=None, max_length=300, description="<channel>:<user id>")
    phone: str | None = Field(default=None, max_length=40)
    email: str | None = Field(default=None, max_length=320)
    name: str | None = Field(default=None, max_length=200, description="Fills contact.name when no contact matches")
    variables: dict[str, str] = Field(default_factory=dict, max_length=50)
    template_ids: list[ChannelName] | None = Field(default=None, max_length=10, description="Channels to test")


class TestResult(BaseModel):
    channel: str
    status: str
    to: str | None = None
    provider_message_id: str | None = None
    error_code: str | None = None
    error_title: str | None = None
    reason: str | None = None


class TestSendOut(BaseModel):
    results: list[TestResult]


class Stats(BaseModel):
    total: int
    by_status: dict[str, int]
    sent: int
    delivered: int
    read: int
    failed: int
    skipped: int
    skipped_by_reason: dict[str, int] = Field(
        description="Skipped recipients by reason (`frequency_cap`, `unsubscribed`, `contact_deleted`, ...)"
    )
    cancelled: int
    possible_duplicates: int
    sent_pct: float
    delivered_pct: float
    read_pct: float
    failed_pct: float
    by_channel: dict[str, int]
    excluded: dict[str, int]


class BroadcastOut(BaseModel):
    id: str
    type: str
    name: str
    status: str
    version: int
    created_at: str
    updated_at: str
    segment_ids: list[str] | None = None
    audience_all: bool | None = None
    rate_limit: RateLimit | None = None
    destination_rate_limit: DestinationRateLimit | None = None
    quiet_hours: QuietHours | None = None
    property_values: dict[str, Any] | None = None
    scheduled_at: str | None = None
    sending_started_at: str | None = None
    finished_at: str | None = None
    cancelled_at: str | None = None
    error: str | None = None
    channels: list[dict[str, Any]] | None = None
    properties: list[dict[str, Any]] | None = None
    stats: Stats | None = None


class BroadcastList(BaseModel):
    items: list[BroadcastOut]
    next_cursor: str | None = None


class RecipientOut(BaseModel):
    id: str
    broadcast_id: str
    contact_id: str
    channel: str
    status: str
    provider_message_id: str | None = None
    error_code: str | None = None
    error_title: str | None = None
    reason: str | None = None
    planned_at: str | None = None
    sending_at: str | None = None
    sent_at: str | None = None
    delivered_at: str | None = None
    read_at: str | None = None
    failed_at: str | None = None
    skipped_at: str | None = None
    cancelled_at: str | None = None
    attempts: int | None = None
    possible_duplicate: bool | None = None


class RecipientPage(BaseModel):
    items: list[RecipientOut]
    next_cursor: str | None = None


class SendOut(BaseModel):
    send_id: str
    contact_id: str
    recipients: list[RecipientOut]


class ValuesError(BaseModel):
    row: int
    column: str
    value: str
    message: str


class PropertyValuesOut(BaseModel):
    dry_run: bool
    key: str
    columns: dict[str, str] = Field(description="File column → property")
    ignored_columns: list[str]
    rows: int
    matched: int
    unmatched: int
    invalid: int
    duplicates: int
    errors: list[ValuesError]
