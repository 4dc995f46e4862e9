"""Segment use cases: CRUD, static membership, preview, explain, predefined segments, broadcast locks."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from audience import clock, ids
from audience.contacts.models import Contact
from audience.contacts.repository import ContactsRepository
from audience.errors import ConflictError, NotFoundError, ValidationError
from audience.orgs.repository import OrgsRepository
from audience.segments.evaluation import ContactHistory, RuleBook, SegmentEvaluator, detailed_names
from audience.segments.jobs import BUILD, COPY, PURGE, JobStarter
from audience.segments.models import (
    BUILDING,
    BY_CLIENT,
    DELETING,
    DYNAMIC,
    MAX_DYNAMIC_SEGMENTS_PER_ORG,
    MAX_SEGMENTS_PER_ORG,
    PREDEFINED_DESCRIPTIONS,
    PREDEFINED_IDS,
    PREDEFINED_NAMES,
    STATIC,
    TYPES,
    MembershipChange,
    Segment,
)
from audience.segments.repository import (
    STALE_SEGMENT,
    UNCHANGED,
    WRITTEN,
    Guard,
    SegmentsRepository,
    counter_name,
    locked_error,
)
from audience.segments.rules import PREDEFINED, Subject, compile_rules, event_ranges, explain, parse_rules
from audience.segments.rules import validate_timezone as _validate_timezone

MAX_BULK_MEMBERS = 1000
PREVIEW_LIMIT = 10_000  # contacts a preview evaluates in the request; beyond it the count is an estimate
_ID = re.compile(r"^sg_[0-9a-z]{26}$")


def check_segment_id(segment_id: str) -> str:
    if not _ID.match(segment_id):
        raise NotFoundError(f"segment {segment_id} not found")
    return segment_id


class SegmentService:
    """Segments of an org; every method takes the org id the caller is authorised for."""

    def __init__(
        self,
        segments: SegmentsRepository,
        contacts: ContactsRepository,
        orgs: OrgsRepository,
        jobs: Callable[[], JobStarter],
    ) -> None:
        self._segments = segments
        self._contacts = contacts
        self._orgs = orgs
        self._jobs = jobs
        self._evaluator = SegmentEvaluator(segments)

    # -- reads --------------------------------------------------------------------------------------

    def list(self, org_id: str) -> list[tuple[Segment, int]]:
        segments = [s for s in self.ensure_predefined(org_id) if s.state != DELETING]
        counters = self._contacts.counters(org_id)
        ordered = sorted(segments, key=lambda s: (s.predefined is None, s.created_at, s.id))
        return [(s, max(0, counters.get(counter_name(s.id), 0))) for s in ordered]

    def get(self, org_id: str, segment_id: str) -> tuple[Segment, int]:
        segment = self._segments.get_segment(org_id, check_segment_id(segment_id))
        return segment, max(0, self._contacts.counters(org_id).get(counter_name(segment.id), 0))

    def contact_segments(self, org_id: str, contact_id: str) -> list[tuple[Segment, str]]:
        """The segments a contact belongs to, with how it got there (`client` or `rules`)."""
        self._contacts.get(org_id, contact_id)
        memberships = self._segments.memberships(org_id, contact_id)
        by_id = {s.id: s for s in self._segments.list_segments(org_id) if s.state != DELETING}
        return [(by_id[sid], source) for sid, source in memberships.items() if sid in by_id]

    # -- writes -------------------------------------------------------------------------------------

    def create(self, org_id: str, data: dict[str, Any]) -> Segment:
        existing = [s for s in self._segments.list_segments(org_id) if s.state != DELETING]
        type_ = data.get("type")
        if type_ not in TYPES:
            raise ValidationError.for_field("type", type_, "must be static or dynamic")
        if len(existing) >= MAX_SEGMENTS_PER_ORG:
            raise ValidationError(f"an org has at most {MAX_SEGMENTS_PER_ORG} segments")
        if type_ == DYNAMIC and sum(s.dynamic for s in existing) >= MAX_DYNAMIC_SEGMENTS_PER_ORG:
            raise ValidationError(f"an org has at most {MAX_DYNAMIC_SEGMENTS_PER_ORG} dynamic segments")
        now = clock.now_iso()
        segment = Segment(
            id=ids.new_id("sg"),
            org_id=org_id,
            name=_name(data.get("name")),
            type=type_,
            description=_description(data.get("description")),
            timezone=_validate_timezone(data.get("timezone") or "UTC"),
            created_at=now,
            updated_at=now,
        )
        if type_ == DYNAMIC:
            if data.get("rules") is None:
                raise ValidationError.for_field("rules", None, "a dynamic segment needs rules")
            segment.rules = self._parse(org_id, data["rules"]).tree
            segment.state = BUILDING
        elif data.get("rules") is not None:
            raise ValidationError.for_field("rules", data["rules"], "a static segment has no rules")
        self._segments.create_segment(segment)
        if segment.dynamic:
            self._start(BUILD, segment)
        return segment

    def update(self, org_id: str, segment_id: str, changes: dict[str, Any]) -> Segment:
        current = self._segments.get_segment(org_id, check_segment_id(segment_id))
        updated = replace(current, locks=dict(current.locks))
        if "name" in changes:
            updated.name = _name(changes["name"])
        if "description" in changes:
            updated.description = _description(changes["description"])
        rebuild = False
        if "rules" in changes or "timezone" in changes:
            if current.predefined:
                raise ConflictError(f"segment {segment_id} is predefined; its rules cannot change")
            if not current.dynamic:
                raise ValidationError.for_field("rules", changes.get("rules"), "a static segment has no rules")
            if "rules" in changes:
                updated.rules = self._parse(org_id, changes["rules"]).tree
            if "timezone" in changes:
                updated.timezone = _validate_timezone(changes["timezone"] or "UTC")
            rebuild = (updated.rules, updated.timezone) != (current.rules, current.timezone)
            if rebuild and self._locking(current):
                raise locked_error(current, "given new rules")
        if updated == current:
            return current
        if rebuild:
            updated.version = current.version + 1
            updated.state = BUILDING
        updated.updated_at = clock.now_iso()
        self._segments.replace_segment(
            updated, expected_version=current.version, expected_updated_at=current.updated_at
        )
        if rebuild:
            self._start(BUILD, updated)
        return updated

    def duplicate(self, org_id: str, segment_id: str, name: str | None = None) -> Segment:
        """A copy named "<name> (Copy)": the rules of a dynamic segment (its members are then computed),
        or the members of a static one (copied in the background; the copy is `building` meanwhile)."""
        source = self._segments.get_segment(org_id, check_segment_id(segment_id))
        copy = self.create(
            org_id,
            {
                "name": name or _copy_name(source.name),
                "type": source.type,
                "description": source.description,
                "rules": source.rules,
                "timezone": source.timezone,
            },
        )
        if not source.dynamic:
            self._segments.set_state(org_id, copy.id, BUILDING)
            copy.state = BUILDING
            self._jobs().start({"kind": COPY, "org_id": org_id, "segment_id": copy.id, "source_id": source.id})
        return copy

    def delete(self, org_id: str, segment_id: str) -> None:
        """Delete the segment (its members stay contacts). Predefined segments and segments a scheduled or
        sending broadcast uses cannot be deleted (409 naming the broadcasts)."""
        segment = self._segments.get_segment(org_id, check_segment_id(segment_id))
        if segment.predefined:
            raise ConflictError(f"segment {segment_id} is predefined and cannot be deleted")
        self._segments.mark_deleting(org_id, segment_id)
        self._start(PURGE, segment)

    def lock(self, org_id: str, segment_id: str, broadcast_id: str, name: str, status: str) -> None:
        """Broadcasts call this when they are scheduled or start sending; the segment then cannot be
        deleted or have its rules changed until `unlock`."""
        self._segments.lock(org_id, check_segment_id(segment_id), broadcast_id, name, status)

    def unlock(self, org_id: str, segment_id: str, broadcast_id: str) -> None:
        self._segments.unlock(org_id, check_segment_id(segment_id), broadcast_id)

    # -- static membership --------------------------------------------------------------------------

    def add_member(self, org_id: str, segment_id: str, contact_id: str) -> bool:
        """Add a contact to a static segment; False when it was already a member."""
        return self._change_member(org_id, segment_id, contact_id, member=True)

    def remove_member(self, org_id: str, segment_id: str, contact_id: str) -> bool:
        return self._change_member(org_id, segment_id, contact_id, member=False)

    def change_members(self, org_id: str, segment_id: str, contact_ids: list[str], *, member: bool) -> dict[str, Any]:
        """Add (or remove) up to 1,000 contacts; returns counts and the ids not found."""
        if not contact_ids or len(contact_ids) > MAX_BULK_MEMBERS:
            raise ValidationError.for_field(
                "contact_ids", f"{len(contact_ids)} ids", f"must name 1 to {MAX_BULK_MEMBERS} contacts"
            )
        segment = self._static(org_id, segment_id)
        wanted = list(dict.fromkeys(contact_ids))
        found = self._contacts.get_many(org_id, wanted)
        changed = 0
        for contact_id in wanted:
            contact = found.get(contact_id)
            if contact is not None and self._write(org_id, segment, contact, member=member):
                changed += 1
        missing = [cid for cid in wanted if cid not in found]
        return {"changed": changed, "unchanged": len(found) - changed, "not_found": missing}

    def check_static(self, org_id: str, segment_ids: list[str]) -> list[Segment]:
        """The static segments named (for assigning them when a contact is created); 422 otherwise."""
        segments = []
        for segment_id in dict.fromkeys(segment_ids):
            try:
                segments.append(self._static(org_id, segment_id))
            except (NotFoundError, ValidationError):
                raise ValidationError.for_field("segments", segment_id, "is not a static segment of this org") from None
        return segments

    def assign(self, org_id: str, segments: list[Segment], contact: Contact) -> None:
        for segment in segments:
            self._write(org_id, segment, contact, member=True)

    # -- preview and explain ------------------------------------------------------------------------

    def preview(self, org_id: str, rules: Any, timezone: str | None, *, take: int) -> dict[str, Any]:
        """Count the contacts a rule tree matches and return the first `take`, writing nothing.

        Up to 10,000 contacts are evaluated in the request (newest first); beyond that the count is
        extrapolated and `exact` is false. Saved segments are always exact: their members are materialised.
        """
        parsed = self._parse(org_id, rules)
        zone = _validate_timezone(timezone or "UTC")
        now = clock.now()
        predicate = compile_rules(parsed, now=now, timezone=zone)
        ranges = {name: first for name, (first, _) in event_ranges(parsed, now=now).items()}
        detailed = detailed_names(parsed.tree)
        matched: list[Contact] = []
        count = evaluated = 0
        after: str | None = None
        more = True
        while more and evaluated < PREVIEW_LIMIT:
            entries, more = self._contacts.list_entries(org_id, after=after, limit=100)
            if not entries:
                break
            after = entries[-1][0]
            contacts = self._contacts.get_many(org_id, [cid for _, cid in entries])
            for _, contact_id in entries:
                contact = contacts.get(contact_id)
                if contact is None:
                    continue
                evaluated += 1
                if parsed.event_clauses:
                    state = self._segments.load_state(org_id, contact_id, count_ranges=ranges, detailed=detailed)
                    if state is None:
                        continue
                    subject = Subject(state.contact, ContactHistory(state.counts, state.events))
                else:
                    subject = Subject(contact, _NO_EVENTS)
                if predicate(subject):
                    count += 1
                    if len(matched) < take:
                        matched.append(contact)
        exact = not more
        total = self._contacts.counters(org_id).get("total", 0)
        estimate = count if exact or not evaluated else round(count * max(total, evaluated) / evaluated)
        return {"count": estimate, "exact": exact, "evaluated": evaluated, "contacts": matched}

    def explain(self, org_id: str, segment_id: str, contact_id: str) -> dict[str, Any]:
        """Which clauses a contact matches or fails, and whether it is a member now."""
        segment = self._segments.get_segment(org_id, check_segment_id(segment_id))
        memberships = self._segments.memberships(org_id, contact_id)
        if not segment.dynamic or segment.rules is None:
            self._contacts.get(org_id, contact_id)
            return {"segment_id": segment.id, "contact_id": contact_id, "member": segment.id in memberships}
        book = RuleBook.of([segment], clock.now())
        state = self._segments.load_state(
            org_id, contact_id, count_ranges=book.count_ranges(), detailed=book.detailed()
        )
        if state is None:
            raise NotFoundError(f"contact {contact_id} not found")
        subject = Subject(state.contact, ContactHistory(state.counts, state.events))
        result = explain(book.segments[0].rules, subject, now=clock.now(), timezone=segment.timezone)
        return {
            "segment_id": segment.id,
            "contact_id": contact_id,
            "member": segment.id in memberships,
            "matched": result["matched"],
            "timezone": segment.timezone,
            "rules": result,
        }

    # -- predefined segments ------------------------------------------------------------------------

    def ensure_predefined(self, org_id: str) -> list[Segment]:
        """The org's segments, creating Active and Inactive (and their first build) if missing."""
        segments = self._segments.list_segments(org_id)
        have = {s.predefined for s in segments}
        for key, segment_id in PREDEFINED_IDS.items():
            if key in have:
                continue
            now = clock.now_iso()
            segment = Segment(
                id=segment_id,
                org_id=org_id,
                name=PREDEFINED_NAMES[key],
                type=DYNAMIC,
                description=PREDEFINED_DESCRIPTIONS[key],
                rules=parse_rules(PREDEFINED[key], {}).tree,
                predefined=key,
                state=BUILDING,
                created_at=now,
                updated_at=now,
            )
            if self._segments.create_segment(segment):
                self._start(BUILD, segment)
            segments.append(segment)
        return segments

    # -- internals ----------------------------------------------------------------------------------

    def _parse(self, org_id: str, rules: Any) -> Any:
        fields = {f.name: f.type for f in self._orgs.list_fields(org_id)}
        return parse_rules(rules, fields)

    def _start(self, kind: str, segment: Segment) -> None:
        self._jobs().start(
            {"kind": kind, "org_id": segment.org_id, "segment_id": segment.id, "version": segment.version}
        )

    def _locking(self, segment: Segment) -> bool:
        return bool(segment.locks)

    def _static(self, org_id: str, segment_id: str) -> Segment:
        segment = self._segments.get_segment(org_id, check_segment_id(segment_id))
        if segment.type != STATIC:
            raise ValidationError.for_field(
                "segment_id", segment_id, "is a dynamic segment: its members follow its rules"
            )
        return segment

    def _change_member(self, org_id: str, segment_id: str, contact_id: str, *, member: bool) -> bool:
        segment = self._static(org_id, segment_id)
        contact = self._contacts.get(org_id, contact_id)
        return self._write(org_id, segment, contact, member=member)

    def _write(self, org_id: str, segment: Segment, contact: Contact, *, member: bool) -> bool:
        change = MembershipChange(segment.id, contact.id, contact.created_at, member, BY_CLIENT)
        result = self._segments.write_membership(org_id, change, Guard(), static=True)
        if result == STALE_SEGMENT:
            raise NotFoundError(f"segment {segment.id} not found")
        if result not in (WRITTEN, UNCHANGED):
            raise NotFoundError(f"contact {contact.id} not found")
        return result == WRITTEN


class _NoEvents:
    def count(self, name: str, first: Any, last: Any, where: Any) -> int:
        return 0


_NO_EVENTS = _NoEvents()


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > 200:
        raise ValidationError.for_field("name", value, "must be 1 to 200 characters")
    return " ".join(value.split())


def _description(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 2000:
        raise ValidationError.for_field("description", value, "must be at most 2,000 characters")
    return value.strip() or None


def _copy_name(name: str) -> str:
    suffix = " (Copy)"
    return name[: 200 - len(suffix)] + suffix
