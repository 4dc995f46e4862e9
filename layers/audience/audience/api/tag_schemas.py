"""Request and response models of tags and of tagging contacts."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from audience.api.schemas import Model, Strict
from audience.tags.models import Tag

TagName = Annotated[str, Field(min_length=1, max_length=64, description="1 to 64 printable characters")]
Color = Annotated[str, Field(pattern=r"^#[0-9a-fA-F]{6}$", description="`#rrggbb`")]
ContactIdIn = Annotated[str, Field(max_length=64)]


class CreateTagRequest(Strict):
    name: TagName
    description: str | None = Field(default=None, max_length=500)
    color: Color | None = None


class UpdateTagRequest(Strict):
    """Fields to change; a new `name` renames the tag on every contact (merging into an existing tag)."""

    name: TagName | None = None
    description: str | None = Field(default=None, max_length=500)
    color: Color | None = None

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class TagOut(Model):
    name: str
    description: str | None
    color: str | None
    registered: bool = Field(description="False for a tag that is on contacts without having been created")
    state: Literal["ready", "renaming", "deleting"] = Field(
        description="`renaming` or `deleting` while a background job changes the tag on its contacts"
    )
    renaming_to: str | None = Field(description="While `renaming`: the name the tag's contacts move to")
    renaming_from: str | None = Field(description="While `renaming`: the tag whose contacts merge into this one")
    job: str | None = Field(description="The background job while the tag is renamed or deleted")
    contact_count: int
    created_at: str | None
    updated_at: str | None

    @classmethod
    def of(cls, tag: Tag, count: int) -> TagOut:
        return cls(
            name=tag.name,
            description=tag.description,
            color=tag.color,
            registered=tag.registered,
            state=tag.state,  # type: ignore[arg-type]
            renaming_to=tag.renaming_to,
            renaming_from=tag.renaming_from,
            job=tag.job,
            contact_count=count,
            created_at=tag.created_at,
            updated_at=tag.updated_at,
        )


class TagList(Model):
    items: list[TagOut]


class TagContactsRequest(Strict):
    """Either up to 1,000 contact ids (changed now) or a segment (its members, changed in the background)."""

    contact_ids: list[ContactIdIn] | None = Field(default=None, min_length=1, max_length=1000)
    segment_id: str | None = Field(default=None, min_length=1, max_length=64)


class TagContactResult(Model):
    id: str
    result: Literal["changed", "unchanged", "not_found", "invalid", "conflict"]
    message: str | None = None


class TagContactsResult(Model):
    summary: dict[str, int]
    results: list[TagContactResult]


class TagJobOut(Model):
    job: str = Field(description="The background job's name")
    op: Literal["add", "remove"]
    tag: str
    segment_id: str


class ContactTagsRequest(Strict):
    tags: list[TagName] = Field(min_length=1, max_length=30)
