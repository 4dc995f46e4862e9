"""Request dependencies: the authenticated principal, its rate limit and the org it may act on."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from audience import container
from audience.errors import NotFoundError
from audience.orgs.models import Principal

OWN_ORG = "c"
_ID = re.compile(r"^[a-z]{2,4}_[0-9a-z]{26}$")
_bearer = HTTPBearer(auto_error=False, description="An Audience API key: `Authorization: Bearer aud_...`")


def principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """Authenticate the bearer key and count the request against its rate limit."""
    service = container.org_service()
    who = service.authenticate(credentials.credentials if credentials else None)
    request.state.rate = service.check_rate(who)
    return who


def org_scope(
    who: Annotated[Principal, Depends(principal)],
    org_id: Annotated[str, Path(max_length=64, description="An org id, or `c` for the key's own org")],
) -> str:
    """The org id the request acts on: `c` or the key's own org; any other org is not found."""
    if org_id not in (OWN_ORG, who.org_id):
        raise NotFoundError("org not found")
    return who.org_id


def contact_id(contact_id: Annotated[str, Path(max_length=64)]) -> str:
    """A syntactically valid contact id (anything else cannot exist, so it is not found)."""
    if not _ID.match(contact_id) or not contact_id.startswith("ct_"):
        raise NotFoundError(f"contact {contact_id} not found")
    return contact_id


OrgId = Annotated[str, Depends(org_scope)]
ContactId = Annotated[str, Depends(contact_id)]
