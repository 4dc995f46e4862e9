"""Webhook endpoints of an org: create, change, rotate the secret, test; their deliveries: list, redeliver."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from audience import clock, ids
from audience.errors import ConflictError, ValidationError
from audience.events.catalogue import TYPES
from audience.outbound.addresses import check_url
from audience.outbound.delivery import Dispatcher
from audience.outbound.models import (
    ALL_EVENTS,
    MAX_DESCRIPTION,
    MAX_ENDPOINTS_PER_ORG,
    MAX_EVENT_TYPES,
    Delivery,
    Endpoint,
)
from audience.outbound.repository import OutboundRepository, StaleEndpointError
from audience.outbound.secrets import EndpointSecrets, new_secret

TEST_EVENT = "webhook.test"
_UPDATE_TRIES = 3
ROTATION_GRACE = timedelta(hours=24)  # the old secret also signs this long after a rotation


def check_event_types(value: Any) -> list[str]:
    """`"*"`, or a list of known event types (deduplicated, in the order given)."""
    if value == ALL_EVENTS:
        return [ALL_EVENTS]
    if not isinstance(value, list) or not value:
        raise ValidationError.for_field("event_types", None, 'must be "*" or a non-empty list of event types')
    if len(value) > MAX_EVENT_TYPES:
        raise ValidationError.for_field("event_types", None, f"must list at most {MAX_EVENT_TYPES} types")
    types: list[str] = []
    for index, name in enumerate(value):
        if name == ALL_EVENTS:
            return [ALL_EVENTS]
        if not isinstance(name, str) or name not in TYPES:
            raise ValidationError.for_field(
                f"event_types[{index}]", name, f"is not an event type; known: {', '.join(sorted(TYPES))}"
            )
        if name not in types:
            types.append(name)
    return types


class EndpointService:
    def __init__(
        self,
        repository: OutboundRepository,
        secrets: EndpointSecrets,
        dispatcher: Dispatcher,
        *,
        allow_private_urls: bool,
        now: Callable[[], datetime] = clock.now,
    ) -> None:
        self._repo = repository
        self._secrets = secrets
        self._dispatcher = dispatcher
        self._allow_private = allow_private_urls
        self._now = now

    def create(self, org_id: str, data: dict[str, Any]) -> tuple[Endpoint, str]:
        """A new endpoint and its signing secret (returned this once)."""
        url = check_url(data["url"], allow_private=self._allow_private)
        event_types = check_event_types(data.get("event_types", ALL_EVENTS))
        description = _description(data.get("description"))
        if len(self._repo.endpoints(org_id)) >= MAX_ENDPOINTS_PER_ORG:
            raise ValidationError.for_field(
                "url", url, f"an org has at most {MAX_ENDPOINTS_PER_ORG} webhook endpoints; delete one first"
            )
        at = clock.iso(self._now())
        endpoint = Endpoint(
            id=ids.new_id("we"),
            org_id=org_id,
            url=url,
            event_types=event_types,
            description=description,
            enabled=bool(data.get("enabled", True)),
            created_at=at,
            updated_at=at,
        )
        if not endpoint.enabled:
            endpoint.disabled_reason, endpoint.disabled_at = "created disabled", at
        secret = new_secret()
        self._secrets.put(endpoint.id, secret)
        self._repo.put_endpoint(endpoint, new=True)
        return endpoint, secret

    def list(self, org_id: str) -> list[Endpoint]:
        return self._repo.endpoints(org_id)

    def get(self, org_id: str, endpoint_id: str) -> Endpoint:
        return self._repo.endpoint(org_id, endpoint_id)

    def update(self, org_id: str, endpoint_id: str, data: dict[str, Any]) -> Endpoint:
        """Change the fields given; `enabled: true` re-enables (clearing the reason and the failure streak),
        `enabled: false` disables."""
        changes: dict[str, Any] = {}
        if data.get("url") is not None:
            changes["url"] = check_url(data["url"], allow_private=self._allow_private)
        if data.get("event_types") is not None:
            changes["event_types"] = check_event_types(data["event_types"])
        if "description" in data:
            changes["description"] = _description(data["description"])
        for _ in range(_UPDATE_TRIES):
            # Only the fields given are written, on the endpoint as read: a disable() by the delivery worker or
            # a rotation in between makes the write fail, and the change is worked out again from what is new.
            endpoint = self._repo.endpoint(org_id, endpoint_id)
            at = clock.iso(self._now())
            write = dict(changes)
            if data.get("enabled") is True and not endpoint.enabled:
                write |= {"enabled": True, "disabled_reason": None, "disabled_at": None, "failing_since": None}
            elif data.get("enabled") is False and endpoint.enabled:
                write |= {"enabled": False, "disabled_reason": "disabled through the API", "disabled_at": at}
            write["updated_at"] = at if at != endpoint.updated_at else _later(at)
            try:
                return self._repo.update_endpoint(org_id, endpoint_id, write, expected_updated_at=endpoint.updated_at)
            except StaleEndpointError:
                continue
        raise ConflictError(f"webhook endpoint {endpoint_id} is changing; try again")

    def delete(self, org_id: str, endpoint_id: str) -> None:
        """Delete the endpoint and schedule its secret's deletion; its pending deliveries stop as failed."""
        self._repo.delete_endpoint(org_id, endpoint_id)
        self._secrets.delete(endpoint_id)

    def rotate_secret(self, org_id: str, endpoint_id: str) -> tuple[Endpoint, str]:
        """A new signing secret, used from the next attempt on; for 24 hours attempts also carry a signature
        with the old one (a second `v1=`), so receivers can switch without missing events."""
        endpoint = self._repo.endpoint(org_id, endpoint_id)
        secret = new_secret()
        self._secrets.put(endpoint.id, secret)
        # Only the version (added to, never written back) and updated_at: nothing else a racing writer set.
        now = self._now()
        changes = {"updated_at": clock.iso(now), "previous_secret_until": clock.iso(now + ROTATION_GRACE)}
        endpoint = self._repo.update_endpoint(org_id, endpoint.id, changes, bump_secret_version=True)
        return endpoint, secret

    def send_test(self, org_id: str, endpoint_id: str) -> Delivery:
        """Send a `webhook.test` event to the endpoint through the normal delivery path."""
        endpoint = self._repo.endpoint(org_id, endpoint_id)
        if not endpoint.enabled:
            raise ConflictError(f"webhook endpoint {endpoint_id} is disabled; enable it to send a test")
        at = clock.iso(self._now())
        envelope = {
            "id": ids.new_id("ev"),
            "type": TEST_EVENT,
            "version": TYPES[TEST_EVENT].version,
            "org_id": org_id,
            "occurred_at": at,
            "data": {"endpoint_id": endpoint.id, "message": "A test event sent from the Audience API."},
        }
        created, _ = self._dispatcher.create(endpoint, envelope)
        return self._repo.delivery(org_id, endpoint.id, created)

    def deliveries(
        self, org_id: str, endpoint_id: str, *, state: str | None, take: int, before: str | None
    ) -> tuple[list[Delivery], str | None]:
        self._repo.endpoint(org_id, endpoint_id)
        return self._repo.deliveries(org_id, endpoint_id, state=state, take=take, before=before)

    def delivery(self, org_id: str, endpoint_id: str, delivery_id: str) -> Delivery:
        self._repo.endpoint(org_id, endpoint_id)
        return self._repo.delivery(org_id, endpoint_id, delivery_id)

    def redeliver(self, org_id: str, endpoint_id: str, delivery_id: str) -> Delivery:
        """Send a delivered or failed delivery again as a new series of attempts (same event id, same body)."""
        endpoint = self._repo.endpoint(org_id, endpoint_id)
        if not endpoint.enabled:
            raise ConflictError(f"webhook endpoint {endpoint_id} is disabled; enable it to redeliver")
        delivery = self._repo.delivery(org_id, endpoint_id, delivery_id)
        if delivery.state == "pending":
            if delivery.enqueued_through < delivery.next_attempt:
                # Its state was committed but the message of its next attempt may never have been sent (the
                # queue failed): send it now rather than leave the delivery pending for ever.
                self._dispatcher.ensure_enqueued(delivery)
                return delivery
            raise ConflictError(f"delivery {delivery_id} is pending; it can be redelivered once it ends")
        restarted = self._repo.restart(delivery, clock.iso(self._now()))
        self._dispatcher.ensure_enqueued(restarted)
        return restarted


def _later(at: str) -> str:
    """An updated_at one millisecond after `at`, so each change makes a new one (it is the update condition)."""
    return clock.iso(datetime.fromisoformat(at) + timedelta(milliseconds=1))


def _description(value: Any) -> str:
    text = "" if value is None else str(value).strip()
    if len(text) > MAX_DESCRIPTION:
        raise ValidationError.for_field("description", text, f"must be at most {MAX_DESCRIPTION} characters")
    return text
