"""Contact use cases: create or upsert, update, delete, merge, bulk writes, listing, stats, activity."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal, DecimalException
from typing import Any

from boto3.dynamodb.types import DYNAMODB_CONTEXT

from audience import clock, ids
from audience.compliance.status import status_consent
from audience.contacts import keys, quality
from audience.contacts.models import (
    CHANNELS,
    MAX_CHANNELS,
    MAX_EXTRA_IDENTITIES,
    MAX_TAGS,
    STATUS_RANK,
    STATUSES,
    Activity,
    Contact,
    Identity,
    Page,
)
from audience.contacts.normalize import normalize_email, normalize_phone, search_query
from audience.contacts.repository import (
    ContactsRepository,
    IdentityTakenError,
    decode_activity_cursor,
    decode_cursor,
    encode_cursor,
    search_terms,
)
from audience.errors import ConcurrentUpdateError, ConflictError, NotFoundError, ValidationError
from audience.orgs.models import FieldDefinition
from audience.orgs.repository import OrgsRepository
from audience.settings import Settings

# Fields a client may write; anything else in a body is rejected before it reaches the service.
WRITABLE = (
    "first_name",
    "last_name",
    "full_name",
    "email",
    "phone",
    "status",
    "channels",
    "custom_fields",
    "tags",
)
MAX_BULK = 1000
MAX_MERGE_SOURCES = 10
MAX_TAG_FILTERS = 10
MAX_CUSTOM_FIELDS_BYTES = 64 * 1024
_WRITE_ATTEMPTS = 4
_TAG = re.compile(r"^[^\x00-\x1f\x7f]{1,64}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a create, upsert or bulk item did (or, in a dry run, would do)."""

    action: str  # created, updated, unchanged, invalid, conflict
    contact: Contact | None = None
    contact_id: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    message: str | None = None


@dataclass(frozen=True, slots=True)
class ListFilter:
    query: str | None = None
    status: str | None = None
    tag: str | None = None
    channel: str | None = None
    created_from: str | None = None
    created_to: str | None = None
    segment: str | None = None  # members of a segment; the other filters then narrow them
    tags: tuple[str, ...] = ()  # contacts with all of these tags (`tag_match` "all") or any of them ("any")
    tag_match: str = "all"

    def matches(self, contact: Contact) -> bool:
        return (
            (self.status is None or contact.status == self.status)
            and (self.tag is None or self.tag in contact.tags)
            and (not self.tags or (all if self.tag_match == "all" else any)(t in contact.tags for t in self.tags))
            and (self.channel is None or any(c["channel"] == self.channel for c in contact.channels))
            and (self.created_from is None or contact.created_at >= self.created_from)
            and (self.created_to is None or contact.created_at <= self.created_to)
        )


@dataclass(frozen=True, slots=True)
class ContactList:
    items: list[Contact]
    next_cursor: str | None
    total: int | None


class ContactService:
    """Contacts of an org; every method takes the org id the caller is authorised for."""

    def __init__(self, contacts: ContactsRepository, orgs: OrgsRepository, *, default_country: str) -> None:
        self._contacts = contacts
        self._orgs = orgs
        self._default_country = default_country

    @classmethod
    def from_settings(cls, settings: Settings) -> ContactService:
        """The service over the stack's tables (every function that writes contacts builds it so)."""
        return cls(
            ContactsRepository(settings.contacts_table),
            OrgsRepository(settings.orgs_table),
            default_country=settings.default_country,
        )

    # -- reads --------------------------------------------------------------------------------------

    def get(self, org_id: str, contact_id: str) -> Contact:
        return self._contacts.get(org_id, contact_id)

    def stats(self, org_id: str) -> dict[str, int]:
        counters = self._contacts.counters(org_id)
        return {
            "total": counters.get("total", 0),
            "subscribed": counters.get("s#SUBSCRIBED", 0),
            "unsubscribed": counters.get("s#UNSUBSCRIBED", 0),
            "blocked": counters.get("s#BLOCKED", 0),
        }

    def activity(self, org_id: str, contact_id: str, *, cursor: str | None, take: int) -> Page:
        self._contacts.get(org_id, contact_id)
        page = self._contacts.activity(org_id, contact_id, after=decode_activity_cursor(cursor), limit=take)
        return Page(page.items, encode_cursor(page.next_cursor) if page.next_cursor else None)

    def list(self, org_id: str, filters: ListFilter, *, cursor: str | None, take: int) -> ContactList:
        """A page of contacts, newest first (search results in match order), with the total when a
        maintained counter answers it exactly."""
        if filters.status is not None and filters.status not in STATUSES:
            raise ValidationError.for_field("status", filters.status, f"must be one of {', '.join(STATUSES)}")
        if filters.channel is not None and filters.channel not in CHANNELS:
            raise ValidationError.for_field("channel", filters.channel, f"must be one of {', '.join(CHANNELS)}")
        if filters.tag_match not in ("all", "any"):
            raise ValidationError.for_field("tag_match", filters.tag_match, "must be all or any")
        filters = replace(filters, tags=tuple(dict.fromkeys(filters.tags)))
        if len(filters.tags) > MAX_TAG_FILTERS:
            raise ValidationError.for_field("tag", f"{len(filters.tags)} tags", f"at most {MAX_TAG_FILTERS} tags")
        filters = replace(
            filters,
            created_from=_bound("created_from", filters.created_from, end=False),
            created_to=_bound("created_to", filters.created_to, end=True),
        )
        after = decode_cursor(cursor)
        query = search_query(filters.query) if filters.query else None
        facet, counter = ("all", ""), "total"
        merged: list[tuple[str, str]] = []  # facets listed together (any of several tags)
        if filters.segment is not None:
            facet, counter = ("segment", filters.segment), keys.segment_counter(filters.segment)
        elif filters.tag is not None:
            facet, counter = ("tag", filters.tag), f"t#{filters.tag}"
        elif filters.tags and (filters.tag_match == "all" or len(filters.tags) == 1):
            rarest = self._rarest_tag(org_id, filters.tags)
            facet, counter = ("tag", rarest), f"t#{rarest}"
        elif filters.tags:
            merged = [("tag", t) for t in filters.tags]
        elif filters.channel is not None:
            facet, counter = ("channel", filters.channel), f"c#{filters.channel}"
        elif filters.status is not None:
            facet, counter = ("status", filters.status), f"s#{filters.status}"
        # Only one facet (or none) and no range or search: the counter is the exact total.
        single = sum(x is not None for x in (filters.segment, filters.tag, filters.channel, filters.status)) <= 1
        if filters.tags:  # a tag list has a counter only when it is one tag and the only facet filter
            others = (filters.segment, filters.tag, filters.channel, filters.status)
            single = len(filters.tags) == 1 and all(x is None for x in others)
        exact = single and not query and not filters.created_from and not filters.created_to

        found: list[Contact] = []
        next_key: str | None = None
        for _ in range(8):  # bounded work per request; the cursor lets the client go on
            if query and filters.segment is None:
                entries, more = self._contacts.search_entries(org_id, query, after=after, limit=take)
            elif merged:
                entries, more = self._merged_entries(org_id, merged, filters, after=after, limit=take)
            else:
                entries, more = self._contacts.list_entries(
                    org_id,
                    facet=facet,
                    created_from=filters.created_from,
                    created_to=filters.created_to,
                    after=after,
                    limit=take,
                )
            contacts = self._contacts.get_many(org_id, [cid for _, cid in entries])
            used = 0  # entries looked at; the cursor stops right after the last contact returned
            for sort_key, cid in entries:
                used += 1
                after = sort_key
                contact = contacts.get(cid)
                if contact is None or not filters.matches(contact):
                    continue
                if query and filters.segment is not None:
                    if _first_match(contact, query) is None:
                        continue  # members of a segment, narrowed by the search
                elif query and sort_key != _first_match(contact, query):
                    continue  # a contact with several matching terms is listed at its first one only
                found.append(contact)
                if len(found) == take:
                    break
            has_rest = more or used < len(entries)
            if len(found) == take or not has_rest:
                next_key = after if has_rest else None
                break
        else:
            next_key = after
        total = self._contacts.counters(org_id).get(counter, 0) if exact else None
        return ContactList(found, encode_cursor(next_key) if next_key else None, total)

    def _rarest_tag(self, org_id: str, tags: tuple[str, ...]) -> str:
        """Of tags a contact must all have, the one the fewest contacts have: the shortest facet to walk."""
        if len(tags) == 1:
            return tags[0]
        counters = self._contacts.counters(org_id)
        return min(tags, key=lambda tag: counters.get(f"t#{tag}", 0))

    def _merged_entries(
        self, org_id: str, facets: list[tuple[str, str]], filters: ListFilter, *, after: str | None, limit: int
    ) -> tuple[list[tuple[str, str]], bool]:
        """The entries of several facets merged newest first, each contact once: its sort key is the same in
        every facet, so one cursor serves them all."""
        seen: set[str] = set()
        more = False
        for facet in facets:
            entries, has_more = self._contacts.list_entries(
                org_id,
                facet=facet,
                created_from=filters.created_from,
                created_to=filters.created_to,
                after=after,
                limit=limit,
            )
            seen.update(sort_key for sort_key, _ in entries)
            more = more or has_more
        ordered = sorted(seen, reverse=True)
        return [(sk, sk.rsplit("#", 1)[1]) for sk in ordered[:limit]], more or len(ordered) > limit

    # -- writes -------------------------------------------------------------------------------------

    def create(self, org_id: str, data: dict[str, Any], *, upsert: bool = False) -> Outcome:
        """Create a contact; with `upsert`, update the one its identities already name instead.

        Without `upsert`, an existing identity is a ConflictError carrying the existing contact id.
        """
        fields, country = self._org_context(org_id)
        return self._create(org_id, data, upsert=upsert, fields=fields, country=country)

    def update(
        self,
        org_id: str,
        contact_id: str,
        changes: dict[str, Any] | Callable[[Contact], dict[str, Any]],
        *,
        source: str = "api",
    ) -> Contact:
        """Apply `changes`; a callable computes them from the contact as read, again on every retry, so
        that read-modify-write changes (add a tag) never overwrite a concurrent one. `source` names who
        asked, in the consent record a status change writes."""
        fields, country = self._org_context(org_id)
        for _ in range(_WRITE_ATTEMPTS):
            current = self._contacts.get(org_id, contact_id)
            data = changes(current) if callable(changes) else changes
            updated = self._apply(current, data, fields=fields, country=country)
            if updated == current:
                return current
            try:
                self._contacts.save(
                    updated,
                    current,
                    activity=_change_activity(current, updated),
                    consent=status_consent(current, updated, source=source),
                )
            except ConcurrentUpdateError:
                continue
            return updated
        raise ConcurrentUpdateError(f"contact {contact_id} is being changed by others; retry")

    def delete(self, org_id: str, contact_id: str) -> None:
        for _ in range(_WRITE_ATTEMPTS):
            current = self._contacts.get(org_id, contact_id)
            try:
                self._contacts.delete(current)
            except ConcurrentUpdateError:
                continue
            return
        raise ConcurrentUpdateError(f"contact {contact_id} is being changed by others; retry")

    def bulk_delete(self, org_id: str, contact_ids: list[str]) -> list[dict[str, str]]:
        _check_bulk_size(contact_ids, "ids")

        def one(cid: str) -> dict[str, str]:
            try:
                self.delete(org_id, cid)
            except NotFoundError:
                return {"id": cid, "result": "not_found"}
            return {"id": cid, "result": "deleted"}

        return _parallel(one, list(dict.fromkeys(contact_ids)))

    def merge(self, org_id: str, target_id: str, source_ids: list[str]) -> Contact:
        """Fold each source into the target: identities, channels, tags, fields; sources are deleted.

        The target's values win; gaps are filled from the sources; the most restrictive status wins so
        that an opt-out survives the merge. A merge whose result would exceed a contact's limits (tags,
        channels, identities) is refused before anything is written; then each source is absorbed in
        its own transaction.
        """
        sources = list(dict.fromkeys(source_ids))
        if not sources or len(sources) > MAX_MERGE_SOURCES:
            raise ValidationError.for_field(
                "source_contact_ids", source_ids, f"must name 1 to {MAX_MERGE_SOURCES} contacts"
            )
        if target_id in sources:
            raise ValidationError.for_field("source_contact_ids", source_ids, "must not include the target contact")
        target = self._contacts.get(org_id, target_id)
        found = self._contacts.get_many(org_id, sources)
        missing = [s for s in sources if s not in found]
        if missing:
            raise NotFoundError(f"contact {missing[0]} not found")
        preview = target
        for source_id in sources:  # refuse up front what cannot fit, before any source is absorbed
            preview = _merge(preview, found[source_id])
        for source_id in sources:
            for _ in range(_WRITE_ATTEMPTS):
                target = self._contacts.get(org_id, target_id)
                source = self._contacts.get(org_id, source_id)
                merged = _merge(target, source)
                entry = Activity("merged", merged.updated_at, {"source_contact_id": source_id})
                try:
                    self._contacts.save(
                        merged, target, activity=[entry], absorbed=source, consent=status_consent(target, merged)
                    )
                except ConcurrentUpdateError:
                    continue
                break
            else:
                raise ConcurrentUpdateError("contacts being merged are being changed by others; retry")
        return self._contacts.get(org_id, target_id)

    def bulk_create(self, org_id: str, items: list[dict[str, Any]], *, upsert: bool, dry_run: bool) -> list[Outcome]:
        """Create (or upsert) up to 1,000 contacts; with `dry_run`, report what would happen, writing nothing.

        Items that share an identity are handled in input order by one worker, so the dry run and the
        real run agree on which item creates a contact and which updates it.
        """
        _check_bulk_size(items, "contacts")
        fields, country = self._org_context(org_id)
        prepared: list[tuple[Contact | None, ValidationError | None]] = []
        for data in items:
            try:
                prepared.append((self._build(org_id, data, fields=fields, country=country), None))
            except ValidationError as error:
                prepared.append((None, error))
        if dry_run:
            return self._simulate(org_id, items, prepared, upsert=upsert, fields=fields, country=country)

        candidates = [c for c, _ in prepared]
        owners = self._contacts.owners(org_id, [i for c in candidates if c for i in c.identities()])
        groups = _identity_groups(candidates, owners)
        results: dict[int, Outcome] = {}

        def run(group: list[int]) -> None:
            for index in group:
                try:
                    results[index] = self._create(
                        org_id, items[index], upsert=upsert, fields=fields, country=country, candidate=candidates[index]
                    )
                except ValidationError as error:
                    results[index] = Outcome("invalid", errors=error.fields, message=error.message)
                except (ConflictError, ConcurrentUpdateError) as error:
                    results[index] = Outcome(
                        "conflict", contact_id=error.details.get("contact_id"), message=error.message
                    )

        for index, (_, error) in enumerate(prepared):
            if error is not None:
                results[index] = Outcome("invalid", errors=error.fields, message=error.message)
        _parallel(run, groups)
        return [results[i] for i in range(len(items))]

    def org_context(self, org_id: str) -> tuple[dict[str, FieldDefinition], str]:
        """The org's custom field definitions and its default country, as the writes below use them."""
        return self._org_context(org_id)

    def changed(
        self, current: Contact, data: dict[str, Any], *, fields: dict[str, FieldDefinition], country: str
    ) -> Contact:
        """`current` with `data` applied as an update applies it (validated, normalised; version and
        `updated_at` moved on when anything changed), without writing."""
        return self._apply(current, data, fields=fields, country=country)

    # -- internals ----------------------------------------------------------------------------------

    def _org_context(self, org_id: str) -> tuple[dict[str, FieldDefinition], str]:
        org = self._orgs.get_org(org_id)
        return {f.name: f for f in self._orgs.list_fields(org_id)}, org.default_country or self._default_country

    def _create(
        self,
        org_id: str,
        data: dict[str, Any],
        *,
        upsert: bool,
        fields: dict[str, FieldDefinition],
        country: str,
        candidate: Contact | None = None,
    ) -> Outcome:
        """`candidate` is `data` already validated (bulk prepares every item once, up front)."""
        if candidate is None:
            candidate = self._build(org_id, data, fields=fields, country=country)
        for _ in range(_WRITE_ATTEMPTS):
            owners = self._contacts.owners(org_id, candidate.identities())
            existing_ids = list(dict.fromkeys(owners.values()))
            if not existing_ids:
                try:
                    self._contacts.save(candidate, None, activity=[Activity("created", candidate.created_at)])
                except IdentityTakenError:
                    continue  # somebody created it first: read again and upsert or report
                return Outcome("created", candidate, candidate.id)
            if not upsert:
                identity, owner = next(iter(owners.items()))
                raise ConflictError(
                    f"a contact with {identity.type} {identity.value!r} already exists",
                    contact_id=owner,
                    identity_type=identity.type,
                    identity_value=identity.value,
                )
            if len(existing_ids) > 1:
                raise ConflictError(
                    "the identities given belong to different contacts: " + ", ".join(existing_ids),
                    contact_id=existing_ids[0],
                    contact_ids=existing_ids,
                )
            try:
                current = self._contacts.get(org_id, existing_ids[0])
            except NotFoundError:
                continue
            updated = self._apply(current, data, fields=fields, country=country)
            if updated == current:
                return Outcome("unchanged", current, current.id)
            try:
                self._contacts.save(
                    updated,
                    current,
                    activity=_change_activity(current, updated),
                    consent=status_consent(current, updated),
                )
            except (ConcurrentUpdateError, IdentityTakenError):
                continue
            return Outcome("updated", updated, updated.id)
        raise ConcurrentUpdateError("the contact is being written by others; retry")

    def _simulate(
        self,
        org_id: str,
        items: list[dict[str, Any]],
        prepared: list[tuple[Contact | None, ValidationError | None]],
        *,
        upsert: bool,
        fields: dict[str, FieldDefinition],
        country: str,
    ) -> list[Outcome]:
        identities = [i for c, _ in prepared if c for i in c.identities()]
        owners = self._contacts.owners(org_id, identities)
        existing = self._contacts.get_many(org_id, set(owners.values()))
        planned: dict[str, Contact] = dict(existing)  # contact id -> state after earlier items
        outcomes: list[Outcome] = []
        for data, (candidate, error) in zip(items, prepared, strict=True):
            if error is not None or candidate is None:
                outcomes.append(
                    Outcome("invalid", errors=error.fields if error else [], message=error and error.message)
                )
                continue
            matched = list(dict.fromkeys(owners[i] for i in candidate.identities() if i in owners))
            if not matched:
                for identity in candidate.identities():
                    owners[identity] = candidate.id
                planned[candidate.id] = candidate
                outcomes.append(Outcome("created", candidate, candidate.id))
                continue
            if not upsert or len(matched) > 1:
                outcomes.append(Outcome("conflict", contact_id=matched[0], message="identity already in use"))
                continue
            current = planned[matched[0]]
            try:
                updated = self._apply(current, data, fields=fields, country=country)
            except ValidationError as error:
                outcomes.append(Outcome("invalid", errors=error.fields, message=error.message))
                continue
            clash = next((i for i in updated.identities() if owners.get(i, updated.id) != updated.id), None)
            if clash is not None:
                outcomes.append(Outcome("conflict", contact_id=owners[clash], message="identity already in use"))
                continue
            for identity in set(current.identities()) - set(updated.identities()):
                owners.pop(identity, None)  # released by this update, as the real run does
            for identity in updated.identities():
                owners[identity] = updated.id
            planned[updated.id] = updated
            outcomes.append(Outcome("unchanged" if updated == current else "updated", updated, updated.id))
        return outcomes

    def _build(self, org_id: str, data: dict[str, Any], *, fields: dict[str, FieldDefinition], country: str) -> Contact:
        now = clock.now_iso()
        blank = Contact(id=ids.new_id("ct"), org_id=org_id, created_at=now, updated_at=now)
        contact = self._apply(blank, data, fields=fields, country=country, creating=True)
        if not contact.email and not contact.phone and not contact.channels:
            raise ValidationError(
                "a contact needs an email, a phone or a channel id",
                [{"field": "email", "value": None, "message": "an email, a phone or a channel is required"}],
            )
        return contact

    def _apply(
        self,
        current: Contact,
        data: dict[str, Any],
        *,
        fields: dict[str, FieldDefinition],
        country: str,
        creating: bool = False,
    ) -> Contact:
        """`current` with `data` applied (PATCH semantics), validated and normalised."""
        if not isinstance(data, dict):
            raise ValidationError.for_field("contact", data, "must be an object")
        unknown = sorted(set(data) - set(WRITABLE))
        if unknown:
            raise ValidationError.for_field(unknown[0], data[unknown[0]], "is not a field a client can set")
        errors: list[dict[str, Any]] = []
        changes: dict[str, Any] = {}

        def attempt(name: str, fn: Callable[[], Any]) -> None:
            try:
                changes[name] = fn()
            except ValidationError as error:
                errors.extend(error.fields)

        for name in ("first_name", "last_name", "full_name"):
            if name in data:
                attempt(name, lambda n=name: _text(n, data[n], 200))
        if "email" in data:
            attempt("email", lambda: normalize_email(_string("email", data["email"])) if data["email"] else None)
        if "phone" in data:
            attempt(
                "phone",
                lambda: normalize_phone(_string("phone", data["phone"]), country) if data["phone"] else None,
            )
        if "status" in data:
            attempt("status", lambda: _status(data["status"]))
        if "channels" in data:
            attempt("channels", lambda: _channels(data["channels"] or []))
        if "tags" in data:
            attempt("tags", lambda: check_tags(data["tags"] or []))
        if "custom_fields" in data:
            attempt(
                "custom_fields",
                lambda: _custom_fields(current.custom_fields, data["custom_fields"] or {}, fields),
            )
        if errors:
            raise ValidationError("; ".join(f"{e['field']}: {e['message']}" for e in errors), errors)

        phone = changes.pop("phone", current.phone if "phone" not in data else None)
        updated = replace(current, **changes)
        if "phone" in data:
            updated.phone = phone.e164 if phone else None
            updated.country = phone.country if phone else None
            updated.phone_type = phone.type if phone else None
        if not updated.email and not updated.phone and not updated.channels and not creating:
            raise ValidationError(
                "a contact needs an email, a phone or a channel id",
                [{"field": "email", "value": None, "message": "an email, a phone or a channel is required"}],
            )
        # Promoting an identity the contact already owns keeps the old primary as an extra identity:
        # a contact never loses an identity by having another of its own made primary.
        extras = list(current.extra_identities)
        for kind, before, after in (("phone", current.phone, updated.phone), ("email", current.email, updated.email)):
            if before and after != before and Identity(kind, after) in current.extra_identities:
                extras.append(Identity(kind, before))
        primary = {Identity("phone", updated.phone), Identity("email", updated.email)}
        updated.extra_identities = [i for i in dict.fromkeys(extras) if i not in primary]
        if updated != current and not creating:
            updated.version = current.version + 1
            updated.updated_at = clock.now_iso()
        elif creating:
            updated.version = 1
        return updated


# -- pure helpers -----------------------------------------------------------------------------------


def _text(name: str, value: Any, limit: int) -> str | None:
    if value is None:
        return None
    text = " ".join(_string(name, value).split())
    if len(text) > limit:
        raise ValidationError.for_field(name, value, f"must be at most {limit} characters")
    return text or None


def _string(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValidationError.for_field(name, value, "must be a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError.for_field(name, value, "is not valid Unicode text") from None
    return value


def _status(value: Any) -> str:
    if value not in STATUSES:
        raise ValidationError.for_field("status", value, f"must be one of {', '.join(STATUSES)}")
    return value


def _channels(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ValidationError.for_field("channels", value, "must be a list of {channel, user_id} objects")
    if len(value) > MAX_CHANNELS:
        raise ValidationError.for_field("channels", value, f"at most {MAX_CHANNELS} channels")
    result: list[dict[str, str]] = []
    for entry in value:
        channel, user_id = entry.get("channel"), entry.get("user_id")
        if channel not in CHANNELS:
            raise ValidationError.for_field("channels.channel", channel, f"must be one of {', '.join(CHANNELS)}")
        if not isinstance(user_id, str) or not user_id.strip() or len(user_id) > 256:
            raise ValidationError.for_field("channels.user_id", user_id, "must be 1 to 256 characters")
        user_id = _string("channels.user_id", user_id).strip()
        if channel == "email":  # the same identity as a contact's email: compared without case
            user_id = normalize_email(user_id, field="channels.user_id")
        item = {"channel": channel, "user_id": user_id}
        if item not in result:
            result.append(item)
    return result


def check_tags(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise ValidationError.for_field("tags", value, "must be a list of strings")
    result: list[str] = []
    for tag in value:
        if not isinstance(tag, str) or not _TAG.match(_string("tags", tag).strip()):
            raise ValidationError.for_field("tags", tag, "a tag is 1 to 64 printable characters")
        if tag.strip() not in result:
            result.append(tag.strip())
    if len(result) > MAX_TAGS:
        raise ValidationError.for_field("tags", value, f"at most {MAX_TAGS} tags")
    return result


def _custom_fields(current: dict[str, Any], changes: Any, defs: dict[str, FieldDefinition]) -> dict[str, Any]:
    if not isinstance(changes, dict):
        raise ValidationError.for_field("custom_fields", changes, "must be an object of field name to value")
    result = dict(current)
    for name, value in changes.items():
        if value is None:
            result.pop(name, None)
            continue
        definition = defs.get(name)
        if definition is None:
            raise ValidationError.for_field(f"custom_fields.{name}", value, "is not a declared custom field")
        result[name] = field_value(f"custom_fields.{name}", definition.type, value)
    size = len(json.dumps(result, ensure_ascii=False).encode("utf-8"))
    if size > MAX_CUSTOM_FIELDS_BYTES:
        raise ValidationError.for_field(
            "custom_fields", f"{size} bytes", f"custom fields take at most {MAX_CUSTOM_FIELDS_BYTES} bytes in all"
        )
    return result


def field_value(path: str, type_: str, value: Any) -> Any:
    if type_ == "string":
        if not isinstance(value, str) or len(value) > 2048:
            raise ValidationError.for_field(path, value, "must be a string of at most 2048 characters")
        return _string(path, value)
    if type_ == "number":
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValidationError.for_field(path, value, "must be a finite number")
        try:  # what DynamoDB can store: 38 significant digits, magnitudes 1e-130 to 1e125
            DYNAMODB_CONTEXT.create_decimal(Decimal(repr(value)))
        except DecimalException:
            raise ValidationError.for_field(
                path, value, "must have at most 38 significant digits and a magnitude between 1e-130 and 1e125"
            ) from None
        return value
    if type_ == "boolean":
        if not isinstance(value, bool):
            raise ValidationError.for_field(path, value, "must be true or false")
        return value
    if type_ == "date":
        try:
            if not isinstance(value, str) or not _DATE.match(value):
                raise ValueError
            return date.fromisoformat(value).isoformat()
        except ValueError:
            raise ValidationError.for_field(path, value, "must be a date like 2026-11-23") from None
    return _zoned(path, value)


def _zoned(name: str, value: Any) -> str:
    """An ISO 8601 date-time with a zone, in the stored UTC form; anything else names the field."""
    moment = None
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            moment = None
    if moment is None or moment.tzinfo is None:
        raise ValidationError.for_field(name, value, "must be an ISO 8601 date-time with a time zone (Z or an offset)")
    try:
        return clock.iso(moment)
    except OverflowError:
        raise ValidationError.for_field(name, value, "is outside the years 1 to 9999 in UTC") from None


def _bound(name: str, value: str | None, *, end: bool) -> str | None:
    """A created-range bound as the stored timestamp format; a bare date covers its whole day (UTC)."""
    if value is None:
        return None
    if _DATE.match(value):
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise ValidationError.for_field(name, value, "is not a calendar date") from None
        return f"{day.isoformat()}T23:59:59.999Z" if end else f"{day.isoformat()}T00:00:00.000Z"
    return _zoned(name, value)


def _first_match(contact: Contact, prefix: str) -> str | None:
    """The search index key (`term#id`) at which the contact is listed: its first in index order."""
    keys_ = [f"{term}#{contact.id}" for term in search_terms(contact) if term.startswith(prefix)]
    return min(keys_, default=None)


def _change_activity(before: Contact, after: Contact) -> list[Activity]:
    changed = [
        name
        for name in (
            "first_name",
            "last_name",
            "full_name",
            "email",
            "phone",
            "channels",
            "custom_fields",
            "tags",
        )
        if getattr(before, name) != getattr(after, name)
    ]
    entries = []
    if changed:
        entries.append(Activity("updated", after.updated_at, {"fields": changed}))
    if before.status != after.status:
        entries.append(Activity("status_changed", after.updated_at, {"from": before.status, "to": after.status}))
    return entries


def _merge(target: Contact, source: Contact) -> Contact:
    merged = replace(target)
    for name in ("first_name", "last_name", "full_name"):
        if not getattr(merged, name) and getattr(source, name):
            setattr(merged, name, getattr(source, name))
    if merged.original_name is None and source.original_name is not None:
        merged.original_name = source.original_name  # the name before a capture replaced it: kept
    if not merged.email and source.email:
        merged.email = source.email
    if not merged.phone and source.phone:
        merged.phone, merged.country, merged.phone_type = source.phone, source.country, source.phone_type
    merged.channels = target.channels + [c for c in source.channels if c not in target.channels]
    merged.tags = list(dict.fromkeys(target.tags + source.tags))
    merged.custom_fields = {**source.custom_fields, **target.custom_fields}
    merged.reach = quality.merge(target.reach, source.reach, "reach")
    merged.engagement = quality.merge(target.engagement, source.engagement, "engagement")
    if STATUS_RANK[source.status] > STATUS_RANK[merged.status]:
        merged.status = source.status
    kept = set(Identity(c["channel"], c["user_id"]) for c in merged.channels)
    kept |= {Identity("phone", merged.phone), Identity("email", merged.email)}
    extras = list(target.extra_identities)
    for identity in source.identities():
        if identity not in kept and identity not in extras:
            extras.append(identity)
    merged.extra_identities = extras
    # A merge never drops what it cannot hold: it is refused, and nothing is written.
    for name, count, limit in (
        ("tags", len(merged.tags), MAX_TAGS),
        ("channels", len(merged.channels), MAX_CHANNELS),
        ("identities", len(extras), MAX_EXTRA_IDENTITIES),
    ):
        if count > limit:
            raise ValidationError.for_field(
                "source_contact_ids",
                source.id,
                f"merging would give the contact {count} {name}; a contact holds at most {limit}"
                + (" beyond its email and phone" if name == "identities" else ""),
            )
    merged.version = target.version + 1
    merged.updated_at = clock.now_iso()
    return merged


def _identity_groups(contacts: list[Contact | None], owners: dict[Identity, str]) -> list[list[int]]:
    """Indexes of bulk items grouped so that items sharing an identity, or naming the same existing
    contact through different identities, land in one group, in input order."""
    parent = list(range(len(contacts)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_seen: dict[object, int] = {}
    for index, contact in enumerate(contacts):
        if contact is None:
            continue
        for identity in contact.identities():
            for key in (identity, ("owner", owners.get(identity))):
                if key == ("owner", None):
                    continue
                if key in first_seen:
                    parent[find(index)] = find(first_seen[key])
                else:
                    first_seen[key] = index
    groups: dict[int, list[int]] = {}
    for index, contact in enumerate(contacts):
        if contact is not None:
            groups.setdefault(find(index), []).append(index)
    return list(groups.values())


def _check_bulk_size(items: list[Any], name: str) -> None:
    if not items:
        raise ValidationError.for_field(name, [], "must not be empty")
    if len(items) > MAX_BULK:
        raise ValidationError.for_field(name, f"{len(items)} items", f"at most {MAX_BULK} per call")


def _parallel(fn: Callable[[Any], Any], work: Iterable[Any]) -> list[Any]:
    items = list(work)
    if len(items) <= 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(max_workers=min(8, len(items))) as pool:
        return list(pool.map(fn, items))
