"""Contacts: create, read, update, delete, list and search, bulk writes, merge, stats, activity."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response, status
from pydantic import Field

from audience import container
from audience.api.deps import ContactId, OrgId
from audience.api.schemas import (
    ActivityOut,
    ActivityPage,
    BulkCreateRequest,
    BulkCreateResponse,
    BulkDeleteRequest,
    BulkDeleteResponse,
    BulkItemResult,
    ChannelName,
    ContactOut,
    ContactPage,
    ContactStats,
    CreateContactRequest,
    MergeRequest,
    Status,
    UpdateContactRequest,
)
from audience.contacts.service import ListFilter, Outcome

router = APIRouter(prefix="/orgs/{org_id}/contacts", tags=["contacts"])
Take = Annotated[int, Query(ge=1, le=100, description="Page size, at most 100")]
Cursor = Annotated[str | None, Query(max_length=2048, description="`next_cursor` of the previous page")]


def _bulk_response(outcomes: list[Outcome], *, dry_run: bool) -> BulkCreateResponse:
    counts = Counter(o.action for o in outcomes)
    return BulkCreateResponse(
        dry_run=dry_run,
        summary={a: counts.get(a, 0) for a in ("created", "updated", "unchanged", "invalid", "conflict")},
        results=[
            BulkItemResult(index=i, action=o.action, contact_id=o.contact_id, message=o.message, errors=o.errors)  # type: ignore[arg-type]
            for i, o in enumerate(outcomes)
        ],
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ContactOut, summary="Create a contact")
def create_contact(
    org_id: OrgId,
    body: CreateContactRequest,
    response: Response,
    upsert: Annotated[bool, Query(description="Update the contact an identity already names instead of 409")] = False,
) -> ContactOut:
    """Create a contact. At least one of email or phone is required; phones are stored in E.164 read
    with the org's default country. An email, phone or channel id that already names a contact answers
    409 with that contact's id, or updates it when `upsert=true` (200)."""
    segments = container.segment_service().check_static(org_id, body.segments) if body.segments else []
    outcome = container.contact_service().create(org_id, body.changes(), upsert=upsert)
    if outcome.action != "created":
        response.status_code = status.HTTP_200_OK
    assert outcome.contact is not None
    if segments:
        container.segment_service().assign(org_id, segments, outcome.contact)
    return ContactOut.of(outcome.contact)


@router.get("", response_model=ContactPage, summary="List and search contacts")
def list_contacts(
    org_id: OrgId,
    response: Response,
    take: Take = 25,
    cursor: Cursor = None,
    q: Annotated[str | None, Query(min_length=1, max_length=100, description="Name, email or phone prefix")] = None,
    status_: Annotated[Status | None, Query(alias="status")] = None,
    tag: Annotated[
        list[Annotated[str, Field(max_length=64)]] | None,
        Query(max_length=10, description="Contacts with this tag; repeat for several (see `tag_match`), at most 10"),
    ] = None,
    tag_match: Annotated[
        Literal["all", "any"], Query(description="With several `tag`: contacts with all of them, or any")
    ] = "all",
    channel: ChannelName | None = None,
    segment: Annotated[str | None, Query(max_length=64, description="Members of this segment")] = None,
    created_from: Annotated[
        str | None, Query(max_length=40, pattern=r"^\d{4}-\d{2}-\d{2}", description="ISO date or date-time")
    ] = None,
    created_to: Annotated[
        str | None, Query(max_length=40, pattern=r"^\d{4}-\d{2}-\d{2}", description="ISO date or date-time")
    ] = None,
) -> ContactPage:
    """Newest first (search results in match order). `X-Total-Count` carries the exact total when the
    filter is answered by a maintained counter (no filter, or one of segment, status, tag, channel)."""
    if segment is not None:
        container.segment_service().get(org_id, segment)  # another org's or an unknown segment: 404
    result = container.contact_service().list(
        org_id,
        ListFilter(q, status_, None, channel, created_from, created_to, segment, tuple(tag or ()), tag_match),
        cursor=cursor,
        take=take,
    )
    if result.total is not None:
        response.headers["X-Total-Count"] = str(result.total)
    return ContactPage(items=[ContactOut.of(c) for c in result.items], next_cursor=result.next_cursor)


@router.get("/stats", response_model=ContactStats, summary="Contact counts by status")
def contact_stats(org_id: OrgId) -> ContactStats:
    return ContactStats(**container.contact_service().stats(org_id))


@router.post("/bulk", response_model=BulkCreateResponse, summary="Create or upsert up to 1,000 contacts")
def bulk_create(org_id: OrgId, body: BulkCreateRequest) -> BulkCreateResponse:
    """Each item is handled on its own and reported by index: created, updated, unchanged, invalid
    (with the field and value) or conflict (with the contact that owns the identity)."""
    outcomes = container.contact_service().bulk_create(org_id, body.contacts, upsert=body.upsert, dry_run=False)
    return _bulk_response(outcomes, dry_run=False)


@router.post("/bulk/dry-run", response_model=BulkCreateResponse, summary="Report what a bulk create would do")
def bulk_create_dry_run(org_id: OrgId, body: BulkCreateRequest) -> BulkCreateResponse:
    """The same validation and matching as `/bulk`, writing nothing."""
    outcomes = container.contact_service().bulk_create(org_id, body.contacts, upsert=body.upsert, dry_run=True)
    return _bulk_response(outcomes, dry_run=True)


@router.post("/bulk-delete", response_model=BulkDeleteResponse, summary="Delete up to 1,000 contacts")
def bulk_delete(org_id: OrgId, body: BulkDeleteRequest) -> BulkDeleteResponse:
    results = container.contact_service().bulk_delete(org_id, body.ids)
    counts = Counter(r["result"] for r in results)
    return BulkDeleteResponse(summary={"deleted": counts["deleted"], "not_found": counts["not_found"]}, results=results)


@router.get("/{contact_id}", response_model=ContactOut, summary="Get a contact")
def get_contact(org_id: OrgId, contact_id: ContactId) -> ContactOut:
    return ContactOut.of(container.contact_service().get(org_id, contact_id))


@router.patch("/{contact_id}", response_model=ContactOut, summary="Update a contact")
def update_contact(org_id: OrgId, contact_id: ContactId, body: UpdateContactRequest) -> ContactOut:
    """Change the fields sent; omitted fields stay, null clears one; custom_fields merge key by key."""
    return ContactOut.of(container.contact_service().update(org_id, contact_id, body.changes()))


@router.delete("/{contact_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a contact")
def delete_contact(org_id: OrgId, contact_id: ContactId) -> Response:
    """Delete the contact and everything personal it has: identities, index entries and activity."""
    container.contact_service().delete(org_id, contact_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{contact_id}/merge", response_model=ContactOut, summary="Merge contacts into this one")
def merge_contacts(org_id: OrgId, contact_id: ContactId, body: MergeRequest) -> ContactOut:
    """Identities, channels, tags and missing fields of the sources move to this contact; the most
    restrictive subscription status wins; the sources are deleted."""
    return ContactOut.of(container.contact_service().merge(org_id, contact_id, body.source_contact_ids))


@router.get("/{contact_id}/activity", response_model=ActivityPage, summary="A contact's activity, newest first")
def contact_activity(org_id: OrgId, contact_id: ContactId, take: Take = 50, cursor: Cursor = None) -> ActivityPage:
    page = container.contact_service().activity(org_id, contact_id, cursor=cursor, take=take)
    return ActivityPage(
        items=[ActivityOut(id=a.id, type=a.type, at=a.at, data=a.data) for a in page.items],
        next_cursor=page.next_cursor,
    )
