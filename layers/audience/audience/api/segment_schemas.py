"""Request and response models of segments, segment membership and events."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from audience.api.schemas import ContactOut, Model, Strict
from audience.segments.models import Segment

Rules = dict[str, Any]
RULES_DOC = "A rule tree (docs/segments.md): groups of attribute and event clauses joined by all/any"


class CreateSegmentRequest(Strict):
    name: str = Field(min_length=1, max_length=200)
    type: Literal["static", "dynamic"]
    description: str | None = Field(default=None, max_length=2000)
    rules: Rules | None = Field(default=None, description=RULES_DOC)
    timezone: str | None = Field(default=None, max_length=64, description="IANA zone for relative dates; UTC")


class UpdateSegmentRequest(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    rules: Rules | None = Field(default=None, description=RULES_DOC)
    timezone: str | None = Field(default=None, max_length=64)

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class DuplicateSegmentRequest(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)


class BroadcastRef(Model):
    id: str
    name: str
    status: str


class SegmentOut(Model):
    id: str
    name: str
    description: str | None
    type: Literal["static", "dynamic"]
    predefined: str | None = Field(description="`active` or `inactive` for the predefined segments")
    state: Literal["ready", "building"] = Field(description="`building` while members are being computed")
    rules: Rules | None
    timezone: str
    contact_count: int
    broadcast_count: int = Field(description="Scheduled or sending broadcasts that target the segment")
    broadcasts: list[BroadcastRef]
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, segment: Segment, count: int) -> SegmentOut:
        refs = [
            BroadcastRef(id=b, name=i.get("name", ""), status=i.get("status", "")) for b, i in segment.locks.items()
        ]
        return cls(
            id=segment.id,
            name=segment.name,
            description=segment.description,
            type=segment.type,  # type: ignore[arg-type]
            predefined=segment.predefined,
            state=segment.state,  # type: ignore[arg-type]
            rules=segment.rules,
            timezone=segment.timezone,
            contact_count=count,
            broadcast_count=len(refs),
            broadcasts=refs,
            created_at=segment.created_at,
            updated_at=segment.updated_at,
        )


class SegmentList(Model):
    items: list[SegmentOut]


class PreviewRequest(Strict):
    rules: Rules = Field(description=RULES_DOC)
    timezone: str | None = Field(default=None, max_length=64)
    take: int = Field(default=25, ge=0, le=100)


class PreviewOut(Model):
    count: int
    exact: bool = Field(description="False when the org has more contacts than a preview evaluates (10,000)")
    evaluated: int
    contacts: list[ContactOut]


class MembersRequest(Strict):
    contact_ids: list[str] = Field(min_length=1, max_length=1000)


class MembersResult(Model):
    changed: int
    unchanged: int
    not_found: list[str]


class ContactSegmentOut(Model):
    id: str
    name: str
    type: Literal["static", "dynamic"]
    source: Literal["client", "rules"]


class ContactSegments(Model):
    items: list[ContactSegmentOut]


class RecordEventsRequest(Strict):
    events: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=100,
        description="Each: contact_id, phone or email; name; at (ISO 8601, default now); properties; id (dedupe)",
    )


class EventResult(Model):
    index: int
    result: Literal["recorded", "duplicate", "invalid", "not_found"]
    contact_id: str | None = None
    message: str | None = None
    errors: list[dict[str, Any]] | None = None


class RecordEventsResponse(Model):
    summary: dict[str, int]
    results: list[EventResult]
