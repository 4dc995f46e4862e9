"""Request and response bodies of channel connections, inbound settings and conversation logs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from audience.channels.models import Connection

Platform = Literal["whatsapp", "messenger", "instagram", "telegram", "ses", "sms", "custom", "webchat", "sandbox"]
Setting = str | int | list[str]


class ConnectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    platform: Platform
    name: str = Field(min_length=1, max_length=100)
    settings: dict[str, Setting] = Field(
        default_factory=dict,
        max_length=20,
        description="Account settings of the platform (not secret): whatsapp `phone_number_id`, "
        "`business_account_id`, `display_phone_number`; messenger `page_id`; instagram `instagram_account_id`; "
        "telegram `bot_username`; ses `identity`, `configuration_set`, `topic_arns`; sms `origination_number`, "
        "`topic_arns`; sandbox `channel` (the channel it plays). Platforms that send also take "
        "`messages_per_second` (1-1000; defaults: whatsapp 80, messenger 40, instagram 20, telegram 30, ses 14, "
        "sms 1, sandbox 80) and `daily_limit` (a daily cap on messages).",
    )
    secrets: dict[str, str] = Field(
        default_factory=dict,
        max_length=10,
        description="Stored in AWS Secrets Manager and never returned: whatsapp, messenger and instagram "
        "`app_secret`, `verify_token`, `access_token`; telegram `bot_token`; custom, webchat and sandbox "
        "`signing_secret`.",
    )


class ConnectionPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=100)
    settings: dict[str, Setting] | None = Field(default=None, max_length=20)
    secrets: dict[str, str] | None = Field(default=None, max_length=10, description="Secrets to replace (rotate)")


class ConnectionOut(BaseModel):
    id: str
    platform: Platform
    channel: str
    name: str
    settings: dict[str, Any]
    secrets_set: list[str] = Field(description="Names of the secrets stored; their values are never returned")
    webhook_url: str = Field(description="Where the platform sends this connection's webhooks")
    telegram_webhook: dict[str, Any] | None = None
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, connection: Connection, base_url: str) -> ConnectionOut:
        return cls(
            id=connection.id,
            platform=connection.platform,  # type: ignore[arg-type]
            channel=connection.channel,
            name=connection.name,
            settings=connection.settings,
            secrets_set=list(connection.secret_names),
            webhook_url=f"{base_url.rstrip('/')}/webhooks/{connection.id}",
            telegram_webhook=connection.telegram_webhook,
            created_at=connection.created_at,
            updated_at=connection.updated_at,
        )


class ConnectionList(BaseModel):
    items: list[ConnectionOut]


class NameCaptureSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="Capture names people share in messages (and profile names)")
    phrases: dict[str, list[str]] = Field(
        default_factory=dict,
        max_length=10,
        description='The org\'s own phrases per language code ("en": ["they call me"]): literal words, not '
        "patterns; at most 20 a language, each 1 to 5 words of letters and at most 40 characters",
    )
    replace_defaults: bool = Field(
        default=False, description="The phrases of each language listed replace that language's defaults"
    )
    stop_words: dict[str, list[str]] = Field(
        default_factory=dict,
        max_length=10,
        description="Words that are never a name, per language code, added to the defaults (at most 100 a language)",
    )


class NameCaptureOut(NameCaptureSettings):
    default_phrases: dict[str, list[str]]


class InboundSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    opt_out_keywords: list[str] | None = Field(
        default=None,
        max_length=50,
        description="Extra opt-out keywords (any language), besides STOP, STOPALL, UNSUBSCRIBE, CANCEL, END and QUIT",
    )
    opt_in_keywords: list[str] | None = Field(
        default=None, max_length=50, description="Extra opt-in keywords, besides START and UNSTOP"
    )
    name_capture: NameCaptureSettings | None = Field(
        default=None, description="How names people share in messages are captured (replaced whole when given)"
    )


class InboundSettingsOut(BaseModel):
    opt_out_keywords: list[str]
    opt_in_keywords: list[str]
    default_opt_out_keywords: list[str]
    default_opt_in_keywords: list[str]
    name_capture: NameCaptureOut
    updated_at: str | None = None


class MessageOut(BaseModel):
    id: str = Field(description="The platform's message id")
    channel: str
    direction: Literal["inbound", "outbound"]
    connection_id: str
    at: str
    kind: str
    text: str | None = None
    media: dict[str, Any] | None = None
    referral: dict[str, Any] | None = None
    reply_to: str | None = None
    status: str | None = Field(default=None, description="sent, delivered, read or failed (outbound messages)")
    error_code: str | None = None


class MessagePage(BaseModel):
    items: list[MessageOut]
    next_cursor: str | None = None


class ConversationOut(BaseModel):
    channel: str
    connection_id: str | None = None
    last_inbound_at: str | None = None
    window_expires_at: str | None = Field(default=None, description="End of the 24-hour service window")
    window_open: bool
    inbound_count: int = 0
    outbound_count: int = 0
    last_outbound_at: str | None = None
    status: str = Field(default="open", description="open, or resolved by the closing step of follow-ups")
    resolved_at: str | None = None
    follow_up_state: str | None = Field(
        default=None, description="The idle timer: waiting, replied, opted_out, cancelled, closed or disabled"
    )


class ConversationList(BaseModel):
    items: list[ConversationOut]


class SandboxMessage(BaseModel):
    id: str
    at: str
    channel: str
    to: str
    kind: str
    fate: str = Field(description="What the sandbox does with it: failed, delivered or read")
    text: str | None = None
    template: dict[str, Any] | None = None
    subject: str | None = None
    from_: str | None = Field(default=None, alias="from")
    unsubscribe_url: str | None = None


class SandboxMessages(BaseModel):
    items: list[SandboxMessage]


class NewContactRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tags: list[str] = Field(default_factory=list, max_length=10, description="Tags a new contact is created with")
    segments: list[str] = Field(
        default_factory=list, max_length=20, description="Static segments of the org a new contact is added to"
    )


class AutoReplyRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    allow_segments: list[str] = Field(
        default_factory=list,
        max_length=20,
        description="When any: automatic replies go only to contacts in one of these segments (any kind)",
    )
    deny_segments: list[str] = Field(
        default_factory=list, max_length=20, description="No automatic reply to contacts in any of these segments"
    )


class InboundRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    on_new_contact: NewContactRules = Field(
        default_factory=NewContactRules, description="Applied when a message on this connection creates a contact"
    )
    auto_reply: AutoReplyRules = Field(
        default_factory=AutoReplyRules, description="Who automatic replies on this connection may go to"
    )


class InboundRulesOut(InboundRules):
    updated_at: str


class AutoReplyCheck(BaseModel):
    allowed: bool
    reason: Literal["allowed", "blocked", "do_not_contact", "denied_segment", "not_in_allowed_segments"]
    detail: str
    contact_id: str
    segment_id: str | None = Field(default=None, description="The segment that decided, if one did")
