"""Broadcasts: marketing (scheduled to segments) and transactional (one recipient per call), with their
recipients and analytics; and the broadcasts a contact received."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse

from audience import container
from audience.api.broadcast_schemas import (
    BroadcastFields,
    BroadcastIn,
    BroadcastList,
    BroadcastOut,
    PropertyValuesOut,
    RecipientOut,
    RecipientPage,
    ScheduleIn,
    SendIn,
    SendOut,
    TestSendIn,
    TestSendOut,
)
from audience.api.deps import ContactId, OrgId
from audience.contacts.repository import decode_cursor, encode_cursor
from audience.errors import NotFoundError, ValidationError

router = APIRouter(prefix="/orgs/{org_id}/broadcasts", tags=["broadcasts"])
contact_router = APIRouter(prefix="/orgs/{org_id}/contacts/{contact_id}/broadcasts", tags=["broadcasts"])

_BROADCAST_ID = re.compile(r"^bc_[0-9a-z]{26}$")
_LIST_KEY = re.compile(r"^\d{4}-\d{2}-\d{2}T[0-9:.]{12}Z#bc_[0-9a-z]{26}$")
_RECIPIENT_KEY = re.compile(r"^([0-9]|1[0-5])\|.{0,200}$", re.S)
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
RECIPIENT_STATUSES = ("PENDING", "SENDING", "SENT", "DELIVERED", "READ", "FAILED", "SKIPPED", "CANCELLED")


def broadcast_id(broadcast_id: Annotated[str, Path(max_length=64)]) -> str:
    if not _BROADCAST_ID.match(broadcast_id):
        raise NotFoundError(f"broadcast {broadcast_id} not found")
    return broadcast_id


BroadcastId = Annotated[str, Depends(broadcast_id)]
Take = Annotated[int, Query(ge=1, le=100, description="Page size, at most 100")]
Cursor = Annotated[str | None, Query(max_length=2048, description="`next_cursor` of the previous page")]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=BroadcastOut, summary="Create a broadcast")
def create_broadcast(org_id: OrgId, body: BroadcastIn, response: Response) -> BroadcastOut:
    """A DRAFT. Its type (marketing or transactional) is fixed; templates name connections of the org."""
    created = container.broadcast_service().create(org_id, body.model_dump(exclude_none=True, mode="json"))
    response.headers["Location"] = f"/orgs/{org_id}/broadcasts/{created['id']}"
    return BroadcastOut(**created)


@router.get("", response_model=BroadcastList, summary="The org's broadcasts, newest first")
def list_broadcasts(org_id: OrgId, take: Take = 50, cursor: Cursor = None) -> BroadcastList:
    items, after = container.broadcast_service().list(org_id, cursor=decode_cursor(cursor, _LIST_KEY), limit=take)
    return BroadcastList(items=[BroadcastOut(**i) for i in items], next_cursor=encode_cursor(after) if after else None)


@router.get("/{broadcast_id}", response_model=BroadcastOut, summary="A broadcast with its analytics")
def get_broadcast(org_id: OrgId, broadcast_id: BroadcastId) -> BroadcastOut:
    """`stats` counts every recipient once by its current status (`by_status`, which adds up to `total`),
    and cumulatively: a read message was also delivered and sent."""
    return BroadcastOut(**container.broadcast_service().get(org_id, broadcast_id))


@router.patch("/{broadcast_id}", response_model=BroadcastOut, summary="Edit a draft")
def update_broadcast(org_id: OrgId, broadcast_id: BroadcastId, body: BroadcastFields) -> BroadcastOut:
    """Only a DRAFT can be edited (409 otherwise): duplicate a scheduled or sent broadcast to change it."""
    changes = body.model_dump(exclude_unset=True, mode="json")
    return BroadcastOut(**container.broadcast_service().update(org_id, broadcast_id, changes))


@router.delete("/{broadcast_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a broadcast")
def delete_broadcast(org_id: OrgId, broadcast_id: BroadcastId) -> Response:
    """Deletes it with its recipients; not while it is SENDING (409: cancel it first)."""
    container.broadcast_service().delete(org_id, broadcast_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{broadcast_id}/duplicate", status_code=status.HTTP_201_CREATED, response_model=BroadcastOut, summary="Copy"
)
def duplicate_broadcast(org_id: OrgId, broadcast_id: BroadcastId, response: Response) -> BroadcastOut:
    """A new DRAFT with the same type, templates, properties and audience, named "... (Copy)"."""
    created = container.broadcast_service().duplicate(org_id, broadcast_id)
    response.headers["Location"] = f"/orgs/{org_id}/broadcasts/{created['id']}"
    return BroadcastOut(**created)


@router.post("/{broadcast_id}/schedule", response_model=BroadcastOut, summary="Schedule a marketing broadcast")
def schedule_broadcast(org_id: OrgId, broadcast_id: BroadcastId, body: ScheduleIn | None = None) -> BroadcastOut:
    """From DRAFT, CANCELLED or FAILED: sends at `at` (now when left out). A recipient already sent to by an
    earlier run of the broadcast is not sent to again."""
    at = body.at if body else None
    return BroadcastOut(**container.broadcast_service().schedule(org_id, broadcast_id, at))


@router.post("/{broadcast_id}/cancel", response_model=BroadcastOut, summary="Cancel a scheduled or sending run")
def cancel_broadcast(org_id: OrgId, broadcast_id: BroadcastId) -> BroadcastOut:
    """Stops the wait or the sending; recipients not yet sent end CANCELLED. Schedule it again to resume."""
    return BroadcastOut(**container.broadcast_service().cancel(org_id, broadcast_id))


@router.post("/{broadcast_id}/activate", response_model=BroadcastOut, summary="Activate a transactional broadcast")
def activate_broadcast(org_id: OrgId, broadcast_id: BroadcastId) -> BroadcastOut:
    return BroadcastOut(**container.broadcast_service().set_active(org_id, broadcast_id, "activate"))


@router.post("/{broadcast_id}/pause", response_model=BroadcastOut, summary="Pause a transactional broadcast")
def pause_broadcast(org_id: OrgId, broadcast_id: BroadcastId) -> BroadcastOut:
    return BroadcastOut(**container.broadcast_service().set_active(org_id, broadcast_id, "pause"))


@router.post(
    "/{broadcast_id}/send",
    response_model=SendOut,
    summary="Send a transactional message to one recipient",
    responses={202: {"model": SendOut, "description": "Accepted: sent in the background"}},
)
def send_broadcast(
    org_id: OrgId,
    broadcast_id: BroadcastId,
    body: SendIn,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)] = None,
) -> JSONResponse:
    """The recipient is `contact_channel_id` (`telegram:123456`), else `contact_id`, else the contact with
    `phone` or `email` (created when there is none). `name`, `phone` and `email` also override what the
    message uses. `variables` fill the broadcast's properties (else their defaults). `template_ids` picks
    channels (default: every channel the contact has an address on).

    With `background` false the provider is called before answering and each recipient carries its
    `provider_message_id` (or `error_code`); with true the send is queued (202). An `Idempotency-Key`
    makes a retried call answer as the first did without sending again (the same key with another body:
    422). The broadcast's `rate_limit` answers 429 with Retry-After."""
    if idempotency_key is not None and not _IDEMPOTENCY_KEY.match(idempotency_key):
        raise ValidationError.for_field(
            "Idempotency-Key", idempotency_key, "must be 1 to 255 printable ASCII characters"
        )
    code, answer = container.broadcast_service().send(
        org_id, broadcast_id, body.model_dump(exclude_none=True, mode="json"), idempotency_key
    )
    payload = SendOut(**answer).model_dump(mode="json", exclude_none=True)
    return JSONResponse(payload, status_code=code)


@router.post("/{broadcast_id}/test", response_model=TestSendOut, summary="Send a test message")
def test_broadcast(org_id: OrgId, broadcast_id: BroadcastId, body: TestSendIn) -> TestSendOut:
    """Sends each template (or `template_ids`) once to `phone`, `email` or `contact_channel_id`, in any
    status, a draft included. A contact with that identity fills the placeholders; else `name` does.
    Test messages are not recipients and are not counted; a provider's refusal comes back as FAILED."""
    results = container.broadcast_service().test_send(org_id, broadcast_id, body.model_dump(exclude_none=True))
    return TestSendOut.model_validate({"results": results})


@router.post(
    "/{broadcast_id}/property-values",
    response_model=PropertyValuesOut,
    summary="Upload per-recipient property values (CSV, XLSX, XLS, ODS or ZIP)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                media: {"schema": {"type": "string", "format": "binary"}}
                for media in ("text/csv", "application/octet-stream")
            },
        }
    },
)
async def upload_property_values(
    org_id: OrgId,
    broadcast_id: BroadcastId,
    request: Request,
    key: Annotated[Literal["email", "phone"], Query(description="The column naming each contact")] = "email",
    dry_run: Annotated[bool, Query(description="Read and check the file; write nothing")] = False,
    file_name: Annotated[str, Query(min_length=1, max_length=255, description="Hints the format")] = "values.csv",
) -> PropertyValuesOut:
    """The file's header names the key column (`email` or `phone`) and one column per property of the
    broadcast (any case); other columns are ignored and listed. Each row gives a contact its values (an
    empty cell keeps the property's default). The report counts rows matched to a contact, rows naming no
    contact, invalid rows (with the first 100 errors by row and column) and contacts named twice (the last
    row wins). Unless `dry_run`, the values replace the broadcast's earlier upload; a marketing broadcast
    only, not while it is SENDING (409). At most 20,000 rows."""
    content = await request.body()
    report = await run_in_threadpool(
        container.broadcast_service().import_property_values,
        org_id,
        broadcast_id,
        content,
        file_name=file_name,
        key=key,
        dry_run=dry_run,
    )
    return PropertyValuesOut.model_validate(report)


@router.get("/{broadcast_id}/recipients", response_model=RecipientPage, summary="Recipients and their statuses")
def list_recipients(
    org_id: OrgId,
    broadcast_id: BroadcastId,
    status_filter: Annotated[str | None, Query(alias="status", description="Only recipients in this status")] = None,
    take: Take = 50,
    cursor: Cursor = None,
) -> RecipientPage:
    if status_filter is not None and status_filter not in RECIPIENT_STATUSES:
        raise ValidationError.for_field("status", status_filter, f"must be one of {', '.join(RECIPIENT_STATUSES)}")
    position = decode_cursor(cursor, _RECIPIENT_KEY)
    after = None
    if position is not None:
        shard, _, sk = position.partition("|")
        after = (int(shard), sk)
    items, following = container.broadcast_service().recipients(
        org_id, broadcast_id, status=status_filter, cursor=after, limit=take
    )
    next_cursor = encode_cursor(f"{following[0]}|{following[1]}") if following else None
    return RecipientPage(items=[RecipientOut(**i) for i in items], next_cursor=next_cursor)


@contact_router.get("", response_model=list[RecipientOut], summary="Broadcast messages a contact received")
def contact_broadcasts(org_id: OrgId, contact_id: ContactId) -> list[RecipientOut]:
    return [RecipientOut(**i) for i in container.broadcast_service().contact_broadcasts(org_id, contact_id)]


# -- one-click unsubscribe (public: the link in a marketing email is the credential) ---------------------

public_router = APIRouter(prefix="/u", tags=["unsubscribe"])
_TOKEN = re.compile(r"^[0-9a-z]{32}$")
_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport"
content="width=device-width,initial-scale=1"><title>Unsubscribe</title></head><body style="font-family:sans-serif;
max-width:32rem;margin:3rem auto;padding:0 1rem"><h1>{title}</h1><p>{text}</p>{form}</body></html>"""
_FORM = """<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">Unsubscribe</button></form>"""


def unsubscribe_token(token: Annotated[str, Path(max_length=64)]) -> str:
    if not _TOKEN.match(token):
        raise NotFoundError("this unsubscribe link is unknown or has expired")
    return token


Token = Annotated[str, Depends(unsubscribe_token)]


@public_router.get("/{token}", response_class=HTMLResponse, summary="Unsubscribe page (changes nothing)")
def unsubscribe_page(token: Token) -> HTMLResponse:
    """What a person (or a link scanner) gets by following the link: a page with a button. A GET never
    unsubscribes, so mail scanners that follow links do not unsubscribe people."""
    container.broadcast_service().unsubscribe_link(token)
    text = "You will no longer receive marketing email from us. Messages you asked for still reach you."
    html = _PAGE.format(title="Unsubscribe from marketing email?", text=text, form=_FORM)
    return HTMLResponse(html, headers={"Cache-Control": "no-store", "X-Robots-Tag": "noindex"})


@public_router.post("/{token}", response_class=HTMLResponse, summary="One-click unsubscribe (RFC 8058)")
def unsubscribe(token: Token) -> HTMLResponse:
    """The POST a mail client sends for `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (and the page's
    button): the contact is opted out of marketing email (a consent record, source one_click_unsubscribe)."""
    container.broadcast_service().unsubscribe(token)
    html = _PAGE.format(
        title="You are unsubscribed", text="You will no longer receive marketing email from us.", form=""
    )
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})
