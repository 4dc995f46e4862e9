"""Recording custom events of contacts (the facts event clauses of segment rules count)."""

from __future__ import annotations

import math
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal, DecimalException
from typing import Any

from boto3.dynamodb.types import DYNAMODB_CONTEXT

from audience import clock
from audience.contacts.models import Identity
from audience.contacts.normalize import normalize_email, normalize_phone
from audience.contacts.repository import ContactsRepository
from audience.errors import NotFoundError, ValidationError
from audience.orgs.repository import OrgsRepository
from audience.segments.models import RecordedEvent
from audience.segments.repository import SegmentsRepository

MAX_EVENTS_PER_CALL = 100
MAX_PROPERTIES = 20
MAX_PROPERTY_TEXT = 256
FUTURE_TOLERANCE = timedelta(days=1)
EVENT_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
PROPERTY_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
EVENT_ID = re.compile(r"^[\x21-\x7e]{1,128}$")


class EventService:
    """Records events for contacts named by id, phone or email."""

    def __init__(
        self, segments: SegmentsRepository, contacts: ContactsRepository, orgs: OrgsRepository, *, default_country: str
    ) -> None:
        self._segments = segments
        self._contacts = contacts
        self._orgs = orgs
        self._default_country = default_country

    def record(self, org_id: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Record up to 100 events; each is reported on its own: `recorded`, `duplicate` (its `id` was
        recorded before), `invalid` (with the field) or `not_found` (no such contact)."""
        if not items or len(items) > MAX_EVENTS_PER_CALL:
            raise ValidationError.for_field(
                "events", f"{len(items)} events", f"must hold 1 to {MAX_EVENTS_PER_CALL} events"
            )
        org = self._orgs.get_org(org_id)
        country = org.default_country or self._default_country
        now = clock.now()
        prepared: list[tuple[dict[str, Any], Identity | None] | ValidationError] = []
        for item in items:
            try:
                prepared.append(_prepare(item, country, now))
            except ValidationError as error:
                prepared.append(error)
        identities = [p[1] for p in prepared if not isinstance(p, ValidationError) and p[1] is not None]
        owners = self._contacts.owners(org_id, identities) if identities else {}

        def one(index: int) -> dict[str, Any]:
            entry = prepared[index]
            if isinstance(entry, ValidationError):
                return {"index": index, "result": "invalid", "message": entry.message, "errors": entry.fields}
            fields, identity = entry
            contact_id = fields["contact_id"] if identity is None else owners.get(identity)
            if contact_id is None:
                return {
                    "index": index,
                    "result": "not_found",
                    "message": f"no contact with {identity.type} {identity.value}",
                }  # type: ignore[union-attr]
            event = RecordedEvent(contact_id, fields["name"], fields["at"], fields["properties"], fields["id"])
            try:
                recorded = self._segments.record_event(org_id, event)
            except NotFoundError as error:
                return {"index": index, "result": "not_found", "message": error.message}
            except ValidationError as error:
                return {"index": index, "result": "invalid", "message": error.message, "errors": error.fields}
            return {"index": index, "result": "recorded" if recorded else "duplicate", "contact_id": contact_id}

        if len(prepared) == 1:
            return [one(0)]
        with ThreadPoolExecutor(max_workers=min(8, len(prepared))) as pool:
            return list(pool.map(one, range(len(prepared))))


def _prepare(item: Any, country: str, now: datetime) -> tuple[dict[str, Any], Identity | None]:
    if not isinstance(item, dict):
        raise ValidationError.for_field("event", item, "must be an object")
    unknown = sorted(set(item) - {"contact_id", "phone", "email", "name", "at", "properties", "id"})
    if unknown:
        raise ValidationError.for_field(unknown[0], item[unknown[0]], "is not a field of an event")
    named = [k for k in ("contact_id", "phone", "email") if item.get(k) is not None]
    if len(named) != 1:
        raise ValidationError.for_field(
            "contact_id", None, "name the contact by exactly one of contact_id, phone, email"
        )
    identity: Identity | None = None
    contact_id = None
    if named[0] == "contact_id":
        contact_id = item["contact_id"]
        if not isinstance(contact_id, str) or not re.match(r"^ct_[0-9a-z]{26}$", contact_id):
            raise ValidationError.for_field("contact_id", contact_id, "is not a contact id")
    elif named[0] == "phone":
        if not isinstance(item["phone"], str):
            raise ValidationError.for_field("phone", item["phone"], "must be a string")
        identity = Identity("phone", normalize_phone(item["phone"], country).e164)
    else:
        if not isinstance(item["email"], str):
            raise ValidationError.for_field("email", item["email"], "must be a string")
        identity = Identity("email", normalize_email(item["email"]))
    name = item.get("name")
    if not isinstance(name, str) or not EVENT_NAME.match(name):
        raise ValidationError.for_field("name", name, "an event name is 1 to 64 of A-Z a-z 0-9 _ . : -")
    event_id = item.get("id")
    if event_id is not None and (not isinstance(event_id, str) or not EVENT_ID.match(event_id)):
        raise ValidationError.for_field("id", event_id, "an event id is 1 to 128 printable ASCII characters")
    return (
        {
            "contact_id": contact_id,
            "name": name,
            "at": _at(item.get("at"), now),
            "properties": _properties(item.get("properties")),
            "id": event_id,
        },
        identity,
    )


def _at(value: Any, now: datetime) -> str:
    if value is None:
        return clock.iso(now)
    moment = None
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            moment = None
    if moment is None or moment.tzinfo is None:
        raise ValidationError.for_field("at", value, "must be an ISO 8601 date-time with a time zone")
    if moment > now + FUTURE_TOLERANCE:
        raise ValidationError.for_field("at", value, "must not be more than a day in the future")
    if moment < datetime(1970, 1, 1, tzinfo=UTC):
        raise ValidationError.for_field("at", value, "must be after 1970-01-01")
    return clock.iso(moment)


def _properties(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError.for_field("properties", value, "must be an object of name to value")
    if len(value) > MAX_PROPERTIES:
        raise ValidationError.for_field("properties", f"{len(value)} properties", f"at most {MAX_PROPERTIES}")
    result: dict[str, Any] = {}
    for name, item in value.items():
        path = f"properties.{name}"
        if not isinstance(name, str) or not PROPERTY_NAME.match(name):
            raise ValidationError.for_field(path, name, "a property name is 1 to 64 of A-Z a-z 0-9 _ . -")
        if isinstance(item, bool) or item is None:
            result[name] = item
        elif isinstance(item, str):
            if len(item) > MAX_PROPERTY_TEXT:
                raise ValidationError.for_field(path, item, f"must be at most {MAX_PROPERTY_TEXT} characters")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ValidationError.for_field(path, item, "is not valid Unicode text") from None
            result[name] = item
        elif isinstance(item, int | float):
            if not math.isfinite(item):
                raise ValidationError.for_field(path, item, "must be a finite number")
            try:
                DYNAMODB_CONTEXT.create_decimal(Decimal(repr(item)))
            except DecimalException:
                raise ValidationError.for_field(path, item, "is outside the numbers that can be stored") from None
            result[name] = item
        else:
            raise ValidationError.for_field(path, item, "must be a string, number or boolean")
    return {k: v for k, v in result.items() if v is not None}
