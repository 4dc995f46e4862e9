"""The caller's org, its API keys and its custom field definitions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from audience import container
from audience.api.deps import OrgId
from audience.api.schemas import (
    ApiKeyCreated,
    ApiKeyOut,
    CreateApiKeyRequest,
    CreateFieldRequest,
    FieldOut,
    OrgOut,
    UpdateOrgRequest,
)
from audience.orgs.models import ApiKey

router = APIRouter(prefix="/orgs/{org_id}")


def _key_out(key: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        rate_limit_per_minute=key.rate_limit_per_minute,
        created_at=key.created_at,
    )


@router.get("", response_model=OrgOut, tags=["orgs"], summary="Get the org")
def get_org(org_id: OrgId) -> OrgOut:
    org = container.org_service().get_org(org_id)
    return OrgOut(id=org.id, name=org.name, default_country=org.default_country, created_at=org.created_at)


@router.patch("", response_model=OrgOut, tags=["orgs"], summary="Rename the org or change its default country")
def update_org(org_id: OrgId, body: UpdateOrgRequest) -> OrgOut:
    org = container.org_service().update_org(org_id, name=body.name, default_country=body.default_country)
    return OrgOut(id=org.id, name=org.name, default_country=org.default_country, created_at=org.created_at)


@router.post("/api-keys", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated, tags=["api-keys"])
def create_api_key(org_id: OrgId, body: CreateApiKeyRequest) -> ApiKeyCreated:
    """Create an API key. The secret `key` is in this response only; it is stored as a hash."""
    key, secret = container.org_service().create_key(
        org_id, body.name, rate_limit_per_minute=body.rate_limit_per_minute
    )
    return ApiKeyCreated(**_key_out(key).model_dump(), key=secret)


@router.get("/api-keys", response_model=list[ApiKeyOut], tags=["api-keys"])
def list_api_keys(org_id: OrgId) -> list[ApiKeyOut]:
    return [_key_out(k) for k in container.org_service().list_keys(org_id)]


@router.delete("/api-keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["api-keys"])
def delete_api_key(org_id: OrgId, key_id: Annotated[str, Path(max_length=64)]) -> Response:
    """Revoke a key; requests with it are refused from now on."""
    container.org_service().delete_key(org_id, key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/contacts/fields", response_model=list[FieldOut], tags=["fields"], summary="List custom fields")
def list_fields(org_id: OrgId) -> list[FieldOut]:
    return [
        FieldOut(name=f.name, type=f.type, label=f.label, created_at=f.created_at)
        for f in container.org_service().list_fields(org_id)
    ]


@router.post("/contacts/fields", status_code=status.HTTP_201_CREATED, response_model=FieldOut, tags=["fields"])
def create_field(org_id: OrgId, body: CreateFieldRequest) -> FieldOut:
    """Declare a typed custom field; contact writes are validated against it."""
    f = container.org_service().create_field(org_id, body.name, body.type, body.label)
    return FieldOut(name=f.name, type=f.type, label=f.label, created_at=f.created_at)


@router.delete("/contacts/fields/{name}", status_code=status.HTTP_204_NO_CONTENT, tags=["fields"])
def delete_field(org_id: OrgId, name: Annotated[str, Path(max_length=64)]) -> Response:
    """Remove a field definition; values already stored stay on contacts until overwritten or cleared."""
    container.org_service().delete_field(org_id, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
