"""Request and response models of the REST API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from audience.contacts import quality
from audience.contacts.models import Contact

Status = Literal["SUBSCRIBED", "UNSUBSCRIBED", "BLOCKED"]
ChannelName = Literal["whatsapp", "messenger", "instagram", "telegram", "webchat", "email", "sms", "custom"]


class Model(BaseModel):
    """Validators are built when a route first uses a model, not at import: a cold start builds only its own."""

    model_config = ConfigDict(defer_build=True)


class Strict(Model):
    """Unknown fields are an error, so a client can never set org ids, hashes or versions."""

    model_config = ConfigDict(extra="forbid", defer_build=True)


class ChannelIn(Strict):
    channel: ChannelName
    user_id: str = Field(min_length=1, max_length=256, description="The contact's id on that channel")


class ContactWrite(Strict):
    first_name: str | None = Field(default=None, max_length=200)
    last_name: str | None = Field(default=None, max_length=200)
    full_name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=254)
    phone: str | None = Field(default=None, max_length=32, description="Any format; stored in E.164")
    status: Status | None = None
    channels: list[ChannelIn] | None = Field(default=None, max_length=10)
    custom_fields: dict[str, Any] | None = Field(default=None, max_length=100)
    tags: list[str] | None = Field(default=None, max_length=30)

    def changes(self) -> dict[str, Any]:
        """The fields the client sent (PATCH semantics), as plain data for the service."""
        # Python mode: JSON mode would turn a non-finite number into null, which clears a field.
        return self.model_dump(exclude_unset=True)


class CreateContactRequest(ContactWrite):
    """A new contact: an email, a phone or a channel id is required."""

    segments: list[str] | None = Field(default=None, max_length=50, description="Static segments to add the contact to")

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True, exclude={"segments"})


class UpdateContactRequest(ContactWrite):
    """Fields to change; omitted fields stay, null clears a field, custom_fields merge (null removes one)."""


class IdentityOut(Model):
    type: str
    value: str


class QualityOut(Model):
    validation_score: int = Field(description="0-100: how well formed the contact's identifiers are")
    reachability: dict[str, int] = Field(description="0-100 per channel the contact has an address on")
    system_tags: list[str] = Field(description="Tags the system maintains from the scores, e.g. invalid_phone")
    phone_type: str | None = Field(description="mobile, fixed_line, fixed_line_or_mobile, voip...")


class EngagementOut(Model):
    messages_received_30d: int
    messages_read_30d: int
    messages_replied_30d: int
    broadcasts_received_30d: int
    messages_received_90d: int
    messages_read_90d: int
    messages_replied_90d: int
    broadcasts_received_90d: int
    broadcasts_received: int = Field(description="Broadcast messages delivered to the contact, in all")
    last_engaged_at: str | None = Field(description="The last time the contact read a message or wrote")


class ContactOut(Model):
    id: str
    first_name: str | None
    last_name: str | None
    full_name: str | None
    original_name: str | None = Field(
        default=None, description="The name the contact had before a name it shared in a message first replaced it"
    )
    email: str | None
    phone: str | None
    country: str | None
    status: Status
    channels: list[dict[str, str]]
    custom_fields: dict[str, Any]
    tags: list[str]
    identities: list[IdentityOut]
    quality: QualityOut
    engagement: EngagementOut
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, contact: Contact) -> ContactOut:
        return cls(
            id=contact.id,
            first_name=contact.first_name,
            last_name=contact.last_name,
            full_name=contact.display_name(),
            original_name=contact.original_name,
            email=contact.email,
            phone=contact.phone,
            country=contact.country,
            status=contact.status,  # type: ignore[arg-type]
            channels=contact.channels,
            custom_fields=contact.custom_fields,
            tags=contact.tags,
            identities=[IdentityOut(type=i.type, value=i.value) for i in contact.identities()],
            quality=QualityOut(
                validation_score=quality.validation_score(contact),
                reachability=quality.reachability(contact),
                system_tags=quality.system_tags(contact),
                phone_type=contact.phone_type if contact.phone else None,
            ),
            engagement=EngagementOut(**quality.engagement(contact)),
            created_at=contact.created_at,
            updated_at=contact.updated_at,
        )


class ContactPage(Model):
    items: list[ContactOut]
    next_cursor: str | None = Field(description="Pass as `cursor` to get the next page; null on the last page")


class ContactStats(Model):
    total: int
    subscribed: int
    unsubscribed: int
    blocked: int


class BulkCreateRequest(Strict):
    contacts: list[dict[str, Any]] = Field(min_length=1, max_length=1000)
    upsert: bool = False


class BulkItemResult(Model):
    index: int
    action: Literal["created", "updated", "unchanged", "invalid", "conflict"]
    contact_id: str | None = None
    message: str | None = None
    errors: list[dict[str, Any]] = []


class BulkCreateResponse(Model):
    dry_run: bool
    summary: dict[str, int]
    results: list[BulkItemResult]


class BulkDeleteRequest(Strict):
    ids: list[str] = Field(min_length=1, max_length=1000)


class BulkDeleteResponse(Model):
    summary: dict[str, int]
    results: list[dict[str, str]]


class MergeRequest(Strict):
    source_contact_ids: list[str] = Field(min_length=1, max_length=10)


class ActivityOut(Model):
    id: str
    type: str
    at: str
    data: dict[str, Any]


class ActivityPage(Model):
    items: list[ActivityOut]
    next_cursor: str | None


class CreateFieldRequest(Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
    type: Literal["string", "number", "boolean", "date", "datetime"]
    label: str | None = Field(default=None, max_length=200)


class FieldOut(Model):
    name: str
    type: str
    label: str
    created_at: str


class CreateApiKeyRequest(Strict):
    name: str = Field(min_length=1, max_length=100)
    rate_limit_per_minute: int | None = Field(default=None, ge=1, le=100_000)


class ApiKeyOut(Model):
    id: str
    name: str
    prefix: str
    rate_limit_per_minute: int | None
    created_at: str


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The secret; shown only in this response")


class OrgOut(Model):
    id: str
    name: str
    default_country: str
    created_at: str


class UpdateOrgRequest(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    default_country: str | None = Field(default=None, min_length=2, max_length=2)


class ErrorBody(Model):
    code: str
    message: str
    fields: list[dict[str, Any]] | None = None


class ErrorResponse(Model):
    error: ErrorBody
