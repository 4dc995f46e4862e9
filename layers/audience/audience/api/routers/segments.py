"""Segments: CRUD, preview, members, explain; and a contact's segments."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response, status

from audience import container
from audience.api.deps import ContactId, OrgId
from audience.api.schemas import ContactOut, ContactPage
from audience.api.segment_schemas import (
    ContactSegmentOut,
    ContactSegments,
    CreateSegmentRequest,
    DuplicateSegmentRequest,
    MembersRequest,
    MembersResult,
    PreviewOut,
    PreviewRequest,
    SegmentList,
    SegmentOut,
    UpdateSegmentRequest,
)
from audience.contacts.service import ListFilter
from audience.segments.service import check_segment_id


def segment_id(segment_id: Annotated[str, Path(max_length=64)]) -> str:
    return check_segment_id(segment_id)


SegmentId = Annotated[str, Depends(segment_id)]
Take = Annotated[int, Query(ge=1, le=100, description="Page size, at most 100")]
Cursor = Annotated[str | None, Query(max_length=2048, description="`next_cursor` of the previous page")]

router = APIRouter(prefix="/orgs/{org_id}/segments", tags=["segments"])
contact_router = APIRouter(prefix="/orgs/{org_id}/contacts/{contact_id}/segments", tags=["segments"])


@router.get("", response_model=SegmentList, summary="List segments with their contact counts")
def list_segments(org_id: OrgId) -> SegmentList:
    """Every segment of the org, the predefined Active and Inactive first, with maintained counts."""
    return SegmentList(items=[SegmentOut.of(s, n) for s, n in container.segment_service().list(org_id)])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=SegmentOut, summary="Create a segment")
def create_segment(org_id: OrgId, body: CreateSegmentRequest) -> SegmentOut:
    """A static segment (contacts are added to it) or a dynamic one (its rules decide; its members are
    computed in the background while `state` is `building`)."""
    segment = container.segment_service().create(org_id, body.model_dump())
    return SegmentOut.of(segment, 0)


@router.post("/preview", response_model=PreviewOut, summary="Count and list the contacts a rule tree matches")
def preview_segment(org_id: OrgId, body: PreviewRequest) -> PreviewOut:
    """Nothing is saved. Up to 10,000 contacts are evaluated; beyond that `count` is an estimate."""
    result = container.segment_service().preview(org_id, body.rules, body.timezone, take=body.take)
    return PreviewOut(
        count=result["count"],
        exact=result["exact"],
        evaluated=result["evaluated"],
        contacts=[ContactOut.of(c) for c in result["contacts"]],
    )


@router.get("/{segment_id}", response_model=SegmentOut, summary="Get a segment")
def get_segment(org_id: OrgId, segment_id: SegmentId) -> SegmentOut:
    segment, count = container.segment_service().get(org_id, segment_id)
    return SegmentOut.of(segment, count)


@router.patch("/{segment_id}", response_model=SegmentOut, summary="Rename a segment or change its rules")
def update_segment(org_id: OrgId, segment_id: SegmentId, body: UpdateSegmentRequest) -> SegmentOut:
    """New rules re-compute the members in the background. Rules of a segment that a scheduled or
    sending broadcast uses cannot change (409 naming the broadcasts)."""
    service = container.segment_service()
    updated = service.update(org_id, segment_id, body.changes())
    _, count = service.get(org_id, segment_id)
    return SegmentOut.of(updated, count)  # as written: a rebuild it started may already have finished


@router.delete("/{segment_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a segment")
def delete_segment(org_id: OrgId, segment_id: SegmentId) -> Response:
    """The members stay contacts. A segment used by a scheduled or sending broadcast answers 409."""
    container.segment_service().delete(org_id, segment_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{segment_id}/duplicate", status_code=status.HTTP_201_CREATED, response_model=SegmentOut, summary="Duplicate"
)
def duplicate_segment(org_id: OrgId, segment_id: SegmentId, body: DuplicateSegmentRequest | None = None) -> SegmentOut:
    """A copy named "<name> (Copy)" with the same rules, or for a static segment the same members."""
    copy = container.segment_service().duplicate(org_id, segment_id, body.name if body else None)
    return SegmentOut.of(copy, 0)


@router.get("/{segment_id}/contacts", response_model=ContactPage, summary="Members of a segment")
def segment_members(
    org_id: OrgId, segment_id: SegmentId, response: Response, take: Take = 25, cursor: Cursor = None
) -> ContactPage:
    """Newest contacts first, page by page from the membership items; `X-Total-Count` is the count."""
    container.segment_service().get(org_id, segment_id)
    result = container.contact_service().list(org_id, ListFilter(segment=segment_id), cursor=cursor, take=take)
    if result.total is not None:
        response.headers["X-Total-Count"] = str(result.total)
    return ContactPage(items=[ContactOut.of(c) for c in result.items], next_cursor=result.next_cursor)


@router.post("/{segment_id}/contacts", response_model=MembersResult, summary="Add contacts to a static segment")
def add_members(org_id: OrgId, segment_id: SegmentId, body: MembersRequest) -> MembersResult:
    result = container.segment_service().change_members(org_id, segment_id, body.contact_ids, member=True)
    return MembersResult(**result)


@router.post(
    "/{segment_id}/contacts/remove", response_model=MembersResult, summary="Remove contacts from a static segment"
)
def remove_members(org_id: OrgId, segment_id: SegmentId, body: MembersRequest) -> MembersResult:
    result = container.segment_service().change_members(org_id, segment_id, body.contact_ids, member=False)
    return MembersResult(**result)


@router.get(
    "/{segment_id}/explain/{contact_id}",
    response_model=dict[str, Any],
    summary="Which clauses a contact matches or fails",
)
def explain_segment(org_id: OrgId, segment_id: SegmentId, contact_id: ContactId) -> dict[str, Any]:
    """Each group and clause with `matched`, the contact's value (`actual`) or event count
    (`actual_count`), and whether the contact is a member now (`member`)."""
    return container.segment_service().explain(org_id, segment_id, contact_id)


@contact_router.get("", response_model=ContactSegments, summary="The segments a contact belongs to")
def contact_segments(org_id: OrgId, contact_id: ContactId) -> ContactSegments:
    found = container.segment_service().contact_segments(org_id, contact_id)
    return ContactSegments(
        items=[ContactSegmentOut(id=s.id, name=s.name, type=s.type, source=src) for s, src in found]  # type: ignore[arg-type]
    )


@contact_router.put("/{segment_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Add a contact to a segment")
def add_contact_to_segment(org_id: OrgId, contact_id: ContactId, segment_id: SegmentId) -> Response:
    """Static segments only (a dynamic segment's members follow its rules: 422). Idempotent."""
    container.segment_service().add_member(org_id, segment_id, contact_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@contact_router.delete(
    "/{segment_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Remove a contact from a segment"
)
def remove_contact_from_segment(org_id: OrgId, contact_id: ContactId, segment_id: SegmentId) -> Response:
    container.segment_service().remove_member(org_id, segment_id, contact_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
