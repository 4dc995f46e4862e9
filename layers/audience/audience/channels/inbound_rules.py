"""Inbound rules of a connection: what a contact its messages create gets (tags, static segments), and who
automatic replies on it may go to (allow and deny segments, blocked contacts, do-not-contact entries).

The rules are stored on the connection item. The auto-reply check reads the contact, its membership items
(`M#` items in its own partition) and point reads of the do-not-contact list: no scan, whatever the org's size.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from audience import clock
from audience.broadcasts.delivery import sender_of
from audience.channels.models import Connection
from audience.channels.repository import ConnectionsRepository
from audience.compliance.dnc import DoNotContactService
from audience.compliance.eligibility import identifiers_for
from audience.contacts.models import Contact, Identity
from audience.contacts.repository import ContactsRepository
from audience.contacts.service import check_tags
from audience.errors import ConcurrentUpdateError, NotFoundError, ValidationError
from audience.segments.models import DELETING, STATIC
from audience.segments.repository import SegmentsRepository

MAX_RULE_SEGMENTS = 20  # per list
MAX_NEW_CONTACT_TAGS = 10
_ATTEMPTS = 3

# Reasons of the auto-reply check.
ALLOWED = "allowed"
BLOCKED = "blocked"
DO_NOT_CONTACT = "do_not_contact"
DENIED_SEGMENT = "denied_segment"
NOT_IN_ALLOWED_SEGMENTS = "not_in_allowed_segments"


def empty_rules() -> dict[str, Any]:
    return {
        "on_new_contact": {"tags": [], "segments": []},
        "auto_reply": {"allow_segments": [], "deny_segments": []},
    }


def rules_of(connection: Connection) -> dict[str, Any]:
    """The connection's rules, every list present (empty when never set)."""
    stored = connection.inbound_rules or {}
    rules = empty_rules()
    for part, lists in rules.items():
        for name in lists:
            lists[name] = list((stored.get(part) or {}).get(name) or [])
    return rules


@dataclass(frozen=True, slots=True)
class AutoReplyDecision:
    allowed: bool
    reason: str
    detail: str
    contact_id: str
    segment_id: str | None = None


class InboundRulesService:
    def __init__(
        self,
        connections: ConnectionsRepository,
        segments: SegmentsRepository,
        contacts: ContactsRepository,
        dnc: DoNotContactService,
    ) -> None:
        self._connections = connections
        self._segments = segments
        self._contacts = contacts
        self._dnc = dnc

    def get(self, org_id: str, connection_id: str) -> tuple[dict[str, Any], str]:
        """The connection's rules and its `updated_at`; another org's connection is not found. Segments
        deleted since the rules were saved are left out (as the processor and the check ignore them)."""
        connection = self._connections.get(org_id, connection_id)
        rules = rules_of(connection)
        named = _segment_ids(rules)
        if named:
            existing = self._segments.existing_segments(org_id, named)
            for lists in rules.values():
                for name, items in lists.items():
                    if name != "tags":
                        lists[name] = [i for i in items if i in existing]
        return rules, connection.updated_at

    def put(self, org_id: str, connection_id: str, given: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """Replace the connection's rules. Tags are checked as a contact's tags are; the segments of
        `on_new_contact` must be static segments of the org, those of `auto_reply` segments of any kind.
        An id of a segment deleted since the stored rules named it is dropped (so a GET's answer, or an
        older one, can be PUT back); an id the stored rules never named must be a segment of the org."""
        for _ in range(_ATTEMPTS):
            current = self._connections.get(org_id, connection_id)
            rules = self._validate(org_id, given, set(_segment_ids(rules_of(current))))
            updated = replace(current, inbound_rules=rules, updated_at=clock.now_iso())
            try:
                self._connections.update(updated, current)
            except ConcurrentUpdateError:
                continue
            return rules, updated.updated_at
        raise ConcurrentUpdateError(f"connection {connection_id} keeps changing; retry")

    def check_auto_reply(
        self,
        org_id: str,
        connection_id: str,
        *,
        contact_id: str | None = None,
        phone: str | None = None,
        email: str | None = None,
        user_id: str | None = None,
    ) -> AutoReplyDecision:
        """Whether an automatic reply on this connection may go to the contact. Automatic replies are
        service messages: an unsubscribed contact still gets them, a BLOCKED one and one on the
        do-not-contact list (for this channel and sender) do not; then the deny segments, then the allow
        segments (when any) decide."""
        connection = self._connections.get(org_id, connection_id)
        contact = self._contact(org_id, connection, contact_id=contact_id, phone=phone, email=email, user_id=user_id)
        channel = connection.channel
        if contact.status == "BLOCKED":
            return AutoReplyDecision(False, BLOCKED, "the contact is blocked: nothing is sent to it", contact.id)
        entries = self._dnc.matching(
            org_id, identifiers_for(contact, channel), channel=channel, sender=sender_of(connection)
        )
        if entries:
            entry = min(entries, key=lambda e: e.added_at)
            return AutoReplyDecision(
                False,
                DO_NOT_CONTACT,
                f"{entry.identifier} is on the do-not-contact list (entry {entry.id}, source {entry.source})",
                contact.id,
            )
        rules = rules_of(connection)["auto_reply"]
        memberships = set(self._segments.memberships(org_id, contact.id))
        named = rules["allow_segments"] + rules["deny_segments"]
        existing = self._segments.existing_segments(org_id, named) if named else set()
        gone = [s for s in named if s not in existing]
        note = f" (segments deleted since the rules were saved are ignored: {', '.join(gone)})" if gone else ""
        rules = {name: [s for s in items if s in existing] for name, items in rules.items()}
        for segment_id in rules["deny_segments"]:
            if segment_id in memberships:
                return AutoReplyDecision(
                    False,
                    DENIED_SEGMENT,
                    f"the contact is in segment {segment_id}, which is denied{note}",
                    contact.id,
                    segment_id,
                )
        if rules["allow_segments"]:
            inside = next((s for s in rules["allow_segments"] if s in memberships), None)
            if inside is None:
                return AutoReplyDecision(
                    False, NOT_IN_ALLOWED_SEGMENTS, f"the contact is in none of the allowed segments{note}", contact.id
                )
            return AutoReplyDecision(
                True, ALLOWED, f"the contact is in allowed segment {inside}{note}", contact.id, inside
            )
        return AutoReplyDecision(True, ALLOWED, f"no rule keeps automatic replies from the contact{note}", contact.id)

    # -- internals ----------------------------------------------------------------------------------

    def _validate(self, org_id: str, given: dict[str, Any], stored: set[str]) -> dict[str, Any]:
        rules = empty_rules()
        new = given.get("on_new_contact") or {}
        tags = new.get("tags") or []
        if len(tags) > MAX_NEW_CONTACT_TAGS:
            raise ValidationError.for_field("on_new_contact.tags", None, f"at most {MAX_NEW_CONTACT_TAGS} tags")
        try:
            rules["on_new_contact"]["tags"] = check_tags(tags)
        except ValidationError as error:
            message = error.fields[0]["message"] if error.fields else str(error)
            raise ValidationError.for_field("on_new_contact.tags", None, message) from None
        kinds = {s.id: s.type for s in self._segments.list_segments(org_id) if s.state != DELETING}
        for part, name, static in (
            ("on_new_contact", "segments", True),
            ("auto_reply", "allow_segments", False),
            ("auto_reply", "deny_segments", False),
        ):
            ids_ = list(dict.fromkeys((given.get(part) or {}).get(name) or []))
            # A segment deleted since the stored rules named it: dropped, not refused.
            ids_ = [i for i in ids_ if i in kinds or i not in stored]
            field = f"{part}.{name}"
            if len(ids_) > MAX_RULE_SEGMENTS:
                raise ValidationError.for_field(field, None, f"at most {MAX_RULE_SEGMENTS} segments")
            for segment_id in ids_:
                if kinds.get(segment_id) is None:
                    raise ValidationError.for_field(field, segment_id, "is not a segment of this org")
                if static and kinds[segment_id] != STATIC:
                    raise ValidationError.for_field(
                        field, segment_id, "is a dynamic segment: only static segments can be assigned"
                    )
            rules[part][name] = ids_
        both = set(rules["auto_reply"]["allow_segments"]) & set(rules["auto_reply"]["deny_segments"])
        if both:
            raise ValidationError.for_field(
                "auto_reply.deny_segments",
                sorted(both)[0],
                "is an allowed segment too; a segment can only mean one thing",
            )
        return rules

    def _contact(
        self,
        org_id: str,
        connection: Connection,
        *,
        contact_id: str | None,
        phone: str | None,
        email: str | None,
        user_id: str | None,
    ) -> Contact:
        given = [
            name
            for name, value in (("contact_id", contact_id), ("phone", phone), ("email", email), ("user_id", user_id))
            if value
        ]
        if len(given) != 1:
            raise ValidationError.for_field(
                "contact_id", None, "give exactly one of contact_id, phone, email or user_id (the id on this channel)"
            )
        if contact_id:
            return self._contacts.get(org_id, contact_id)
        if phone:
            from audience.contacts.normalize import normalize_phone

            identity = Identity("phone", normalize_phone(phone, "").e164)
        elif email:
            identity = Identity("email", email.strip().lower())
        else:
            channel = connection.channel
            identity = Identity(channel, user_id.lower() if channel == "email" else user_id)  # type: ignore[union-attr]
        owner = self._contacts.owners(org_id, [identity]).get(identity)
        if owner is None:
            raise NotFoundError(f"no contact with {identity.type} {identity.value!r}")
        return self._contacts.get(org_id, owner)


def _segment_ids(rules: dict[str, Any]) -> list[str]:
    return [
        *rules["on_new_contact"]["segments"],
        *rules["auto_reply"]["allow_segments"],
        *rules["auto_reply"]["deny_segments"],
    ]
