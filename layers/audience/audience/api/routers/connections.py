"""Channel connections (an org's accounts on each platform), inbound settings, and conversation logs."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status

from audience import clock, container
from audience.api.channel_schemas import (
    AutoReplyCheck,
    ConnectionIn,
    ConnectionList,
    ConnectionOut,
    ConnectionPatch,
    ConversationList,
    ConversationOut,
    InboundRules,
    InboundRulesOut,
    InboundSettings,
    InboundSettingsOut,
    MessageOut,
    MessagePage,
    NameCaptureOut,
    SandboxMessages,
)
from audience.api.deps import ContactId, OrgId
from audience.contacts.repository import decode_cursor, encode_cursor
from audience.errors import NotFoundError
from audience.inbound import names
from audience.inbound.keywords import OPT_IN, OPT_OUT
from audience.settings import get_settings

router = APIRouter(prefix="/orgs/{org_id}/connections", tags=["connections"])
settings_router = APIRouter(prefix="/orgs/{org_id}/inbound-settings", tags=["connections"])
contact_router = APIRouter(prefix="/orgs/{org_id}/contacts/{contact_id}", tags=["contacts"])
_CONNECTION_ID = re.compile(r"^ch_[0-9a-z]{26}$")
_LOG_POSITION = re.compile(r"^G#\d{4}-\d{2}-\d{2}T[0-9:.]{12}Z#[a-z]+#.{1,1000}$", re.S)


def connection_id(connection_id: Annotated[str, Path(max_length=64)]) -> str:
    if not _CONNECTION_ID.match(connection_id):
        raise NotFoundError(f"connection {connection_id} not found")
    return connection_id


ConnectionId = Annotated[str, Depends(connection_id)]


def _base_url(request: Request) -> str:
    """Where webhooks reach this deployment: the configured public URL, else the request's own host."""
    return get_settings().public_base_url or str(request.base_url).rstrip("/")


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ConnectionOut, summary="Connect a channel account")
def create_connection(org_id: OrgId, body: ConnectionIn, request: Request, response: Response) -> ConnectionOut:
    """Connect one account of a platform. Its secrets go to AWS Secrets Manager and are never returned;
    `webhook_url` is where to point the platform. An account already connected (in any org) is a 409."""
    connection = container.connection_service().create(org_id, body.model_dump())
    response.headers["Location"] = f"/orgs/{org_id}/connections/{connection.id}"
    return ConnectionOut.of(connection, _base_url(request))


@router.get("", response_model=ConnectionList, summary="The org's connections, newest first")
def list_connections(org_id: OrgId, request: Request) -> ConnectionList:
    base = _base_url(request)
    return ConnectionList(items=[ConnectionOut.of(c, base) for c in container.connection_service().list(org_id)])


@router.get("/{connection_id}", response_model=ConnectionOut, summary="A connection")
def get_connection(org_id: OrgId, connection_id: ConnectionId, request: Request) -> ConnectionOut:
    return ConnectionOut.of(container.connection_service().get(org_id, connection_id), _base_url(request))


@router.patch("/{connection_id}", response_model=ConnectionOut, summary="Rename, change settings, rotate secrets")
def update_connection(
    org_id: OrgId, connection_id: ConnectionId, body: ConnectionPatch, request: Request
) -> ConnectionOut:
    """Settings that name the account (a phone number id, a page id, ...) cannot change: connect anew."""
    connection = container.connection_service().update(org_id, connection_id, body.model_dump(exclude_none=True))
    return ConnectionOut.of(connection, _base_url(request))


@router.delete("/{connection_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Disconnect")
def delete_connection(org_id: OrgId, connection_id: ConnectionId) -> Response:
    """Webhooks for the account are refused from now on; its secrets are scheduled for deletion."""
    container.connection_service().delete(org_id, connection_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{connection_id}/telegram-webhook", response_model=ConnectionOut, summary="Register the Telegram webhook")
def register_telegram_webhook(org_id: OrgId, connection_id: ConnectionId, request: Request) -> ConnectionOut:
    """Call the Bot API's `setWebhook` with this connection's URL and a new secret token; updates then
    carry `X-Telegram-Bot-Api-Secret-Token`, and calls without it are refused. Telegram needs https."""
    connection = container.connection_service().register_telegram_webhook(org_id, connection_id, _base_url(request))
    return ConnectionOut.of(connection, _base_url(request))


@router.get(
    "/{connection_id}/sandbox-messages",
    response_model=SandboxMessages,
    response_model_exclude_none=True,
    summary="What a sandbox connection sent",
)
def sandbox_messages(
    org_id: OrgId, connection_id: ConnectionId, take: Annotated[int, Query(ge=1, le=100)] = 50
) -> SandboxMessages:
    """The latest messages a sandbox connection took (kept 7 days), newest first, as recipients would see
    them. Their statuses arrive through the connection's webhook a second later."""
    connection = container.connection_service().get(org_id, connection_id)
    if connection.platform != "sandbox":
        raise NotFoundError(f"connection {connection_id} is not a sandbox connection")
    items = container.broadcasts_repository().sandbox_messages(org_id, connection_id, limit=take)
    return SandboxMessages.model_validate({"items": items})


# -- inbound settings ---------------------------------------------------------------------------------------


def _settings_out(values: dict[str, object]) -> InboundSettingsOut:
    return InboundSettingsOut(
        opt_out_keywords=list(values["opt_out_keywords"]),  # type: ignore[call-overload]
        opt_in_keywords=list(values["opt_in_keywords"]),  # type: ignore[call-overload]
        default_opt_out_keywords=list(OPT_OUT),
        default_opt_in_keywords=list(OPT_IN),
        name_capture=NameCaptureOut(
            **{**names.check_settings(values.get("name_capture") or {})},  # type: ignore[arg-type]
            default_phrases={lang: list(items) for lang, items in names.DEFAULT_PHRASES.items()},
        ),
        updated_at=values.get("updated_at"),  # type: ignore[arg-type]
    )


@settings_router.get("", response_model=InboundSettingsOut, summary="Opt-out and opt-in keywords, name capture")
def get_inbound_settings(org_id: OrgId) -> InboundSettingsOut:
    return _settings_out(container.org_service().inbound_settings(org_id))


@settings_router.put("", response_model=InboundSettingsOut, summary="Set the org's own keywords")
def put_inbound_settings(org_id: OrgId, body: InboundSettings) -> InboundSettingsOut:
    """A whole inbound message equal to a keyword (any case, surrounding punctuation ignored) opts the
    sender out of, or back into, the channel it came on. The defaults always apply. `name_capture` sets
    how a name a person shares ("my name is Sari", "nama saya Sari") becomes the contact's name."""
    values = container.org_service().update_inbound_settings(
        org_id,
        opt_out_keywords=body.opt_out_keywords,
        opt_in_keywords=body.opt_in_keywords,
        name_capture=body.name_capture.model_dump() if body.name_capture is not None else None,
    )
    return _settings_out(values)


# -- a contact's conversations ----------------------------------------------------------------------------


@contact_router.get("/messages", response_model=MessagePage, summary="The contact's conversation log")
def list_messages(
    org_id: OrgId,
    contact_id: ContactId,
    take: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> MessagePage:
    """Messages on every channel, newest first, with the latest status of outbound ones."""
    container.contact_service().get(org_id, contact_id)
    before = decode_cursor(cursor, _LOG_POSITION)
    repository = container.inbound_repository()
    items, more = repository.log(org_id, contact_id, before=before, limit=take)
    statuses = repository.statuses(
        org_id, [(i["channel"], i["provider_id"]) for i in items if i.get("direction") == "outbound"]
    )
    page = []
    for item in items:
        known = statuses.get((item["channel"], item["provider_id"])) or {}
        page.append(
            MessageOut(
                id=item["provider_id"],
                channel=item["channel"],
                direction=item["direction"],
                connection_id=item["connection_id"],
                at=item["at"],
                kind=item.get("kind", "text"),
                text=item.get("text"),
                media=item.get("media"),
                referral=item.get("referral"),
                reply_to=item.get("reply_to"),
                status=known.get("status"),
                error_code=known.get("error_code"),
            )
        )
    return MessagePage(items=page, next_cursor=encode_cursor(items[-1]["sk"]) if more and items else None)


@contact_router.get("/conversations", response_model=ConversationList, summary="The contact's conversations")
def list_conversations(org_id: OrgId, contact_id: ContactId) -> ConversationList:
    """One per channel: the last inbound and outbound messages, whether the 24-hour service window is open,
    and where its follow-ups are (resolved once the closing step ran)."""
    container.contact_service().get(org_id, contact_id)
    now = clock.now_iso()
    return ConversationList(
        items=[
            ConversationOut(
                channel=item["channel"],
                connection_id=item.get("connection_id"),
                last_inbound_at=item.get("last_inbound_at"),
                window_expires_at=item.get("window_expires_at"),
                window_open=bool(item.get("window_expires_at")) and item["window_expires_at"] > now,
                inbound_count=int(item.get("inbound_count", 0)),
                outbound_count=int(item.get("outbound_count", 0)),
                last_outbound_at=item.get("last_outbound_at"),
                status=item.get("status") or "open",
                resolved_at=item.get("resolved_at"),
                follow_up_state=item.get("fu_state"),
            )
            for item in container.inbound_repository().conversations(org_id, contact_id)
        ]
    )


# -- inbound rules --------------------------------------------------------------------------------------


@router.get("/{connection_id}/inbound-rules", response_model=InboundRulesOut, summary="A connection's inbound rules")
def get_inbound_rules(org_id: OrgId, connection_id: ConnectionId) -> InboundRulesOut:
    rules, updated_at = container.inbound_rules_service().get(org_id, connection_id)
    return InboundRulesOut(**rules, updated_at=updated_at)


@router.put("/{connection_id}/inbound-rules", response_model=InboundRulesOut, summary="Set the inbound rules")
def put_inbound_rules(org_id: OrgId, connection_id: ConnectionId, body: InboundRules) -> InboundRulesOut:
    """`on_new_contact`: the tags and static segments a contact gets when a message on this connection
    creates it (a contact that exists already is not touched). `auto_reply`: who automatic replies may go
    to, as `auto-reply-check` answers it. Segments must be the org's (static ones for `on_new_contact`)."""
    rules, updated_at = container.inbound_rules_service().put(org_id, connection_id, body.model_dump())
    return InboundRulesOut(**rules, updated_at=updated_at)


@router.get(
    "/{connection_id}/auto-reply-check", response_model=AutoReplyCheck, summary="May an automatic reply go to a contact"
)
def auto_reply_check(
    org_id: OrgId,
    connection_id: ConnectionId,
    contact_id: Annotated[str | None, Query(max_length=64)] = None,
    phone: Annotated[str | None, Query(max_length=32, description="In international form")] = None,
    email: Annotated[str | None, Query(max_length=320)] = None,
    user_id: Annotated[str | None, Query(max_length=256, description="The contact's id on this channel")] = None,
) -> AutoReplyCheck:
    """For the systems that send automatic replies (bots, away messages) on this connection; give one of
    `contact_id`, `phone`, `email` or `user_id`. Automatic replies are service messages: an unsubscribed
    contact may get them; a blocked contact, a do-not-contact entry for the channel, a deny segment, or
    (when allow segments are set) being in none of them says no."""
    decision = container.inbound_rules_service().check_auto_reply(
        org_id, connection_id, contact_id=contact_id, phone=phone, email=email, user_id=user_id
    )
    return AutoReplyCheck(
        allowed=decision.allowed,
        reason=decision.reason,  # type: ignore[arg-type]
        detail=decision.detail,
        contact_id=decision.contact_id,
        segment_id=decision.segment_id,
    )
