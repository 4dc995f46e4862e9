"""A contact's consent records (append only) and whether it may be sent to (eligibility)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from audience import container
from audience.api.compliance_schemas import ConsentChannel, ConsentIn, ConsentOut, ConsentPage, EligibilityOut, Purpose
from audience.api.deps import ContactId, OrgId
from audience.api.schemas import ChannelName

router = APIRouter(prefix="/orgs/{org_id}/contacts", tags=["consent"])
Take = Annotated[int, Query(ge=1, le=100, description="Page size, at most 100")]
Cursor = Annotated[str | None, Query(max_length=2048, description="`next_cursor` of the previous page")]


def existing_contact(org_id: OrgId, contact_id: ContactId) -> str:
    """The contact id, once the contact is known to exist in the org: another org's contact is a 404
    before the body or the query is looked at."""
    container.contact_service().get(org_id, contact_id)
    return contact_id


ExistingContact = Annotated[str, Depends(existing_contact)]


@router.get("/{contact_id}/consent", response_model=ConsentPage, summary="A contact's consent records, newest first")
def consent_history(
    org_id: OrgId,
    contact_id: ExistingContact,
    take: Take = 50,
    cursor: Cursor = None,
    channel: ConsentChannel | None = None,
) -> ConsentPage:
    """Every record appended for the contact (by `at`, newest first), of one channel or all. The contact's
    consent for a channel is its latest record for that channel or for `all`, whichever is later."""
    page = container.consent_service().history(org_id, contact_id, channel=channel, cursor=cursor, take=take)
    return ConsentPage(items=[ConsentOut.of(r) for r in page.items], next_cursor=page.next_cursor)


@router.post(
    "/{contact_id}/consent",
    status_code=status.HTTP_201_CREATED,
    response_model=ConsentOut,
    summary="Record a contact's consent",
)
def record_consent(org_id: OrgId, contact_id: ExistingContact, body: ConsentIn) -> ConsentOut:
    """Append a record (records are never changed). `at` defaults to now and may be in the past, never in
    the future (a minute of clock skew is accepted and recorded as now)."""
    record = container.consent_service().record(
        org_id,
        contact_id,
        channel=body.channel,
        opted_in=body.opted_in,
        source=body.source,
        proof=body.proof,
        at=body.at,
    )
    return ConsentOut.of(record)


@router.get(
    "/{contact_id}/eligibility", response_model=EligibilityOut, summary="May the contact be sent to on a channel?"
)
def eligibility(
    org_id: OrgId,
    contact_id: ExistingContact,
    channel: ChannelName,
    purpose: Purpose,
    sender: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
) -> EligibilityOut:
    """The rules, in order (the reason is the first that fails): `blocked` (never); `unsubscribed`
    (no marketing); `do_not_contact` (an entry for one of the contact's identifiers on this channel, for
    every channel or this one, every sender or this one: no marketing); `opted_out` (latest consent for the
    channel or `all` is an opt-out: no marketing); `no_address` (nothing to send to on the channel)."""
    decision = container.eligibility_service().check(
        org_id, contact_id, channel=channel, purpose=purpose, sender=sender
    )
    return EligibilityOut.of(decision, channel, purpose, sender)
