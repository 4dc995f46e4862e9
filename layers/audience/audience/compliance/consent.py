"""Consent records: per contact and channel, opted in or out, when, from where, with proof; append only.

A contact's consent for a channel is its latest record (by `at`) for that channel or for `all`, whichever
is later. Records are never rewritten: a change of mind is a new record. A subscription status change made
through the contact service appends a record for `all` in the same transaction (compliance/status.py).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from audience import clock, ids
from audience.compliance.keys import consent_position
from audience.compliance.models import ALL_CHANNELS, MAX_PROOF, ConsentRecord
from audience.compliance.repository import ConsentRepository
from audience.contacts.models import CHANNELS, Page
from audience.contacts.repository import ContactsRepository, decode_cursor, encode_cursor
from audience.errors import ValidationError

CONSENT_CHANNELS: tuple[str, ...] = (ALL_CHANNELS, *CHANNELS)
# A client's clock may run a little ahead of ours; a record "from the future" beyond this is refused.
CLOCK_SKEW = timedelta(seconds=60)
_SOURCE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_POSITION = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z#[0-9a-z]{26}$")


class ConsentService:
    """Consent records of an org's contacts."""

    def __init__(self, consent: ConsentRepository, contacts: ContactsRepository) -> None:
        self._consent = consent
        self._contacts = contacts

    def record(
        self,
        org_id: str,
        contact_id: str,
        *,
        channel: str,
        opted_in: bool,
        source: str = "api",
        proof: str = "",
        at: str | None = None,
    ) -> ConsentRecord:
        """Append a record. `at` (ISO 8601 with a zone; default now) may be in the past, never in the future."""
        if channel not in CONSENT_CHANNELS:
            raise ValidationError.for_field("channel", channel, f"must be one of {', '.join(CONSENT_CHANNELS)}")
        if not isinstance(source, str) or not _SOURCE.match(source):
            raise ValidationError.for_field(
                "source", source, "must be 1 to 64 characters: a lower-case letter, then a-z, 0-9 or _"
            )
        if not isinstance(proof, str) or len(proof) > MAX_PROOF:
            raise ValidationError.for_field("proof", proof, f"must be text of at most {MAX_PROOF} characters")
        now = clock.now()
        moment = now if at is None else _moment(at)
        if moment > now + CLOCK_SKEW:
            raise ValidationError.for_field("at", at, "must not be in the future")
        record = ConsentRecord(
            id=f"cn_{ids.ulid()}",
            contact_id=contact_id,
            channel=channel,
            opted_in=bool(opted_in),
            source=source,
            proof=proof,
            at=clock.iso(min(moment, now)),
            recorded_at=clock.iso(now),
        )
        self._consent.append(org_id, record)
        return record

    def history(
        self, org_id: str, contact_id: str, *, channel: str | None = None, cursor: str | None, take: int
    ) -> Page:
        """A contact's records, newest first (by `at`), of one channel or of all of them."""
        self._contacts.get(org_id, contact_id)
        if channel is not None and channel not in CONSENT_CHANNELS:
            raise ValidationError.for_field("channel", channel, f"must be one of {', '.join(CONSENT_CHANNELS)}")
        after = decode_cursor(cursor, _POSITION)
        channels = [channel] if channel else list(CONSENT_CHANNELS)
        records, more = self._consent.page(org_id, contact_id, channels, after=after, limit=take)
        next_cursor = None
        if more and records:
            last = records[-1]
            next_cursor = encode_cursor(consent_position(last.at, last.id))
        return Page(records, next_cursor)

    def current(self, org_id: str, contact_id: str, channel: str) -> ConsentRecord | None:
        """The contact's consent for `channel`: the later of its latest record for the channel and for `all`."""
        return latest_consent(self._consent, org_id, contact_id, channel)


def latest_consent(consent: ConsentRepository, org_id: str, contact_id: str, channel: str) -> ConsentRecord | None:
    found = [consent.latest(org_id, contact_id, c) for c in dict.fromkeys([channel, ALL_CHANNELS])]
    records = [r for r in found if r is not None]
    return max(records, key=lambda r: consent_position(r.at, r.id), default=None)


def _moment(value: Any) -> datetime:
    moment = None
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            moment = None
    if moment is None or moment.tzinfo is None:
        raise ValidationError.for_field("at", value, "must be an ISO 8601 date-time with a time zone (Z or an offset)")
    try:
        clock.iso(moment)
    except OverflowError:
        raise ValidationError.for_field("at", value, "is outside the years 1 to 9999 in UTC") from None
    return moment
