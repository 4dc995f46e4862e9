"""Tags: the org's tags with contact counts, create, edit, rename (merge), delete; tagging contacts in bulk,
by segment, or one contact at a time."""

from __future__ import annotations

from collections import Counter
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status

from audience import container
from audience.api.deps import ContactId, OrgId
from audience.api.schemas import ContactOut
from audience.api.tag_schemas import (
    ContactTagsRequest,
    CreateTagRequest,
    TagContactResult,
    TagContactsRequest,
    TagContactsResult,
    TagJobOut,
    TagList,
    TagOut,
    UpdateTagRequest,
)
from audience.errors import ValidationError
from audience.tags.service import RESULTS, check_name


def tag_name(name: Annotated[str, Path(max_length=64, description="The tag's name, URL-encoded")]) -> str:
    """A tag name from the path, under the rules of contacts' tags (422 naming `name` otherwise)."""
    return check_name(name)


TagName = Annotated[str, Depends(tag_name)]

# `{name:path}`: a tag name may hold "/" (sent as %2F); the routes' fixed suffixes keep them apart.
router = APIRouter(prefix="/orgs/{org_id}/tags", tags=["tags"])
contact_router = APIRouter(prefix="/orgs/{org_id}/contacts/{contact_id}/tags", tags=["tags"])


@router.get("", response_model=TagList, summary="List tags with their contact counts")
def list_tags(
    org_id: OrgId,
    q: Annotated[str | None, Query(min_length=1, max_length=64, description="Name prefix, any case")] = None,
) -> TagList:
    """Every created tag, and every tag that contacts have without it having been created (`registered`
    false), sorted by name, each with its number of contacts."""
    return TagList(items=[TagOut.of(t, n) for t, n in container.tag_service().list(org_id, q)])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=TagOut, summary="Create a tag")
def create_tag(org_id: OrgId, body: CreateTagRequest) -> TagOut:
    """409 when a tag of that name exists already. A tag that contacts have already can be created (its
    count is theirs). An org has at most 1,000 created tags."""
    return TagOut.of(*container.tag_service().create(org_id, body.model_dump()))


@router.post(
    "/{name:path}/contacts",
    response_model=TagContactsResult | TagJobOut,
    summary="Tag contacts, by ids or a segment's members",
    responses={202: {"model": TagJobOut, "description": "A segment's members are being tagged"}},
)
def tag_contacts(
    org_id: OrgId, name: TagName, body: TagContactsRequest, response: Response
) -> TagContactsResult | TagJobOut:
    """With `contact_ids` (up to 1,000): each contact is reported as changed, unchanged, not_found or
    invalid (it would exceed a contact's 30 tags). With `segment_id`: every member, in the background (202)."""
    return _change(org_id, name, body, response, add=True)


@router.post(
    "/{name:path}/contacts/remove",
    response_model=TagContactsResult | TagJobOut,
    summary="Untag contacts, by ids or a segment's members",
    responses={202: {"model": TagJobOut, "description": "The tag is being removed from a segment's members"}},
)
def untag_contacts(
    org_id: OrgId, name: TagName, body: TagContactsRequest, response: Response
) -> TagContactsResult | TagJobOut:
    """Like tagging: `contact_ids` now, with a result per contact, or a segment's members in the background."""
    return _change(org_id, name, body, response, add=False)


@router.get("/{name:path}", response_model=TagOut, summary="Get a tag")
def get_tag(org_id: OrgId, name: TagName) -> TagOut:
    return TagOut.of(*container.tag_service().get(org_id, name))


@router.patch("/{name:path}", response_model=TagOut, summary="Edit, rename or merge a tag")
def update_tag(org_id: OrgId, name: TagName, body: UpdateTagRequest) -> TagOut:
    """A new `name` renames the tag on every contact in the background, merging into the tag of that name if
    there is one; the answer is the tag under its new name, `renaming` until its contacts are done."""
    return TagOut.of(*container.tag_service().update(org_id, name, body.changes()))


@router.delete(
    "/{name:path}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a tag from the org and from every contact",
    responses={202: {"model": TagOut, "description": "The tag is being removed from its contacts"}},
)
def delete_tag(org_id: OrgId, name: TagName) -> Response:
    """204 when no contact has the tag. Otherwise 202 with the tag, `deleting` until a background job has
    removed it from every contact."""
    deleting = container.tag_service().delete(org_id, name)
    if deleting is None:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    return Response(
        TagOut.of(*deleting).model_dump_json(), status_code=status.HTTP_202_ACCEPTED, media_type="application/json"
    )


@contact_router.post("", response_model=ContactOut, summary="Add tags to a contact")
def add_contact_tags(org_id: OrgId, contact_id: ContactId, body: ContactTagsRequest) -> ContactOut:
    """The tags it has stay; 422 when the contact would have more than 30."""
    return ContactOut.of(container.tag_service().add_to_contact(org_id, contact_id, body.tags))


@contact_router.delete("/{name:path}", status_code=status.HTTP_204_NO_CONTENT, summary="Remove a tag from a contact")
def remove_contact_tag(org_id: OrgId, contact_id: ContactId, name: TagName) -> Response:
    """Idempotent: 204 also when the contact does not have the tag."""
    container.tag_service().remove_from_contact(org_id, contact_id, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _change(
    org_id: str, name: str, body: TagContactsRequest, response: Response, *, add: bool
) -> TagContactsResult | TagJobOut:
    if (body.contact_ids is None) == (body.segment_id is None):
        raise ValidationError.for_field("contact_ids", None, "send either contact_ids or segment_id")
    service = container.tag_service()
    if body.segment_id is not None:
        job = service.change_segment(org_id, name, body.segment_id, add=add)
        response.status_code = status.HTTP_202_ACCEPTED
        return TagJobOut(job=job["name"], op=job["op"], tag=job["tag"], segment_id=job["segment_id"])
    assert body.contact_ids is not None
    results = service.change_contacts(org_id, name, body.contact_ids, add=add)
    counts = Counter(r["result"] for r in results)
    return TagContactsResult(
        summary={r: counts.get(r, 0) for r in RESULTS},
        results=[TagContactResult(**r) for r in results],  # type: ignore[arg-type]
    )
