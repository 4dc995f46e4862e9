"""Which contacts a batch of contacts-table stream records asks the segment consumer to re-evaluate."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from audience.contacts import keys
from audience.segments.repository import EVENT_SEQUENCE_SK


def evaluation_target(record: Mapping[str, Any]) -> tuple[str, str] | None:
    """(org id, contact id) when the record changes what segment rules read: the contact itself (created
    or updated) or its event sequence (an event was recorded). Memberships, activity and index items,
    and deletions (the contacts stream consumer purges those), are not evaluated."""
    key = record.get("dynamodb", {}).get("Keys", {})
    pk = key.get("pk", {}).get("S", "")
    sk = key.get("sk", {}).get("S", "")
    if "#C#" not in pk or record.get("eventName") not in ("INSERT", "MODIFY"):
        return None
    if sk != keys.CONTACT_SK and sk != EVENT_SEQUENCE_SK:
        return None
    return pk.split("#", 2)[1], keys.contact_id_from_pk(pk)


def evaluation_targets(records: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], str]:
    """Each contact to evaluate once, with the sequence number of its first record, in stream order."""
    targets: dict[tuple[str, str], str] = {}
    for record in records:
        target = evaluation_target(record)
        if target is not None and target not in targets:
            targets[target] = record["dynamodb"]["SequenceNumber"]
    return targets
