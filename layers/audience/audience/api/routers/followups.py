"""Outbound conversation messages, follow-ups of a contact, and follow-up rules."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Path, Query, Response, status
from fastapi.responses import JSONResponse

from audience import container
from audience.api.deps import ContactId, OrgId
from audience.api.followup_schemas import (
    FollowUpIn,
    FollowUpList,
    FollowUpOut,
    FollowUpRulesIn,
    FollowUpRulesOut,
    MessageIn,
    MessageSent,
)
from audience.api.routers.connections import ConnectionId
from audience.errors import NotFoundError, ValidationError

contact_router = APIRouter(prefix="/orgs/{org_id}/contacts/{contact_id}", tags=["follow-ups"])
rules_router = APIRouter(prefix="/orgs/{org_id}", tags=["follow-ups"])
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_FOLLOW_UP_ID = re.compile(r"^(fu_[0-9a-z]{26}|idle-[a-z]{2,16})$")


def _check_key(idempotency_key: str | None) -> None:
    if idempotency_key is not None and not _IDEMPOTENCY_KEY.match(idempotency_key):
        raise ValidationError.for_field(
            "Idempotency-Key", idempotency_key, "must be 1 to 255 printable ASCII characters"
        )


def _follow_up_id(follow_up_id: Annotated[str, Path(max_length=64)]) -> str:
    if not _FOLLOW_UP_ID.match(follow_up_id):
        raise NotFoundError(f"follow-up {follow_up_id} not found")
    return follow_up_id


@contact_router.post(
    "/messages", status_code=status.HTTP_201_CREATED, response_model=MessageSent, summary="Send a session message"
)
def send_message(
    org_id: OrgId,
    contact_id: ContactId,
    body: MessageIn,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)] = None,
) -> JSONResponse:
    """Sends `text` (inside WhatsApp's, Messenger's or Instagram's 24-hour window, or on any other chat
    channel) or a WhatsApp `template` (outside it) through `connection_id`. Free text outside the window
    is refused with 422. The message is recorded in the conversation log with its later statuses, and it
    starts the conversation's follow-up timer when the rules are on. An `Idempotency-Key` makes a retried
    call answer as the first did without sending again."""
    _check_key(idempotency_key)
    code, answer = container.follow_up_service().send_message(
        org_id, contact_id, body.model_dump(exclude_none=True, mode="json"), idempotency_key
    )
    return JSONResponse(MessageSent(**answer).model_dump(mode="json"), status_code=code)


@contact_router.get("/follow-ups", response_model=FollowUpList, summary="The contact's follow-ups")
def list_follow_ups(
    org_id: OrgId,
    contact_id: ContactId,
    status_: Annotated[Literal["scheduled", "all"], Query(alias="status")] = "scheduled",
) -> FollowUpList:
    """Soonest first, each with `due_at` and `due_in` ("in 23 hours"): follow-ups requested for a time, and
    the next step of each conversation's idle timer (`idle-<channel>`)."""
    items = container.follow_up_service().list(org_id, contact_id, status=None if status_ == "all" else "scheduled")
    return FollowUpList.model_validate({"items": items})


@contact_router.post(
    "/follow-ups", status_code=status.HTTP_201_CREATED, response_model=FollowUpOut, summary="Request a follow-up"
)
def request_follow_up(
    org_id: OrgId,
    contact_id: ContactId,
    body: FollowUpIn,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)] = None,
) -> JSONResponse:
    """A follow-up at `at`, or `in` a while ("talk to me in 24 hours"), through `connection_id`: `text`,
    or a WhatsApp `template` when the 24-hour window will have closed by then (checked now: 422 otherwise).
    It is cancelled if the contact opts out or is deleted; a reply does not cancel it. A contact has at most
    20 scheduled at once (409). An `Idempotency-Key` makes a retried call answer as the first did."""
    _check_key(idempotency_key)
    data = body.model_dump(exclude_none=True, mode="json", by_alias=True)
    code, answer = container.follow_up_service().schedule(org_id, contact_id, data, idempotency_key)
    return JSONResponse(FollowUpOut.model_validate(answer).model_dump(mode="json"), status_code=code)


@contact_router.delete("/follow-ups/{follow_up_id}", response_model=FollowUpOut, summary="Cancel a follow-up")
def cancel_follow_up(
    org_id: OrgId, contact_id: ContactId, follow_up_id: Annotated[str, Path(max_length=64)]
) -> FollowUpOut:
    """Cancels a scheduled follow-up (409 once it went); `idle-<channel>` ends that conversation's idle timer."""
    follow_up_id = _follow_up_id(follow_up_id)
    return FollowUpOut.model_validate(container.follow_up_service().cancel(org_id, contact_id, follow_up_id))


def _rules_out(org_id: str, connection_id: str | None) -> FollowUpRulesOut:
    return FollowUpRulesOut.model_validate(container.follow_up_service().rules(org_id, connection_id).as_dict())


@rules_router.get("/follow-up-rules", response_model=FollowUpRulesOut, summary="The org's follow-up rules")
def get_rules(org_id: OrgId) -> FollowUpRulesOut:
    return _rules_out(org_id, None)


@rules_router.put("/follow-up-rules", response_model=FollowUpRulesOut, summary="Set the org's follow-up rules")
def put_rules(org_id: OrgId, body: FollowUpRulesIn) -> FollowUpRulesOut:
    """When the business's last outbound message stays unanswered `idle_seconds`, the first follow-up goes;
    the next ones `intervals_seconds` apart, up to `max_follow_ups`; then the conversation is closed. Each
    step's message is `text` inside the 24-hour window and `template` outside it; `business_hours` defer
    them to the contact's local opening hours. Timers already running pick the new rules up at their next
    step."""
    rules = container.follow_up_service().put_rules(org_id, None, body.model_dump(mode="json", exclude_none=True))
    return FollowUpRulesOut.model_validate(rules.as_dict())


@rules_router.get(
    "/connections/{connection_id}/follow-up-rules",
    response_model=FollowUpRulesOut,
    summary="A connection's own follow-up rules",
)
def get_connection_rules(org_id: OrgId, connection_id: ConnectionId) -> FollowUpRulesOut:
    return _rules_out(org_id, connection_id)


@rules_router.put(
    "/connections/{connection_id}/follow-up-rules",
    response_model=FollowUpRulesOut,
    summary="Give a connection its own follow-up rules",
)
def put_connection_rules(org_id: OrgId, connection_id: ConnectionId, body: FollowUpRulesIn) -> FollowUpRulesOut:
    """Conversations on this connection follow these instead of the org's."""
    rules = container.follow_up_service().put_rules(
        org_id, connection_id, body.model_dump(mode="json", exclude_none=True)
    )
    return FollowUpRulesOut.model_validate(rules.as_dict())


@rules_router.delete(
    "/connections/{connection_id}/follow-up-rules",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Make a connection follow the org's rules again",
)
def delete_connection_rules(org_id: OrgId, connection_id: ConnectionId) -> Response:
    container.follow_up_service().delete_rules(org_id, connection_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
