"""The consent record a subscription status change implies (light: the contact service imports it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from audience import clock, ids
from audience.compliance.keys import consent_item

if TYPE_CHECKING:
    from audience.contacts.models import Contact

ALL_CHANNELS = "all"


def status_consent(before: Contact | None, after: Contact, *, source: str = "api") -> list[dict[str, Any]]:
    """The consent record (as an item for ContactsRepository.save) a status change implies: opted in
    when the new status is SUBSCRIBED, out otherwise, for every channel (`all`); none when the status
    stays as it was."""
    if before is None or before.status == after.status:
        return []
    return [
        consent_item(
            after.org_id,
            record_id=f"cn_{ids.ulid()}",
            contact_id=after.id,
            channel=ALL_CHANNELS,
            opted_in=after.status == "SUBSCRIBED",
            source=source,
            proof=f"subscription status changed from {before.status} to {after.status}",
            at=after.updated_at,
            recorded_at=clock.now_iso(),
        )
    ]
