"""Outbound webhook endpoints of an org, their signing secrets, test sends and deliveries."""

from __future__ import annotations

import json
import re
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response, status

from audience import container
from audience.api.deps import OrgId
from audience.api.webhook_endpoint_schemas import (
    DeliveryDetail,
    DeliveryList,
    DeliveryOut,
    TestSent,
    WebhookEndpointCreated,
    WebhookEndpointIn,
    WebhookEndpointList,
    WebhookEndpointOut,
    WebhookEndpointPatch,
    WebhookSecretOut,
)
from audience.errors import NotFoundError
from audience.outbound.models import Delivery

router = APIRouter(prefix="/orgs/{org_id}/webhook-endpoints", tags=["webhooks"])
_ENDPOINT_ID = re.compile(r"^we_[0-9a-z]{26}$")
_DELIVERY_ID = re.compile(r"^wd_[0-9a-z]{26}$")


def _endpoint_id(endpoint_id: Annotated[str, Path(max_length=64)]) -> str:
    if not _ENDPOINT_ID.match(endpoint_id):
        raise NotFoundError(f"webhook endpoint {endpoint_id} not found")
    return endpoint_id


def _delivery_id(delivery_id: Annotated[str, Path(max_length=64)]) -> str:
    if not _DELIVERY_ID.match(delivery_id):
        raise NotFoundError(f"delivery {delivery_id} not found")
    return delivery_id


def _detail(delivery: Delivery) -> DeliveryDetail:
    return DeliveryDetail.model_validate({**delivery.as_dict(), "event": json.loads(delivery.body)})


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=WebhookEndpointCreated, summary="Add a webhook endpoint"
)
def create_endpoint(org_id: OrgId, body: WebhookEndpointIn) -> WebhookEndpointCreated:
    """Events of the types listed (or every type, `"*"`) are POSTed to `url`, signed with the secret this
    answer shows once (header `Audience-Signature`; see docs/outbound-webhooks.md). An org has at most 20."""
    endpoint, secret = container.webhook_endpoints().create(org_id, body.model_dump(exclude_none=True))
    return WebhookEndpointCreated.model_validate({**endpoint.as_dict(), "secret": secret})


@router.get("", response_model=WebhookEndpointList, summary="The org's webhook endpoints")
def list_endpoints(org_id: OrgId) -> WebhookEndpointList:
    items = [e.as_dict() for e in container.webhook_endpoints().list(org_id)]
    return WebhookEndpointList.model_validate({"items": items})


@router.get("/{endpoint_id}", response_model=WebhookEndpointOut, summary="A webhook endpoint")
def get_endpoint(org_id: OrgId, endpoint_id: Annotated[str, Path(max_length=64)]) -> WebhookEndpointOut:
    endpoint = container.webhook_endpoints().get(org_id, _endpoint_id(endpoint_id))
    return WebhookEndpointOut.model_validate(endpoint.as_dict())


@router.patch("/{endpoint_id}", response_model=WebhookEndpointOut, summary="Change or re-enable a webhook endpoint")
def update_endpoint(
    org_id: OrgId, endpoint_id: Annotated[str, Path(max_length=64)], body: WebhookEndpointPatch
) -> WebhookEndpointOut:
    """Changes the fields given. `enabled: true` re-enables an endpoint that was disabled (by you, or
    automatically after persistent failure), clearing `disabled_reason`; deliveries that failed meanwhile
    can be sent again with redeliver."""
    endpoint = container.webhook_endpoints().update(
        org_id, _endpoint_id(endpoint_id), body.model_dump(exclude_unset=True)
    )
    return WebhookEndpointOut.model_validate(endpoint.as_dict())


@router.delete("/{endpoint_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a webhook endpoint")
def delete_endpoint(org_id: OrgId, endpoint_id: Annotated[str, Path(max_length=64)]) -> Response:
    container.webhook_endpoints().delete(org_id, _endpoint_id(endpoint_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{endpoint_id}/rotate-secret", response_model=WebhookSecretOut, summary="Rotate the signing secret")
def rotate_secret(org_id: OrgId, endpoint_id: Annotated[str, Path(max_length=64)]) -> WebhookSecretOut:
    """A new secret, shown once; attempts from now on are signed with it, and for 24 hours also with the old
    one (a second `v1=` in `Audience-Signature`), so a receiver can switch secrets without missing events."""
    endpoint, secret = container.webhook_endpoints().rotate_secret(org_id, _endpoint_id(endpoint_id))
    return WebhookSecretOut(id=endpoint.id, secret=secret)


@router.post(
    "/{endpoint_id}/test", status_code=status.HTTP_202_ACCEPTED, response_model=TestSent, summary="Send a test event"
)
def send_test(org_id: OrgId, endpoint_id: Annotated[str, Path(max_length=64)]) -> TestSent:
    """Sends a `webhook.test` event through the normal delivery path (signing, retries); follow it with
    the delivery id. 409 when the endpoint is disabled."""
    delivery = container.webhook_endpoints().send_test(org_id, _endpoint_id(endpoint_id))
    return TestSent(delivery_id=delivery.id, event_id=delivery.event_id)


@router.get("/{endpoint_id}/deliveries", response_model=DeliveryList, summary="Deliveries to a webhook endpoint")
def list_deliveries(
    org_id: OrgId,
    endpoint_id: Annotated[str, Path(max_length=64)],
    state: Annotated[Literal["pending", "delivered", "failed"] | None, Query()] = None,
    take: Annotated[int, Query(ge=1, le=100)] = 50,
    before: Annotated[str | None, Query(max_length=64)] = None,
) -> DeliveryList:
    """Newest event first; `state=failed` lists what gave up (retries exhausted or endpoint disabled). With
    `state`, one call reads at most 500 deliveries: a page may hold fewer than `take`, even none; go on while
    `next_before` is set."""
    items, next_before = container.webhook_endpoints().deliveries(
        org_id, _endpoint_id(endpoint_id), state=state, take=take, before=before
    )
    return DeliveryList(items=[DeliveryOut.model_validate(d.as_dict()) for d in items], next_before=next_before)


@router.get(
    "/{endpoint_id}/deliveries/{delivery_id}", response_model=DeliveryDetail, summary="A delivery and its attempts"
)
def get_delivery(
    org_id: OrgId,
    endpoint_id: Annotated[str, Path(max_length=64)],
    delivery_id: Annotated[str, Path(max_length=64)],
) -> DeliveryDetail:
    delivery = container.webhook_endpoints().delivery(org_id, _endpoint_id(endpoint_id), _delivery_id(delivery_id))
    return _detail(delivery)


@router.post(
    "/{endpoint_id}/deliveries/{delivery_id}/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeliveryDetail,
    summary="Send a delivery again",
)
def redeliver(
    org_id: OrgId,
    endpoint_id: Annotated[str, Path(max_length=64)],
    delivery_id: Annotated[str, Path(max_length=64)],
) -> DeliveryDetail:
    """A delivered or failed delivery goes again as a new series of attempts, with the same event id and
    body (409 while it is pending, unless the message of its next attempt was never queued: then it is queued
    now; 409 when the endpoint is disabled)."""
    delivery = container.webhook_endpoints().redeliver(org_id, _endpoint_id(endpoint_id), _delivery_id(delivery_id))
    return _detail(delivery)
